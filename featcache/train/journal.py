"""The checkpoint journal of a run directory: what :func:`~featcache.train.fit` resumes from.

Checkpoints (``run_dir``) hold no pickle. After every completed epoch the run directory holds::

    state.json            epoch, settings, history, early stopping, optimizer scalars, finished flag
    last.safetensors      model weights after the epoch
    optimizer.safetensors the optimizer's tensors, flattened to "state.<param>.<name>" keys
    rng.safetensors       RNG states (torch CPU, the shuffling generator, CUDA, numpy's global MT19937)
    best.safetensors      model weights of the best epoch so far
    train_log.jsonl       one JSON line per epoch (default log file)
    fit.lock              held while a process trains the run; a second one waits, then resumes or returns

Every tensor file carries its epoch in its safetensors metadata. An epoch is committed as a small
journal (:func:`_commit`): the new tensor files are first written completely under ``<name>.next``
(each under a temporary name, fsynced, then renamed), then ``state.json`` is replaced atomically - the
commit point, listing the pending files - and finally each ``.next`` file is renamed over its final
name. A run killed at any moment therefore restarts from its last committed epoch (:func:`resume`): a
restart finishes the renames of a committed epoch, or discards the ``.next`` files of an uncommitted
one. The resumed run restores weights, optimizer, early stopping and RNG states bit for bit, so it ends
with exactly the same best weights and log (except the ``time`` field) as a run that was never stopped.
A caller that has stored what it keeps of a finished run may delete the files only resuming needs
(:func:`remove_resume_state`; :mod:`featcache.finetune` does).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from featcache import __version__
from featcache.cache.atomic import atomic_write, atomic_write_json
from featcache.cache.locks import held_lock
from featcache.errors import FeatcacheError
from featcache.heads import load_tensors, save_tensors
from featcache.train.objective import EarlyStopping
from featcache.train.state import (
    _rng_tensors,
    _set_rng,
    optimizer_from_tensors,
    optimizer_to_tensors,
)

STATE_FILE = "state.json"
BEST_FILE = "best.safetensors"
LAST_FILE = "last.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"
LOG_FILE = "train_log.jsonl"
LOCK_FILE = "fit.lock"
RESUME_FILES = (STATE_FILE, LAST_FILE, OPTIMIZER_FILE, RNG_FILE, BEST_FILE)
"""What only resuming needs: a caller that has stored what it keeps of a finished run may delete these
(:func:`remove_resume_state`); ``state.json`` comes first, since it is the commit record."""
_TENSOR_FILES = (BEST_FILE, LAST_FILE, OPTIMIZER_FILE, RNG_FILE)
_NEXT = ".next"
_STATE_FORMAT = "featcache-fit"
_STATE_VERSION = 1


def _file_epoch(path: Path) -> int | None:
    """The epoch recorded in a checkpoint file's metadata (None when unreadable)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return int(meta["epoch"])
    except (SafetensorError, OSError, KeyError, ValueError):
        return None


def _read_state(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())
        raise FeatcacheError(
            f"training state is corrupt: {path} ({reason}); delete the run directory to start over"
        ) from None
    if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
        raise FeatcacheError(f"not a training state: {path}; pass another run_dir or delete it to start over")
    if state.get("version") != _STATE_VERSION:
        raise FeatcacheError(
            f"training state version {state.get('version')!r} is not supported: {path}; delete it to start over"
        )
    return state


def _recover(run_dir: Path) -> dict[str, Any] | None:
    """Bring ``run_dir`` to its last committed epoch; return its state (None when nothing was committed)."""
    for stray in run_dir.glob(".*.tmp-*"):
        stray.unlink()
    state_path = run_dir / STATE_FILE
    state = _read_state(state_path)
    if state is None:
        for name in _TENSOR_FILES:
            for p in (run_dir / name, run_dir / (name + _NEXT)):
                p.unlink(missing_ok=True)
        return None
    epoch = int(state["epoch"])
    for name in state.get("pending", []):
        nxt = run_dir / (name + _NEXT)
        if nxt.exists() and _file_epoch(nxt) == (state["best_epoch"] if name == BEST_FILE else epoch):
            os.replace(nxt, run_dir / name)
    for name in _TENSOR_FILES:
        (run_dir / (name + _NEXT)).unlink(missing_ok=True)
    expected = {LAST_FILE: epoch, OPTIMIZER_FILE: epoch, RNG_FILE: epoch, BEST_FILE: state["best_epoch"]}
    for name, want in expected.items():
        got = _file_epoch(run_dir / name)
        if got != want:
            raise FeatcacheError(
                f"checkpoint {run_dir / name} is for epoch {got}, {STATE_FILE} says {want}; "
                "delete the run directory to start over"
            )
    return state


