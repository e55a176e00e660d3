"""Ablations of a study in the store: :class:`Ablation` (a spec and its name, folders, command),
listing them and finding one by name."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from featcache import paper
from featcache.ablate.spec import PREFIX, RESULT_FILE, SPEC_FILE, AblationSpec
from featcache.cache.integrity import read_json_object
from featcache.errors import DamagedError, FeatcacheError
from featcache.study import Study

# ------------------------------------------------------------------------------------------------
# an ablation in the store
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ablation:
    """One ablation of one study: its name and its (canonical) options.

    Attributes:
        name: ``<label>-<digest>``.
        spec: The options.
    """

    name: str
    spec: AblationSpec

    @property
    def model(self) -> str:
        """Its model name in a predictions table: ``ablate:<name>``."""
        return PREFIX + self.name

    @property
    def reference(self) -> str:
        """The paper's model it is compared with: multimodal, or the model of its one modality."""
        return paper.MULTIMODAL if len(self.spec.modalities) == 2 else self.spec.modalities[0]

    def folder(self, study: Study) -> Path:
        """Its folder in the study's store."""
        return study.store.ablation_dir(home_key(study), self.name)

    def head_dir(self, study: Study, *, fold: int, seed: int, part: str = "head") -> Path:
        """Where one of its heads is (``part``: ``head``, or ``text`` / ``audio`` under a late or score fusion)."""
        return study.store.ablation_head_dir(home_key(study), self.name, fold=fold, seed=seed, part=part)

    def vector_study(self, study: Study) -> Study:
        """The study whose vectors the ablation reads: ``study`` itself, or the same study with its text
        entries pooled another way, or reading another hidden state of its layer-wise vectors (its heads
        and folder stay ``study``'s).

        Raises:
            FeatcacheError: Another pooling in a study of fine-tuned backbones, or a layer without layer-wise
                vectors.
        """
        changes: dict[str, Any] = {}
        pooling = self.spec.pooling
        if pooling is not None and pooling != study.encoder_options.pooling:
            if not study.frozen:
                raise FeatcacheError("--text-pooling needs frozen backbones: a fine-tuned run's pooling is part of "
                                     "its training; fine-tune with --pooling instead")
            changes["pooling"] = pooling
        if self.spec.layer is not None and study.options.layer != str(self.spec.layer):
            changes["layer"] = str(self.spec.layer)
        return study.replace(**changes) if changes else study

    def command(self, study: Study) -> str:
        """The ``featcache ablate`` command that trains it, with the study's options (and ``--layer K`` for an
        ablation of one layer)."""
        if self.spec.layer is not None:
            study = study.replace(layer=str(self.spec.layer))
        return " ".join([study.command("ablate"), shlex.join(self.spec.cli_flags())]).strip()

    def place(self, study: Study, *, fold: int, seed: int) -> dict[str, Any]:
        """What its head of (fold, seed) records it is (:mod:`featcache.heads.record`)."""
        return {"fold": fold, "seed": seed, "model": self.model, "study": home_key(study)}

    def inputs(self, vs: Study, *, fold: int, seed: int) -> dict[str, str]:
        """The content digest of each clean entry its head of (fold, seed) trains on, as stored now (``vs``:
        :meth:`vector_study`); entries not stored are left out.

        Raises:
            DamagedError: An entry is damaged.
        """
        found = {m: vs.entry_digest(m, fold=fold, seed=seed, model=self.model) for m in self.spec.modalities}
        return {m: d for m, d in found.items() if d is not None}

    def trained_head(self, study: Study, vs: Study, *, fold: int, seed: int) -> dict[str, Any] | None:
        """The record of its trained head of (fold, seed), checked; None when it is not trained.

        Args:
            study: The study.
            vs: :meth:`vector_study` of it.
            fold: Fold index.
            seed: Seed.

        Raises:
            DamagedError: The record does not read, or disagrees with its place, its files or its inputs
                (names the file and the ablate command that trains it again).
        """
        from featcache.heads.record import record_problem

        folder = self.head_dir(study, fold=fold, seed=seed).parent
        if not (folder / RESULT_FILE).is_file():
            return None
        fix = f"run `{self.command(study)}` (it trains the head again)"
        record, problem = read_json_object(folder / RESULT_FILE)
        if problem:
            raise DamagedError(folder / RESULT_FILE, problem, what="ablation head", fix=fix)
        found = record_problem(record, folder=folder, place=self.place(study, fold=fold, seed=seed),
                               inputs=self.inputs(vs, fold=fold, seed=seed))
        if found is not None:
            raise DamagedError(found[0], found[1], what="ablation head", fix=fix)
        return record


