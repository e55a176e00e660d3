"""The one trainer of heads on cached vectors, used by ``train-heads``, ``ablate`` and the API on any device:
:func:`fit_heads`. On every device the members that can be stacked train in one batched ensemble
(:func:`~featcache.ensemble.fit_ensemble`; on a GPU one launch per layer for all of them); the others train
alone with :func:`featcache.train.fit` (:func:`fit_alone`). Either way each head ends as :func:`fit_alone`
leaves it (bit for bit in float32 on the CPU, to float tolerance elsewhere)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from featcache.ensemble.arch import Member
from featcache.ensemble.stack import fit_ensemble
from featcache.ensemble.threads import head_threads, torch_threads
from featcache.paper import TrainSettings
from featcache.train import FitResult, resolve_device

DEV_BATCH = 256
"""Rows per dev forward pass of a head trained on cached vectors."""


def fit_alone(head: torch.nn.Module, x_tr: Sequence[np.ndarray], y_tr: np.ndarray, x_dev: Sequence[np.ndarray],
              y_dev: np.ndarray, *, settings: TrainSettings, seed: int, n_classes: int, device: str,
              precision: str = "fp32") -> FitResult:
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
        precision: ``fp32``, or ``bf16``: bfloat16 autocast (float32 master weights and AdamW state).

    Returns:
        The fit's result; the head holds its best epoch's weights.

    Raises:
        FeatcacheError: An unknown precision, or bf16 where the device has none.
    """
    from featcache.train import (
        class_weights,
        compute_dtype,
        fit,
        step_pair,
        step_single,
        tensor_loader,
    )

    bf16 = compute_dtype(precision, device=resolve_device(device)) == torch.bfloat16
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
        amp=bf16,
        amp_dtype="bfloat16",
        run_dir=None,  # seconds per head: resumable per head, not per epoch
        progress=False,
    )
    head.cpu()
    return fr


def fit_heads(members: Sequence[Member], *, settings: TrainSettings, device: str = "cpu", threads: int | None = None,
              on_done: Callable[[int, FitResult], None] | None = None, precision: str = "fp32") -> list[FitResult]:
    """Train heads on cached vectors: every member that can be stacked together in one batched ensemble on any
    device, then the others one after the other.

    Args:
        members: The heads (each freshly built after ``torch.manual_seed(member.seed)``) and their data.
        settings: Batch size, learning rate, epochs, patience and weight decay of every member.
        device: Where to train.
        threads: CPU training threads (default :func:`~featcache.ensemble.head_threads`).
        precision: ``fp32`` or ``bf16`` (float32 master weights and AdamW state either way).
        on_done: Called with ``(member index, result)`` as soon as a member has finished (its head then holds
            its best weights).

    Returns:
        One :class:`~featcache.train.FitResult` per member, in order.
    """
    if not members:
        return []
    results: list[FitResult | None] = [None] * len(members)
    stacked = [i for i, m in enumerate(members) if _stackable(m.head)]
    if stacked:
        def done(j: int, fr: FitResult) -> None:
            results[stacked[j]] = fr
            if on_done is not None:
                on_done(stacked[j], fr)

        with torch_threads(1):  # every operation single-threaded; cores are used by parallel stacks
            fit_ensemble([members[i] for i in stacked], lr=settings.lr, max_epochs=settings.max_epochs,
                         patience=settings.patience, weight_decay=settings.weight_decay,
                         batch_size=settings.batch_size, dev_batch_size=DEV_BATCH, threads=threads or head_threads(),
                         on_done=done, precision=precision, device=device)
    for i, m in enumerate(members):
        if results[i] is not None:
            continue

        def rows(idx: np.ndarray) -> list[np.ndarray]:
            return [np.asarray(x)[idx] for x in m.inputs]  # noqa: B023  (used at once)

        fr = fit_alone(m.head, rows(m.train_rows), np.asarray(m.train_labels), rows(m.dev_rows),
                       np.asarray(m.dev_labels), settings=settings, seed=m.seed, n_classes=int(m.head.n_classes),
                       device=device, precision=precision)
        results[i] = fr
        if on_done is not None:
            on_done(i, fr)
    return [r for r in results if r is not None]


def _stackable(head: torch.nn.Module) -> bool:
    """Whether a head trains in a batched ensemble: it has a stacked forward and no part of it says
    ``stackable = False`` (layer weights in front of a head train alone)."""
    return hasattr(head, "stacked") and all(getattr(mod, "stackable", True) for mod in head.modules())