def _write_log(path: Path, history: Sequence[Mapping[str, Any]]) -> None:
    text = "".join(json.dumps(rec, sort_keys=True) + "\n" for rec in history)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_log(path: Path) -> list[dict[str, Any]]:
    """The records of a training log (``train_log.jsonl``); a line that does not read (the last one of a
    killed writer) ends it.

    Args:
        path: The log file.

    Returns:
        The records in order; empty when the file is missing or unreadable.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            break
        if not isinstance(record, dict):
            break
        records.append(record)
    return records


def _append_log(path: Path, record: Mapping[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def has_resume_state(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds any of :data:`RESUME_FILES` (or a ``.next`` file of one).

    Args:
        run_dir: A run directory of :func:`~featcache.train.fit`.

    Returns:
        True when a resume file is there.
    """
    return any((run_dir / name).exists() or (run_dir / (name + _NEXT)).exists() for name in RESUME_FILES)


def remove_resume_state(run_dir: Path) -> list[Path]:
    """Delete what only resuming a run needs: :data:`RESUME_FILES`, their ``.next`` files and stray
    temporary files; the training log stays.

    ``state.json`` goes first: without it the other files are leftovers that :func:`~featcache.train.fit` discards, so a
    kill at any moment of the deletion leaves nothing a resumed fit would misread.

    Args:
        run_dir: A run directory of :func:`~featcache.train.fit`.

    Returns:
        The paths deleted.
    """
    removed = []
    for path in (*(run_dir / n for n in RESUME_FILES), *(run_dir / (n + _NEXT) for n in RESUME_FILES),
                 *run_dir.glob(".*.tmp-*")):
        if path.exists():
            path.unlink()
            removed.append(path)
    return removed


@contextmanager
def _run_lock(run_dir: Path | None) -> Iterator[None]:
    """Hold ``run_dir``'s lock file, so a second fit of the same run waits and then finds it finished.

    Raises:
        StoreError: The lock file is a symbolic link (one line naming it: remove it).
    """
    if run_dir is None:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    with held_lock(run_dir / LOCK_FILE):
        yield


def _load_model(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path | None) -> None:
    try:
        model.load_state_dict(dict(state), strict=True)
    except RuntimeError as exc:
        reason = " ".join(str(exc).split())[:200]
        raise FeatcacheError(
            f"checkpoint does not fit the model: {path} ({reason}); delete the run directory to start over"
        ) from None


@dataclass
class Resumed:
    """Where a run goes on from: its last committed epoch, or the start when nothing was committed.

    Attributes:
        epoch: The last committed epoch (0: none).
        history: The log records of the committed epochs.
        finished: The run had finished; only its best weights were loaded.
        stopped_early: It finished because early stopping ended it.
        best_state: The best epoch's weights, or None before the first commit.
    """

    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False
    stopped_early: bool = False
    best_state: dict[str, torch.Tensor] | None = None