def home_key(study: Study) -> str:
    """The key whose folder holds a study's ablations: the study's, without ``--layer`` (an ablation of one
    layer names its layer itself, so a layer sweep and ``--layer K`` find the same ablations).

    Raises:
        FeatcacheError: The study's options do not check out without the layer.
    """
    return study.key if study.options.layer is None else study.replace(layer=None).key


def ablation(study: Study, spec: AblationSpec) -> Ablation:
    """The ablation that ``spec`` defines in ``study`` (nothing is written).

    Raises:
        FeatcacheError: An invalid option.
    """
    if spec.layer is None and study.options.layer not in (None, "weighted"):
        spec = replace(spec, layer=int(study.options.layer))  # --layer K: the ablation of that layer
    spec = spec.checked()
    return Ablation(name=spec.name(study.head_settings), spec=spec)


@dataclass(frozen=True)
class AblationInfo:
    """An ablation found in the store.

    Attributes:
        ablation: The ablation.
        trained: Folds x seeds whose head is trained.
        expected: Folds x seeds of the study.
        path: Its folder.
        description: One line saying what it is.
    """

    ablation: Ablation
    trained: int
    expected: int
    path: Path
    description: str


def list_ablations(study: Study) -> list[AblationInfo]:
    """The study's ablations in the store, by name.

    Raises:
        FeatcacheError: An unreadable ``ablation.json`` (names the file).
    """
    root = study.store.ablations_dir(home_key(study))
    out = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        spec_file = folder / SPEC_FILE
        if not spec_file.is_file():
            continue
        abl = _read_spec(spec_file)
        trained = sum((abl.head_dir(study, fold=k, seed=s).parent / RESULT_FILE).is_file()
                      for k in study.folds for s in study.seeds)
        out.append(AblationInfo(abl, trained, len(study.folds) * len(study.seeds), folder,
                                abl.spec.describe(study.head_settings)))
    return out


def _read_spec(path: Path) -> Ablation:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Ablation(name=str(data["name"]), spec=AblationSpec.from_json(data["spec"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise FeatcacheError(f"{path}: unreadable ablation options ({e}); delete its folder and run the "
                             "ablation again") from None


def find_ablation(study: Study, name: str) -> Ablation:
    """An ablation of the study by name (``concat-1a2b3c4d``, ``ablate:concat-1a2b3c4d``, or a label that
    names one ablation only).

    Raises:
        FeatcacheError: No such ablation, or a label shared by several (lists them).
    """
    wanted = name.removeprefix(PREFIX)
    found = list_ablations(study)
    exact = [i.ablation for i in found if i.ablation.name == wanted]
    if exact:
        return exact[0]
    labelled = [i.ablation for i in found if i.ablation.spec.label == wanted]
    if len(labelled) == 1:
        return labelled[0]
    names = ", ".join(i.ablation.name for i in (found if not labelled else
                                               [f for f in found if f.ablation in labelled])) or "none yet"
    what = "names several ablations" if labelled else "is not an ablation of this study"
    raise FeatcacheError(f"ablation (--ablation {name}): {what} in {study.store.root} (ablations: {names}); "
                         "see `featcache ablate --list` with the same study options")
