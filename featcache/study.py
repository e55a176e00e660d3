"""A robustness study over cached vectors: which vectors feed which head, training the light heads,
and evaluating every fold x seed x model x condition from the store alone (no encoder is loaded).

Models (:mod:`featcache.paper`)
    ``text``, ``audio``, ``multimodal``: the paper's classifiers. With fine-tuned backbones they are the
    heads saved by ``featcache finetune`` applied to the vectors of their own fine-tuned encoders (the
    paper's models, exactly); with frozen backbones they are trained here on the stored clean vectors.
    ``late``, ``score``, ``gated`` and ``mdrop`` are fusion ablations trained here on the unimodal
    models' vectors. A study runs only the models whose modalities its corpus has.

Conditions (:mod:`featcache.conditions`)
    ``clean`` (always evaluated: every impact needs it), the variants, and ``pitch`` combined with each
    of the paper's masking attacks, composed from one stored text entry and one stored audio entry.

Evaluation reads each entry once, gathers each fold's test rows once for every seed and model, and
runs each head's body once per (modality, variant): the conditions that share an input share its
encoding, so a combined condition costs only the fusion layers.

Every "run this command" hint comes from :meth:`Study.command`, built from the study's own options, so
a printed command, run as printed, makes exactly what is missing.

Damaged files are never used. A stored entry, a head or a fine-tuning run that fails its checks stops
evaluation with one :class:`~featcache.errors.DamagedError` line naming the file and the command that
makes it again; ``train-heads`` trains a damaged head of its own again (saying so in one log line).
"""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from featcache import paper
from featcache.backbones.encoders import EncoderOptions
from featcache.cache import Entry, FeatureStore, digest
from featcache.cache.integrity import read_json_object
from featcache.conditions import CLEAN, Condition, default_conditions, parse
from featcache.data import Corpus
from featcache.errors import DamagedError, FeatcacheError
from featcache.extract import EncoderRun, plan_entry
from featcache.folds import Fold, make_fold
from featcache.paper import ALL_MODELS, FUSION_MODELS, HEAD_SETTINGS, PAPER_MODELS, TrainSettings, uses
from featcache.options import StudyOptions
from featcache.presets import Preset

if TYPE_CHECKING:
    from featcache.train import FitResult

__all__ = ["ALL_MODELS", "FUSION_MODELS", "HEAD_SETTINGS", "PAPER_MODELS", "MissingEntries", "Study",
           "default_conditions", "evaluate", "train_heads", "uses"]

log = logging.getLogger(__name__)


class MissingEntries(FeatcacheError):
    """Some vectors a study needs are not in the store; the message lists the commands that make them."""


@dataclass
class _CachedEntry:
    """One opened entry held in memory by a study: its vectors, row positions, records, affected flags."""

    entry: Entry
    matrix: np.ndarray
    pos: dict[str, int]
    records: dict[str, dict]
    affected: np.ndarray