def resume(
    run_dir: Path,
    *,
    settings: Mapping[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    stopper: EarlyStopping,
    generator: torch.Generator | None,
    device: torch.device,
) -> Resumed:
    """Bring ``run_dir`` to its last committed epoch (created if missing) and restore the run from it.

    The early stopping state is always restored; the model's last weights, the optimizer, the gradient
    scaler and the RNG states (torch, numpy, CUDA and ``generator``) only for a run that has not
    finished, since a finished one only loads its best weights.

    Args:
        run_dir: The run directory.
        settings: The run's settings; they must equal those the committed run was written with.
        model: The model; it gets the last committed weights.
        optimizer: The optimizer over the model's trainable parameters; it gets the saved state.
        scaler: The float16 gradient scaler, or None.
        stopper: The early stopping; it gets the saved state.
        generator: The training loader's shuffling generator, or None.
        device: Where the run trains (CUDA RNG states are restored only there).

    Returns:
        A :class:`Resumed` (at epoch 0 when nothing was committed).

    Raises:
        FeatcacheError: ``run_dir`` holds a run with other settings, or a checkpoint that is unreadable,
            of another epoch or does not fit the model or optimizer (one line naming the file and the fix).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    state = _recover(run_dir)
    if state is None:
        return Resumed()
    if state["settings"] != settings:
        diff = sorted(k for k in set(settings) | set(state["settings"]) if settings.get(k) != state["settings"].get(k))
        raise FeatcacheError(
            f"{run_dir / STATE_FILE} was written by a run with other settings ({', '.join(diff)}); "
            "pass another run_dir or delete it to start over"
        )
    history = list(state["history"])
    epoch = int(state["epoch"])
    finished = bool(state["finished"])
    stopped_early = bool(state["stopped_early"])
    stopper.load_state_dict(state["early_stopping"])
    best_state = load_tensors(run_dir / BEST_FILE, what="best checkpoint")
    if not finished:
        _load_model(model, load_tensors(run_dir / LAST_FILE, what="last checkpoint"), run_dir / LAST_FILE)
        try:
            optimizer_from_tensors(
                optimizer, load_tensors(run_dir / OPTIMIZER_FILE, what="optimizer checkpoint"), state["optimizer"]
            )
        except (ValueError, KeyError, RuntimeError) as exc:
            reason = " ".join(str(exc).split())[:200]
            raise FeatcacheError(
                f"optimizer checkpoint does not fit the model: {run_dir / OPTIMIZER_FILE} ({reason}); "
                "delete the run directory to start over"
            ) from None
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        _set_rng(load_tensors(run_dir / RNG_FILE, what="RNG checkpoint"), generator, device, run_dir / RNG_FILE)
    return Resumed(epoch=epoch, history=history, finished=finished, stopped_early=stopped_early,
                   best_state=best_state)


def _commit(
    run_dir: Path,
    *,
    epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    best_state: Mapping[str, torch.Tensor] | None,
    stopper: EarlyStopping,
    history: Sequence[Mapping[str, Any]],
    settings: Mapping[str, Any],
    finished: bool,
    stopped_early: bool,
    generator: torch.Generator | None,
    device: torch.device,
) -> None:
    """Checkpoint a completed epoch: ``.next`` files, then ``state.json`` (the commit), then renames."""
    meta = {"format": "pt", "epoch": str(epoch)}
    pending: list[str] = []

    def stage(name: str, tensors: Mapping[str, torch.Tensor], file_meta: dict[str, str]) -> None:
        save_tensors(run_dir / (name + _NEXT), dict(tensors), metadata=file_meta)
        pending.append(name)

    if best_state is not None:
        stage(BEST_FILE, best_state, meta)
    stage(LAST_FILE, model.state_dict(), meta)
    opt_tensors, opt_meta = optimizer_to_tensors(optimizer)
    stage(OPTIMIZER_FILE, opt_tensors, meta)
    stage(RNG_FILE, _rng_tensors(generator, device), meta)
    state = {
        "format": _STATE_FORMAT,
        "version": _STATE_VERSION,
        "featcache_version": __version__,
        "epoch": epoch,
        "finished": finished,
        "stopped_early": stopped_early,
        "best_epoch": stopper.best_epoch,
        "best_dev_acc": stopper.best,
        "early_stopping": stopper.state_dict(),
        "history": list(history),
        "settings": dict(settings),
        "optimizer": opt_meta,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "pending": pending,
    }
    atomic_write_json(run_dir / STATE_FILE, state)
    for name in pending:
        os.replace(run_dir / (name + _NEXT), run_dir / name)
