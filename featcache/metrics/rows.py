"""The result types: per-seed statistics and the rows of the tidy and aggregated tables.

A :class:`SeedStat` keeps one value per seed and gives their mean and sample std; :class:`ResultRow`
is one (fold, seed, model, condition) group, :class:`SummaryRow` one (model, condition) over folds
and seeds, with its :class:`ModalImpact`, :class:`AffectedStats` and :class:`ImpactDifference`
(whose :class:`BootstrapCI` comes from :mod:`featcache.metrics.bootstrap`); :class:`Additivity`
checks a combined attack against its parts and :class:`AffectedDifference` compares two attacks on the
utterances each changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from featcache.metrics.scores import mean_std


@dataclass(frozen=True)
class SeedStat:
    """A per-seed statistic with its mean and std over seeds.

    Attributes:
        seeds: The seeds.
        values: One value per seed (NaN where undefined).
    """

    seeds: tuple[int, ...]
    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        """Mean over seeds (NaNs ignored)."""
        return mean_std(self.values)[0]

    @property
    def std(self) -> float:
        """Sample std over seeds (NaN with fewer than two seeds)."""
        return mean_std(self.values)[1]

    @classmethod
    def empty(cls) -> SeedStat:
        """A statistic with no seeds (mean and std NaN)."""
        return cls((), ())


@dataclass(frozen=True)
class ResultRow:
    """Scores of one (fold, seed, model, condition) group.

    Attributes:
        fold: Fold index.
        session: The fold's test session.
        seed: Training seed.
        model: Model name.
        condition: Condition name.
        n: Number of utterances.
        accuracy: Accuracy.
        uar: Unweighted average recall.
        macro_f1: Macro-F1.
        flip_rate: Share of predictions differing from the clean ones (over ``n_matched``); 0 for clean.
        n_matched: Utterances that also have a clean prediction.
        n_affected: Utterances the condition changed.
        accuracy_affected: Accuracy on the affected utterances that have a clean prediction.
        clean_accuracy_affected: Clean accuracy on those same utterances.
    """

    fold: int
    session: str
    seed: int
    model: str
    condition: str
    n: int
    accuracy: float
    uar: float
    macro_f1: float
    flip_rate: float
    n_matched: int
    n_affected: int
    accuracy_affected: float
    clean_accuracy_affected: float


@dataclass(frozen=True)
class ModalImpact:
    """The impact of one part of an attack on a unimodal model (the paper's "Impact S. Modal").

    Attributes:
        model: The unimodal model.
        condition: Its condition carrying that part of the attack.
        impact: Its impact (percent) per seed.
    """

    model: str
    condition: str
    impact: SeedStat


@dataclass(frozen=True)
class BootstrapCI:
    """A paired bootstrap percentile interval.

    Attributes:
        estimate: The statistic on the observed data.
        low: Lower bound.
        high: Upper bound.
        confidence: Confidence level.
        n_resamples: Number of resamples.
        seed: Seed of the resampling.
        n_utterances: Utterances per seed in the paired sample.
    """

    estimate: float
    low: float
    high: float
    confidence: float
    n_resamples: int
    seed: int
    n_utterances: int

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies strictly on one side of 0."""
        return bool(self.low > 0 or self.high < 0)


@dataclass(frozen=True)
class ImpactDifference:
    """Is a fusion model hurt less than the unimodal model by the same attack?

    Attributes:
        model: The fusion model.
        condition: Its condition.
        unimodal: The unimodal model.
        unimodal_condition: The unimodal model's condition (same attack).
        impact: Impact on the fusion model (percent, per seed).
        unimodal_impact: Impact on the unimodal model.
        difference: ``impact - unimodal_impact`` per seed (positive: the fusion model loses less).
        ci: Bootstrap interval of the mean difference, or ``None`` when not computed.
    """

    model: str
    condition: str
    unimodal: str
    unimodal_condition: str
    impact: SeedStat
    unimodal_impact: SeedStat
    difference: SeedStat
    ci: BootstrapCI | None


@dataclass(frozen=True)
class AffectedDifference:
    """Does one attack hurt a model more than another on the utterances each one changed?

    Attributes:
        model: The model.
        condition: The attack (e.g. ``adj``).
        other: The attack it is compared with (e.g. ``random-adj``).
        impact: Affected-subset impact of ``condition`` (percent, per seed).
        other_impact: Affected-subset impact of ``other``.
        difference: ``impact - other_impact`` per seed (negative: ``condition`` hurts more).
        ci: Bootstrap interval of the mean difference, or ``None`` when not computed.
    """

    model: str
    condition: str
    other: str
    impact: SeedStat
    other_impact: SeedStat
    difference: SeedStat
    ci: BootstrapCI | None


@dataclass(frozen=True)
class Additivity:
    """Impact of a combined audio+text attack against the sum of its two parts' impacts, one model.

    Attributes:
        model: The model.
        condition: The combined condition.
        audio_condition: The model's audio-only condition.
        text_condition: The model's text-only condition.
        combined: Impact of the combined attack per seed.
        audio: Impact of the audio part.
        text: Impact of the text part.
        sum: ``audio + text`` per seed.
        difference: ``combined - sum`` per seed (0 when the parts add up).
        ci: Bootstrap interval of the mean difference, or ``None``.
    """

    model: str
    condition: str
    audio_condition: str
    text_condition: str
    combined: SeedStat
    audio: SeedStat
    text: SeedStat
    sum: SeedStat
    difference: SeedStat
    ci: BootstrapCI | None


@dataclass(frozen=True)
class AffectedStats:
    """Scores on the utterances a condition actually changed.

    Attributes:
        n: Utterances per seed (mean over seeds).
        n_affected: Affected utterances per seed (mean over seeds).
        share: ``n_affected / n``.
        accuracy: Session-averaged accuracy under attack on the affected utterances, per seed.
        clean_accuracy: Session-averaged clean accuracy on the same utterances, per seed.
        impact: Impact on that subset (percent), per seed.
    """

    n: float
    n_affected: float
    share: float
    accuracy: SeedStat
    clean_accuracy: SeedStat
    impact: SeedStat


@dataclass(frozen=True)
class SummaryRow:
    """Aggregated results of one (model, condition) over folds and seeds.

    Attributes:
        model: Model name.
        condition: Condition name.
        seeds: Seeds present.
        n: Utterances per seed (mean over seeds).
        sessions: Test sessions present, natural order.
        session_accuracy: Mean over seeds of each session's accuracy (same order as ``sessions``).
        accuracy: The Avg. column (mean of the session accuracies) per seed.
        uar: Session-averaged UAR per seed.
        macro_f1: Session-averaged macro-F1 per seed.
        impact: Impact (percent) per seed; empty for the clean condition.
        single_modal: Impact S. Modal, audio part first; empty for unimodal models.
        flip_rate: Flip rate per seed.
        affected: Affected-subset statistics; ``None`` for the clean condition.
        difference: Fusion-minus-unimodal impact with its bootstrap interval, where it applies.
    """

    model: str
    condition: str
    seeds: tuple[int, ...]
    n: float
    sessions: tuple[str, ...]
    session_accuracy: tuple[float, ...]
    accuracy: SeedStat
    uar: SeedStat
    macro_f1: SeedStat
    impact: SeedStat
    single_modal: tuple[ModalImpact, ...]
    flip_rate: SeedStat
    affected: AffectedStats | None
    difference: ImpactDifference | None
