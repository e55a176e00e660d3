"""Steps, loaders and evaluation: what a batch holds, in-memory mini-batches, dev passes and predictions.

The caller of :func:`~featcache.train.fit` supplies ``step(model, batch) -> (logits, labels)``, which is
the only part that knows what a batch holds. Dev logits are copied back once per pass (:func:`_collect`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch
from sklearn.metrics import recall_score
from torch import nn

from featcache.train.precision import _autocast, _to_device

Step = Callable[[nn.Module, Any], tuple[torch.Tensor, torch.Tensor]]
"""``step(model, batch) -> (logits [batch, n_classes], labels [batch])``; ``batch`` is already on the device."""


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
        generator: The shuffling generator (:func:`~featcache.train.fit` re-seeds and checkpoints it), or None.
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
            :func:`~featcache.train.fit` finds on the loader, re-seeds and checkpoints).
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
