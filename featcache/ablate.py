"""Ablations on cached vectors: a head or fusion variant trained over every fold and seed of a study,
evaluated under every condition, and compared side by side with the paper's heads of the same study.

An :class:`AblationSpec` says how the variant differs from the paper's multimodal head: the layer sizes
(``hidden``, ``fusion_hidden``), the body dropout, the fusion (``concat`` = the paper's feature-level
head, ``late``, ``score``, ``gated``; see :mod:`featcache.heads`), modality dropout, which modalities it
reads, its learning rate and most epochs, and **training on attacks**.

Training on attacks (``train_on``, ``mix``): each training utterance's text vector is replaced by the
stored vector of that utterance under one of the listed text attacks with probability ``mix``, and
independently its audio vector by one of the listed audio attacks with probability ``mix``. Every draw
is a hash of (head seed, modality, utterance id): fixed across epochs (a static mixed training set) and
across folds, the same on every machine, and independent of the order of the utterances. With several
attacks of one modality, the same hash picks one of them uniformly. The dev set stays clean, so early
stopping selects on clean accuracy as the paper's heads do; the test set is every condition.

The perturbed training vectors come from the store. With frozen backbones every entry already holds
every utterance. With fine-tuned ones a variant's entry holds the fold's test utterances unless it was
extracted with ``--split train`` (or ``all``): a missing one stops training with the command that makes
it (:meth:`featcache.study.Study.command` with ``split="train"``).

Each ablation is kept in the store (``ablations/<study>/<name>/``, see
:meth:`featcache.cache.StoreLayout.ablation_dir`): ``ablation.json`` with its options, and its heads
per fold and seed. Its name is ``<label>-<digest of the resolved options>``, so another option is
another folder, and running the same ablation again reloads its heads instead of training them. In a
predictions table it is the model ``ablate:<name>``, so :class:`featcache.metrics.Analysis` compares it
with the paper's heads like any fusion model.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featcache import paper
from featcache.cache import digest, slug
from featcache.conditions import CLEAN, Condition
from featcache.errors import FeatcacheError
from featcache.metrics import DEFAULT_RESAMPLES, Analysis, BootstrapCI, ImpactDifference, Predictions, SeedStat
from featcache.metrics.bootstrap import seedwise
from featcache.paper import PAPER_MODELS, TrainSettings
from featcache.study import (
    DEV_BATCH,
    MissingEntries,
    Study,
    encode_input,
    evaluate,
    fit_alone,
    prediction_block,
    fold_test_columns,
    train_heads,
)

__all__ = ["FUSIONS", "PREFIX", "Ablation", "AblationInfo", "AblationResult", "AblationSpec", "ComparisonRow",
           "ablation", "compare", "comparison_records", "evaluate_ablation", "find_ablation", "format_comparison",
           "list_ablations", "mix_draws", "parse_variant_list", "run_ablation", "train_ablation"]

FUSIONS: tuple[str, ...] = ("concat", "late", "score", "gated")
"""Fusion kinds: ``concat`` is the paper's multimodal head (bodies concatenated, then FC layers)."""
PREFIX = "ablate:"
"""Prefix of an ablation's model name in a predictions table."""
SPEC_FILE = "ablation.json"
RESULT_FILE = "result.json"
POOLINGS: tuple[str, ...] = ("cls", "mean")
"""Text poolings an ablation can read its vectors with (``AblationSpec.pooling``)."""
MIX_RULE = 1
"""Version of the mixing rule (part of every ablation's identity)."""

_HEAD_KIND = {"concat": paper.MULTIMODAL, "gated": "gated", "late": "late", "score": "score"}


def _print(message: str, *, err: bool = False) -> None:
    import sys

    print(message, file=sys.stderr if err else sys.stdout)


