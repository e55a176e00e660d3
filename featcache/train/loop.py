"""The training loop: :func:`fit`, one loop for both uses in featcache (light heads on vectors read from the
feature store, and whole encoder + head models), resumable and reproducible.

The loop does not wait for the device per batch: batch losses stay on the device and are read once per
epoch, and dev logits are copied back once per pass (see :func:`_train_epoch`). Mixed precision is
``torch.autocast`` (:func:`~featcache.train.precision.resolve_precision` picks it for fine-tuning). What
resuming reads and every epoch commits is the run directory's journal (:mod:`featcache.train.journal`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from featcache.errors import FeatcacheError
from featcache.train.batches import Step, TensorBatches, _collect, _metrics
from featcache.train.journal import (
    BEST_FILE,
    LOG_FILE,
    Resumed,
    _append_log,
    _commit,
    _load_model,
    _run_lock,
    _write_log,
    resume,
)
from featcache.train.objective import EarlyStopping, weighted_loss
from featcache.train.precision import _autocast, _to_device, resolve_device

Callback = Callable[[dict[str, Any]], None]
"""Called with the epoch's log record after the epoch is committed."""
POSTFIX_EVERY = 50
"""The batch progress bar shows the running training loss every this many batches (reading it waits
for the device, so it is not read per batch)."""


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


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


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

    With ``run_dir``, every completed epoch is checkpointed (see :mod:`featcache.train.journal`). Calling fit
    again with the same arguments resumes an interrupted run from its last completed epoch and gives
    exactly the result of an uninterrupted run; calling it on a finished run loads the best weights
    and returns the stored result without training.

    Args:
        model: the model; moved to ``device``. Only parameters with ``requires_grad`` are optimised.
        train_loader: yields training batches (re-iterated every epoch).
        dev_loader: yields dev batches.
        step: ``step(model, batch) -> (logits, labels)``; fit moves the batch's tensors to ``device`` first.
        n_classes: number of classes.
        class_weights: per-class loss weights (:func:`~featcache.train.class_weights`), or None for an unweighted loss.
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
            exactly when ``device`` is CUDA. bfloat16 autocast runs on the CPU too.
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
    device = resolve_device(device)
    use_amp = device.type == "cuda" if amp is None else bool(amp)
    if use_amp and device.type != "cuda" and amp_dtype != "bfloat16":
        raise ValueError(f"float16 mixed precision needs a CUDA device, got {device}")
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
        resumed = Resumed()
        if run_dir is not None:
            resumed = resume(run_dir, settings=settings, model=model, optimizer=optimizer, scaler=scaler,
                             stopper=stopper, generator=generator, device=device)
        history, best_state = resumed.history, resumed.best_state
        start_epoch, finished, stopped_early = resumed.epoch, resumed.finished, resumed.stopped_early
        if log_path is not None:
            _write_log(log_path, history)

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

