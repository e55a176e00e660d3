"""The objective and the stopping rule: balanced class weights, the weighted loss, early stopping.

The paper trains every classifier with a weighted cross-entropy loss and early stopping on the dev
set with patience 10 (Cohen et al. 2023, sections 4.1-4.3).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch import nn


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
    """The loss :func:`~featcache.train.fit` uses: cross-entropy on logits, each sample weighted by its class weight.

    The batch loss is the weighted mean ``sum_i w[y_i] * nll_i / sum_i w[y_i]`` (torch's convention).

    Args:
        weights: per-class weights ``[n_classes]`` (e.g. :func:`class_weights`), or None for none.

    Returns:
        A ``torch.nn.CrossEntropyLoss``.
    """
    return nn.CrossEntropyLoss(weight=None if weights is None else torch.as_tensor(weights, dtype=torch.float32))


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
