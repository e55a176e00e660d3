"""The bootstrap-based statistics of :class:`~featcache.metrics.Analysis`: intervals of an impact, of a
fusion-minus-unimodal impact difference, of the affected-subset difference between two attacks, and of
a combined attack's additivity.

:class:`Intervals` is the base class of :class:`~featcache.metrics.Analysis` that holds them; each
method builds its paired sample with :func:`~featcache.metrics.bootstrap.paired_correctness` and
resamples it with :func:`~featcache.metrics.bootstrap.bootstrap_replicates` (every resample draws
utterances with replacement within each fold and applies the same draw to every cell and seed);
:meth:`Intervals.replicates` hands the resampled values over for statistics of several analyses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from featcache.metrics.bootstrap import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    Replicates,
    ResampleWeights,
    accuracy_difference_statistic,
    accuracy_statistic,
    additivity_statistic,
    bootstrap_replicates,
    impact_difference_statistic,
    impact_statistic,
    paired_correctness,
    percentile_interval,
    seedwise,
)
from featcache.metrics.groups import GroupMap
from featcache.metrics.names import condition_key
from featcache.metrics.rows import (
    Additivity,
    AffectedDifference,
    AffectedStats,
    BootstrapCI,
    ImpactDifference,
    SeedStat,
)


class Intervals:
    """Paired bootstrap intervals over the grouped counts of an analysis (the base of
    :class:`~featcache.metrics.Analysis`, which provides the counts and the point statistics)."""

    clean: str
    text_model: str
    audio_model: str
    _groups: GroupMap
    _correct: np.ndarray
    _utt_code: np.ndarray
    _affected: np.ndarray
    _weights: ResampleWeights

    # provided by Analysis
    def has(self, model: str, condition: str) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def find_condition(self, model: str, key: tuple[str | None, str | None]) -> str | None:  # pragma: no cover
        raise NotImplementedError

    def impact(self, model: str, condition: str) -> SeedStat:  # pragma: no cover - overridden
        raise NotImplementedError

    def affected(self, model: str, condition: str) -> AffectedStats:  # pragma: no cover - overridden
        raise NotImplementedError

    def parts(self, model: str, condition: str) -> list[tuple[str, str]]:  # pragma: no cover - overridden
        raise NotImplementedError

    def bootstrap(
        self,
        cells: Sequence[tuple[str, str]],
        statistic: Callable[[np.ndarray], np.ndarray],
        *,
        n_resamples: int = DEFAULT_RESAMPLES,
        confidence: float = DEFAULT_CONFIDENCE,
        seed: int = 0,
        affected_of: Sequence[int] | None = None,
    ) -> BootstrapCI | None:
        """Paired, fold-stratified percentile bootstrap of a statistic of session-averaged accuracies.

        Each resample draws, within every fold, as many utterances as the fold shares across all
        cells, with replacement; the same draw serves every cell and every seed. Per cell and seed the
        session accuracies are recomputed and averaged over sessions (the Avg. column).

        Args:
            cells: ``(model, condition)`` pairs.
            statistic: Maps Avg. accuracies ``[cells, seeds, B]`` to per-seed values ``[seeds, B]``;
                the interval is over their mean across seeds.
            n_resamples: Number of resamples ``B``.
            confidence: Confidence level in (0, 1).
            seed: Resampling seed (same seed and data, same interval).
            affected_of: For each cell, the index of the cell whose affected utterances it counts
                (``None``: every cell counts every shared utterance); sessions where a cell counts
                none are left out of its average, as in the affected-subset table.

        Returns:
            The interval, or ``None`` when the cells share no seed or utterance.

        Raises:
            ValueError: ``n_resamples < 1`` or ``confidence`` outside (0, 1).
        """
        if not 0 < confidence < 1:
            raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
        reps = self.replicates(cells, statistic, n_resamples=n_resamples, seed=seed, affected_of=affected_of)
        return None if reps is None else percentile_interval(reps, confidence=confidence)

    def replicates(
        self,
        cells: Sequence[tuple[str, str]],
        statistic: Callable[[np.ndarray], np.ndarray],
        *,
        n_resamples: int = DEFAULT_RESAMPLES,
        seed: int = 0,
        affected_of: Sequence[int] | None = None,
    ) -> Replicates | None:
        """The statistic of :meth:`bootstrap` on the observed sample and on each of its resamples (for a
        statistic of several samples, such as the gap between two groups' analyses).

        Args:
            cells: ``(model, condition)`` pairs.
            statistic: As for :meth:`bootstrap`.
            n_resamples: Number of resamples ``B``.
            seed: Resampling seed.
            affected_of: As for :meth:`bootstrap`.

        Returns:
            The replicates, or ``None`` when the cells share no seed or utterance.

        Raises:
            ValueError: ``n_resamples < 1``.
        """
        if n_resamples < 1:
            raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
        if any(cell not in self._groups for cell in cells):
            return None
        seed_list, per_fold = paired_correctness(
            self._groups, self._correct, self._utt_code, cells,
            include=None if affected_of is None else self._affected, include_from=affected_of)
        if not per_fold:
            return None
        return bootstrap_replicates(seed_list, per_fold, len(cells), statistic, weights=self._weights,
                                    n_resamples=n_resamples, seed=seed)

    def impact_ci(
        self,
        model: str,
        condition: str,
        *,
        n_resamples: int = DEFAULT_RESAMPLES,
        confidence: float = DEFAULT_CONFIDENCE,
        seed: int = 0,
    ) -> BootstrapCI | None:
        """Bootstrap interval of one impact (the mean over seeds of the Impact column).

        Args:
            model: Model name.
            condition: An attack on it.
            n_resamples: Bootstrap resamples.
            confidence: Confidence level.
            seed: Resampling seed.

        Returns:
            The interval, or ``None`` for the clean condition or when either cell is missing.
        """
        if condition == self.clean or not self.has(model, condition) or not self.has(model, self.clean):
            return None
        return self.bootstrap([(model, self.clean), (model, condition)], impact_statistic,
                              n_resamples=n_resamples, confidence=confidence, seed=seed)

    def accuracy_ci(
        self,
        model: str,
        *,
        condition: str | None = None,
        n_resamples: int = DEFAULT_RESAMPLES,
        confidence: float = DEFAULT_CONFIDENCE,
        seed: int = 0,
    ) -> BootstrapCI | None:
        """Bootstrap interval of one model's Avg. accuracy, in percent (the mean over seeds of the Avg. column).

        Args:
            model: Model name.
            condition: The condition (default: clean).
            n_resamples: Bootstrap resamples.
            confidence: Confidence level.
            seed: Resampling seed.

        Returns:
            The interval, or ``None`` when the cell is missing.
        """
        cond = self.clean if condition is None else condition
        if not self.has(model, cond):
            return None
        return self.bootstrap([(model, cond)], accuracy_statistic, n_resamples=n_resamples, confidence=confidence,
                              seed=seed)

    def accuracy_difference(
        self,
        model: str,
        other: str,
        *,
        condition: str | None = None,
        n_resamples: int = DEFAULT_RESAMPLES,
        confidence: float = DEFAULT_CONFIDENCE,
        seed: int = 0,
    ) -> BootstrapCI | None:
        """Bootstrap interval of one model's Avg. accuracy minus another's under the same condition, in points
        (RQ1: does fusion beat each modality on clean input?).

        Args:
            model: The model (a fusion model).
            other: The model it is compared with (a unimodal one).
            condition: The condition both were evaluated under (default: clean).
            n_resamples: Bootstrap resamples.
            confidence: Confidence level.
            seed: Resampling seed.

        Returns:
            The interval, or ``None`` when either cell is missing or they share no utterance.
        """
        cond = self.clean if condition is None else condition
        if not self.has(model, cond) or not self.has(other, cond):
            return None
        return self.bootstrap([(model, cond), (other, cond)], accuracy_difference_statistic,
                              n_resamples=n_resamples, confidence=confidence, seed=seed)

    def affected_difference(
        self,
        model: str,
        condition: str,
        other: str,
        *,
        n_resamples: int = DEFAULT_RESAMPLES,
        confidence: float = DEFAULT_CONFIDENCE,
        seed: int = 0,
    ) -> AffectedDifference | None:
        """Affected-subset impact of one attack minus that of another on the same model, with its interval.

        Each impact counts only the utterances its own attack changed (clean vs attacked accuracy of
        those utterances, session-averaged), as in the affected-subset table; the resamples draw the
        same utterances for both. A negative difference means ``condition`` hurts more than ``other``
        (masking adjectives vs masking as many random words).

        Args:
            model: Model name.
            condition: The attack (e.g. ``adj``).
            other: The attack it is compared with (e.g. ``random-adj``).
            n_resamples: Bootstrap resamples (0: no interval).
            confidence: Confidence level.
            seed: Resampling seed.

        Returns:
            The comparison, or ``None`` when a cell is missing.
        """
        cells = [(model, self.clean), (model, condition), (model, self.clean), (model, other)]
        if any(not self.has(*c) for c in cells) or condition == self.clean or other == self.clean:
            return None
        imp, oimp = self.affected(model, condition).impact, self.affected(model, other).impact
        diff = seedwise(lambda a, b: a - b, imp, oimp)
        ci = self.bootstrap(cells, impact_difference_statistic, n_resamples=n_resamples, confidence=confidence,
                            seed=seed, affected_of=(1, 1, 3, 3)) if n_resamples > 0 else None
        return AffectedDifference(model, condition, other, imp, oimp, diff, ci)

    def impact_difference(
        self,
        model: str,
        condition: str,
        *,
        unimodal: str | None = None,
        unimodal_condition: str | None = None,
        n_resamples: int = DEFAULT_RESAMPLES,
        confidence: float = DEFAULT_CONFIDENCE,
        seed: int = 0,
    ) -> ImpactDifference | None:
        """Fusion-minus-unimodal impact of one attack, with its paired bootstrap interval.

        A positive difference means the fusion model loses less (relatively) than the unimodal model.

        Args:
            model: The fusion model.
            condition: The attack on it.
            unimodal: The unimodal model; by default the one matching the attack's modality.
            unimodal_condition: The unimodal model's condition; by default the one with the same key.
            n_resamples: Bootstrap resamples (0: no interval).
            confidence: Confidence level.
            seed: Resampling seed.

        Returns:
            The comparison, or ``None`` when the attack touches both modalities (no single unimodal
            counterpart) or the counterpart was not evaluated.
        """
        if unimodal is None or unimodal_condition is None:
            parts = self.parts(model, condition)
            key = condition_key(condition)
            if len(parts) != 1 or key is None or (key[0] is not None and key[1] is not None):
                return None
            unimodal, unimodal_condition = parts[0]
        cells = [(model, self.clean), (model, condition), (unimodal, self.clean), (unimodal, unimodal_condition)]
        if any(not self.has(*c) for c in cells):
            return None
        imp, uimp = self.impact(model, condition), self.impact(unimodal, unimodal_condition)
        diff = seedwise(lambda a, b: a - b, imp, uimp)
        ci = self.bootstrap(cells, impact_difference_statistic, n_resamples=n_resamples, confidence=confidence,
                            seed=seed) if n_resamples > 0 else None
        return ImpactDifference(model, condition, unimodal, unimodal_condition, imp, uimp, diff, ci)

    def additivity(
        self,
        model: str,
        condition: str,
        *,
        n_resamples: int = DEFAULT_RESAMPLES,
        confidence: float = DEFAULT_CONFIDENCE,
        seed: int = 0,
    ) -> Additivity | None:
        """Impact of a combined audio+text attack against the sum of its parts' impacts.

        Args:
            model: The model (evaluated under the combination and under each part alone).
            condition: A combined condition such as ``pitch+adj``.
            n_resamples: Bootstrap resamples (0: no interval).
            confidence: Confidence level.
            seed: Resampling seed.

        Returns:
            The check, or ``None`` when the condition is not a combination or a part is missing.
        """
        key = condition_key(condition)
        if key is None or key[0] is None or key[1] is None:
            return None
        ca = self.find_condition(model, (key[0], None))
        ct = self.find_condition(model, (None, key[1]))
        if ca is None or ct is None or not self.has(model, condition) or not self.has(model, self.clean):
            return None
        comb, ia, it = self.impact(model, condition), self.impact(model, ca), self.impact(model, ct)
        total = seedwise(lambda c, a, t: a + t, comb, ia, it)
        diff = seedwise(lambda c, a, t: c - a - t, comb, ia, it)
        cells = [(model, self.clean), (model, ca), (model, ct), (model, condition)]
        ci = self.bootstrap(cells, additivity_statistic, n_resamples=n_resamples, confidence=confidence,
                            seed=seed) if n_resamples > 0 else None
        return Additivity(model, condition, ca, ct, comb, ia, it, total, diff, ci)

