"""Training: balanced class weights, early stopping and a resumable, reproducible training loop.

The paper trains every classifier with a weighted cross-entropy loss and early stopping on the dev
set with patience 10 (Cohen et al. 2023, sections 4.1-4.3). :func:`fit` is one loop for both uses in
featcache: light heads on vectors read from the feature store, and whole encoder + head models. The
caller supplies ``step(model, batch) -> (logits, labels)``, which is the only part that knows what a
batch holds.

Checkpoints (``run_dir``) hold no pickle. After every completed epoch the run directory holds::

    state.json            epoch, settings, history, early stopping, optimizer scalars, finished flag
    last.safetensors      model weights after the epoch
    optimizer.safetensors the optimizer's tensors, flattened to "state.<param>.<name>" keys
    rng.safetensors       RNG states (torch CPU, the shuffling generator, CUDA, numpy's global MT19937)
    best.safetensors      model weights of the best epoch so far
    train_log.jsonl       one JSON line per epoch (default log file)
    fit.lock              held while a process trains the run; a second one waits, then resumes or returns

Every tensor file carries its epoch in its safetensors metadata. An epoch is committed as a small
journal: the new tensor files are first written completely under ``<name>.next`` (each under a
temporary name, fsynced, then renamed), then ``state.json`` is replaced atomically - the commit
point, listing the pending files - and finally each ``.next`` file is renamed over its final name.
A run killed at any moment therefore restarts from its last committed epoch: a restart finishes
the renames of a committed epoch, or discards the ``.next`` files of an uncommitted one. The
resumed run restores weights, optimizer, early stopping and RNG states bit for bit, so it ends with
exactly the same best weights and log (except the ``time`` field) as a run that was never stopped.
A caller that has stored what it keeps of a finished run may delete the files only resuming needs
(:func:`remove_resume_state`; :mod:`featcache.finetune` does).

The loop does not wait for the device per batch: batch losses stay on the device and are read once per
epoch, and dev logits are copied back once per pass (see :func:`_train_epoch`). Mixed precision is
``torch.autocast`` (:func:`resolve_precision` picks it for fine-tuning).
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from filelock import FileLock
from safetensors import SafetensorError, safe_open
from sklearn.metrics import recall_score
from sklearn.utils.class_weight import compute_class_weight
from torch import nn
from tqdm.auto import tqdm

from featcache import __version__
from featcache.cache.atomic import atomic_write, atomic_write_json
from featcache.errors import FeatcacheError
from featcache.heads import load_tensors, save_tensors

Step = Callable[[nn.Module, Any], tuple[torch.Tensor, torch.Tensor]]
"""``step(model, batch) -> (logits [batch, n_classes], labels [batch])``; ``batch`` is already on the device."""
Callback = Callable[[dict[str, Any]], None]
"""Called with the epoch's log record after the epoch is committed."""

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
POSTFIX_EVERY = 50
"""The batch progress bar shows the running training loss every this many batches (reading it waits
for the device, so it is not read per batch)."""
_TENSOR_FILES = (BEST_FILE, LAST_FILE, OPTIMIZER_FILE, RNG_FILE)
_NEXT = ".next"
_STATE_FORMAT = "featcache-fit"
_STATE_VERSION = 1


# ------------------------------------------------------------------------------------------ loss weights


def class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Balanced class weights ``n / (k * n_c)`` for a weighted cross-entropy loss.

    ``n`` is the number of training labels, ``k`` the number of classes present in them and ``n_c``
    the count of class ``c`` (scikit-learn's ``"balanced"`` weights), so every present class has the
    same total weight ``n / k`` and the weights average to 1 over the training samples. The paper
    says the weights are "proportional to the number of instances of each label"; taken literally
    that would favour the frequent classes, whereas the purpose of weighting the loss is to balance
    them, so the inverse frequency is used.

    Args:
        labels: integer class indices of the training samples, in ``[0, n_classes)``.
        n_classes: number of classes.

    Returns:
        A float32 tensor ``[n_classes]``. A class absent from ``labels`` gets weight 0 (and a warning).

    Raises:
        ValueError: ``labels`` is empty, not integral, or holds an index outside ``[0, n_classes)``.
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        raise ValueError("class weights need at least one training label")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    labels = labels.reshape(-1).astype(np.int64)
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels must lie in [0, {n_classes}), got [{labels.min()}, {labels.max()}]")
    present = np.unique(labels)
    weights = np.zeros(n_classes, dtype=np.float64)
    weights[present] = compute_class_weight("balanced", classes=present, y=labels)
    absent = sorted(set(range(n_classes)) - set(present.tolist()))
    if absent:
        warnings.warn(f"classes {absent} do not occur in the training labels; their loss weight is 0", stacklevel=2)
    return torch.tensor(weights, dtype=torch.float32)


def weighted_loss(weights: torch.Tensor | None) -> nn.CrossEntropyLoss:
    """The loss :func:`fit` uses: cross-entropy on logits, each sample weighted by its class weight.

    The batch loss is the weighted mean ``sum_i w[y_i] * nll_i / sum_i w[y_i]`` (torch's convention).

    Args:
        weights: per-class weights ``[n_classes]`` (e.g. :func:`class_weights`), or None for none.

    Returns:
        A ``torch.nn.CrossEntropyLoss``.
    """
    return nn.CrossEntropyLoss(weight=None if weights is None else torch.as_tensor(weights, dtype=torch.float32))


# ------------------------------------------------------------------------------------------ precision

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
"""Choices of :func:`resolve_precision` (``--precision`` of ``featcache finetune``)."""
AMP_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}
"""Autocast dtype of each mixed precision (:func:`fit`'s ``amp_dtype``)."""
AUTO_BF16_WIDTH = 768
"""``auto`` uses bfloat16 on CUDA for backbones at least this wide (BERT-base, wav2vec2-base and larger)."""


