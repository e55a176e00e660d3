"""The paired, fold-stratified percentile bootstrap behind :meth:`~featcache.metrics.Analysis.bootstrap`.

Every resample draws utterances with replacement within each fold and applies the same draw to every
(model, condition) cell and every seed, then recomputes the session-averaged accuracies (the Avg.
column) from which a statistic is taken (scipy's ``bootstrap`` has no strata, hence the few lines
here):

* :func:`paired_correctness` - per fold, the correctness of every cell and seed on the utterances all
  cells share;
* :class:`ResampleWeights` - the resampling draws, as counts per utterance, cached per fold;
* :func:`bootstrap_replicates` - a statistic on the observed sample and on every resample (:class:`Replicates`),
  :func:`percentile_interval` their interval, and :func:`paired_bootstrap` both in one call;
* :func:`impact_statistic`, :func:`impact_difference_statistic` and :func:`additivity_statistic` - the
  statistics of :meth:`~featcache.metrics.Analysis.impact_ci`,
  :meth:`~featcache.metrics.Analysis.impact_difference` (and
  :meth:`~featcache.metrics.Analysis.affected_difference`) and :meth:`~featcache.metrics.Analysis.additivity`,
  and :func:`seedwise` for their per-seed values.

A cell may count only some of the shared utterances (``include``): the affected-subset statistics
count, for the clean and the attacked cell alike, only the utterances the attack changed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from featcache.metrics.groups import GroupMap
from featcache.metrics.rows import BootstrapCI, SeedStat

DEFAULT_RESAMPLES = 1000
"""Default number of bootstrap resamples."""
DEFAULT_CONFIDENCE = 0.95
"""Default confidence level of bootstrap intervals."""

PairedFold = tuple[int, str, np.ndarray, "np.ndarray | None"]
"""``(fold, session, correct, include)`` with ``correct`` bool ``[cells, seeds, n_f]`` and ``include``
bool of the same shape (the utterances each cell counts) or ``None`` (every one)."""


def paired_correctness(
    groups: GroupMap,
    correct: np.ndarray,
    utt_code: np.ndarray,
    cells: Sequence[tuple[str, str]],
    *,
    include: np.ndarray | None = None,
    include_from: Sequence[int] | None = None,
) -> tuple[tuple[int, ...], list[PairedFold]]:
    """Correctness of every cell on the utterances all cells share, per fold: ``[cells, seeds, n_f]``.

    Args:
        groups: ``(model, condition) -> seed -> fold -> group``; every cell must be present.
        correct: bool ``[n]``, whether each row's prediction is right.
        utt_code: int64 ``[n]``, each row's utterance code.
        cells: ``(model, condition)`` pairs.
        include: Optional bool ``[n]``: whether a row counts (e.g. the predictions' ``affected``).
        include_from: With ``include``, for each cell the index of the cell whose rows' flags decide
            which utterances it counts (a clean cell takes its attacked cell's flags).

    Returns:
        ``(seeds, per_fold)``: the seeds all cells share and, per fold they all share (in fold order),
        ``(fold, session, correct, include)``; folds without a shared utterance are left out.
    """
    seeds = set(groups[cells[0]])
    for cell in cells[1:]:
        seeds &= set(groups[cell])
    seed_list = tuple(sorted(seeds))
    if not seed_list:
        return (), []
    folds = None
    for cell in cells:
        for s in seed_list:
            fs = set(groups[cell][s])
            folds = fs if folds is None else folds & fs
    out = []
    for fold in sorted(folds or ()):
        fold_groups = [[groups[cell][s][fold] for s in seed_list] for cell in cells]
        common = None
        for row in fold_groups:
            for g in row:
                u = utt_code[g.rows]
                common = u if common is None else np.intersect1d(common, u, assume_unique=True)
        if common is None or len(common) == 0:
            continue
        mat = np.empty((len(cells), len(seed_list), len(common)), dtype=bool)
        flags = np.empty_like(mat) if include is not None else None
        for i, row in enumerate(fold_groups):
            for j, g in enumerate(row):
                u = utt_code[g.rows]
                mat[i, j] = correct[g.rows[np.searchsorted(u, common)]]
                if flags is not None and include is not None:
                    src = fold_groups[include_from[i] if include_from is not None else i][j]
                    flags[i, j] = include[src.rows[np.searchsorted(utt_code[src.rows], common)]]
        out.append((fold, fold_groups[0][0].session, mat, flags))
    return seed_list, out


class ResampleWeights:
    """Bootstrap draws as per-utterance counts, cached by (fold, size, resamples, seed).

    The draw of a fold depends only on the resampling seed, the fold and its size, so every cell,
    seed and statistic compared on the same utterances sees the same draw.
    """

    def __init__(self) -> None:
        self._cache: dict[tuple[int, int, int, int], np.ndarray] = {}

    def get(self, fold: int, n: int, n_resamples: int, seed: int) -> np.ndarray:
        """The draws of one fold.

        Args:
            fold: Fold index.
            n: Utterances in the fold's paired sample.
            n_resamples: Number of resamples.
            seed: Resampling seed.

        Returns:
            float64 ``[n_resamples, n]``: how often each utterance is drawn in each resample.
        """
        key = (fold, n, n_resamples, seed)
        w = self._cache.get(key)
        if w is None:
            rng = np.random.default_rng([seed % 2**32, fold % 2**32, n])
            idx = rng.integers(0, n, size=(n_resamples, n))
            flat = (np.arange(n_resamples)[:, None] * n + idx).ravel()
            w = np.bincount(flat, minlength=n_resamples * n).reshape(n_resamples, n).astype(np.float64)
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[key] = w
        return w


@dataclass(frozen=True)
class Replicates:
    """A statistic on the observed paired sample and on each bootstrap resample of it.

    Attributes:
        estimate: The statistic (mean over seeds) on the observed data.
        values: float64 ``[B]``, the statistic on each resample (NaN where undefined).
        n_utterances: Utterances per seed in the paired sample.
        n_resamples: ``B``.
        seed: Resampling seed.
    """

    estimate: float
    values: np.ndarray
    n_utterances: int
    n_resamples: int
    seed: int


def bootstrap_replicates(
    seeds: tuple[int, ...],
    per_fold: Sequence[PairedFold],
    n_cells: int,
    statistic: Callable[[np.ndarray], np.ndarray],
    *,
    weights: ResampleWeights,
    n_resamples: int,
    seed: int,
) -> Replicates:
    """A statistic of session-averaged accuracies on the observed sample and on every paired resample.

    Per resample, cell and seed the session accuracies are recomputed from the drawn utterances and
    averaged over sessions (the Avg. column); the statistic's per-seed values are then averaged over seeds.

    Args:
        seeds: The seeds of the paired sample (from :func:`paired_correctness`).
        per_fold: Its folds, not empty.
        n_cells: Number of cells.
        statistic: Maps Avg. accuracies ``[cells, seeds, B]`` to per-seed values ``[seeds, B]``.
        weights: The resampling draws.
        n_resamples: Number of resamples ``B`` (at least 1).
        seed: Resampling seed.

    Returns:
        The estimate and the ``B`` resampled values.
    """
    def avg_accuracy(weights_of: Callable[[int, int], np.ndarray], b: int) -> np.ndarray:
        correct: dict[str, np.ndarray] = {}
        total: dict[str, np.ndarray] = {}
        for fold, session, mat, flags in per_fold:
            n = mat.shape[-1]
            w = weights_of(fold, n)  # [b, n_f]
            if flags is None:
                k = mat.reshape(-1, n).astype(np.float64) @ w.T  # [cells*seeds, b]
                t = w.sum(axis=1)
            else:  # each cell counts only its included utterances
                k = (mat & flags).reshape(-1, n).astype(np.float64) @ w.T
                t = (flags.reshape(-1, n).astype(np.float64) @ w.T).reshape(n_cells, len(seeds), b)
            correct[session] = correct.get(session, 0) + k.reshape(n_cells, len(seeds), b)
            total[session] = total.get(session, 0) + t
        # sessions where a cell counts no utterance are left out of its average, like the affected subset's
        return np.nanmean([correct[s] / total[s] for s in correct], axis=0)  # [cells, seeds, b]

    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        observed = avg_accuracy(lambda f, n: np.ones((1, n)), 1)
        estimate = float(np.nanmean(statistic(observed), axis=0)[0])
        boot = avg_accuracy(lambda f, n: weights.get(f, n, n_resamples, seed), n_resamples)
        values = np.nanmean(statistic(boot), axis=0)
    return Replicates(estimate=estimate, values=np.asarray(values, dtype=np.float64),
                      n_utterances=int(sum(mat.shape[-1] for _, _, mat, _ in per_fold)), n_resamples=n_resamples,
                      seed=seed)


def percentile_interval(replicates: Replicates, *, confidence: float) -> BootstrapCI:
    """The percentile interval of bootstrap replicates (their finite values).

    Args:
        replicates: From :func:`bootstrap_replicates` (or a statistic of several, such as a difference).
        confidence: Confidence level in (0, 1).

    Returns:
        The interval (NaN bounds when no resample gives a finite value).
    """
    alpha = (1 - confidence) / 2
    finite = replicates.values[np.isfinite(replicates.values)]
    low, high = (np.quantile(finite, [alpha, 1 - alpha]).tolist() if finite.size else (math.nan, math.nan))
    return BootstrapCI(
        estimate=replicates.estimate, low=float(low), high=float(high), confidence=confidence,
        n_resamples=replicates.n_resamples, seed=replicates.seed, n_utterances=replicates.n_utterances,
    )


def paired_bootstrap(
    seeds: tuple[int, ...],
    per_fold: Sequence[PairedFold],
    n_cells: int,
    statistic: Callable[[np.ndarray], np.ndarray],
    *,
    weights: ResampleWeights,
    n_resamples: int,
    confidence: float,
    seed: int,
) -> BootstrapCI:
    """Percentile interval of a statistic of session-averaged accuracies over paired resamples
    (:func:`percentile_interval` of :func:`bootstrap_replicates`).

    Args:
        seeds: The seeds of the paired sample (from :func:`paired_correctness`).
        per_fold: Its folds, not empty.
        n_cells: Number of cells.
        statistic: Maps Avg. accuracies ``[cells, seeds, B]`` to per-seed values ``[seeds, B]``;
            the interval is over their mean across seeds.
        weights: The resampling draws.
        n_resamples: Number of resamples ``B`` (at least 1).
        confidence: Confidence level in (0, 1).
        seed: Resampling seed.

    Returns:
        The interval.
    """
    reps = bootstrap_replicates(seeds, per_fold, n_cells, statistic, weights=weights, n_resamples=n_resamples,
                                seed=seed)
    return percentile_interval(reps, confidence=confidence)


def relative_change_array(attacked: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """:func:`~featcache.metrics.relative_change` elementwise (NaN where ``clean`` is not positive).

    Args:
        attacked: Accuracies under attack.
        clean: Clean accuracies, same shape.

    Returns:
        Impacts in percent.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(clean > 0, (attacked - clean) / np.where(clean > 0, clean, 1.0) * 100.0, np.nan)


def impact_statistic(acc: np.ndarray) -> np.ndarray:
    """Impact of an attack from the Avg. accuracies of the cells ``[(model, clean), (model, attack)]``.

    Args:
        acc: ``[2, seeds, B]``.

    Returns:
        ``[seeds, B]``.
    """
    return relative_change_array(acc[1], acc[0])


def accuracy_statistic(acc: np.ndarray) -> np.ndarray:
    """A model's Avg. accuracy in percent, from the cell ``[(model, condition)]``.

    Args:
        acc: ``[1, seeds, B]`` (fractions).

    Returns:
        ``[seeds, B]``.
    """
    return acc[0] * 100.0


def accuracy_difference_statistic(acc: np.ndarray) -> np.ndarray:
    """One model's Avg. accuracy minus another's, in points, from the cells ``[(model, c), (other, c)]``.

    Args:
        acc: ``[2, seeds, B]`` (fractions).

    Returns:
        ``[seeds, B]``.
    """
    return (acc[0] - acc[1]) * 100.0


def impact_difference_statistic(acc: np.ndarray) -> np.ndarray:
    """Fusion-minus-unimodal impact from the Avg. accuracies of the cells
    ``[(fusion, clean), (fusion, attack), (unimodal, clean), (unimodal, attack)]``.

    Args:
        acc: ``[4, seeds, B]``.

    Returns:
        ``[seeds, B]``.
    """
    return relative_change_array(acc[1], acc[0]) - relative_change_array(acc[3], acc[2])


def additivity_statistic(acc: np.ndarray) -> np.ndarray:
    """Combined impact minus the sum of the parts' impacts from the Avg. accuracies of the cells
    ``[clean, audio part, text part, combined]`` of one model.

    Args:
        acc: ``[4, seeds, B]``.

    Returns:
        ``[seeds, B]``.
    """
    return (relative_change_array(acc[3], acc[0]) - relative_change_array(acc[1], acc[0])
            - relative_change_array(acc[2], acc[0]))


def seedwise(combine: Callable[..., float], *stats: SeedStat) -> SeedStat:
    """Combine per-seed statistics over the seeds they all have.

    Args:
        combine: Maps one value of each statistic (same seed, same order) to the combined value.
        *stats: The statistics.

    Returns:
        The combined statistic over the shared seeds, in seed order.
    """
    maps = [dict(zip(s.seeds, s.values)) for s in stats]
    shared = set(maps[0])
    for m in maps[1:]:
        shared &= set(m)
    seeds = sorted(shared)
    return SeedStat(tuple(seeds), tuple(combine(*(m[s] for m in maps)) for s in seeds))
