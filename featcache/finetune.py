"""Per-fold fine-tuning of the paper's three models, end to end (encoders + heads).

A run is identified by (corpus, modality, backbone(s), encoder options, hyperparameters, fold, dev
split, seed, the training loop's version and precision) and lives in the store's ``runs/<run_id>/``
(``FeatureStore.run_dir``). While it trains, the folder holds::

    config.json                 the run's identity
    state.json, last.safetensors, optimizer.safetensors, rng.safetensors, best.safetensors
                                the resumable training loop's checkpoints (see featcache.train)
    train_log.jsonl             one line per epoch

and when it is finished, only what extraction and evaluation use::

    config.json, train_log.jsonl
    text_encoder.safetensors    fine-tuned encoder weights of the best epoch (one per modality)
    audio_encoder.safetensors
    head/                       the head (model.safetensors + config.json), applied later to stored vectors
    result.json                 best epoch, dev accuracy, size and SHA-256 of the encoder weights;
                                written after the weights: a run is finished when it exists

A process holds ``runs/<run_id>.lock`` (beside the folder) while it trains or finishes a run, so a second
``featcache finetune`` of the same run waits and then finds it finished. Finishing writes the encoder
weights, the head and ``result.json``, and only then deletes the checkpoints (``state.json`` first): a kill
at any moment leaves a run that resumes from its last completed epoch, or a finished one whose leftover
checkpoints the next call deletes. Weights are safetensors and configs JSON; nothing is pickled; every
file is written under a temporary name and renamed into place (:mod:`featcache.cache.atomic`).

The loop (:func:`featcache.train.fit`) gets its inputs from DataLoader workers (tokenised, audio decoded
and cut) in batches of similar length (:class:`~featcache.buckets.LengthBatchSampler`, drawn from the
run's seed), pinned and copied without blocking on CUDA, and evaluates the dev set in length-sorted
batches :data:`EVAL_BATCH_FACTOR` times larger. ``precision`` picks float32 or bfloat16/float16 autocast
(:func:`featcache.train.resolve_precision`).

A finished run whose ``config.json``, ``result.json``, head or encoder weights no longer read is damaged:
it is never used (:func:`find_runs` raises :class:`~featcache.errors.DamagedError` naming the file and the
command), and the same ``featcache finetune`` command trains it again: from its checkpoints when a kill
left them, else from scratch (the same seed on the same device gives the same weights).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from featcache.backbones.encoders import AudioEncoder, EncoderOptions, TextEncoder, load_encoder
from featcache.backbones.resolve import resolve_backbone
from featcache.buckets import POOL_BATCHES, LengthBatchSampler, expected_length
from featcache.cache import FeatureStore, digest
from featcache.cache.atomic import atomic_write, atomic_write_json, atomic_write_text, write_errors_translated
from featcache.cache.integrity import read_json_object, sha256_file
from featcache.data import Corpus, load_audio
from featcache.errors import DamagedError, FeatcacheError
from featcache.folds import Fold, make_fold
from featcache.paper import PAPER_MODELS, TrainSettings, uses
from featcache.presets import Preset
from featcache.workers import GuardedLoader, fresh_context, make_loader

log = logging.getLogger(__name__)

_RUN_NAME = re.compile(r"^ft-(?P<modality>[a-z]+)-f(?P<fold>\d+)-s(?P<seed>\d+)-[0-9a-f]+$")


class EndToEnd(nn.Module):
    """Encoder(s) + head: the paper's text, audio or multimodal classifier.

    Args:
        encoders: ``{"text": TextEncoder, "audio": AudioEncoder}`` (the ones the modality needs).
        head: A head from :mod:`featcache.heads` (unimodal: one vector; multimodal: text, audio).
    """

    def __init__(self, encoders: dict[str, nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.head = head

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> torch.Tensor:
        vecs = [self.encoders[m](**inputs[m]) for m in ("text", "audio") if m in self.encoders]
        return self.head(*vecs)


def _step(model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    return model(batch["inputs"]), batch["label"]


class _Items(Dataset):
    """Prepared clean inputs of one split (decoding and tokenizing run in workers).

    It holds the split's utterances and the encoders' input sides (:class:`~featcache.backbones.encoders.TextInputs`,
    :class:`~featcache.backbones.encoders.AudioInputs`), not the corpus or the models, so that it pickles to a
    fresh worker process in milliseconds.
    """

    def __init__(self, corpus: Corpus, ids: list[str], encoders: dict[str, Any]) -> None:
        self.utterances = [corpus.by_id(i) for i in ids]
        self.labels = [corpus.label_index(u.label) for u in self.utterances]
        self.inputs = {m: enc.inputs for m, enc in encoders.items()}

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, i: int) -> dict[str, Any]:
        u = self.utterances[i]
        item: dict[str, Any] = {"label": self.labels[i]}
        if "text" in self.inputs:
            item["text"] = self.inputs["text"].prepare(u.text or "")
        if "audio" in self.inputs:
            item["audio"] = self.inputs["audio"].prepare(load_audio(u.audio))  # type: ignore[arg-type]
        return item


class _Collate:
    """Stack prepared items into ``{"inputs": {modality: tensors}, "label": tensor}`` (a class, so that it
    pickles to worker processes)."""

    def __init__(self, encoders: dict[str, Any]) -> None:
        self.inputs = {m: enc.inputs for m, enc in encoders.items()}

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "inputs": {m: inputs.collate([it[m] for it in items]) for m, inputs in self.inputs.items()},
            "label": torch.tensor([it["label"] for it in items], dtype=torch.long),
        }


LOOP_VERSION = 2
"""The fine-tuning loop's version, part of every run's identity: 1 drew batches uniformly at random
(featcache before 0.x's length bucketing); 2 draws them with :class:`~featcache.buckets.LengthBatchSampler`.
Runs of another version are not found (:func:`find_runs`) and are listed as such by ``featcache cache ls``."""
EVAL_BATCH_FACTOR = 4
"""Dev batches are this many times larger than training batches (no gradients to keep)."""


def loop_identity() -> dict[str, Any]:
    """The loop settings in a run's identity (:data:`LOOP_VERSION` and how batches are drawn)."""
    return {"version": LOOP_VERSION, "batching": "length-pools", "pool_batches": POOL_BATCHES}


def _lengths(corpus: Corpus, ids: list[str], modalities: tuple[str, ...]) -> list[float]:
    """Expected input lengths for the sampler: audio when the model hears it (it costs most), else text."""
    modality = "audio" if "audio" in modalities else "text"
    return [expected_length(corpus.by_id(i), modality) for i in ids]


class _Prepared(Dataset):
    """Items prepared once, kept in memory (a text-only split: token ids are a few hundred bytes each)."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


def _loader(corpus: Corpus, ids: list[str], encoders: dict[str, Any], *, batch_size: int, shuffle: bool,
            generator: torch.Generator | None, num_workers: int, pin_memory: bool) -> GuardedLoader:
    """A length-bucketed loader over one split (see :class:`~featcache.buckets.LengthBatchSampler`).

    A split without audio is tokenised once, here, and served from memory without workers: handing a
    batch over from a worker costs the training process as much CPU as tokenising it (measured: 0.10 s
    per epoch of 54 batches either way, plus 0.3 s in the worker), so per-epoch preparation in workers
    only pays for audio (decoding, resampling, cutting). Audio workers start from a fresh process
    (:func:`~featcache.workers.fresh_context`), not as forks of this one: a forked worker shares the
    training process's memory copy-on-write for the whole epoch, so every page the training step
    writes is copied once per epoch (measured: 10 % slower audio epochs on a CPU).
    """
    sampler = LengthBatchSampler(_lengths(corpus, ids, tuple(encoders)), batch_size=batch_size, shuffle=shuffle,
                                 generator=generator)
    dataset: Dataset = _Items(corpus, ids, encoders)
    if "audio" not in encoders:
        dataset, num_workers = _Prepared([dataset[i] for i in range(len(ids))]), 0
    kw: dict[str, Any] = {}
    if num_workers:
        modules = [type(getattr(enc.inputs, a)).__module__ for enc in encoders.values()
                   for a in ("tokenizer", "feature_extractor") if hasattr(enc.inputs, a)]
        kw = {"prefetch_factor": 4, "multiprocessing_context": fresh_context(preload=[__name__, *modules])}
    return make_loader(dataset, num_workers=num_workers, batch_sampler=sampler,
                       collate_fn=_Collate(encoders), pin_memory=pin_memory, generator=generator, **kw)


@dataclass(frozen=True)
class FinetuneRun:
    """A fine-tuning run directory in the store."""

    path: Path
    config: dict[str, Any]

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def modality(self) -> str:
        return str(self.config["modality"])

    @property
    def modalities(self) -> tuple[str, ...]:
        return uses(self.modality)

    @property
    def finished(self) -> bool:
        return (self.path / "result.json").is_file()

    @property
    def result(self) -> dict[str, Any]:
        """The run's ``result.json`` (best epoch, dev accuracy, ...).

        Raises:
            DamagedError: The file does not read as a JSON object (names the command that redoes it).
        """
        path = self.path / "result.json"
        result, problem = read_json_object(path)
        if problem:
            raise DamagedError(path, problem, what="fine-tuning run", fix=self.fix)
        return result

    @property
    def fix(self) -> str:
        """What to do about a damaged run: the finetune command that trains it again."""
        return (f"run `featcache finetune --modality {self.config.get('modality', '?')} --fold "
                f"{self.config.get('fold', '?')} --seed {self.config.get('seed', '?')}` with the options that made it "
                f"(it trains the run again, from scratch once its checkpoints are gone), or delete {self.path}")

    def damage(self, *, deep: bool = False) -> tuple[Path, str] | None:
        """The first unreadable file of a finished run and what is wrong with it, or None.

        Checks ``config.json`` (it must hold this run's config), ``result.json``, the head and the encoder
        weights (their size as ``result.json`` records it; with ``deep`` also their SHA-256).

        Args:
            deep: Hash the encoder weights (what ``featcache cache verify`` does).

        Returns:
            ``(file, problem)`` or None.
        """
        from featcache.heads import HeadFileError, load_head

        cfg_path = self.path / "config.json"
        stored, problem = read_json_object(cfg_path)
        if problem:
            return cfg_path, problem
        if stored != self.config:
            return cfg_path, "holds another run's config"
        result, problem = read_json_object(self.path / "result.json")
        if problem:
            return self.path / "result.json", problem
        try:
            load_head(self.head_dir)
        except HeadFileError as e:
            return e.path, e.problem
        recorded = result.get("weights") if isinstance(result.get("weights"), dict) else {}
        for m in self.modalities:
            path = self.encoder_weights(m)
            problem = _weights_problem(path, recorded.get(path.name), deep=deep)
            if problem:
                return path, problem
        return None

    def encoder_weights(self, modality: str) -> Path:
        return self.path / f"{modality}_encoder.safetensors"

    def encoder_options(self) -> EncoderOptions:
        return EncoderOptions(**self.config["encoder_options"])

    @property
    def head_dir(self) -> Path:
        return self.path / "head"


def _weights_problem(path: Path, record: Any, *, deep: bool) -> str:
    """What is wrong with a run's encoder weights file against its ``result.json`` record, or ``''``."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "missing encoder weights"
    except OSError as e:
        return f"unreadable: {e.strerror or type(e).__name__}"
    if not isinstance(record, dict):
        return ""  # a run finished before the weights were recorded
    if size != record.get("bytes"):
        return f"{size} bytes, result.json records {record.get('bytes')}"
    if deep:
        try:
            if sha256_file(path) != record.get("sha256"):
                return "checksum mismatch: the file changed after it was written"
        except OSError as e:
            return f"unreadable: {e.strerror or type(e).__name__}"
    return ""


def run_config(
    corpus: Corpus,
    *,
    preset: Preset,
    modality: str,
    fold: int,
    seed: int,
    options: EncoderOptions,
    settings: TrainSettings,
    fold_options: dict[str, Any],
    precision: str = "fp32",
) -> dict[str, Any]:
    """The identity of a fine-tuning run (everything that changes its weights).

    Args:
        corpus: The corpus.
        preset: Backbones.
        modality: ``text``, ``audio`` or ``multimodal``.
        fold: Fold index.
        seed: The run's seed.
        options: Encoder options.
        settings: Hyperparameters.
        fold_options: Dev-split options.
        precision: The resolved precision (``fp32``, ``bf16`` or ``fp16``; see
            :func:`featcache.train.resolve_precision`).

    Returns:
        A JSON-able dict; :func:`run_id` names the run after it.
    """
    return {
        "corpus": corpus.fingerprint,
        "corpus_name": corpus.name,
        "labels": list(corpus.labels),
        "modality": modality,
        "backbones": {m: preset.backbone(m) for m in uses(modality)},
        "encoder_options": asdict(options),
        "settings": asdict(settings),
        "fold": fold,
        "fold_options": fold_options,
        "seed": seed,
        "loop": loop_identity(),
        "precision": precision,
    }


_SETTING_OPTIONS = {"batch_size": "finetune_batch_size", "lr": "finetune_lr", "max_epochs": "finetune_epochs",
                    "patience": "finetune_patience", "grad_accum": "grad_accum"}
"""The study option (:class:`~featcache.options.StudyOptions`) behind each fine-tuning setting."""


def _fold_identity(fold_options: Any) -> dict[str, Any]:
    """Dev-split options with the defaults of :func:`featcache.folds.make_fold` filled in, so that
    ``{"dev": "stratified"}`` and ``{"dev": "stratified", "dev_fraction": 0.1}`` compare equal."""
    import inspect

    defaults = {k: p.default for k, p in inspect.signature(make_fold).parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY}
    return {**defaults, **(fold_options if isinstance(fold_options, dict) else {})}


def run_differences(config: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """The options in which a run's config differs from the one a study would fine-tune, named as study
    options (``finetune_lr``, ``pooling``, ``dev``, ...); empty when the run is the study's.

    The corpus's name (its path as given) is not compared, only its fingerprint; the dev-split options
    are compared with their defaults filled in; a wanted precision of ``auto`` accepts the run's resolved one.

    Args:
        config: A run's ``config.json``.
        wanted: :func:`run_config` of what the study would fine-tune.

    Returns:
        The differing options, sorted.
    """
    out: set[str] = set()
    for key in set(config) | set(wanted):
        have, want = config.get(key), wanted.get(key)
        if key == "corpus_name" or have == want:
            continue
        if key == "precision":
            if want != "auto":
                out.add("finetune_precision")
        elif key == "fold_options":
            a, b = _fold_identity(have), _fold_identity(want)
            out.update({"dev_fraction" if k == "dev_fraction" else "dev" for k in set(a) | set(b) if a.get(k) != b.get(k)})
        elif key == "settings" and isinstance(have, dict) and isinstance(want, dict):
            out.update(_SETTING_OPTIONS.get(k, f"preset ({k})") for k in set(have) | set(want) if have.get(k) != want.get(k))
        elif key == "encoder_options" and isinstance(have, dict) and isinstance(want, dict):
            out.update(k for k in set(have) | set(want) if have.get(k) != want.get(k))
        elif key == "backbones" and isinstance(have, dict) and isinstance(want, dict):
            out.update(f"{m}_backbone" for m in set(have) | set(want) if have.get(m) != want.get(m))
        else:
            out.add(key)
    return sorted(out)


def run_id(config: dict[str, Any]) -> str:
    """``ft-text-f2-s0-<hash>``."""
    return f"ft-{config['modality']}-f{config['fold']}-s{config['seed']}-{digest(config, 10)}"


def find_runs(
    store: FeatureStore,
    *,
    corpus: Corpus,
    fold: int | None = None,
    seed: int | None = None,
    modality: str | None = None,
) -> list[FinetuneRun]:
    """Finished fine-tuning runs of this corpus and of this loop version in the store, filtered, sorted by id.

    Raises:
        DamagedError: A finished run that the filters select (by its folder name when its config does not
            read) has a file that no longer reads; the message names it and the command that redoes it.
    """
    runs_dir = store.runs_dir
    out: list[FinetuneRun] = []
    if not runs_dir.is_dir():
        return out

    def wanted(m: object, k: object, s: object) -> bool:
        return (fold is None or k == fold) and (seed is None or s == seed) and (modality is None or m == modality)

    for d in sorted(runs_dir.iterdir()):
        cfg_path = d / "config.json"
        if not cfg_path.is_file():
            continue
        cfg, problem = read_json_object(cfg_path)
        if problem:
            named = _RUN_NAME.match(d.name)
            if (d / "result.json").is_file() and named and wanted(
                    named["modality"], int(named["fold"]), int(named["seed"])):
                guess = FinetuneRun(d, {"modality": named["modality"], "fold": int(named["fold"]),
                                        "seed": int(named["seed"])})
                raise DamagedError(cfg_path, problem, what="fine-tuning run", fix=guess.fix)
            log.warning("%s: unreadable run config (%s), ignored", cfg_path, problem)
            continue
        run = FinetuneRun(d, cfg)
        if not run.finished or cfg.get("corpus") != corpus.fingerprint:
            continue
        if cfg.get("loop") != loop_identity():
            log.debug("%s: a run of another fine-tuning loop, ignored", d)
            continue
        if wanted(cfg.get("modality"), cfg.get("fold"), cfg.get("seed")):
            problem = run.damage()
            if problem is not None:
                raise DamagedError(problem[0], problem[1], what="fine-tuning run", fix=run.fix)
            out.append(run)
    return out


@dataclass(frozen=True)
class RunInfo:
    """What ``featcache cache ls`` and ``featcache cache verify`` show about one run folder.

    Attributes:
        path: The run's folder.
        modality: ``text``, ``audio`` or ``multimodal`` (from the config, else the folder name; None when
            neither tells).
        fold: Fold index, or None.
        seed: Seed, or None.
        status: ``finished``, ``unfinished`` (training, killed, or not yet started), ``damaged`` (a
            finished run with a file that does not read) or ``old`` (a finished run of another
            fine-tuning loop version, which is not used).
        size_bytes: Bytes of every file in the folder.
        best_dev_acc: Best dev accuracy so far (finished: the result; unfinished: the last logged epoch).
        epochs: Epochs completed.
        problem: What is damaged (with its file), else None.
        fix: What to do about a damaged run (:attr:`FinetuneRun.fix`), else None.
    """

    path: Path
    modality: str | None
    fold: int | None
    seed: int | None
    status: str
    size_bytes: int
    best_dev_acc: float | None
    epochs: int | None
    problem: str | None = None
    fix: str | None = None

    @property
    def run_id(self) -> str:
        return self.path.name


def list_runs(store: FeatureStore, *, deep: bool = False) -> list[RunInfo]:
    """Every run folder in the store, finished or not, sorted by id (reads only).

    Args:
        store: The store.
        deep: Check finished runs' encoder weights against their SHA-256 (:meth:`FinetuneRun.damage`).

    Returns:
        One :class:`RunInfo` per folder.
    """
    from featcache.train import LOG_FILE, read_log

    out: list[RunInfo] = []
    if not store.runs_dir.is_dir():
        return out
    for d in sorted(p for p in store.runs_dir.iterdir() if p.is_dir()):
        size = sum(p.stat().st_size for p in d.rglob("*") if p.is_file())
        cfg, problem = read_json_object(d / "config.json")
        named = _RUN_NAME.match(d.name)
        ident: dict[str, Any] = {"modality": None, "fold": None, "seed": None}
        if named:
            ident = {"modality": named["modality"], "fold": int(named["fold"]), "seed": int(named["seed"])}
        if not problem:
            ident = {k: cfg.get(k, ident[k]) for k in ident}
        run = FinetuneRun(d, cfg if not problem else ident)
        best: float | None = None
        epochs: int | None = None
        damage: str | None = None
        if not run.finished:
            status = "unfinished"
            history = read_log(d / LOG_FILE)
            if history:
                best, epochs = history[-1].get("best_dev_acc"), history[-1].get("epoch")
        elif problem:
            status, damage = "damaged", f"{d / 'config.json'}: {problem}"
        else:
            found = run.damage(deep=deep)
            if found is not None:
                status, damage = "damaged", f"{found[0]}: {found[1]}"
            else:
                status = "finished" if cfg.get("loop") == loop_identity() else "old"
                best, epochs = run.result.get("best_dev_acc"), run.result.get("epochs_run")
        out.append(RunInfo(path=d, status=status, size_bytes=size, best_dev_acc=best, epochs=epochs, problem=damage,
                           fix=run.fix if damage else None, **ident))
    return out


def _save_state(module: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in module.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))


def _device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FeatcacheError(f"--device {device}: no CUDA device is available; use --device cpu")
    return torch.device(device)


def _width(resolved: Any) -> int:
    """A backbone's hidden size from its ``config.json`` (0 when it does not say)."""
    cfg, _ = read_json_object(Path(resolved.path) / "config.json")
    return int(cfg.get("hidden_size") or cfg.get("d_model") or 0)


def finetune(
    corpus: Corpus,
    store: FeatureStore,
    *,
    preset: Preset,
    modality: str,
    fold: int,
    seed: int = 0,
    settings: TrainSettings | None = None,
    options: EncoderOptions | None = None,
    fold_options: dict[str, Any] | None = None,
    device: str = "cpu",
    precision: str = "auto",
    num_workers: int = 0,
    progress: bool = True,
    callbacks: Sequence[Callable[[dict[str, Any]], None]] = (),
) -> FinetuneRun:
    """Fine-tune one model on one fold (or resume it, or return it when finished).

    Args:
        corpus: The corpus.
        store: The store (the run is written under ``runs/``).
        preset: Backbones and default hyperparameters.
        modality: ``text``, ``audio`` or ``multimodal`` (both backbones fine-tuned jointly).
        fold: Fold index.
        seed: Seed of initialisation, shuffling, batching and dropout.
        settings: Hyperparameters (default: the preset's for the modality).
        options: Encoder options (default: the preset's).
        fold_options: Dev-split options (``dev``, ``dev_fraction``, ``seed``).
        device: ``cpu``, ``cuda`` or ``auto``.
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (:func:`featcache.train.resolve_precision`);
            part of the run's identity once resolved.
        num_workers: DataLoader workers for decoding and cutting audio (a text-only model tokenises its
            transcripts once, in this process, and uses none).
        progress: Progress bars.
        callbacks: Called with each epoch's log record once the epoch is committed (:func:`featcache.train.fit`).

    Returns:
        The finished run.

    Raises:
        FeatcacheError: Unknown modality, missing modality in the corpus, a fold the corpus lacks, bad
            settings, an unknown precision, or a device that is not there (all checked before the run
            folder is made).
    """
    from filelock import FileLock

    from featcache.train import has_resume_state, remove_resume_state, resolve_precision

    if modality not in PAPER_MODELS:
        raise FeatcacheError(f"--modality {modality!r}: use text, audio or multimodal")
    for m in uses(modality):
        if m not in corpus.modalities:
            raise FeatcacheError(f"{corpus.name}: the corpus has no {m}; fine-tune another --modality")
    settings = settings or preset.train(modality)
    options = options or preset.encoder_options()
    fold_options = dict(fold_options or {})
    f = make_fold(corpus, fold, **fold_options)  # checks the fold and its options before anything is written
    dev = _device(device)
    resolved = {m: resolve_backbone(preset.backbone(m), models_dir=store.models_dir) for m in uses(modality)}
    width = max(_width(r) for r in resolved.values()) if dev.type == "cuda" and precision == "auto" else 0
    precision = resolve_precision(precision, device=dev, width=width)
    cfg = run_config(corpus, preset=preset, modality=modality, fold=fold, seed=seed, options=options,
                     settings=settings, fold_options=fold_options, precision=precision)
    run_dir = store.run_dir(run_id(cfg))
    run = FinetuneRun(run_dir, cfg)
    if run.finished and not has_resume_state(run_dir) and run.damage() is None:
        return run  # nothing to write (a read-only store works)
    with write_errors_translated(run_dir):  # a read-only store: one line
        run_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(store.run_lock(run.run_id))):
        if run.finished:
            problem = run.damage()
            if problem is None:  # killed after result.json, before its checkpoints were gone
                remove_resume_state(run_dir)
                return run
            if has_resume_state(run_dir):
                log.warning("%s: damaged fine-tuning run (%s); finishing it again from its checkpoints", *problem)
            else:
                log.warning("%s: damaged fine-tuning run (%s); its checkpoints went when it finished, so it is "
                            "trained again from scratch", *problem)
            with write_errors_translated(run_dir / "result.json"):
                (run_dir / "result.json").unlink()
        atomic_write_text(run_dir / "config.json", json.dumps(cfg, indent=2, sort_keys=True))
        _train(corpus, run, fold=f, resolved=resolved, settings=settings, options=options, device=dev,
               precision=precision, num_workers=num_workers, progress=progress, callbacks=callbacks)
        remove_resume_state(run_dir)  # only now: a kill before this leaves a resumable or a finished run
    return run


def _train(corpus: Corpus, run: FinetuneRun, *, fold: Fold, resolved: dict[str, Any], settings: TrainSettings,
           options: EncoderOptions, device: torch.device, precision: str, num_workers: int, progress: bool,
           callbacks: Sequence[Callable[[dict[str, Any]], None]]) -> None:
    """Train (or resume) a run under its lock, then write its encoder weights, head and ``result.json``."""
    from featcache.heads import MultimodalHead, audio_head, save_head, text_head
    from featcache.train import AMP_DTYPES, class_weights, fit

    seed, modality = int(run.config["seed"]), run.modality
    torch.manual_seed(seed)
    encoders: dict[str, TextEncoder | AudioEncoder] = {m: load_encoder(r, options=options) for m, r in resolved.items()}
    n = len(corpus.labels)
    torch.manual_seed(seed)
    if modality == "text":
        head: nn.Module = text_head(encoders["text"].hidden_size, n)
    elif modality == "audio":
        head = audio_head(encoders["audio"].hidden_size, n)
    else:
        head = MultimodalHead(encoders["text"].hidden_size, encoders["audio"].hidden_size, n)
    model = EndToEnd(dict(encoders), head)
    labels = np.array([corpus.label_index(corpus.by_id(i).label) for i in fold.train])
    gen = torch.Generator().manual_seed(seed)
    kw: dict[str, Any] = {"num_workers": num_workers, "pin_memory": device.type == "cuda"}
    train_loader = _loader(corpus, list(fold.train), dict(encoders), batch_size=settings.batch_size, shuffle=True,
                           generator=gen, **kw)
    dev_loader = _loader(corpus, list(fold.dev), dict(encoders), batch_size=EVAL_BATCH_FACTOR * settings.batch_size,
                         shuffle=False, generator=None, **kw)
    result = fit(
        model,
        train_loader=train_loader,
        dev_loader=dev_loader,
        step=_step,
        n_classes=n,
        class_weights=class_weights(labels, n),
        lr=settings.lr,
        max_epochs=settings.max_epochs,
        patience=settings.patience,
        seed=seed,
        weight_decay=settings.weight_decay,
        grad_accum=settings.grad_accum,
        device=device,
        amp=precision != "fp32",
        amp_dtype=AMP_DTYPES.get(precision, "float16"),
        generator=gen,
        run_dir=run.path,
        progress=progress,
        lock=False,  # finetune holds the run's lock
        callbacks=callbacks,
    )
    model.cpu()
    weights = {}
    for m, enc in encoders.items():
        path = run.encoder_weights(m)
        _save_state(enc.model, path)
        weights[path.name] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    save_head(head, run.head_dir)
    res = {
        "best_epoch": result.best_epoch,
        "best_dev_acc": result.best_dev_acc,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "n_train": len(fold.train),
        "n_dev": len(fold.dev),
        "weights": weights,
    }
    atomic_write_json(run.path / "result.json", res, sort_keys=False)  # after the weights: the run is finished