# ------------------------------------------------------------------------------------------------
# the options
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AblationSpec:
    """What an ablation changes in the paper's head (every default is the paper's multimodal head).

    Attributes:
        fusion: ``concat`` (the paper's feature-level head), ``late``, ``score`` or ``gated``.
        modalities: The inputs it reads: ``("text", "audio")``, ``("text",)`` or ``("audio",)``.
        hidden: Layer sizes of each modality's body.
        fusion_hidden: Size of the layer after the fusion (``concat`` and ``gated``).
        dropout: Body dropout of both modalities; ``None`` keeps the paper's (text 0, audio 0.2).
        modality_dropout: Probability of zeroing one modality of a training example (``concat``, ``gated``).
        lr: AdamW learning rate; ``None`` takes the study's head settings.
        epochs: Most epochs; ``None`` takes the study's head settings.
        train_on: Attacks whose stored training vectors are mixed into the training set (kept sorted).
        mix: Probability that a training utterance's vector of a modality is replaced by an attacked one.
        pooling: Text pooling (``cls`` or ``mean``) of the vectors the ablation trains and is evaluated on,
            where it differs from the study's; the paper's heads keep the study's (pooling as an ablation axis;
            frozen backbones only: a fine-tuned run's pooling is part of its training).
        label: A readable label, the first part of the name (default: the fusion, or the one modality).
    """

    fusion: str = "concat"
    modalities: tuple[str, ...] = paper.MODALITIES
    hidden: tuple[int, ...] = paper.HIDDEN
    fusion_hidden: int = paper.FUSION_HIDDEN
    dropout: float | None = None
    modality_dropout: float = 0.0
    lr: float | None = None
    epochs: int | None = None
    train_on: tuple[str, ...] = ()
    mix: float = 0.5
    pooling: str | None = None
    label: str | None = None

    def checked(self) -> AblationSpec:
        """The options validated and in canonical form (variant specs canonical, modalities in order,
        ``train_on`` empty when ``mix`` is 0 and ``mix`` 0 when ``train_on`` is empty).

        Returns:
            The canonical spec.

        Raises:
            FeatcacheError: An invalid option (one line naming it and the valid values).
        """
        from featcache.perturb import get_variant

        if self.fusion not in FUSIONS:
            raise FeatcacheError(f"--fusion {self.fusion!r}: choose one of {', '.join(FUSIONS)}")
        mods = tuple(m for m in paper.MODALITIES if m in self.modalities)
        unknown = [m for m in self.modalities if m not in paper.MODALITIES]
        if unknown or not mods:
            raise FeatcacheError(f"--modalities {','.join(self.modalities) or '(none)'}: choose text, audio or both")
        if len(mods) == 1 and self.fusion != "concat":
            raise FeatcacheError(f"--fusion {self.fusion} needs both modalities; a one-modality ablation has no fusion")
        hidden = tuple(self.hidden)
        if not hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
            raise FeatcacheError(f"--hidden {hidden!r}: give positive layer sizes, e.g. 512,256")
        if isinstance(self.fusion_hidden, bool) or not isinstance(self.fusion_hidden, int) or self.fusion_hidden < 1:
            raise FeatcacheError(f"--fusion-hidden {self.fusion_hidden!r}: give a positive layer size, e.g. 128")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise FeatcacheError(f"--dropout {self.dropout}: give a probability in [0, 1)")
        if not 0 <= self.modality_dropout <= 1:
            raise FeatcacheError(f"--modality-dropout {self.modality_dropout}: give a probability in [0, 1]")
        if self.modality_dropout > 0 and (len(mods) < 2 or self.fusion not in ("concat", "gated")):
            raise FeatcacheError("--modality-dropout needs a head trained on both modalities at once "
                                 "(--fusion concat or gated)")
        if self.lr is not None and not self.lr > 0:
            raise FeatcacheError(f"--lr {self.lr}: give a positive learning rate, e.g. 0.001")
        if self.epochs is not None and self.epochs < 1:
            raise FeatcacheError(f"--epochs {self.epochs}: give at least 1")
        if not 0 <= self.mix <= 1:
            raise FeatcacheError(f"--mix {self.mix}: give a probability in [0, 1]")
        train_on: list[str] = []
        for v in self.train_on:
            variant = get_variant(v)
            if variant.modality is None:
                raise FeatcacheError(f"--train-on {v}: not an attack; name attacks such as adj or pitch")
            if variant.modality not in mods:
                raise FeatcacheError(f"--train-on {v}: it attacks the {variant.modality}, but the ablation reads only "
                                     f"{' and '.join(mods)}")
            if variant.spec not in train_on:
                train_on.append(variant.spec)
        train_on.sort()  # one name for one set: the order given does not matter
        mix = float(self.mix) if train_on else 0.0
        if mix == 0:
            train_on = []
        if self.pooling is not None and self.pooling not in POOLINGS:
            raise FeatcacheError(f"--text-pooling {self.pooling!r}: choose one of {', '.join(POOLINGS)}")
        if self.pooling is not None and paper.TEXT not in mods:
            raise FeatcacheError("--text-pooling needs an ablation that reads the text")
        label = slug(self.label) if self.label else (self.fusion if len(mods) == 2 else mods[0])
        return AblationSpec(fusion=self.fusion, modalities=mods, hidden=hidden, fusion_hidden=self.fusion_hidden,
                            dropout=None if self.dropout is None else float(self.dropout),
                            modality_dropout=float(self.modality_dropout), lr=self.lr, epochs=self.epochs,
                            train_on=tuple(train_on), mix=mix, pooling=self.pooling, label=label)

    def dropouts(self) -> dict[str, float]:
        """Body dropout per modality (the paper's when :attr:`dropout` is ``None``)."""
        if self.dropout is not None:
            return {paper.TEXT: self.dropout, paper.AUDIO: self.dropout}
        return {paper.TEXT: paper.TEXT_DROPOUT, paper.AUDIO: paper.AUDIO_DROPOUT}

    def settings(self, base: TrainSettings) -> TrainSettings:
        """The training settings: the study's head settings with this spec's learning rate and epochs."""
        from dataclasses import replace

        return replace(base, lr=base.lr if self.lr is None else self.lr,
                       max_epochs=base.max_epochs if self.epochs is None else self.epochs)

    def identity(self, base: TrainSettings) -> dict[str, Any]:
        """Everything that changes the trained heads, resolved against the study's head settings
        (the label is not part of it)."""
        two = len(self.modalities) == 2
        st = self.settings(base)
        return {
            "fusion": self.fusion if two else None,
            "modalities": list(self.modalities),
            "hidden": list(self.hidden),
            "fusion_hidden": self.fusion_hidden if two and self.fusion in ("concat", "gated") else None,
            "dropout": {m: d for m, d in self.dropouts().items() if m in self.modalities},
            "modality_dropout": self.modality_dropout,
            "train": asdict(st),
            "train_on": list(self.train_on),
            "mix": self.mix,
            "mix_rule": MIX_RULE if self.train_on else None,
            **({"pooling": self.pooling} if self.pooling is not None else {}),  # absent: the study's pooling
        }

    def name(self, base: TrainSettings) -> str:
        """``<label>-<digest of the identity>``: the folder and model name."""
        return f"{self.label or self.checked().label}-{digest(self.identity(base), 8)}"

    def describe(self, base: TrainSettings) -> str:
        """One line that says what the ablation is."""
        st = self.settings(base)
        d = self.dropouts()
        parts = [f"{self.fusion} fusion of text and audio" if len(self.modalities) == 2
                 else f"{self.modalities[0]} only",
                 f"hidden {','.join(map(str, self.hidden))}"]
        if len(self.modalities) == 2 and self.fusion in ("concat", "gated"):
            parts.append(f"fusion layer {self.fusion_hidden}")
        parts.append("dropout " + " / ".join(f"{m} {d[m]:g}" for m in self.modalities))
        if self.modality_dropout:
            parts.append(f"modality dropout {self.modality_dropout:g}")
        parts.append(f"lr {st.lr:g}, at most {st.max_epochs} epochs (patience {st.patience}, batch {st.batch_size})")
        parts.append(f"trained on {', '.join(self.train_on)} with mix {self.mix:g}" if self.train_on
                     else "trained on clean vectors")
        if self.pooling is not None:
            parts.append(f"text vectors pooled by {self.pooling}")
        return "; ".join(parts)

    def cli_flags(self) -> list[str]:
        """The ``featcache ablate`` options that give this spec (the defaults left out; numbers exact)."""
        d = AblationSpec()
        flags: list[str] = []
        if self.label and self.label != (self.fusion if len(self.modalities) == 2 else self.modalities[0]):
            flags += ["--name", self.label]
        if self.fusion != d.fusion:
            flags += ["--fusion", self.fusion]
        if self.modalities != d.modalities:
            flags += ["--modalities", self.modalities[0]]
        if self.hidden != d.hidden:
            flags += ["--hidden", ",".join(map(str, self.hidden))]
        if self.fusion_hidden != d.fusion_hidden:
            flags += ["--fusion-hidden", str(self.fusion_hidden)]
        if self.dropout is not None:
            flags += ["--dropout", repr(self.dropout)]
        if self.modality_dropout:
            flags += ["--modality-dropout", repr(self.modality_dropout)]
        if self.lr is not None:
            flags += ["--lr", repr(float(self.lr))]
        if self.epochs is not None:
            flags += ["--epochs", str(self.epochs)]
        if self.train_on:
            flags += ["--train-on", ",".join(self.train_on), "--mix", repr(self.mix)]
        if self.pooling is not None:
            flags += ["--text-pooling", self.pooling]
        return flags

    def to_json(self) -> dict[str, Any]:
        """The options as JSON-able values."""
        out = asdict(self)
        out["modalities"], out["hidden"], out["train_on"] = list(self.modalities), list(self.hidden), list(self.train_on)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AblationSpec:
        """The spec written by :meth:`to_json`.

        Raises:
            FeatcacheError: Unknown or invalid options.
        """
        try:
            kw = dict(data)
            for k in ("modalities", "hidden", "train_on"):
                if k in kw:
                    kw[k] = tuple(kw[k])
            return cls(**kw).checked()
        except TypeError as e:
            raise FeatcacheError(f"ablation options {data!r} are not valid: {e}") from None