@dataclass
class Study:
    """A study: its options (:class:`~featcache.options.StudyOptions`, the one definition of what names its
    vectors, runs and heads), the corpus they read and the store they live in. Everything else (the preset,
    the encoder options, the head settings, the key) is derived from the options.

    Attributes:
        options: The study's options.
        corpus: The corpus ``options.corpus`` names (read once).
        store: The feature store at ``options.cache_dir``.
    """

    options: StudyOptions
    corpus: Corpus
    store: FeatureStore
    _cache: dict[Any, _CachedEntry] = field(default_factory=dict, repr=False)
    _folds: dict[int, Fold] = field(default_factory=dict, repr=False)
    _runs: dict[tuple[str, int, int], Any] = field(default_factory=dict, repr=False)
    _others: dict[tuple[str, int, int], list[list[str]]] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, options: StudyOptions, *, corpus: Corpus | None = None) -> Study:
        """The study of ``options``: its corpus read (unless given) and its store opened.

        Raises:
            FeatcacheError: An unknown preset, or a corpus that cannot be read (one line naming the file).
        """
        from featcache.data import load_corpus
        from featcache.presets import get_preset

        get_preset(options.preset)  # an unknown preset is said before the corpus is read
        if corpus is None:
            corpus = load_corpus(options.corpus, labels=options.labels,
                                 merge=dict(options.merge) if options.merge is not None else None)
        return cls(options=options, corpus=corpus, store=FeatureStore(options.cache_dir))

    def replace(self, **changes: Any) -> Study:
        """The study with some options changed (its corpus and store kept unless their options change)."""
        options = self.options.replace(**changes)
        if any(k in changes for k in ("corpus", "labels", "merge")):
            return Study.open(options)
        store = self.store if options.cache_dir == self.options.cache_dir else FeatureStore(options.cache_dir)
        return Study(options=options, corpus=self.corpus, store=store)

    # -- what the options imply -------------------------------------------------------------------

    @cached_property
    def preset(self) -> Preset:
        """The named preset with the backbone and encoder options the study overrides."""
        from featcache.presets import get_preset, with_overrides

        o = self.options
        return with_overrides(get_preset(o.preset), text_backbone=o.text_backbone, audio_backbone=o.audio_backbone,
                              pooling=o.pooling, max_samples=o.max_samples, whisper_input=o.whisper_input)

    @property
    def frozen(self) -> bool:
        """Frozen backbones (entries shared by folds) or per-fold fine-tuned ones."""
        return self.preset.frozen if self.options.frozen is None else self.options.frozen

    @property
    def seeds(self) -> tuple[int, ...]:
        """Seeds of the heads and fine-tuning runs."""
        return self.options.seeds or self.preset.seeds

    @property
    def variant_seed(self) -> int:
        return self.options.variant_seed

    @property
    def fold_options(self) -> dict[str, Any]:
        """The folds' dev-split options (the dev fraction only where it is not the default)."""
        o = self.options
        return {"dev": o.dev} if o.dev_fraction == paper.DEV_FRACTION else {"dev": o.dev, "dev_fraction": o.dev_fraction}

    @cached_property
    def encoder_options(self) -> EncoderOptions:
        """The encoder options the entries are extracted with."""
        return self.preset.encoder_options(pad_to=self.options.pad_to)

    @property
    def head_settings(self) -> TrainSettings:
        """Hyperparameters of the heads trained on cached vectors."""
        o = self.options
        return replace(HEAD_SETTINGS, batch_size=o.head_batch_size, lr=o.head_lr, max_epochs=o.head_epochs,
                       patience=o.head_patience)

    def finetune_settings(self, model: str) -> TrainSettings:
        """Hyperparameters of ``model``'s fine-tuning runs: the preset's, with the study's overrides."""
        o = self.options
        given = {"batch_size": o.finetune_batch_size, "lr": o.finetune_lr, "max_epochs": o.finetune_epochs,
                 "patience": o.finetune_patience, "grad_accum": o.grad_accum}
        return replace(self.preset.train(model), **{k: v for k, v in given.items() if v is not None})

    @property
    def folds(self) -> list[int]:
        return list(range(1, len(self.corpus.sessions) + 1))

    def fold(self, k: int) -> Fold:
        if k not in self._folds:
            self._folds[k] = make_fold(self.corpus, k, **self.fold_options)
        return self._folds[k]

    @property
    def key(self) -> str:
        """Hash of the study's identity (names its heads folder): every option that names other vectors or
        heads; with fine-tuned backbones, also the runs' settings."""
        identity: dict[str, Any] = {
            "corpus": self.corpus.fingerprint,
            "backbones": [self.preset.text_backbone, self.preset.audio_backbone],
            "frozen": self.frozen,
            "options": self.encoder_options.__dict__,
            "fold_options": self.fold_options,
            "variant_seed": self.variant_seed,
            "heads": self.head_settings.__dict__,
        }
        if not self.frozen:
            identity["runs"] = {"settings": {m: asdict(self.finetune_settings(m)) for m in PAPER_MODELS},
                                "precision": self.options.finetune_precision}
        return digest(identity, 10)

    # -- what the corpus allows -----------------------------------------------------------------

    def models(self, wanted: Iterable[str] = ALL_MODELS) -> list[str]:
        """The wanted models whose modalities the corpus has (a text-only corpus: the text model only).

        Raises:
            FeatcacheError: An unknown model name.
        """
        wanted = list(wanted)
        unknown = [m for m in wanted if m not in ALL_MODELS]
        if unknown:
            raise FeatcacheError(f"--models: unknown {unknown[0]!r}; choose from {', '.join(ALL_MODELS)}")
        return [m for m in wanted if set(uses(m)) <= set(self.corpus.modalities)]

    def conditions(self, conditions: Iterable[str] | None = None) -> tuple[list[Condition], list[str]]:
        """The conditions to evaluate and one line for each one skipped.

        Args:
            conditions: Condition names (default: the paper's plus every other variant the store holds).

        Returns:
            ``(conditions, skipped)``: ``clean`` first (always: every impact needs it), then the given
            ones the corpus can perturb; ``skipped`` says why each other one is left out.

        Raises:
            FeatcacheError: A name that does not parse.
        """
        if conditions is None:
            held = {i.variant for i in self.store.iter_entries() if i.status == "complete" and i.variant}
            wanted = default_conditions(held)
        else:
            wanted = [parse(c) for c in conditions]
        kept, skipped = [CLEAN], []
        for c in wanted:
            lacking = c.missing_modalities(self.corpus.modalities)
            if lacking:
                skipped.append(f"skipping condition {c}: the corpus has no {' and no '.join(lacking)}")
            elif c not in kept:
                kept.append(c)
        return kept, skipped

    # -- commands that make what is missing -----------------------------------------------------

    def command(self, stage: str, *, modality: str | None = None, fold: int | str | None = None,
                seed: int | None = None, variant: str | None = None, split: str | None = None) -> str:
        """The ``featcache`` command that makes a missing piece of this study, with every option it was
        given (:meth:`~featcache.options.StudyOptions.to_flags`), so that running it as printed makes
        exactly that piece.

        Args:
            stage: ``extract``, ``finetune``, or a stage that takes the study's options (``train-heads``,
                ``ablate``, ``evaluate``).
            modality: The encoder (extract) or model (finetune) to run.
            fold: The fold of a fine-tuned entry or run (``all``: every fold, for ``extract``).
            seed: The seed of a fine-tuning run.
            variant: The variant to extract (printed last).
            split: The utterances of a fine-tuned fold to extract (``train``, ``all``, ...; default: the
                extract command's own); ignored for frozen backbones, whose entries hold every utterance.

        Returns:
            The command line, shell-quoted.
        """
        o = self.options.replace(cache_dir=str(self.store.root), corpus=self.corpus.name)
        args = ["featcache", stage]
        if stage == "extract":
            args += [*o.replace(frozen=None).to_flags(command="extract"), "--modality", str(modality)]
            args += ["--frozen"] if self.frozen else ["--finetuned", "--fold", str(fold)]
            if split is not None and not self.frozen:
                args += ["--split", split]
            args += ["--variant", str(variant)]
        elif stage == "finetune":
            args += [*o.to_flags(command="finetune"), "--modality", str(modality), "--fold", str(fold),
                     "--seed", str(seed)]
        else:
            args += o.replace(frozen=self.frozen, seeds=self.seeds).to_flags(always=("corpus", "cache_dir", "preset",
                                                                                     "frozen", "seeds"))
        return shlex.join(args)

    # -- which vectors ------------------------------------------------------------------------

    def run_config(self, model: str, *, fold: int, seed: int) -> dict[str, Any]:
        """The config of the fine-tuning run this study would make for ``model`` at (fold, seed)
        (:func:`featcache.finetune.run_config`; precision as the study gives it, ``auto`` unresolved)."""
        from featcache.finetune import run_config

        o = self.options
        return run_config(self.corpus, preset=self.preset, modality=model, fold=fold, seed=seed,
                          options=self.encoder_options, settings=self.finetune_settings(model),
                          fold_options={"dev": o.dev, "dev_fraction": o.dev_fraction},
                          precision=o.finetune_precision)

    def finetuned_run(self, model: str, *, fold: int, seed: int) -> Any:
        """The finished fine-tuning run of a paper model at (fold, seed) whose whole config is what this
        study would fine-tune (:meth:`run_config`), or ``None``; looked up once.

        Raises:
            DamagedError: A run of that fold and seed no longer reads.
            FeatcacheError: Two matching runs differ in precision only and the study's is ``auto``.
        """
        if (model, fold, seed) not in self._runs:
            from featcache.finetune import find_runs, run_differences

            try:
                found = find_runs(self.store, corpus=self.corpus, fold=fold, seed=seed, modality=model)
            except DamagedError as e:
                cmd = self.command("finetune", modality=model, fold=fold, seed=seed)
                raise DamagedError(e.path, e.problem, what="fine-tuning run",
                                   fix=f"run `{cmd}` (it finishes the run again), or delete its folder") from None
            wanted = self.run_config(model, fold=fold, seed=seed)
            runs = [r for r in found if not run_differences(r.config, wanted)]
            if len(runs) > 1:
                raise FeatcacheError(
                    f"{self.store.root}: {len(runs)} fine-tuned {model} runs for fold {fold}, seed {seed} differ only "
                    f"in precision ({', '.join(sorted(str(r.config.get('precision')) for r in runs))}); choose one with "
                    "finetune_precision (--finetune-precision)")
            self._runs[model, fold, seed] = runs[0] if runs else None
            self._others[model, fold, seed] = [run_differences(r.config, wanted) for r in found]
        return self._runs[model, fold, seed]

    def forget_runs(self) -> None:
        """Look fine-tuning runs up again (after new ones were made)."""
        self._runs.clear()
        self._others.clear()

    def _run_note(self, model: str, *, fold: int, seed: int) -> str:
        """Why no run of (model, fold, seed) is this study's when the store has others there, or ``''``."""
        others = self._others.get((model, fold, seed), [])
        if self._runs.get((model, fold, seed)) is not None or not others:
            return ""
        names = sorted({d for diffs in others for d in diffs})
        return (f"no fine-tuned {model} run of fold {fold}, seed {seed} has this study's options; the store's "
                f"{len(others)} run(s) of that fold and seed differ in {', '.join(names)}")

    def run_notes(self) -> list[str]:
        """One line for each fine-tuning run looked up and not found where the store holds runs of the same
        model, fold and seed with other options (naming the options that differ)."""
        return [n for (m, k, s) in self._others if (n := self._run_note(m, fold=k, seed=s))]

    def _require_run(self, model: str, *, fold: int, seed: int) -> Any:
        run = self.finetuned_run(model, fold=fold, seed=seed)
        if run is None:
            cmd = self.command("finetune", modality=model, fold=fold, seed=seed)
            note = self._run_note(model, fold=fold, seed=seed)
            why = f"{note}" if note else f"no fine-tuned {model} run for fold {fold}, seed {seed}"
            raise MissingEntries(f"{self.store.root}: {why}; run `{cmd}`")
        return run

    def encoder_run(self, modality: str, *, fold: int, seed: int, model: str) -> EncoderRun:
        """The encoder whose vectors feed ``model``'s ``modality`` input at (fold, seed).

        Raises:
            MissingEntries: A fine-tuned run is missing (names the finetune command).
        """
        if self.frozen:
            return EncoderRun(modality, self.preset.backbone(modality), self.encoder_options)
        owner = paper.MULTIMODAL if model == paper.MULTIMODAL else modality
        r = self._require_run(owner, fold=fold, seed=seed)
        return EncoderRun(modality, self.preset.backbone(modality), r.encoder_options(), r.encoder_weights(modality),
                          r.run_id)

    def paper_head_dir(self, model: str, *, fold: int, seed: int) -> Path | None:
        """The fine-tuned run's own head for a paper model (None in a frozen study or when missing)."""
        if self.frozen or model not in PAPER_MODELS:
            return None
        run = self.finetuned_run(model, fold=fold, seed=seed)
        return run.head_dir if run is not None else None

    def unimodal_head_dir(self, modality: str, *, fold: int, seed: int) -> Path:
        """The text or audio head that ``late`` and ``score`` fuse.

        Raises:
            MissingEntries: Its fine-tuning run is missing (names the finetune command).
        """
        if self.frozen:
            return self.heads_dir(modality, fold=fold, seed=seed)
        return self._require_run(modality, fold=fold, seed=seed).head_dir

    def vectors(
        self, modality: str, *, fold: int, seed: int, model: str, variant: str, ids: Sequence[str],
        split: str | None = None,
    ) -> tuple[np.ndarray, dict[str, dict], Entry, np.ndarray]:
        """Stored vectors of ``ids`` (in order), the entry's perturbation records, the entry, and
        whether the variant changed each of these utterances' input (as the variant itself says).

        Each entry is read from disk once; every fold, seed and model then indexes it in memory.

        Args:
            modality: ``text`` or ``audio``.
            fold: The fold.
            seed: The seed of the head (picks the fine-tuning run in a fine-tuned study).
            model: The model the vectors feed (picks the fine-tuning run in a fine-tuned study).
            variant: The variant.
            ids: Utterance ids, in the order wanted.
            split: Which entry of a fine-tuned fold to read: ``train``, ``dev``, ``test`` or ``all``
                (default: ``all`` for clean, ``test`` for a variant, as ``featcache extract`` makes them).
                Ignored with frozen backbones, whose entries hold every utterance.

        Raises:
            MissingEntries: The entry or an utterance is not stored (names the extract command).
        """
        run = self.encoder_run(modality, fold=fold, seed=seed, model=model)
        efold = None if self.frozen else fold
        esplit = None if self.frozen else split
        cache_key = (run, efold, variant, esplit)
        cached = self._cache.get(cache_key)
        if cached is None:
            planned = plan_entry(self.corpus, self.store, run=run, variant=variant, fold=efold, split=esplit,
                                 seed=self.variant_seed, fold_options=self.fold_options)
            if planned is None or not self.store.path(planned.key).is_file():
                raise MissingEntries(self.command("extract", modality=modality, fold=fold, variant=variant,
                                                  split=esplit))
            entry = None
            try:
                entry = self.store.open(planned.key)
                records = entry.records()
                changed = planned.variant.changed
                cached = _CachedEntry(
                    entry=entry,
                    matrix=entry.vectors(),
                    pos={u: i for i, u in enumerate(entry.ids)},
                    records=records,
                    affected=np.array([changed(records.get(u)) for u in entry.ids], dtype=bool),
                )
            except DamagedError as e:
                if entry is not None:
                    entry.close()
                cmd = self.command("extract", modality=modality, fold=fold, variant=variant, split=esplit)
                raise DamagedError(e.path, e.problem,
                                   fix=f"run `{cmd}` (it sets the damaged file aside and extracts it again)") from None
            self._cache[cache_key] = cached
        try:
            index = np.fromiter((cached.pos[u] for u in ids), dtype=np.int64, count=len(ids))
        except KeyError as e:
            cmd = self.command("extract", modality=modality, fold=fold, variant=variant, split=esplit)
            raise MissingEntries(f"{cached.entry.path}: utterance {e.args[0]!r} is not in this entry; "
                                 f"run `{cmd}`") from None
        return cached.matrix[index], cached.records, cached.entry, cached.affected[index]

    def close(self) -> None:
        for c in self._cache.values():
            c.entry.close()
        self._cache.clear()

    # -- heads ------------------------------------------------------------------------------

    def heads_dir(self, model: str, *, fold: int, seed: int) -> Path:
        return self.store.heads_dir(self.key, fold=fold, seed=seed, model=model)

    def head_dir(self, model: str, *, fold: int, seed: int) -> Path:
        """Where ``model``'s head for (fold, seed) is: the fine-tuning run's own for a paper model in a
        fine-tuned study, else the one trained on cached vectors."""
        return self.paper_head_dir(model, fold=fold, seed=seed) or self.heads_dir(model, fold=fold, seed=seed)

    def trained_here(self, model: str) -> bool:
        """Whether ``model``'s heads are trained on cached vectors (by ``train-heads``), not fine-tuned."""
        return self.frozen or model not in PAPER_MODELS

    def head_trained(self, model: str, *, fold: int, seed: int) -> bool:
        """Whether ``model``'s head for (fold, seed) is there (it may still be damaged, see :meth:`load_head`):
        its ``result.json`` (written last) for a head trained here, else the fine-tuning run's head config."""
        if self.trained_here(model):
            return (self.heads_dir(model, fold=fold, seed=seed) / "result.json").is_file()
        return (self.head_dir(model, fold=fold, seed=seed) / "config.json").is_file()

    def load_head(self, model: str, *, fold: int, seed: int, head_dir: Path | None = None) -> torch.nn.Module:
        """Load ``model``'s head for (fold, seed), checked.

        Args:
            model: The model.
            fold: Fold index.
            seed: Seed.
            head_dir: Its folder when it is not :meth:`head_dir` (the unimodal heads a fusion loads).

        Returns:
            The head, in eval mode.

        Raises:
            DamagedError: Its ``result.json`` (heads trained here), config or weights do not read; the
                message names the file and the command that makes the head again.
        """
        from featcache.heads import HeadFileError, load_head

        path = head_dir or self.head_dir(model, fold=fold, seed=seed)
        here = path == self.heads_dir(model, fold=fold, seed=seed)
        if here:
            fix = f"run `{self.command('train-heads')}` (it trains the head again)"
        else:  # the fine-tuning run of this paper model (or of the unimodal model a fusion loads)
            fix = (f"run `{self.command('finetune', modality=model, fold=fold, seed=seed)}` "
                   "(it finishes the run again)")
        problem = read_json_object(path / "result.json")[1] if here else ""
        if problem:
            raise DamagedError(path / "result.json", problem, what="head", fix=fix)
        try:
            return load_head(path)
        except HeadFileError as e:
            raise DamagedError(e.path, e.problem, what="head", fix=fix) from None


