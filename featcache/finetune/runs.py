"""A fine-tuning run's identity and folder: :func:`run_config` and :func:`run_id` (what names a run),
:data:`LOOP_VERSION`, :class:`FinetuneRun` and its damage checks, :func:`run_differences` (how a run
differs from the one a study would make), and the store's runs (:func:`find_runs`, :func:`list_runs`).
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from featcache.backbones.encoders import EncoderOptions
from featcache.buckets import POOL_BATCHES
from featcache.cache import FeatureStore, digest
from featcache.cache.integrity import read_json_object, sha256_file
from featcache.data import Corpus
from featcache.errors import DamagedError
from featcache.folds import make_fold
from featcache.paper import TrainSettings, uses
from featcache.presets import Preset

log = logging.getLogger("featcache.finetune")

_RUN_NAME = re.compile(r"^ft-(?P<modality>[a-z]+)-f(?P<fold>\d+)-s(?P<seed>\d+)-[0-9a-f]+$")


LOOP_VERSION = 2
"""The fine-tuning loop's version, part of every run's identity: 1 drew batches uniformly at random
(featcache before 0.x's length bucketing); 2 draws them with :class:`~featcache.buckets.LengthBatchSampler`.
Runs of another version are not found (:func:`find_runs`) and are listed as such by ``featcache cache ls``."""


def loop_identity() -> dict[str, Any]:
    """The loop settings in a run's identity (:data:`LOOP_VERSION` and how batches are drawn)."""
    return {"version": LOOP_VERSION, "batching": "length-pools", "pool_batches": POOL_BATCHES}


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

        Checks ``config.json`` (it must hold this run's config), ``result.json``, the head (its files' SHA-256
        as ``result.json`` records them) and the encoder weights (their size as ``result.json`` records it;
        with ``deep`` also their SHA-256).

        Args:
            deep: Hash the encoder weights (what ``featcache cache verify`` does).

        Returns:
            ``(file, problem)`` or None.
        """
        from featcache.heads import HeadFileError, load_head
        from featcache.heads.record import record_problem

        cfg_path = self.path / "config.json"
        stored, problem = read_json_object(cfg_path)
        if problem:
            return cfg_path, problem
        if stored != self.config:
            return cfg_path, "holds another run's config"
        result, problem = read_json_object(self.path / "result.json")
        if problem:
            return self.path / "result.json", problem
        if isinstance(result.get("files"), dict):  # the head's files' SHA-256 (runs finished before: not recorded)
            found = record_problem({"files": result["files"]}, folder=self.path, place={})
            if found is not None:
                return found
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
    return {**_fold_defaults(), **(fold_options if isinstance(fold_options, dict) else {})}


@functools.cache
def _fold_defaults() -> dict[str, Any]:
    """:func:`featcache.folds.make_fold`'s keyword defaults (read once)."""
    import inspect

    return {k: p.default for k, p in inspect.signature(make_fold).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


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