_LIST_SPLIT = re.compile(r",(?=\s*[A-Za-z][\w.+-]*\s*(?::|,|$))")


def parse_variant_list(text: str) -> tuple[str, ...]:
    """``adj,pitch`` -> ``("adj", "pitch")``; a comma inside a variant's parameters does not split
    (``noise:snr_db=10,seed=1,pitch`` -> ``("noise:snr_db=10,seed=1", "pitch")``).

    Args:
        text: Variant specs separated by commas.

    Returns:
        The specs, stripped, empty ones left out.
    """
    return tuple(p.strip() for p in _LIST_SPLIT.split(text or "") if p.strip())


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
        return study.store.ablation_dir(study.key, self.name)

    def head_dir(self, study: Study, *, fold: int, seed: int, part: str = "head") -> Path:
        """Where one of its heads is (``part``: ``head``, or ``text`` / ``audio`` under a late or score fusion)."""
        return study.store.ablation_head_dir(study.key, self.name, fold=fold, seed=seed, part=part)

    def vector_study(self, study: Study) -> Study:
        """The study whose vectors the ablation reads: ``study`` itself, or, with another text pooling, the
        same study with its text entries pooled that way (its heads and folder stay ``study``'s).

        Raises:
            FeatcacheError: Another pooling in a study of fine-tuned backbones.
        """
        pooling = self.spec.pooling
        if pooling is None or pooling == study.encoder_options.pooling:
            return study
        if not study.frozen:
            raise FeatcacheError("--text-pooling needs frozen backbones: a fine-tuned run's pooling is part of its "
                                 "training; fine-tune with --pooling instead")
        return study.replace(pooling=pooling)

    def command(self, study: Study) -> str:
        """The ``featcache ablate`` command that trains it, with the study's options."""
        return " ".join([study.command("ablate"), shlex.join(self.spec.cli_flags())]).strip()