_Job = tuple[int, int, str]
"""(fold, seed, model) of one head."""
_Sources = dict[Any, tuple[torch.Tensor, dict[str, int]]]
"""Clean vectors read for head training: (encoder run, entry fold) -> (matrix, row of each utterance)."""


def _source_ids(study: Study, efold: int | None) -> list[str]:
    """The utterances whose clean vectors head training reads from one entry: every fold's training and
    dev utterances for an entry shared by the folds (``efold`` None), else that fold's."""
    folds = study.folds if efold is None else [efold]
    return list(dict.fromkeys(i for k in folds for part in (study.fold(k).train, study.fold(k).dev) for i in part))


def _head_data(study: Study, model: str, *, fold: int, seed: int, sources: _Sources
               ) -> tuple[list[torch.Tensor], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The clean vectors a head trains on.

    Args:
        study: The study.
        model: The head's model name.
        fold: Its fold.
        seed: Its seed.
        sources: Matrices read so far, shared by every fold, seed and model that reads the same entry
            (filled in as needed).

    Returns:
        ``(inputs, train_rows, dev_rows, train_labels, dev_labels)``: one matrix per modality the model
        reads, the fold's training and dev utterances' rows in them (the same for every modality), and
        their class indices.

    Raises:
        MissingEntries: Clean vectors are missing from the store.
    """
    f = study.fold(fold)
    efold = None if study.frozen else fold
    inputs, pos = [], None
    for mod in uses(model):
        key = (study.encoder_run(mod, fold=fold, seed=seed, model=model), efold)
        if key not in sources:
            ids = _source_ids(study, efold)
            x = study.vectors(mod, fold=fold, seed=seed, model=model, variant="clean", ids=ids)[0]
            sources[key] = (torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), {u: i for i, u in enumerate(ids)})
        matrix, pos = sources[key]
        inputs.append(matrix)
    assert pos is not None  # every model reads at least one modality; all sources of a fold share one id order
    train_rows = np.fromiter((pos[i] for i in f.train), dtype=np.int64, count=len(f.train))
    dev_rows = np.fromiter((pos[i] for i in f.dev), dtype=np.int64, count=len(f.dev))
    label = study.corpus.label_index
    y_tr = np.array([label(study.corpus.by_id(i).label) for i in f.train])
    y_dev = np.array([label(study.corpus.by_id(i).label) for i in f.dev])
    return inputs, train_rows, dev_rows, y_tr, y_dev


def _new_head(study: Study, model: str, *, fold: int, seed: int, dims: dict[str, int]) -> torch.nn.Module:
    """``model``'s head for (fold, seed), freshly initialised after ``torch.manual_seed(seed)``.

    Args:
        study: The study.
        model: The model name (``mdrop`` is the multimodal head with modality dropout).
        fold: Its fold.
        seed: Its seed.
        dims: Vector size of each modality it reads.

    Returns:
        The head; ``late`` and ``score`` hold the trained unimodal heads of (fold, seed) they fuse.
    """
    from featcache.heads import build_head

    torch.manual_seed(seed)
    options: dict[str, Any] = {}
    kind = model
    if model == "mdrop":
        kind, options = paper.MULTIMODAL, {"modality_dropout": paper.MODALITY_DROPOUT}
    if model in paper.FUSES_UNIMODAL_HEADS:
        options = {f"{m}_head": study.load_head(m, fold=fold, seed=seed,
                                                head_dir=study.unimodal_head_dir(m, fold=fold, seed=seed))
                   for m in paper.MODALITIES}
    return build_head(kind, text_dim=dims.get("text"), audio_dim=dims.get("audio"),
                      n_classes=len(study.corpus.labels), **options)


def _save_head(study: Study, model: str, *, fold: int, seed: int, head: torch.nn.Module,
               fit_result: FitResult | None) -> dict[str, Any]:
    """Write a trained head: ``model.safetensors`` + ``config.json``, then ``result.json`` (the last, so
    a head is complete once its ``result.json`` exists).

    Args:
        study: The study.
        model: The model name.
        fold: Its fold.
        seed: Its seed.
        head: The trained head.
        fit_result: Its training outcome (None: nothing was trained, e.g. ``late``).

    Returns:
        The record written to ``result.json``.
    """
    from featcache.cache.atomic import atomic_write_json, write_errors_translated
    from featcache.heads import save_head

    out_dir = study.heads_dir(model, fold=fold, seed=seed)
    result: dict[str, Any] = {"fold": fold, "seed": seed, "model": model, "dir": str(out_dir)}
    if fit_result is not None:
        result.update(best_epoch=fit_result.best_epoch, best_dev_acc=fit_result.best_dev_acc,
                      epochs_run=fit_result.epochs_run)
    head.cpu()
    with write_errors_translated(out_dir):  # a read-only store or a full disk: one line
        save_head(head, out_dir)
        atomic_write_json(out_dir / "result.json", result, sort_keys=False)
    return result


def _stored_result(study: Study, model: str, *, fold: int, seed: int) -> dict[str, Any] | None:
    """The ``result.json`` record of a head already trained and intact, or None (a damaged head is said
    in one warning line and trained again)."""
    out_dir = study.heads_dir(model, fold=fold, seed=seed)
    done = out_dir / "result.json"
    if not done.is_file():
        return None
    try:
        study.load_head(model, fold=fold, seed=seed, head_dir=out_dir)
        return json.loads(done.read_text(encoding="utf-8"))
    except DamagedError as e:
        log.warning("%s: damaged head (%s); training it again", e.path, e.problem)
        return None


def train_heads(
    study: Study,
    *,
    models: Sequence[str] = ALL_MODELS,
    device: str = "cpu",
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Train (or load, when already trained) every light head for every fold and seed.

    In a fine-tuned study the paper's three models come from ``featcache finetune`` and are not
    retrained here; the fusion ablations are trained on the unimodal fine-tuned vectors. Models whose
    modalities the corpus lacks are left out (see :meth:`Study.models`).

    On CPU every head that still has to be trained is trained together with the others, as one batched
    ensemble (:func:`featcache.ensemble.fit_ensemble`): first every fold x seed of the models that read
    the vectors (text, audio, multimodal, gated, mdrop), then the fusions of the trained unimodal heads
    (score; late has nothing to train). Each head ends exactly as the one-at-a-time trainer
    (:func:`_train_one`, used on other devices) leaves it, and is saved as soon as it has stopped. Head
    training runs single-threaded operations on ``FEATCACHE_THREADS`` threads (:func:`featcache.ensemble.head_threads`)
    and restores torch's thread count afterwards.

    Args:
        study: The study.
        models: Model names to train (see :mod:`featcache.paper`).
        device: Where to train.
        progress: Progress bars.

    Returns:
        One record per trained head: fold, seed, model, best epoch, dev accuracy, folder.

    Raises:
        FeatcacheError: An unknown model name, or a bad ``FEATCACHE_THREADS``.
        MissingEntries: Clean vectors are missing from the store.
    """
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from featcache.ensemble import head_threads, torch_threads

    wanted = study.models(models)
    order = [m for m in paper.HEAD_TRAIN_ORDER if m in wanted]
    if study.frozen and any(m in order for m in paper.FUSES_UNIMODAL_HEADS):
        order = list(dict.fromkeys([paper.TEXT, paper.AUDIO, *order]))  # late/score fuse the unimodal heads
    jobs = [(k, s, m) for k in study.folds for s in study.seeds for m in order if study.frozen or m not in PAPER_MODELS]
    threads = head_threads()
    results: dict[_Job, dict[str, Any]] = {}
    # logging_redirect_tqdm: a warning (a damaged head trained again) gets its own line above the bar
    with tqdm(total=len(jobs), desc="heads", unit="head", disable=not progress, leave=False) as bar, \
            torch_threads(1), logging_redirect_tqdm():
        if torch.device(device).type != "cpu":
            for k, s, m in jobs:
                results[k, s, m] = _train_one(study, m, fold=k, seed=s, device=device)
                bar.update(1)
        else:
            fusing = [j for j in jobs if j[2] in paper.FUSES_UNIMODAL_HEADS]
            for phase in ([j for j in jobs if j not in fusing], fusing):
                _train_together(study, phase, results, threads=threads, on_saved=lambda: bar.update(1))
    return [results[j] for j in jobs]


def _train_together(study: Study, jobs: Sequence[_Job], results: dict[_Job, dict[str, Any]], *, threads: int,
                    on_saved: Callable[[], None]) -> None:
    """Train the heads of ``jobs`` that are not stored yet as one ensemble, saving each as it stops.

    Args:
        study: The study.
        jobs: (fold, seed, model) of the heads; a model that fuses unimodal heads needs them stored.
        results: Receives every job's ``result.json`` record (stored or new).
        threads: Training threads (:func:`featcache.ensemble.fit_ensemble`).
        on_saved: Called once per job whose record is in ``results`` (e.g. a progress bar).

    Raises:
        MissingEntries: Clean vectors are missing from the store.
    """
    from featcache.ensemble import Member, fit_ensemble
    from featcache.train import class_weights

    sources: _Sources = {}
    members: list[Member] = []
    owners: list[_Job] = []
    for k, s, m in jobs:
        stored = _stored_result(study, m, fold=k, seed=s)
        if stored is None:
            inputs, train_rows, dev_rows, y_tr, y_dev = _head_data(study, m, fold=k, seed=s, sources=sources)
            head = _new_head(study, m, fold=k, seed=s, dims={mod: x.shape[1] for mod, x in zip(uses(m), inputs)})
            if any(p.requires_grad for p in head.parameters()):
                members.append(Member(head=head, inputs=tuple(inputs), train_rows=train_rows, train_labels=y_tr,
                                      dev_rows=dev_rows, dev_labels=y_dev,
                                      class_weights=class_weights(y_tr, len(study.corpus.labels)), seed=s))
                owners.append((k, s, m))
                continue
            stored = _save_head(study, m, fold=k, seed=s, head=head, fit_result=None)  # late: nothing to train
        results[k, s, m] = stored
        on_saved()

    def save(index: int, fit_result: FitResult) -> None:
        k, s, m = owners[index]
        results[k, s, m] = _save_head(study, m, fold=k, seed=s, head=members[index].head, fit_result=fit_result)
        on_saved()

    st = study.head_settings
    fit_ensemble(members, lr=st.lr, max_epochs=st.max_epochs, patience=st.patience, weight_decay=st.weight_decay,
                 batch_size=st.batch_size, dev_batch_size=DEV_BATCH, threads=threads, on_done=save)


DEV_BATCH = 256
"""Rows per dev forward pass of a head trained on cached vectors."""


def fit_alone(head: torch.nn.Module, x_tr: Sequence[np.ndarray], y_tr: np.ndarray, x_dev: Sequence[np.ndarray],
              y_dev: np.ndarray, *, settings: TrainSettings, seed: int, n_classes: int, device: str) -> FitResult:
    """Train one head on cached vectors with :func:`featcache.train.fit`: the reference that the batched
    ensemble equals, and the trainer on devices other than the CPU.

    Args:
        head: The head, freshly built after ``torch.manual_seed(seed)``.
        x_tr: Training vectors, one matrix per input of the head.
        y_tr: Training labels.
        x_dev: Dev vectors, one matrix per input.
        y_dev: Dev labels.
        settings: Batch size, learning rate, epochs, patience, weight decay.
        seed: Shuffling and dropout seed.
        n_classes: Number of classes.
        device: Where to train (the head is moved back to the CPU after).

    Returns:
        The fit's result; the head holds its best epoch's weights.
    """
    from featcache.train import class_weights, fit, step_pair, step_single, tensor_loader

    fr = fit(
        head,
        train_loader=tensor_loader(*x_tr, y_tr, batch_size=settings.batch_size, shuffle=True, seed=seed),
        dev_loader=tensor_loader(*x_dev, y_dev, batch_size=DEV_BATCH),
        step=step_single if len(x_tr) == 1 else step_pair,
        n_classes=n_classes,
        class_weights=class_weights(y_tr, n_classes),
        lr=settings.lr,
        max_epochs=settings.max_epochs,
        patience=settings.patience,
        seed=seed,
        weight_decay=settings.weight_decay,
        device=device,
        run_dir=None,  # seconds per head: resumable per head, not per epoch
        progress=False,
    )
    head.cpu()
    return fr


def _train_one(study: Study, model: str, *, fold: int, seed: int, device: str) -> dict[str, Any]:
    """Train (or load) one head alone with :func:`featcache.train.fit`: the reference the batched
    ensemble equals, and the trainer on devices other than the CPU.

    Args:
        study: The study.
        model: The model name.
        fold: Its fold.
        seed: Its seed.
        device: Where to train.

    Returns:
        The head's ``result.json`` record.

    Raises:
        MissingEntries: Clean vectors are missing from the store.
    """
    stored = _stored_result(study, model, fold=fold, seed=seed)
    if stored is not None:
        return stored
    inputs, train_rows, dev_rows, y_tr, y_dev = _head_data(study, model, fold=fold, seed=seed, sources={})
    x_tr = [x[train_rows] for x in inputs]
    x_dev = [x[dev_rows] for x in inputs]
    head = _new_head(study, model, fold=fold, seed=seed, dims={m: x.shape[1] for m, x in zip(uses(model), x_tr)})
    fr = None
    if any(p.requires_grad for p in head.parameters()):
        fr = fit_alone(head, x_tr, y_tr, x_dev, y_dev, settings=study.head_settings, seed=seed,
                       n_classes=len(study.corpus.labels), device=device)
    return _save_head(study, model, fold=fold, seed=seed, head=head, fit_result=fr)


# ------------------------------------------------------------------------------------------------
# evaluation
# ------------------------------------------------------------------------------------------------


def evaluate(
    study: Study,
    *,
    models: Sequence[str] | None = None,
    conditions: Sequence[str] | None = None,
    progress: bool = True,
) -> tuple[Any, list[str]]:
    """Run every head over the stored vectors of every condition.

    Args:
        study: The study.
        models: Models to evaluate (default: every model the corpus's modalities allow; those without
            trained heads are reported as missing).
        conditions: Conditions (default: the paper's plus every other variant the store holds, see
            :meth:`Study.conditions`); ``clean`` is always evaluated, conditions the corpus cannot
            perturb are left out.
        progress: Progress bar.

    Heads run on one intra-op thread (their matmuls are small; see :func:`featcache.ensemble.head_threads`).

    Returns:
        ``(predictions, missing)``: a :class:`featcache.metrics.Predictions` with one row per
        (fold, seed, model, condition, utterance), and the commands that would make what was missing.
    """
    from featcache.ensemble import torch_threads
    from featcache.metrics import Predictions

    conds, skipped = study.conditions(conditions)
    for line in skipped:
        log.debug(line)
    blocks: list[dict[str, np.ndarray]] = []
    texts: dict[tuple[str, str], str] = {}
    missing: list[str] = []
    jobs = [(k, s, m) for k in study.folds for s in study.seeds for m in study.models(models or ALL_MODELS)]
    try:
        # the heads' matmuls are small: on one intra-op thread they never wait for a core another job holds
        # (with torch's default threads a busy 2-core machine made the demo's evaluation 226 s instead of seconds)
        with torch_threads(1):
            _evaluate_jobs(study, jobs, conds, blocks, texts, missing, progress)
    finally:
        study.close()
    preds = Predictions.from_blocks(blocks, labels=study.corpus.labels, texts=texts)
    return preds, missing


def _evaluate_jobs(study: Study, jobs: list, conditions: Sequence[Condition], blocks: list[dict[str, np.ndarray]],
                   texts: dict, missing: list[str], progress: bool) -> None:
    """Fill ``blocks`` (one dict of columns per fold/seed/model/condition), ``texts`` and ``missing``.

    Within a fold, each entry's test rows are gathered once and shared by every seed and model; within
    one head, each (modality, variant) input is encoded once and shared by every condition that uses it
    (``pitch+adj`` reuses the encoded ``adj`` text and ``pitch`` audio).
    """
    from tqdm import tqdm

    from featcache.perturb import get_variant

    replayed: set[tuple[str, int]] = set()  # (condition, fold) whose texts are rebuilt
    rows: dict[tuple[EncoderRun, str], tuple[torch.Tensor, dict, Entry, np.ndarray]] = {}  # this fold's test rows
    current_fold = None
    for k, s, m in tqdm(jobs, desc="evaluate", unit="model", disable=not progress, leave=False):
        if k != current_fold:
            rows.clear()
            current_fold = k
        if not study.head_trained(m, fold=k, seed=s):
            trained_here = study.trained_here(m)
            if trained_here:  # name the vectors it trains on and is evaluated on, then the head itself
                needed = dict.fromkeys((mod, c.variant(mod)) for c in conditions if c.applies(m) for mod in uses(m))
                for mod, variant in needed:
                    try:
                        study.vectors(mod, fold=k, seed=s, model=m, variant=variant, ids=[])
                    except MissingEntries as e:
                        if str(e) not in missing:
                            missing.append(str(e))
            cmd = study.command("train-heads") if trained_here else study.command("finetune", modality=m, fold=k, seed=s)
            if cmd not in missing:
                missing.append(cmd)
            continue
        head = study.load_head(m, fold=k, seed=s)
        ids, fixed = fold_test_columns(study, fold=k, seed=s, model=m)
        n = len(ids)
        encoded: dict[tuple[str, str], torch.Tensor] = {}  # (modality, variant) -> this head's encoded input
        for cond in conditions:
            if not cond.applies(m):
                continue
            try:
                inputs, affected = [], np.zeros(n, dtype=bool)
                for mod in uses(m):
                    variant = cond.variant(mod)
                    run = study.encoder_run(mod, fold=k, seed=s, model=m)
                    if (run, variant) not in rows:  # frozen runs are shared by seeds and models
                        x, records, entry, changed = study.vectors(mod, fold=k, seed=s, model=m, variant=variant,
                                                                   ids=ids)
                        rows[run, variant] = (torch.from_numpy(x), records, entry, changed)
                    x_t, records, entry, changed = rows[run, variant]
                    if (mod, variant) not in encoded:
                        encoded[mod, variant] = encode_input(head, mod, x_t)
                    inputs.append(encoded[mod, variant])
                    if variant != CLEAN:
                        affected |= changed
                        if mod == paper.TEXT and (cond, k) not in replayed:
                            replayed.add((cond, k))
                            _collect_texts(study, texts, cond, ids, records, entry, get_variant(variant))
            except MissingEntries as e:
                if str(e) not in missing:
                    missing.append(str(e))
                continue
            blocks.append(prediction_block(head, inputs, fixed=fixed, condition=cond, affected=affected))


def fold_test_columns(study: Study, *, fold: int, seed: int, model: str) -> tuple[list[str], dict[str, np.ndarray]]:
    """A fold's test utterances and the prediction columns that are the same under every condition.

    Args:
        study: The study.
        fold: The fold.
        seed: The head's seed.
        model: The model name written in the ``model`` column (a paper model or ``ablate:<name>``).

    Returns:
        ``(ids, columns)``: the test ids in fold order; ``fold``, ``session``, ``seed``, ``model``,
        ``utt_id`` and ``label`` columns, one row per id.
    """
    f = study.fold(fold)
    ids = list(f.test)
    n = len(ids)
    labels = np.array([study.corpus.label_index(study.corpus.by_id(i).label) for i in ids], dtype=np.int64)
    return ids, {"fold": np.full(n, fold, dtype=np.int64), "session": np.full(n, f.test_session, dtype=object),
                 "seed": np.full(n, seed, dtype=np.int64), "model": np.full(n, model, dtype=object),
                 "utt_id": np.array(ids, dtype=object), "label": labels}


def encode_input(head: torch.nn.Module, modality: str, x: torch.Tensor) -> torch.Tensor:
    """One modality's vectors through a head: a fusion head's body for that modality (``head.encode``), a
    unimodal head's logits otherwise. Computed once per (modality, variant) and reused by every condition.
    """
    with torch.no_grad():
        return head.encode(modality, x) if hasattr(head, "join") else head(x)


def prediction_block(head: torch.nn.Module, inputs: Sequence[torch.Tensor], *, fixed: dict[str, np.ndarray],
                     condition: Condition | str, affected: np.ndarray) -> dict[str, np.ndarray]:
    """The prediction rows of one head under one condition.

    Args:
        head: The head (eval mode).
        inputs: :func:`encode_input` of each modality it reads, in order.
        fixed: :func:`fold_test_columns`' columns.
        condition: The condition.
        affected: Per row, whether the condition changed the utterance's input.

    Returns:
        The block: ``fixed`` plus ``condition``, ``pred``, ``probs`` (float32 softmax) and ``affected``.
    """
    with torch.no_grad():
        logits = head.join(*inputs) if len(inputs) == 2 else inputs[0]
        p = torch.softmax(logits, -1).numpy().astype(np.float32, copy=False)
    n = len(p)
    return {**fixed, "condition": np.full(n, str(condition), dtype=object), "pred": p.argmax(1).astype(np.int64),
            "probs": p, "affected": affected}


def _collect_texts(study: Study, texts: dict, cond: Condition, ids: Sequence[str], records: dict,
                   entry: Entry, variant: Any) -> None:
    """Rebuild the perturbed transcriptions from the stored records (for the examples tables).

    Called once per (condition, fold), whatever the number of models and seeds; a combined condition
    (``pitch+adj``) takes the texts of its text variant when they were already replayed.
    """
    mask = entry.provenance.get("mask_token", "[MASK]")
    text_variant = cond.variant(paper.TEXT)
    for i in ids:
        original = study.corpus.by_id(i).text or ""
        texts.setdefault((CLEAN, i), original)
        if (text_variant, i) in texts:
            texts[(str(cond), i)] = texts[(text_variant, i)]
            continue
        rec = records.get(i)
        if rec:
            try:
                texts[(str(cond), i)] = variant.apply(original, rec, mask_token=mask)
            except (FeatcacheError, KeyError, TypeError):  # a record that cannot be replayed: no example text
                continue