def resolve_precision(precision: str, *, device: torch.device, width: int) -> str:
    """The precision a run trains in: ``fp32``, ``bf16`` or ``fp16``.

    ``auto`` is float32 on a CPU, and on CUDA bfloat16 autocast for backbones of :data:`AUTO_BF16_WIDTH`
    or more hidden units (where the matrix products dominate), float32 for smaller ones: on an H200,
    bfloat16 autocast made MiniLM (384-d) at batch 16 slower than float32, since its casts cost more
    than its small matrix products gain. ``fp16`` adds a gradient scaler.

    Args:
        precision: One of :data:`PRECISIONS`.
        device: Where the run trains.
        width: The widest backbone's hidden size (only read for ``auto`` on CUDA).

    Returns:
        The resolved precision.

    Raises:
        FeatcacheError: An unknown precision, bf16 on a CUDA device without bfloat16, or a mixed precision
            on a device other than CUDA.
    """
    if precision not in PRECISIONS:
        raise FeatcacheError(f"--precision {precision!r}: use {', '.join(PRECISIONS)}")
    if precision == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return "bf16" if cuda_bf16 and width >= AUTO_BF16_WIDTH else "fp32"
    if precision != "fp32" and device.type != "cuda":
        raise FeatcacheError(f"--precision {precision}: mixed precision needs a CUDA device; use fp32 or auto")
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise FeatcacheError("--precision bf16: this CUDA device has no bfloat16; use fp16 or fp32")
    return precision


# ------------------------------------------------------------------------------------------ early stopping