def ablation(study: Study, spec: AblationSpec) -> Ablation:
    """The ablation that ``spec`` defines in ``study`` (nothing is written).

    Raises:
        FeatcacheError: An invalid option.
    """
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
    root = study.store.ablations_dir(study.key)
    out = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        spec_file = folder / SPEC_FILE
        if not spec_file.is_file():
            continue
        abl = _read_spec(spec_file)
        trained = sum((abl.head_dir(study, fold=k, seed=s) / "config.json").is_file()
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
    raise FeatcacheError(f"--ablation {name}: {what} in {study.store.root} (ablations: {names}); "
                         "see `featcache ablate --list` with the same study options")


# ------------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------------


def mix_draws(*, seed: int, modality: str, ids: Sequence[str], n_variants: int) -> tuple[np.ndarray, np.ndarray]:
    """The draws of training on attacks: a uniform number in [0, 1) and a variant index per utterance.

    Each pair is a hash of (seed, modality, utterance id) alone: the same in every fold, epoch, process
    and order of ``ids``.

    Args:
        seed: The head's seed.
        modality: ``text`` or ``audio``.
        ids: Utterance ids.
        n_variants: How many attacks of this modality to choose from (at least 1).

    Returns:
        ``(u, pick)``: float64 ``[n]`` in [0, 1) (replace when ``u < mix``) and int64 ``[n]`` in
        ``[0, n_variants)``.
    """
    u = np.empty(len(ids), dtype=np.float64)
    pick = np.empty(len(ids), dtype=np.int64)
    for i, uid in enumerate(ids):
        h = hashlib.blake2b(f"{seed}\0{modality}\0{uid}".encode(), digest_size=16).digest()
        u[i] = int.from_bytes(h[:8], "big") / 2.0**64
        pick[i] = int.from_bytes(h[8:], "big") % max(1, n_variants)
    return u, pick


def _training_vectors(study: Study, abl: Ablation, modality: str, *, fold: int, seed: int,
                      ids: Sequence[str]) -> tuple[np.ndarray, int]:
    """The training matrix of one modality (clean rows, some replaced by attacked ones) and how many
    rows were replaced.

    Raises:
        MissingEntries: A clean or attacked entry is missing (names the command that makes it).
    """
    from featcache.perturb import get_variant

    x = study.vectors(modality, fold=fold, seed=seed, model=abl.model, variant="clean", ids=ids)[0].copy()
    variants = [v for v in abl.spec.train_on if get_variant(v).modality == modality]
    if not variants:
        return x, 0
    u, pick = mix_draws(seed=seed, modality=modality, ids=ids, n_variants=len(variants))
    replaced = 0
    for j, variant in enumerate(variants):
        rows = np.flatnonzero((u < abl.spec.mix) & (pick == j))
        if len(rows) == 0:
            continue
        x[rows] = _attacked(study, abl, modality, variant, fold=fold, seed=seed, ids=[ids[r] for r in rows])
        replaced += len(rows)
    return x, replaced


def _attacked(study: Study, abl: Ablation, modality: str, variant: str, *, fold: int, seed: int,
              ids: Sequence[str]) -> np.ndarray:
    """Attacked vectors of training utterances: the fold's ``train`` entry, else its ``all`` entry.

    Raises:
        MissingEntries: Neither entry is stored (the message is the ``train`` entry's).
    """
    try:
        return study.vectors(modality, fold=fold, seed=seed, model=abl.model, variant=variant, ids=ids, split="train")[0]
    except MissingEntries:
        if study.frozen:
            raise
        try:
            return study.vectors(modality, fold=fold, seed=seed, model=abl.model, variant=variant, ids=ids,
                                 split="all")[0]
        except MissingEntries:
            pass
        raise


def _check_training_entries(study: Study, abl: Ablation) -> None:
    """Stop before training when any vectors the ablation trains on are missing, naming every command
    that makes them (one per missing entry; ``--fold all`` when several folds lack it).

    Raises:
        MissingEntries: Something is missing (a fine-tuning run, a clean or an attacked entry).
    """
    from featcache.perturb import get_variant

    lacking: dict[tuple[str, str], list[int]] = {}
    for k in study.folds:
        for s in study.seeds:
            for m in abl.spec.modalities:
                study.encoder_run(m, fold=k, seed=s, model=abl.model)  # names the finetune command when missing
                try:
                    study.vectors(m, fold=k, seed=s, model=abl.model, variant="clean", ids=[])
                except MissingEntries:
                    lacking.setdefault((m, "clean"), []).append(k)
            for v in abl.spec.train_on:
                m = get_variant(v).modality
                try:
                    _attacked(study, abl, m, v, fold=k, seed=s, ids=[])
                except MissingEntries:
                    lacking.setdefault((m, v), []).append(k)
    if not lacking:
        return
    commands = []
    for (m, v), folds in lacking.items():
        fold: int | str = folds[0] if len(set(folds)) == 1 else "all"
        commands.append(study.command("extract", modality=m, fold=fold, variant=v,
                                      split=None if v == "clean" else "train"))
    what = ", ".join(f"{v} {m}" for m, v in lacking)
    where = "" if study.frozen else " of the training utterances"
    raise MissingEntries(f"{study.store.root}: {abl.name} trains on the {what} vectors{where}, which are not all "
                         "stored; run " + " and ".join(f"`{c}`" for c in commands) + " first")


@dataclass
class _Job:
    """One fold and seed of an ablation being trained: its data, its heads and its record."""

    fold: int
    seed: int
    x_tr: dict[str, np.ndarray]
    x_dev: dict[str, np.ndarray]
    y_tr: np.ndarray
    y_dev: np.ndarray
    record: dict[str, Any]
    parts: dict[str, torch.nn.Module] = field(default_factory=dict)
    head: torch.nn.Module | None = None


def _fit_all(study: Study, heads: Sequence[tuple[_Job, torch.nn.Module, tuple[str, ...]]], *,
             settings: TrainSettings, device: str, on_done: Callable[[], Any]) -> list[dict[str, Any]]:
    """Train heads of several folds and seeds; each ends as :func:`featcache.train.fit` would leave it alone.

    On CPU they are trained together as one batched ensemble (:func:`featcache.ensemble.fit_ensemble`, the
    same trainer as ``train-heads``); on other devices one after the other with :func:`featcache.study.fit_alone`.

    Args:
        study: The study (its label count).
        heads: ``(job, head, modalities it reads)``; each head freshly built after ``torch.manual_seed(job.seed)``.
        settings: Training settings.
        device: Where to train.
        on_done: Called once per head that has finished (a progress bar).

    Returns:
        Per head, in order: best epoch, best dev accuracy, epochs run.
    """
    from featcache.ensemble import Member, fit_ensemble, head_threads, torch_threads
    from featcache.train import class_weights

    n = len(study.corpus.labels)
    if torch.device(device).type == "cpu":
        members = []
        for job, head, mods in heads:
            n_tr, n_dev = len(job.y_tr), len(job.y_dev)
            members.append(Member(
                head=head, inputs=tuple(torch.from_numpy(np.concatenate([job.x_tr[m], job.x_dev[m]])) for m in mods),
                train_rows=np.arange(n_tr), train_labels=job.y_tr, dev_rows=np.arange(n_tr, n_tr + n_dev),
                dev_labels=job.y_dev, class_weights=class_weights(job.y_tr, n), seed=job.seed))
        with torch_threads(1):
            results = fit_ensemble(members, lr=settings.lr, max_epochs=settings.max_epochs, patience=settings.patience,
                                   weight_decay=settings.weight_decay, batch_size=settings.batch_size,
                                   dev_batch_size=DEV_BATCH, threads=head_threads(),
                                   on_done=lambda _i, _r: on_done())
    else:
        results = []
        for job, head, mods in heads:
            results.append(fit_alone(head, [job.x_tr[m] for m in mods], job.y_tr, [job.x_dev[m] for m in mods],
                                     job.y_dev, settings=settings, seed=job.seed, n_classes=n, device=device))
            on_done()
    return [{"best_epoch": r.best_epoch, "best_dev_acc": r.best_dev_acc, "epochs_run": r.epochs_run} for r in results]


def _job(study: Study, abl: Ablation, *, vs: Study, fold: int, seed: int) -> _Job:
    """The training and dev vectors of one fold and seed (training rows mixed with attacked ones)."""
    f = study.fold(fold)
    label = study.corpus.label_index
    y_tr = np.array([label(study.corpus.by_id(i).label) for i in f.train], dtype=np.int64)
    y_dev = np.array([label(study.corpus.by_id(i).label) for i in f.dev], dtype=np.int64)
    x_tr: dict[str, np.ndarray] = {}
    replaced: dict[str, int] = {}
    for m in abl.spec.modalities:
        x_tr[m], replaced[m] = _training_vectors(vs, abl, m, fold=fold, seed=seed, ids=f.train)
    x_dev = {m: vs.vectors(m, fold=fold, seed=seed, model=abl.model, variant="clean", ids=f.dev)[0]
             for m in abl.spec.modalities}
    record = {"fold": fold, "seed": seed, "model": abl.model, "n_train": len(f.train), "n_replaced": replaced}
    return _Job(fold, seed, x_tr, x_dev, y_tr, y_dev, record)


def _train_jobs(study: Study, abl: Ablation, jobs: Sequence[_Job], *, device: str, progress: bool) -> None:
    """Train the ablation's heads of ``jobs`` (every fold and seed at once), then save each with its record.

    A late or score fusion first trains its two unimodal heads, then fuses them (score: trains the fusion
    weights); every other variant is one head on its inputs.
    """
    from tqdm import tqdm

    from featcache.cache.atomic import atomic_write_json
    from featcache.heads import build_head, save_head

    spec, st = abl.spec, abl.spec.settings(study.head_settings)
    mods = tuple(spec.modalities)
    n = len(study.corpus.labels)
    drop = spec.dropouts()

    def dims(job: _Job) -> dict[str, int | None]:
        return {"text_dim": job.x_tr[paper.TEXT].shape[1] if paper.TEXT in job.x_tr else None,
                "audio_dim": job.x_tr[paper.AUDIO].shape[1] if paper.AUDIO in job.x_tr else None}

    first: list[tuple[_Job, torch.nn.Module, tuple[str, ...]]] = []
    for job in jobs:
        if len(mods) == 1 or spec.fusion in ("late", "score"):
            for m in mods:
                torch.manual_seed(job.seed)
                job.parts[m] = build_head(m, **dims(job), n_classes=n, hidden=spec.hidden, dropout=drop[m])
                first.append((job, job.parts[m], (m,)))
        else:
            torch.manual_seed(job.seed)
            job.head = build_head(_HEAD_KIND[spec.fusion], **dims(job), n_classes=n, hidden=spec.hidden,
                                  fusion_hidden=spec.fusion_hidden, text_dropout=drop[paper.TEXT],
                                  audio_dropout=drop[paper.AUDIO], modality_dropout=spec.modality_dropout)
            first.append((job, job.head, mods))
    bar = tqdm(total=len(first), desc=f"{abl.name}: training", unit="head",
               disable=not progress, leave=False)
    with bar:
        fitted_first = _fit_all(study, first, settings=st, device=device, on_done=bar.update)
    for (job, _, (m, *rest)), fitted in zip(first, fitted_first):
        if len(mods) == 1 or rest:
            job.record.update(fitted)
            job.head = job.head or job.parts[m]
        else:
            job.record[m] = fitted
            save_head(job.parts[m], abl.head_dir(study, fold=job.fold, seed=job.seed, part=m))
    if len(mods) == 2 and spec.fusion in ("late", "score"):
        second = []
        for job in jobs:
            torch.manual_seed(job.seed)
            job.head = build_head(_HEAD_KIND[spec.fusion], **dims(job), n_classes=n,
                                  text_head=job.parts[paper.TEXT], audio_head=job.parts[paper.AUDIO])
            if any(p.requires_grad for p in job.head.parameters()):
                second.append((job, job.head, mods))
        with tqdm(total=len(second), desc=f"{abl.name}: fusion", unit="head", disable=not progress or not second,
                  leave=False) as bar:
            fitted_second = _fit_all(study, second, settings=st, device=device, on_done=bar.update)
        for (job, _, _), fitted in zip(second, fitted_second):
            job.record.update(fitted)
    for job in jobs:
        out = abl.head_dir(study, fold=job.fold, seed=job.seed)
        save_head(job.head, out)
        atomic_write_json(out.parent / RESULT_FILE, job.record, sort_keys=False)


def _stored_record(study: Study, abl: Ablation, *, fold: int, seed: int) -> dict[str, Any] | None:
    out = abl.head_dir(study, fold=fold, seed=seed)
    done = out.parent / RESULT_FILE
    if done.is_file() and (out / "config.json").is_file():
        return json.loads(done.read_text(encoding="utf-8"))
    return None


def train_ablation(study: Study, spec: AblationSpec | Ablation, *, device: str = "cpu",
                   progress: bool = True) -> tuple[Ablation, list[dict[str, Any]]]:
    """Train (or load, when already trained) the ablation's head for every fold and seed of the study.

    Args:
        study: The study.
        spec: The ablation's options (or the ablation).
        device: Where to train.
        progress: Progress bar.

    Returns:
        ``(ablation, records)``: one record per fold and seed (best epoch, dev accuracy, how many
        training vectors of each modality were replaced by attacked ones).

    Raises:
        FeatcacheError: An invalid option, or the corpus lacks a modality the ablation reads.
        MissingEntries: Clean or attacked training vectors are missing (names the command that makes them).
    """
    from tqdm import tqdm

    from featcache.cache.atomic import atomic_write_json

    abl = spec if isinstance(spec, Ablation) else ablation(study, spec)
    lacking = [m for m in abl.spec.modalities if m not in study.corpus.modalities]
    if lacking:
        raise FeatcacheError(f"{study.corpus.name}: the corpus has no {' and no '.join(lacking)}; "
                             "choose --modalities it has")
    jobs = [(k, s) for k in study.folds for s in study.seeds]
    vs = abl.vector_study(study)
    try:
        _check_training_entries(vs, abl)
        spec_file = abl.folder(study) / SPEC_FILE
        if not spec_file.is_file():
            spec_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(spec_file, {"name": abl.name, "spec": abl.spec.to_json(),
                                          "identity": abl.spec.identity(study.head_settings),
                                          "description": abl.spec.describe(study.head_settings)}, sort_keys=False)
        records = {(k, s): _stored_record(study, abl, fold=k, seed=s) for k, s in jobs}
        todo = [_job(study, abl, vs=vs, fold=k, seed=s)
                for k, s in tqdm(jobs, desc=f"{abl.name}: vectors", unit="head", disable=not progress, leave=False)
                if records[k, s] is None]
        if todo:
            _train_jobs(study, abl, todo, device=device, progress=progress)
            records.update({(j.fold, j.seed): j.record for j in todo})
    finally:
        study.close()
        vs.close()
    return abl, [records[k, s] for k, s in jobs]


# ------------------------------------------------------------------------------------------------
# evaluation
# ------------------------------------------------------------------------------------------------


def evaluate_ablation(study: Study, abl: Ablation, *, conditions: Sequence[str] | None = None,
                      progress: bool = True) -> tuple[Predictions, list[str]]:
    """Run the ablation's heads over the stored test vectors of every condition it can see.

    Args:
        study: The study.
        abl: The ablation.
        conditions: Conditions (default: as :meth:`Study.conditions`); ``clean`` is always evaluated,
            conditions that perturb a modality the ablation does not read are left out.
        progress: Progress bar.

    Returns:
        ``(predictions, missing)``: rows of the model ``ablate:<name>``, and the commands that make what
        was missing (an untrained head: the ``featcache ablate`` command; a missing entry: its extract
        command).
    """
    from tqdm import tqdm

    from featcache.ensemble import torch_threads
    from featcache.heads import load_head

    conds, _ = study.conditions(conditions)
    conds = [c for c in conds if set(c.modalities) <= set(abl.spec.modalities)]
    blocks: list[dict[str, np.ndarray]] = []
    missing: list[str] = []
    jobs = [(k, s) for k in study.folds for s in study.seeds]
    vs = abl.vector_study(study)
    try:
        for k, s in tqdm(jobs, desc=f"evaluate {abl.name}", unit="head", disable=not progress, leave=False):
            head_dir = abl.head_dir(study, fold=k, seed=s)
            if not (head_dir / "config.json").is_file():
                cmd = abl.command(study)
                if cmd not in missing:
                    missing.append(cmd)
                continue
            with torch_threads(1):  # small matmuls: see featcache.study.evaluate
                blocks += _evaluate_head(vs, abl, load_head(head_dir).eval(), conds, fold=k, seed=s, missing=missing)
    finally:
        study.close()
        vs.close()
    return Predictions.from_blocks(blocks, labels=study.corpus.labels), missing


def _evaluate_head(study: Study, abl: Ablation, head: torch.nn.Module, conds: Sequence[Condition], *, fold: int,
                   seed: int, missing: list[str]) -> list[dict[str, np.ndarray]]:
    ids, fixed = fold_test_columns(study, fold=fold, seed=seed, model=abl.model)
    encoded: dict[tuple[str, str], tuple[torch.Tensor, np.ndarray]] = {}
    blocks = []
    for cond in conds:
        try:
            inputs, affected = [], np.zeros(len(ids), dtype=bool)
            for mod in abl.spec.modalities:
                variant = cond.variant(mod)
                if (mod, variant) not in encoded:
                    x, _, _, changed = study.vectors(mod, fold=fold, seed=seed, model=abl.model, variant=variant,
                                                     ids=ids)
                    encoded[mod, variant] = (encode_input(head, mod, torch.from_numpy(x)), changed)
                enc, changed = encoded[mod, variant]
                inputs.append(enc)
                if variant != CLEAN:
                    affected |= changed
        except MissingEntries as e:
            if str(e) not in missing:
                missing.append(str(e))
            continue
        blocks.append(prediction_block(head, inputs, fixed=fixed, condition=cond, affected=affected))
    return blocks


# ------------------------------------------------------------------------------------------------
# comparison
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ComparisonRow:
    """One condition: the paper's heads, the ablation, and the ablation's difference from its reference.

    Attributes:
        condition: The condition.
        paper: Avg. accuracy (fractions, per seed) of each paper model evaluated under it.
        ablation: Avg. accuracy of the ablation.
        accuracy_difference: ``ablation - reference`` Avg. accuracy in points, per seed.
        accuracy_ci: Paired bootstrap interval of that difference (points), or ``None``.
        reference_impact: Impact (percent) on the reference model; empty for clean.
        ablation_impact: Impact on the ablation; empty for clean.
        impact_difference: ``impact(ablation) - impact(reference)`` with its paired bootstrap interval
            (positive: the ablation loses less), or ``None`` for clean.
    """

    condition: str
    paper: dict[str, SeedStat]
    ablation: SeedStat
    accuracy_difference: SeedStat
    accuracy_ci: BootstrapCI | None
    reference_impact: SeedStat
    ablation_impact: SeedStat
    impact_difference: ImpactDifference | None


def compare(predictions: Predictions, *, model: str, reference: str, n_resamples: int = DEFAULT_RESAMPLES,
            seed: int = 0, analysis: Analysis | None = None) -> list[ComparisonRow]:
    """Compare an ablation with a paper model in one predictions table, condition by condition.

    Args:
        predictions: Rows of the ablation and of the paper's models.
        model: The ablation's model name (``ablate:<name>``).
        reference: The paper model it is compared with (``multimodal``, ``text`` or ``audio``).
        n_resamples: Bootstrap resamples (0: no intervals).
        seed: Resampling seed.
        analysis: The :class:`Analysis` of ``predictions``, if already built.

    Returns:
        One row per condition the ablation was evaluated on, clean first, in table order.
    """
    an = analysis or Analysis(predictions)
    rows = []
    for cond in an.conditions(model):
        papers = {m: an.accuracy(m, cond) for m in PAPER_MODELS if an.has(m, cond)}
        acc = an.accuracy(model, cond)
        ref = papers.get(reference, SeedStat.empty())
        diff = seedwise(lambda a, b: (a - b) * 100.0, acc, ref)
        ci = None
        if n_resamples > 0 and an.has(reference, cond):
            ci = an.bootstrap([(model, cond), (reference, cond)], lambda a: (a[0] - a[1]) * 100.0,
                              n_resamples=n_resamples, seed=seed)
        clean = cond == an.clean
        idiff = None if clean else an.impact_difference(model, cond, unimodal=reference, unimodal_condition=cond,
                                                         n_resamples=n_resamples, seed=seed)
        rows.append(ComparisonRow(
            condition=cond, paper=papers, ablation=acc, accuracy_difference=diff, accuracy_ci=ci,
            reference_impact=SeedStat.empty() if clean or not an.has(reference, cond) else an.impact(reference, cond),
            ablation_impact=SeedStat.empty() if clean else an.impact(model, cond), impact_difference=idiff,
        ))
    return rows


def comparison_records(rows: Sequence[ComparisonRow], *, model: str, reference: str) -> list[dict[str, Any]]:
    """Comparison rows as flat dicts (accuracies in percent, impacts in percent, differences in points).

    Args:
        rows: From :func:`compare`.
        model: The ablation's model name.
        reference: The reference model.

    Returns:
        One dict per condition, all with the same keys.
    """
    out = []
    for r in rows:
        rec: dict[str, Any] = {"condition": r.condition}
        for m in PAPER_MODELS:
            s = r.paper.get(m)
            rec[f"{m}_acc"] = s.mean * 100 if s else None
        rec.update({"model": model, "reference": reference, "acc": r.ablation.mean * 100,
                    "acc_std": r.ablation.std * 100, "acc_diff": r.accuracy_difference.mean,
                    "acc_diff_low": r.accuracy_ci.low if r.accuracy_ci else None,
                    "acc_diff_high": r.accuracy_ci.high if r.accuracy_ci else None,
                    "reference_impact": r.reference_impact.mean if r.reference_impact.seeds else None,
                    "impact": r.ablation_impact.mean if r.ablation_impact.seeds else None})
        d = r.impact_difference
        rec.update({"impact_diff": d.difference.mean if d else None,
                    "impact_diff_low": d.ci.low if d and d.ci else None,
                    "impact_diff_high": d.ci.high if d and d.ci else None})
        out.append(rec)
    return out


def _acc(s: SeedStat | None) -> str:
    if s is None or not s.seeds:
        return ""
    return f"{s.mean * 100:.2f}" + ("" if math.isnan(s.std) else f" ± {s.std * 100:.2f}")


def _pct(s: SeedStat) -> str:
    if not s.seeds:
        return ""
    return f"{s.mean:+.2f}%" + ("" if math.isnan(s.std) else f" ± {s.std:.2f}")


def _diff(value: float, ci: BootstrapCI | None) -> str:
    if math.isnan(value):
        return ""
    return f"{value:+.2f}" + (f" [{ci.low:+.2f}, {ci.high:+.2f}]" if ci is not None and not math.isnan(ci.low) else "")


def format_comparison(rows: Sequence[ComparisonRow], *, reference: str, confidence: float = 0.95) -> str:
    """The side-by-side Markdown table that ``featcache ablate`` prints.

    Columns: the condition; Avg. accuracy of the paper's text, audio and multimodal heads and of the
    ablation (mean ± std over seeds); the difference of Avg. from the reference, in points, with its
    paired bootstrap interval; the impact on the reference and on the ablation; and the difference of
    the impacts with its interval (positive: the ablation loses less).

    Args:
        rows: From :func:`compare`.
        reference: The reference model.
        confidence: The intervals' level, for the header.

    Returns:
        The table.
    """
    level = f"{confidence * 100:.0f}%"
    ref = reference.capitalize()
    head = ["Condition", "Text", "Audio", "Multimodal", "Ablation", f"Δ Avg. [{level} CI]", f"Impact {ref}",
            "Impact ablation", f"Δ Impact [{level} CI]"]
    lines = ["| " + " | ".join(head) + " |", "|:---|" + "---:|" * (len(head) - 1)]
    for r in rows:
        d = r.impact_difference
        cells = [r.condition, *(_acc(r.paper.get(m)) for m in PAPER_MODELS), _acc(r.ablation),
                 _diff(r.accuracy_difference.mean if r.accuracy_difference.seeds else math.nan, r.accuracy_ci),
                 _pct(r.reference_impact), _pct(r.ablation_impact),
                 _diff(d.difference.mean, d.ci) if d is not None and d.difference.seeds else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# the whole sequence
# ------------------------------------------------------------------------------------------------


@dataclass
class AblationResult:
    """What :func:`run_ablation` did.

    Attributes:
        ablation: The ablation.
        training: One record per fold and seed (see :func:`train_ablation`).
        predictions: The ablation's and the paper's heads' predictions.
        rows: The comparison, one row per condition.
        table: The comparison as printed.
        missing: Commands that make what could not be evaluated.
    """

    ablation: Ablation
    training: list[dict[str, Any]]
    predictions: Predictions
    rows: list[ComparisonRow]
    table: str
    missing: list[str] = field(default_factory=list)


def run_ablation(
    study: Study,
    spec: AblationSpec,
    *,
    conditions: Sequence[str] | None = None,
    device: str = "cpu",
    n_resamples: int = DEFAULT_RESAMPLES,
    echo: Callable[..., Any] = _print,
    progress: bool = True,
) -> AblationResult:
    """Train an ablation over every fold and seed, evaluate it and the paper's heads under every
    condition, and compare them: the sequence behind ``featcache ablate``.

    The paper's heads of a frozen study are trained first when missing (as ``featcache train-heads``
    would); those of a fine-tuned study come from ``featcache finetune``.

    Args:
        study: The study.
        spec: The ablation's options.
        conditions: Conditions (default: as :meth:`Study.conditions`).
        device: Where to train.
        n_resamples: Bootstrap resamples of the intervals (0: none).
        echo: Where messages go (``err=True`` for the missing-entry lines).
        progress: Progress bars.

    Returns:
        The result; :attr:`AblationResult.table` is what was printed.

    Raises:
        FeatcacheError: An invalid option, or nothing of the ablation could be evaluated.
        MissingEntries: Training vectors are missing (names the command that makes them).
    """
    abl = ablation(study, spec)
    echo(f"ablation {abl.name} (model {abl.model}): {abl.spec.describe(study.head_settings)}")
    _, training = train_ablation(study, abl, device=device, progress=progress)
    refs = study.models(PAPER_MODELS)
    train_heads(study, models=refs, device=device, progress=progress)
    conds, skipped = study.conditions(conditions)
    for line in skipped:
        echo(line)
    paper_preds, missing = evaluate(study, models=refs, conditions=conds, progress=progress)
    abl_preds, abl_missing = evaluate_ablation(study, abl, conditions=conds, progress=progress)
    missing += [m for m in abl_missing if m not in missing]
    for cmd in missing:
        echo(f"missing: {cmd}", err=True)
    if len(abl_preds) == 0:
        raise FeatcacheError(f"{study.store.root}: nothing of {abl.name} could be evaluated; run the commands above")
    preds = Predictions.concat([p for p in (paper_preds, abl_preds) if len(p)])
    rows = compare(preds, model=abl.model, reference=abl.reference, n_resamples=n_resamples)
    n_heads = len(study.folds) * len(study.seeds)
    header = (f"{abl.model} vs the paper's heads, {len(study.folds)} folds x {len(study.seeds)} seeds "
              f"({n_heads} heads each); Avg. = mean of the session accuracies, mean ± std over seeds; "
              f"Δ = ablation - {abl.reference}, paired bootstrap CI ({n_resamples} resamples)")
    table = header + "\n\n" + format_comparison(rows, reference=abl.reference)
    echo(table)
    return AblationResult(abl, training, preds, rows, table, missing)
