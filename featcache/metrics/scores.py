"""Scores of one group of predictions: confusion matrices, accuracy, UAR, macro-F1, mean and std over seeds.

Per-group scores are computed from confusion matrices counted for all groups at once (one
``np.bincount``, see :mod:`featcache.metrics.groups`); :func:`scores_from_confusion` turns a stack of
them into scores, :func:`classification_scores` gives the same numbers for one group through
scikit-learn, and the tests hold the two to each other.

Accuracies are fractions in ``[0, 1]``; impacts (:func:`relative_change`) are percentages.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

STD_DDOF = 1
"""Delta degrees of freedom of every standard deviation over seeds (sample std; NaN for one seed)."""


def mean_std(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof`` = :data:`STD_DDOF`) of finite values.

    Args:
        values: Per-seed values; NaNs are ignored.

    Returns:
        ``(mean, std)``; ``std`` is NaN with fewer than two finite values, both NaN with none.
    """
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return math.nan, math.nan
    std = float(np.std(arr, ddof=STD_DDOF)) if arr.size > STD_DDOF else math.nan
    return float(np.mean(arr)), std


def relative_change(attacked: float, clean: float) -> float:
    """Impact in percent: ``(attacked - clean) / clean * 100``.

    Args:
        attacked: Accuracy under attack.
        clean: Clean accuracy.

    Returns:
        The relative change in percent (negative when the attack hurts); NaN when ``clean`` is 0 or NaN.
    """
    if not (clean > 0) or not math.isfinite(attacked):
        return math.nan
    return (attacked - clean) / clean * 100.0


@dataclass(frozen=True)
class Scores:
    """Classification scores of one group of predictions.

    Attributes:
        n: Number of predictions.
        accuracy: Share of correct predictions.
        uar: Unweighted average recall over the classes present in the true labels (balanced accuracy).
        macro_f1: Mean F1 over the classes present in the true or the predicted labels.
    """

    n: int
    accuracy: float
    uar: float
    macro_f1: float


def classification_scores(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray) -> Scores:
    """Accuracy, UAR and macro-F1 of one group, by scikit-learn.

    Args:
        y_true: True class indices.
        y_pred: Predicted class indices.

    Returns:
        The scores; NaN for an empty group.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.size == 0:
        return Scores(0, math.nan, math.nan, math.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Scores(
            n=int(y_true.size),
            accuracy=float(accuracy_score(y_true, y_pred)),
            uar=float(balanced_accuracy_score(y_true, y_pred)),
            macro_f1=float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        )


def confusion(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, *, n_classes: int) -> np.ndarray:
    """Confusion matrix over all classes (rows: true, columns: predicted), by scikit-learn.

    Args:
        y_true: True class indices.
        y_pred: Predicted class indices.
        n_classes: Number of classes (the matrix is always ``n_classes x n_classes``).

    Returns:
        int64 ``[n_classes, n_classes]``.
    """
    return confusion_matrix(np.asarray(y_true), np.asarray(y_pred), labels=list(range(n_classes))).astype(np.int64)


def scores_from_confusion(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Accuracy, UAR and macro-F1 of a stack of confusion matrices (same definitions as scikit-learn's).

    Args:
        cm: ``[..., C, C]`` counts, rows true, columns predicted.

    Returns:
        ``(accuracy, uar, macro_f1)``, each ``cm.shape[:-2]``; NaN for empty matrices.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    true_n = cm.sum(axis=-1)
    pred_n = cm.sum(axis=-2)
    total = true_n.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = tp.sum(axis=-1) / total
        present = true_n > 0
        recall = np.where(present, tp / np.where(present, true_n, 1), 0.0)
        uar = recall.sum(axis=-1) / present.sum(axis=-1)
        seen = (true_n + pred_n) > 0
        f1 = np.where(seen, 2 * tp / np.where(seen, true_n + pred_n, 1), 0.0)
        macro_f1 = f1.sum(axis=-1) / seen.sum(axis=-1)
    return accuracy, uar, macro_f1