class EarlyStopping:
    """Stops training after ``patience`` epochs without improvement of a monitored value.

    An epoch improves when its value is strictly better than the best so far (by more than
    ``min_delta``); a tie keeps the earlier epoch. NaN never improves.

    Args:
        patience: epochs without improvement after which :attr:`should_stop` becomes true.
        mode: ``"max"`` (e.g. accuracy) or ``"min"`` (e.g. loss).
        min_delta: the margin an improvement must exceed.

    Raises:
        ValueError: ``patience`` is not a positive integer or ``mode`` is unknown.
    """

    def __init__(self, patience: int = 10, *, mode: Literal["max", "min"] = "max", min_delta: float = 0.0) -> None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be a positive integer, got {patience!r}")
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.patience = patience
        self.mode = mode
        self.min_delta = float(min_delta)
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0

    def step(self, value: float, epoch: int) -> bool:
        """Record the value of ``epoch``.

        Args:
            value: the monitored value.
            epoch: the epoch number (stored as :attr:`best_epoch` on improvement).

        Returns:
            True when the epoch is the new best.
        """
        value = float(value)
        if self.best is None:
            improved = not math.isnan(value)
        elif self.mode == "max":
            improved = value > self.best + self.min_delta
        else:
            improved = value < self.best - self.min_delta
        if improved:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return improved

    @property
    def should_stop(self) -> bool:
        """True once ``patience`` epochs in a row did not improve."""
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        """The full state as a JSON-able dict."""
        return {
            "patience": self.patience,
            "mode": self.mode,
            "min_delta": self.min_delta,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state produced by :meth:`state_dict`.

        Raises:
            ValueError: the dict lacks a field or holds an invalid patience or mode.
        """
        try:
            restored = EarlyStopping(int(state["patience"]), mode=state["mode"], min_delta=float(state["min_delta"]))
            best = state["best"]
            restored.best = None if best is None else float(best)
            restored.best_epoch = None if state["best_epoch"] is None else int(state["best_epoch"])
            restored.bad_epochs = int(state["bad_epochs"])
        except KeyError as exc:
            raise ValueError(f"early-stopping state lacks {exc.args[0]!r}") from None
        self.__dict__.update(restored.__dict__)


# ------------------------------------------------------------------------------------------ steps, loaders, evaluation


def step_single(model: nn.Module, batch: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """A :data:`Step` for batches ``(vectors, labels)`` and a one-input model (e.g. a unimodal head)."""
    x, y = batch
    return model(x), y


def step_pair(model: nn.Module, batch: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """A :data:`Step` for batches ``(text_vectors, audio_vectors, labels)`` and a fusion head."""
    t, a, y = batch
    return model(t, a), y


class TensorBatches:
    """Mini-batches of in-memory tensors, sliced directly instead of sample by sample.

    A ``DataLoader`` over a ``TensorDataset`` indexes every sample and stacks them again; on cached
    vectors that bookkeeping costs more than the head's own forward pass. This iterable draws one
    permutation per epoch from :attr:`generator` (when shuffling) and yields index-selected slices.

    Attributes:
        tensors: The tensors, all with the same first dimension.
        batch_size: Samples per batch (the last batch may be smaller).
        shuffle: Reshuffle every epoch.
        generator: The shuffling generator (:func:`fit` re-seeds and checkpoints it), or None.
    """

    def __init__(self, tensors: Sequence[torch.Tensor], *, batch_size: int, shuffle: bool,
                 generator: torch.Generator | None) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not tensors:
            raise ValueError("tensor_loader needs at least one array")
        n = len(tensors[0])
        if any(len(t) != n for t in tensors):
            raise ValueError(f"arrays differ in length: {[len(t) for t in tensors]}")
        self.tensors = tuple(tensors)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator

    @property
    def n_samples(self) -> int:
        return len(self.tensors[0])

    def __len__(self) -> int:
        return math.ceil(self.n_samples / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        n = self.n_samples
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator)
            for i in range(0, n, self.batch_size):
                idx = order[i:i + self.batch_size]
                yield tuple(t.index_select(0, idx) for t in self.tensors)
        else:
            for i in range(0, n, self.batch_size):
                yield tuple(t[i:i + self.batch_size] for t in self.tensors)


def tensor_loader(
    *arrays: np.ndarray | torch.Tensor, batch_size: int, shuffle: bool = False, seed: int = 0
) -> TensorBatches:
    """Batches over in-memory arrays (e.g. cached vectors and their labels).

    Args:
        *arrays: arrays with the same first dimension; float arrays become float32 tensors,
            integer arrays int64 tensors.
        batch_size: samples per batch.
        shuffle: reshuffle every epoch, with a ``torch.Generator`` seeded from ``seed`` (which
            :func:`fit` finds on the loader, re-seeds and checkpoints).
        seed: seed of the shuffling generator.

    Returns:
        A :class:`TensorBatches`, iterated once per epoch.

    Raises:
        ValueError: No arrays, arrays of different lengths, or a bad batch size.
    """
    tensors = []
    for a in arrays:
        t = torch.as_tensor(a)
        t = t.long() if not (t.is_floating_point() or t.is_complex()) else t.float()
        tensors.append(t.contiguous())
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return TensorBatches(tensors, batch_size=batch_size, shuffle=shuffle, generator=generator)


def _to_device(batch: Any, device: torch.device) -> Any:
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _autocast(device: torch.device, amp: bool, dtype: torch.dtype) -> Any:
    return torch.autocast(device_type=device.type, dtype=dtype) if amp else nullcontext()


def _collect(
    model: nn.Module, loader: Iterable[Any], step: Step, device: torch.device, amp: bool, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float32, CPU) and labels (int64, CPU) over a loader, in eval mode without gradients.

    Batches stay on the device until the pass is over; then both tensors are copied once.
    """
    was_training = model.training
    model.eval()
    logits_all: list[torch.Tensor] = []
    labels_all: list[torch.Tensor] = []
    try:
        with torch.no_grad():
            for batch in loader:
                with _autocast(device, amp, dtype):
                    logits, labels = step(model, _to_device(batch, device))
                logits_all.append(logits.detach().float())
                labels_all.append(torch.as_tensor(labels, device=logits.device).detach().long().reshape(-1))
    finally:
        model.train(was_training)
    if not logits_all:
        raise ValueError("the loader yielded no batches")
    return torch.cat(logits_all).cpu(), torch.cat(labels_all).cpu()  # one read of the device per pass


def predict(
    model: nn.Module,
    loader: Iterable[Any],
    step: Step,
    *,
    device: str | torch.device = "cpu",
    amp: bool = False,
    amp_dtype: Literal["float16", "bfloat16"] = "float16",
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities over a loader, in eval mode and without gradients.

    Args:
        model: the model (already on ``device``); its train/eval mode is restored afterwards.
        loader: yields batches for ``step``.
        step: ``step(model, batch) -> (logits, labels)``.
        device: where batches are moved before ``step``.
        amp: run under ``torch.autocast`` (meant for CUDA).
        amp_dtype: autocast dtype, ``"float16"`` or ``"bfloat16"``.

    Returns:
        ``(probs float32 [n, n_classes], labels int64 [n])`` in loader order.

    Raises:
        ValueError: the loader is empty.
    """
    device = torch.device(device)
    dtype = torch.float16 if amp_dtype == "float16" else torch.bfloat16
    logits, labels = _collect(model, loader, step, device, amp, dtype)
    return logits.softmax(dim=-1).numpy().astype(np.float32), labels.numpy()


def _metrics(logits: torch.Tensor, labels: torch.Tensor, loss_fn: nn.Module) -> tuple[float, float, float]:
    """(weighted loss, accuracy, unweighted average recall over the classes present in ``labels``)."""
    loss = float(loss_fn(logits, labels))
    pred = logits.argmax(dim=-1).numpy()
    y = labels.numpy()
    acc = float((pred == y).mean())
    uar = float(recall_score(y, pred, labels=np.unique(y), average="macro", zero_division=0))
    return loss, acc, uar


# ------------------------------------------------------------------------------------------ optimizer I/O


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer's state dict into flat tensors and a JSON-able rest.

    Args:
        optimizer: the optimizer.

    Returns:
        ``(tensors, meta)``: tensors keyed ``"state.<param index>.<name>"`` (and
        ``"group.<index>.<name>"`` for tensor-valued hyperparameters); ``meta`` holds the non-tensor
        per-parameter state and the param groups' hyperparameters.
    """
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in sd["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"state.{idx}.{name}"] = value
            else:
                scalars.setdefault(str(idx), {})[name] = value
    groups: list[dict[str, Any]] = []
    for i, group in enumerate(sd["param_groups"]):
        plain: dict[str, Any] = {}
        for name, value in group.items():
            if torch.is_tensor(value):
                tensors[f"group.{i}.{name}"] = value
            else:
                plain[name] = list(value) if isinstance(value, tuple) else value
        groups.append(plain)
    return tensors, {"state": scalars, "param_groups": groups}


def optimizer_from_tensors(
    optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]
) -> None:
    """Load the output of :func:`optimizer_to_tensors` into ``optimizer`` (same parameters, same order).

    Raises:
        ValueError: a tensor key is malformed or the state does not fit the optimizer.
    """
    state: dict[int, dict[str, Any]] = {}
    groups = [dict(g) for g in meta["param_groups"]]
    for key, value in tensors.items():
        parts = key.split(".", 2)
        if len(parts) != 3 or parts[0] not in ("state", "group"):
            raise ValueError(f"malformed optimizer tensor key {key!r}")
        if parts[0] == "state":
            state.setdefault(int(parts[1]), {})[parts[2]] = value
        else:
            groups[int(parts[1])][parts[2]] = value
    for idx, entry in meta["state"].items():
        state.setdefault(int(idx), {}).update(entry)
    current = optimizer.param_groups
    if len(current) != len(groups):
        raise ValueError(f"optimizer has {len(current)} param groups, the saved state {len(groups)}")
    for group, now in zip(groups, current):
        for name, value in group.items():
            if isinstance(value, list) and name != "params" and isinstance(now.get(name), tuple):
                group[name] = tuple(value)
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# ------------------------------------------------------------------------------------------ run directory


@dataclass
class FitResult:
    """The outcome of :func:`fit`.

    Attributes:
        best_epoch: the epoch (1-based) with the best dev accuracy; the model holds its weights.
        best_dev_acc: dev accuracy of that epoch.
        epochs_run: epochs completed in total (across resumptions).
        history: one record per epoch (the lines of the training log).
        run_dir: the checkpoint directory, or None.
        stopped_early: True when training ended because ``patience`` epochs brought no improvement.
    """

    best_epoch: int
    best_dev_acc: float
    epochs_run: int
    history: list[dict[str, Any]] = field(default_factory=list)
    run_dir: Path | None = None
    stopped_early: bool = False


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


def _rng_tensors(generator: torch.Generator | None, device: torch.device) -> dict[str, torch.Tensor]:
    out = {"torch_cpu": torch.get_rng_state()}
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # wav2vec 2.0 draws its SpecAugment masks here
    if kind == "MT19937":
        out["numpy.keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
        out["numpy.rest"] = torch.tensor([float(pos), float(has_gauss), float(gauss)], dtype=torch.float64)
    if generator is not None:
        out["generator"] = generator.get_state()
    if device.type == "cuda" and torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"cuda.{i}"] = s
    return out


def _set_rng(
    tensors: Mapping[str, torch.Tensor], generator: torch.Generator | None, device: torch.device, path: Path
) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    if "numpy.keys" in tensors:
        pos, has_gauss, gauss = tensors["numpy.rest"].tolist()
        np.random.set_state(("MT19937", tensors["numpy.keys"].numpy().astype(np.uint32), int(pos), int(has_gauss),
                             gauss))
    if generator is not None:
        if "generator" not in tensors:
            raise FeatcacheError(
                f"{path} holds no shuffling-generator state but the training loader has a generator; "
                "delete the run directory to start over"
            )
        generator.set_state(tensors["generator"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("cuda.")), key=lambda k: int(k[5:]))]
    if cuda and device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def _adamw(params: Sequence[nn.Parameter], *, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with the fused kernel where torch has one for the parameters (CPU and CUDA floats): the
    same update as the loop implementation, several times faster for the small heads."""
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float16, torch.bfloat16)
                for p in params)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


def _canonical(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True))


def _settings(
    *,
    model: nn.Module,
    train_loader: Iterable[Any],
    dev_loader: Iterable[Any],
    n_classes: int,
    weights: torch.Tensor | None,
    lr: float,
    weight_decay: float,
    max_epochs: int,
    patience: int | None,
    grad_accum: int,
    max_grad_norm: float | None,
    amp: bool,
    amp_dtype: str,
    seed: int,
) -> dict[str, Any]:
    """Everything that changes the numbers of a run (checked when a run directory is reused)."""

    def size(loader: Iterable[Any]) -> int | None:
        if isinstance(loader, TensorBatches):
            return loader.n_samples
        ds = getattr(loader, "dataset", None)
        try:
            return len(ds) if ds is not None else None
        except TypeError:
            return None

    return _canonical(
        {
            "seed": seed,
            "lr": lr,
            "weight_decay": weight_decay,
            "max_epochs": max_epochs,
            "patience": patience,
            "grad_accum": grad_accum,
            "max_grad_norm": max_grad_norm,
            "n_classes": n_classes,
            "class_weights": None if weights is None else [float(w) for w in weights.tolist()],
            "amp": amp,
            "amp_dtype": amp_dtype if amp else None,
            "trainable": [[n, list(p.shape)] for n, p in model.named_parameters() if p.requires_grad],
            "n_train": size(train_loader),
            "n_dev": size(dev_loader),
        }
    )


# ------------------------------------------------------------------------------------------ the loop


def fit(
    model: nn.Module,
    *,
    train_loader: Iterable[Any],
    dev_loader: Iterable[Any],
    step: Step,
    n_classes: int,
    class_weights: torch.Tensor | np.ndarray | None,
    lr: float,
    max_epochs: int,
    patience: int | None = 10,
    seed: int,
    weight_decay: float = 0.01,
    grad_accum: int = 1,
    max_grad_norm: float | None = None,
    device: str | torch.device = "cpu",
    amp: bool | None = None,
    amp_dtype: Literal["float16", "bfloat16"] = "float16",
    generator: torch.Generator | None = None,
    run_dir: Path | None = None,
    progress: bool = True,
    log_file: Path | None = None,
    callbacks: Sequence[Callback] = (),
    lock: bool = True,
) -> FitResult:
    """Train ``model`` with AdamW and weighted cross-entropy, early-stopping on dev accuracy.

    Each epoch trains on ``train_loader`` and evaluates on ``dev_loader``; the epoch with the best dev
    accuracy (ties keep the earlier one) is kept, and training stops after ``patience`` epochs without
    improvement or after ``max_epochs``. On return the model holds the best epoch's weights.

    Reproducibility: ``torch.manual_seed(seed)`` and ``numpy.random.seed(seed)`` (wav2vec 2.0's training
    masks come from numpy's global generator) are called at the start and the shuffling generator
    (``generator``, else ``train_loader.generator`` when the loader has one) is re-seeded with
    ``seed``; shuffling without a generator draws from the seeded global RNG. Build the model after
    ``torch.manual_seed(seed)`` for its initial weights to be reproducible too. On CPU the same
    arguments give bitwise identical weights. Randomness inside ``step`` or the model must come from
    torch's generators or numpy's global one to be reproduced and checkpointed.

    With ``run_dir``, every completed epoch is checkpointed (see the module docstring). Calling fit
    again with the same arguments resumes an interrupted run from its last completed epoch and gives
    exactly the result of an uninterrupted run; calling it on a finished run loads the best weights
    and returns the stored result without training.

    Args:
        model: the model; moved to ``device``. Only parameters with ``requires_grad`` are optimised.
        train_loader: yields training batches (re-iterated every epoch).
        dev_loader: yields dev batches.
        step: ``step(model, batch) -> (logits, labels)``; fit moves the batch's tensors to ``device`` first.
        n_classes: number of classes.
        class_weights: per-class loss weights (:func:`class_weights`), or None for an unweighted loss.
            The dev loss uses the same weights.
        lr: learning rate.
        max_epochs: upper bound on epochs.
        patience: early-stopping patience in epochs (the paper: 10); None disables early stopping.
        seed: seed of all randomness in the run.
        weight_decay: AdamW's decoupled weight decay.
        grad_accum: number of batches whose gradients are accumulated per optimiser step (the loss of
            each is divided by the size of its group, so a step sees the mean over the group).
        max_grad_norm: clip the gradient norm to this value before each step (None: no clipping).
        device: where to train.
        amp: mixed precision (``torch.autocast``, plus a ``GradScaler`` for float16); None turns it on
            exactly when ``device`` is CUDA.
        amp_dtype: autocast dtype, ``"float16"`` or ``"bfloat16"``.
        generator: the ``torch.Generator`` the training loader shuffles with, if not ``train_loader.generator``.
        run_dir: checkpoint directory (created if missing), or None to keep everything in memory.
        progress: show tqdm bars (the running training loss every :data:`POSTFIX_EVERY` batches, dev
            accuracy per epoch).
        log_file: JSONL log, one line per epoch with ``epoch, train_loss, dev_loss, dev_acc, dev_uar,
            time, improved, best_epoch, best_dev_acc, lr``; default ``run_dir/train_log.jsonl``
            (no log without ``run_dir``).
        callbacks: called with each epoch's record once the epoch is committed.
        lock: hold ``run_dir/fit.lock`` while training, so that a second fit of the run waits and then
            resumes or returns; False when the caller already holds a lock that covers ``run_dir``
            (:func:`featcache.finetune.finetune` does, beside the run folder).

    Returns:
        A :class:`FitResult`.

    Raises:
        ValueError: invalid arguments, or an empty loader.
        FeatcacheError: the loss became non-finite, or ``run_dir`` holds a run with other settings
            or an unreadable checkpoint (one line naming the file and the fix).
    """
    if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1:
        raise ValueError(f"max_epochs must be a positive integer, got {max_epochs!r}")
    if isinstance(grad_accum, bool) or not isinstance(grad_accum, int) or grad_accum < 1:
        raise ValueError(f"grad_accum must be a positive integer, got {grad_accum!r}")
    if amp_dtype not in ("float16", "bfloat16"):
        raise ValueError(f"amp_dtype must be 'float16' or 'bfloat16', got {amp_dtype!r}")
    device = torch.device(device)
    use_amp = device.type == "cuda" if amp is None else bool(amp)
    if use_amp and device.type != "cuda":
        raise ValueError(f"mixed precision needs a CUDA device, got {device}")
    dtype = torch.float16 if amp_dtype == "float16" else torch.bfloat16
    weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
    if weights is not None and weights.shape != (n_classes,):
        raise ValueError(f"class_weights must have shape ({n_classes},), got {tuple(weights.shape)}")
    stopper = EarlyStopping(patience if patience is not None else max_epochs + 1)
    generator = generator if generator is not None else getattr(train_loader, "generator", None)

    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    optimizer = _adamw(params, lr=lr, weight_decay=weight_decay)
    scaler = torch.amp.GradScaler("cuda") if use_amp and dtype == torch.float16 else None
    loss_fn = weighted_loss(weights).to(device)
    eval_loss_fn = weighted_loss(weights)
    settings = _settings(
        model=model,
        train_loader=train_loader,
        dev_loader=dev_loader,
        n_classes=n_classes,
        weights=weights,
        lr=lr,
        weight_decay=weight_decay,
        max_epochs=max_epochs,
        patience=patience,
        grad_accum=grad_accum,
        max_grad_norm=max_grad_norm,
        amp=use_amp,
        amp_dtype=amp_dtype,
        seed=seed,
    )

    torch.manual_seed(seed)
    np.random.seed(seed)  # numpy's global generator too: wav2vec 2.0 draws its SpecAugment masks from it
    if generator is not None:
        generator.manual_seed(seed)

    run_dir = Path(run_dir) if run_dir is not None else None
    with _run_lock(run_dir if lock else None):
        log_path = Path(log_file) if log_file is not None else (run_dir / LOG_FILE if run_dir is not None else None)
        history: list[dict[str, Any]] = []
        best_state: dict[str, torch.Tensor] | None = None
        start_epoch = 0
        finished = False
        stopped_early = False

        if run_dir is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            state = _recover(run_dir)
            if state is not None:
                if state["settings"] != settings:
                    diff = sorted(
                        k for k in set(settings) | set(state["settings"]) if settings.get(k) != state["settings"].get(k)
                    )
                    raise FeatcacheError(
                        f"{run_dir / STATE_FILE} was written by a run with other settings ({', '.join(diff)}); "
                        "pass another run_dir or delete it to start over"
                    )
                history = list(state["history"])
                start_epoch = int(state["epoch"])
                finished = bool(state["finished"])
                stopped_early = bool(state["stopped_early"])
                stopper.load_state_dict(state["early_stopping"])
                best_state = load_tensors(run_dir / BEST_FILE, what="best checkpoint")
                if not finished:
                    _load_model(model, load_tensors(run_dir / LAST_FILE, what="last checkpoint"), run_dir / LAST_FILE)
                    try:
                        optimizer_from_tensors(
                            optimizer,
                            load_tensors(run_dir / OPTIMIZER_FILE, what="optimizer checkpoint"),
                            state["optimizer"],
                        )
                    except (ValueError, KeyError, RuntimeError) as exc:
                        reason = " ".join(str(exc).split())[:200]
                        raise FeatcacheError(
                            f"optimizer checkpoint does not fit the model: {run_dir / OPTIMIZER_FILE} ({reason}); "
                            "delete the run directory to start over"
                        ) from None
                    if scaler is not None and state.get("scaler"):
                        scaler.load_state_dict(state["scaler"])
                    _set_rng(
                        load_tensors(run_dir / RNG_FILE, what="RNG checkpoint"), generator, device, run_dir / RNG_FILE
                    )
            if log_path is not None:
                _write_log(log_path, history)
        elif log_path is not None:
            _write_log(log_path, [])

        epoch_bar = tqdm(
            total=max_epochs, initial=start_epoch, desc="epochs", unit="epoch", disable=not progress or finished
        )
        try:
            epoch = start_epoch
            while not finished:
                epoch += 1
                t0 = time.perf_counter()
                train_loss = _train_epoch(
                    model,
                    train_loader,
                    step,
                    loss_fn=loss_fn,
                    optimizer=optimizer,
                    scaler=scaler,
                    params=params,
                    grad_accum=grad_accum,
                    max_grad_norm=max_grad_norm,
                    device=device,
                    amp=use_amp,
                    dtype=dtype,
                    epoch=epoch,
                    progress=progress,
                )
                logits, labels = _collect(model, dev_loader, step, device, use_amp, dtype)
                dev_loss, dev_acc, dev_uar = _metrics(logits, labels, eval_loss_fn)
                improved = stopper.step(dev_acc, epoch)
                if improved:
                    best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                stopped_early = stopper.should_stop and patience is not None
                finished = stopped_early or epoch >= max_epochs
                record = {
                    "epoch": epoch,
                    "train_loss": _finite(train_loss),
                    "dev_loss": _finite(dev_loss),
                    "dev_acc": dev_acc,
                    "dev_uar": dev_uar,
                    "time": round(time.perf_counter() - t0, 4),
                    "improved": improved,
                    "best_epoch": stopper.best_epoch,
                    "best_dev_acc": stopper.best,
                    "lr": optimizer.param_groups[0]["lr"],
                }
                history.append(record)
                if run_dir is not None:
                    _commit(
                        run_dir,
                        epoch=epoch,
                        model=model,
                        optimizer=optimizer,
                        scaler=scaler,
                        best_state=best_state if improved else None,
                        stopper=stopper,
                        history=history,
                        settings=settings,
                        finished=finished,
                        stopped_early=stopped_early,
                        generator=generator,
                        device=device,
                    )
                if log_path is not None:
                    _append_log(log_path, record)
                epoch_bar.update(1)
                epoch_bar.set_postfix(dev_acc=f"{dev_acc:.3f}", best=f"{stopper.best or 0.0:.3f}", refresh=False)
                for callback in callbacks:
                    callback(dict(record))
        finally:
            epoch_bar.close()

        if best_state is None or stopper.best_epoch is None:
            raise FeatcacheError("no epoch produced a usable dev accuracy; check the dev data and the step function")
        _load_model(model, best_state, run_dir / BEST_FILE if run_dir is not None else None)
        return FitResult(
            best_epoch=stopper.best_epoch,
            best_dev_acc=float(stopper.best),  # type: ignore[arg-type]
            epochs_run=len(history),
            history=history,
            run_dir=run_dir,
            stopped_early=stopped_early,
        )


def has_resume_state(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds any of :data:`RESUME_FILES` (or a ``.next`` file of one).

    Args:
        run_dir: A run directory of :func:`fit`.

    Returns:
        True when a resume file is there.
    """
    return any((run_dir / name).exists() or (run_dir / (name + _NEXT)).exists() for name in RESUME_FILES)


def remove_resume_state(run_dir: Path) -> list[Path]:
    """Delete what only resuming a run needs: :data:`RESUME_FILES`, their ``.next`` files and stray
    temporary files; the training log stays.

    ``state.json`` goes first: without it the other files are leftovers that :func:`fit` discards, so a
    kill at any moment of the deletion leaves nothing a resumed fit would misread.

    Args:
        run_dir: A run directory of :func:`fit`.

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
    """Hold ``run_dir``'s lock file, so a second fit of the same run waits and then finds it finished."""
    if run_dir is None:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(run_dir / LOCK_FILE)):
        yield


def _load_model(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path | None) -> None:
    try:
        model.load_state_dict(dict(state), strict=True)
    except RuntimeError as exc:
        reason = " ".join(str(exc).split())[:200]
        raise FeatcacheError(
            f"checkpoint does not fit the model: {path} ({reason}); delete the run directory to start over"
        ) from None


def _train_epoch(
    model: nn.Module,
    loader: Iterable[Any],
    step: Step,
    *,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    params: Sequence[nn.Parameter],
    grad_accum: int,
    max_grad_norm: float | None,
    device: torch.device,
    amp: bool,
    dtype: torch.dtype,
    epoch: int,
    progress: bool,
) -> float:
    """One pass over ``loader`` with gradient accumulation; returns the sample-weighted mean batch loss.

    Nothing waits for the device per batch: the batch losses stay on it and are read once, after the
    pass (a non-finite one then ends the run, naming its batch); the progress bar shows the running
    loss every :data:`POSTFIX_EVERY` batches.
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    try:
        n_batches: int | None = len(loader)  # type: ignore[arg-type]
    except TypeError:
        n_batches = None

    def optimiser_step() -> None:
        if scaler is not None:
            if max_grad_norm is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
        else:
            if max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    losses: list[torch.Tensor] = []  # stay on the device: read once, at the end of the epoch
    sizes: list[int] = []
    pending = 0
    bar = tqdm(loader, total=n_batches, desc=f"epoch {epoch}", leave=False, disable=not progress)
    for i, batch in enumerate(bar):
        with _autocast(device, amp, dtype):
            logits, labels = step(model, _to_device(batch, device))
        labels = torch.as_tensor(labels, device=logits.device).long().reshape(-1)
        loss = loss_fn(logits.float(), labels)
        group_start = (i // grad_accum) * grad_accum
        group = grad_accum if n_batches is None else min(grad_accum, n_batches - group_start)
        scaled = loss / group
        (scaler.scale(scaled) if scaler is not None else scaled).backward()
        pending += 1
        if pending == group:
            optimiser_step()
            pending = 0
        losses.append(loss.detach())
        sizes.append(labels.numel())
        if progress and (i + 1) % POSTFIX_EVERY == 0:  # one read of the device per POSTFIX_EVERY batches
            bar.set_postfix(loss=f"{float(torch.stack(losses[-POSTFIX_EVERY:]).mean()):.4f}", refresh=False)
    bar.close()
    if pending:
        optimiser_step()
    if not losses:
        raise ValueError("the training loader yielded no batches")
    values = torch.stack(losses).double().cpu().tolist()
    bad = next((j for j, v in enumerate(values) if not math.isfinite(v)), None)
    if bad is not None:
        raise FeatcacheError(
            f"the training loss became {values[bad]} at epoch {epoch}, batch {bad + 1}; lower the learning rate"
        )
    return sum(v * n for v, n in zip(values, sizes)) / sum(sizes)


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
