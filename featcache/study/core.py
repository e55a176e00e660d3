"""The study: its options (:class:`~featcache.options.StudyOptions`), the corpus and store they name, and
everything derived from them: the preset, the folds, the key of its heads, which vectors feed which
head (:meth:`Study.vectors`, each entry read once) and where its heads are. The commands it prints are
built in :mod:`featcache.study.hints`, its fine-tuning runs looked up in :mod:`featcache.study.runs`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featcache import paper
from featcache.backbones.encoders import EncoderOptions
from featcache.cache import Entry, FeatureStore, digest
from featcache.cache.integrity import digest_file, read_json_object
from featcache.conditions import CLEAN, Condition, default_conditions, parse
from featcache.data import Corpus
from featcache.errors import DamagedError, FeatcacheError, MissingEntries
from featcache.extract import EncoderRun, plan_entry
from featcache.folds import Fold, make_fold
from featcache.heads.record import RECORD_FILE, record_problem
from featcache.options import StudyOptions
from featcache.paper import ALL_MODELS, HEAD_SETTINGS, PAPER_MODELS, TrainSettings, uses
from featcache.presets import Preset
from featcache.study import hints, runs

__all__ = ["MissingEntries", "Study"]

log = logging.getLogger(__name__)


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
    _digests: dict[Any, str] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, options: StudyOptions, *, corpus: Corpus | None = None) -> Study:
        """The study of ``options``: its corpus read (unless given) and its store opened.

        Raises:
            FeatcacheError: An unknown preset, a corpus that cannot be read (one line naming the file), or
                one with fewer than two classes (nothing to classify).
        """
        from featcache.data import load_corpus
        from featcache.presets import get_preset

        get_preset(options.preset)  # an unknown preset is said before the corpus is read
        if corpus is None:
            corpus = load_corpus(options.corpus, labels=options.labels,
                                 merge=dict(options.merge) if options.merge is not None else None)
        if options.text_source != "gold":  # the study reads a recogniser's text: trained and evaluated on it
            from featcache.transcribe import transcribe

            heard = transcribe(corpus, cache_dir=options.cache_dir, recognizer=options.text_source)
            name = Path(options.text_source).name
            corpus = corpus.with_texts({r["id"]: r["text"] for r in heard.records},
                                       source=f"{name} transcripts ({heard.path.name})")
        elif paper.TEXT not in corpus.modalities and paper.AUDIO in corpus.modalities:
            from featcache.transcribe import stored_transcripts

            found_text = stored_transcripts(corpus, cache_dir=options.cache_dir)
            if found_text is not None:  # `featcache transcribe` made them: the text models can run
                path, recognizer, texts = found_text
                corpus = corpus.with_texts(texts, source=f"{recognizer} transcripts ({path.name})")
                log.info("%s: no text of its own; its text is the %s transcripts in %s", corpus.name, recognizer,
                            path)
        if len(corpus.labels) < 2:
            found = ", ".join(corpus.labels) or "none"
            raise FeatcacheError(f"{corpus.name}: a study needs at least two classes, the corpus has {found}; "
                                 "keep more with labels (--labels) or merge fewer (--merge)")
        return cls(options=options, corpus=corpus, store=FeatureStore(options.cache_dir))

    def replace(self, **changes: Any) -> Study:
        """The study with some options changed (its corpus and store kept unless their options change)."""
        options = self.options.replace(**changes)
        if any(k in changes for k in ("corpus", "labels", "merge", "text_source")):
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
        return {"dev": o.dev} if o.dev_fraction == paper.DEV_FRACTION else self.run_fold_options

    @property
    def run_fold_options(self) -> dict[str, Any]:
        """The dev-split options a ``featcache finetune`` run records (both, always)."""
        return {"dev": self.options.dev, "dev_fraction": self.options.dev_fraction}

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
        stored = {k: getattr(self.options, k) for k in ("layers", "store_dtype", "layer", "precision")
                  if getattr(self.options, k) != StudyOptions.__dataclass_fields__[k].default}
        if stored:  # (absent for last-layer studies: their keys stay what they were)
            identity["stored"] = stored
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
            raise FeatcacheError(f"models (--models): unknown {unknown[0]!r}; choose from {', '.join(ALL_MODELS)}")
        return [m for m in wanted if set(uses(m)) <= set(self.corpus.modalities)]

    def conditions(self, conditions: Iterable[str] | None = None) -> tuple[list[Condition], list[str]]:
        """The conditions to evaluate and one line for each one skipped.

        Args:
            conditions: Condition names (default: the paper's plus every other variant the store holds).

        Returns:
            ``(conditions, skipped)``: ``clean`` first (always: every impact needs it), then the given
            ones the corpus can perturb; ``skipped`` says in one line per missing modality which ones are left
            out and why.

        Raises:
            FeatcacheError: A name that does not parse.
        """
        if conditions is None:
            held = {i.variant for i in self.store.iter_entries() if i.status == "complete" and i.variant}
            wanted = default_conditions(held)
        else:
            wanted = [parse(c) for c in conditions]
        kept, lacked = [CLEAN], {}
        for c in wanted:
            lacking = c.missing_modalities(self.corpus.modalities)
            if lacking:
                lacked.setdefault(" and no ".join(lacking), []).append(str(c))
            elif c not in kept:
                kept.append(c)
        skipped = [f"skipping {len(names)} condition{'s' if len(names) > 1 else ''} the corpus cannot apply (it has "
                   f"no {what}): {', '.join(names)}" for what, names in lacked.items()]
        return kept, skipped

    # -- commands that make what is missing -----------------------------------------------------

    def command(self, stage: str, *, modality: str | None = None, fold: int | str | None = None,
                seed: int | None = None, variant: str | None = None, split: str | None = None) -> str:
        """The ``featcache`` command that makes a missing piece of this study, with every option it was given
        (:func:`featcache.study.hints.command`)."""
        return hints.command(self, stage, modality=modality, fold=fold, seed=seed, variant=variant, split=split)

    # -- which vectors ------------------------------------------------------------------------

    def run_config(self, model: str, *, fold: int, seed: int) -> dict[str, Any]:
        """The config of the fine-tuning run this study would make (:func:`featcache.study.runs.run_config`)."""
        return runs.run_config(self, model, fold=fold, seed=seed)

    def finetuned_run(self, model: str, *, fold: int, seed: int) -> Any:
        """This study's finished fine-tuning run of ``model`` at (fold, seed), or None
        (:func:`featcache.study.runs.finetuned_run`)."""
        return runs.finetuned_run(self, model, fold=fold, seed=seed)

    def forget_runs(self) -> None:
        """Look fine-tuning runs up again (after new ones were made)."""
        self._runs.clear()
        self._others.clear()

    def run_notes(self) -> list[str]:
        """Why runs looked up were not this study's (:func:`featcache.study.runs.run_notes`)."""
        return runs.run_notes(self)

    def _require_run(self, model: str, *, fold: int, seed: int) -> Any:
        return runs.require_run(self, model, fold=fold, seed=seed)

    def encoder_run(self, modality: str, *, fold: int, seed: int, model: str) -> EncoderRun:
        """The encoder whose vectors feed ``model``'s ``modality`` input at (fold, seed).

        Raises:
            MissingEntries: A fine-tuned run is missing (names the finetune command).
        """
        if self.frozen:
            return self.frozen_encoder(modality)
        owner = paper.MULTIMODAL if model == paper.MULTIMODAL else modality
        return self.finetuned_encoder(modality, self._require_run(owner, fold=fold, seed=seed))

    def frozen_encoder(self, modality: str) -> EncoderRun:
        """The frozen pretrained backbone of ``modality``, storing what the study stores (its layers, its
        dtype)."""
        return EncoderRun(modality, self.preset.backbone(modality), self.encoder_options, layers=self.options.layers,
                          store_dtype=self.options.store_dtype, precision=self.options.precision)

    def finetuned_encoder(self, modality: str, run: Any) -> EncoderRun:
        """The ``modality`` encoder of a fine-tuning run (:class:`~featcache.finetune.FinetuneRun`), storing
        what the study stores."""
        return EncoderRun(modality, self.preset.backbone(modality), run.encoder_options(), run.encoder_weights(modality),
                          run.run_id, layers=self.options.layers, store_dtype=self.options.store_dtype,
                         precision=self.options.precision)

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
        cached, index = self._rows(modality, fold=fold, seed=seed, model=model, variant=variant, ids=ids, split=split)
        return cached.matrix[index], cached.records, cached.entry, cached.affected[index]

    def matrix_rows(self, modality: str, *, fold: int, seed: int, model: str, variant: str, ids: Sequence[str],
                    split: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The whole matrix that :meth:`vectors` reads ``ids`` from (one read-only array per entry, shared by
        every call) and their rows in it: heads of several seeds index one matrix instead of each holding a
        copy of their rows.

        Raises:
            MissingEntries: The entry or an utterance is not stored (names the extract command).
        """
        cached, index = self._rows(modality, fold=fold, seed=seed, model=model, variant=variant, ids=ids, split=split)
        return cached.matrix, index

    def _rows(self, modality: str, *, fold: int, seed: int, model: str, variant: str, ids: Sequence[str],
              split: str | None) -> tuple[_CachedEntry, np.ndarray]:
        """The entry feeding ``model``'s ``modality`` (read once, then kept) and the rows of ``ids`` in it."""
        esplit = None if self.frozen else split
        cache_key, plan = self._entry_plan(modality, fold=fold, seed=seed, model=model, variant=variant, split=split)
        cached = self._cache.get(cache_key)
        if cached is None:
            planned = plan()
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
                    matrix=self._head_input(entry),
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
        return cached, index

    def head_layer(self, entry: Entry) -> int | str | None:
        """Which of a layer-wise entry's hidden states the heads read (``--layer``): a number, ``weighted``
        (all of them), or None for an entry of one vector per utterance. Without ``--layer``: the last
        stored hidden state (with ``--layers all``, what a last-layer entry holds).

        Raises:
            MissingEntries: The entry does not hold the layer (names the extract command of the study).
        """
        held = entry.layers
        if held is None:
            return None
        layer = self.options.layer
        if layer == "weighted":
            return layer
        return held[-1] if layer is None else int(layer)

    def _head_input(self, entry: Entry) -> np.ndarray:
        """The vectors of ``entry`` that heads read: ``[rows, dim]``, or every stored layer
        (``[rows, layers, dim]``) for ``--layer weighted``."""
        layer = self.head_layer(entry)
        if layer in (None, "weighted"):
            return entry.vectors()
        one = np.ascontiguousarray(entry.vectors(layer=int(layer)))  # a copy: the entry's other layers can go
        one.setflags(write=False)
        return one

    def _entry_plan(self, modality: str, *, fold: int, seed: int, model: str, variant: str, split: str | None
                    ) -> tuple[Any, Any]:
        """The in-memory key of the entry that feeds ``model``'s ``modality`` input, and a function that
        plans it (:func:`~featcache.extract.plan_entry`; resolving the backbone is left until it is needed)."""
        run = self.encoder_run(modality, fold=fold, seed=seed, model=model)
        efold = None if self.frozen else fold
        esplit = None if self.frozen else split

        def plan() -> Any:
            return plan_entry(self.corpus, self.store, run=run, variant=variant, fold=efold, split=esplit,
                              seed=self.variant_seed, fold_options=self.fold_options)

        return (run, efold, variant, esplit), plan

    def entry_digest(self, modality: str, *, fold: int, seed: int, model: str) -> str | None:
        """The content digest of the clean entry that ``model``'s ``modality`` input trains on at (fold,
        seed) (:attr:`~featcache.cache.Entry.content_digest`), read from its provenance; None when the
        entry is not stored.

        Raises:
            DamagedError: The entry's file is damaged (names the extract command that makes it again).
        """
        cache_key, plan = self._entry_plan(modality, fold=fold, seed=seed, model=model, variant=CLEAN, split=None)
        if cache_key in self._cache:
            return self._cache[cache_key].entry.content_digest
        if cache_key not in self._digests:
            planned = plan()
            if planned is None or not self.store.path(planned.key).is_file():
                return None
            try:
                with self.store.open(planned.key) as entry:
                    self._digests[cache_key] = entry.content_digest
            except DamagedError as e:
                cmd = self.command("extract", modality=modality, fold=fold, variant=CLEAN)
                raise DamagedError(e.path, e.problem,
                                   fix=f"run `{cmd}` (it sets the damaged file aside and extracts it again)") from None
        return self._digests[cache_key]

    def close(self) -> None:
        self._digests.clear()
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
            return (self.heads_dir(model, fold=fold, seed=seed) / RECORD_FILE).is_file()
        return (self.head_dir(model, fold=fold, seed=seed) / "config.json").is_file()

    def head_place(self, model: str, *, fold: int, seed: int) -> dict[str, Any]:
        """What a head trained here records it is (:mod:`featcache.heads.record`): the study key, fold,
        seed and model."""
        return {"fold": fold, "seed": seed, "model": model, "study": self.key}

    def head_inputs(self, model: str, *, fold: int, seed: int) -> dict[str, str]:
        """What ``model``'s head for (fold, seed) is made from now: the content digest of each clean entry
        it trains on, and for a fusion of trained unimodal heads the SHA-256 of their weights (entries or
        heads not there are left out).

        Raises:
            DamagedError: An entry it reads is damaged.
        """
        out: dict[str, str] = {}
        for mod in uses(model):
            found = self.entry_digest(mod, fold=fold, seed=seed, model=model)
            if found is not None:
                out[mod] = found
        if model in paper.FUSES_UNIMODAL_HEADS:
            for mod in paper.MODALITIES:
                digest = self._unimodal_digest(mod, fold=fold, seed=seed)
                if digest is not None:
                    out[f"{mod}_head"] = digest
        return out

    def _unimodal_digest(self, modality: str, *, fold: int, seed: int) -> str | None:
        """The digest of the unimodal head's weights that ``late`` and ``score`` fuse: as its record (or its
        fine-tuning run's) says, checked when that head is loaded; hashed when there is no record."""
        from featcache.heads import WEIGHTS_FILE

        folder = self.unimodal_head_dir(modality, fold=fold, seed=seed)
        record_file, name = ((folder / RECORD_FILE, WEIGHTS_FILE) if self.frozen
                             else (folder.parent / RECORD_FILE, f"{folder.name}/{WEIGHTS_FILE}"))
        record, problem = read_json_object(record_file) if record_file.is_file() else ({}, "none")
        files = record.get("files") if not problem else None
        if isinstance(files, dict) and isinstance(files.get(name), str):
            return files[name]
        weights = folder / WEIGHTS_FILE
        return digest_file(weights) if weights.is_file() else None

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
            DamagedError: Its ``result.json`` (heads trained here), config or weights do not read; or its
                record (:mod:`featcache.heads.record`) says another study, fold, seed or model than its
                place (a moved folder), a file's SHA-256 differs from the recorded one, or it was trained on
                other vectors or unimodal heads than the store holds now (stale); the message names the
                file and the command that makes the head again.
        """
        from featcache.heads import HeadFileError, load_head

        path = head_dir or self.head_dir(model, fold=fold, seed=seed)
        here = path == self.heads_dir(model, fold=fold, seed=seed)
        if here:
            fix = f"run `{self.command('train-heads')}` (it trains the head again)"
        else:  # the fine-tuning run of this paper model (or of the unimodal model a fusion loads)
            fix = (f"run `{self.command('finetune', modality=model, fold=fold, seed=seed)}` "
                   "(it finishes the run again)")
        if here:
            record, problem = read_json_object(path / RECORD_FILE)
            if problem:
                raise DamagedError(path / RECORD_FILE, problem, what="head", fix=fix)
            found = record_problem(record, folder=path, place=self.head_place(model, fold=fold, seed=seed),
                                   inputs=self.head_inputs(model, fold=fold, seed=seed), files=False)
            if found is not None:
                raise DamagedError(found[0], found[1], what="head", fix=fix)
        files = record.get("files") if here else None  # checked as they are read
        try:
            return load_head(path, expect=files if isinstance(files, dict) else None)
        except HeadFileError as e:
            raise DamagedError(e.path, e.problem, what="head", fix=fix) from None


