"""The :class:`Analysis` of a predictions table: Avg., impact, flip rate, affected subset, bootstrap.

Definitions (Cohen et al. 2023, section 5):

* **Accuracy per session** - the accuracy of a fold on its test session; the paper's **Avg.** is the
  mean of the per-session accuracies (not the pooled accuracy), computed per seed; tables show the mean
  over seeds, and ``+/-`` the sample standard deviation over seeds (``ddof=1``,
  :data:`~featcache.metrics.scores.STD_DDOF`).
* **Impact** - ``(Avg. under attack - clean Avg.) / clean Avg. x 100`` per seed, then mean and std over
  seeds; negative when the attack hurts. Both averages run over the sessions the two conditions share.
* **Impact S. Modal** - for a fusion model, the impact of the same attack(s) on the unimodal model(s):
  the audio model for the audio part of a condition, the text model for the text part
  (``pitch+adj`` -> audio model under ``pitch``, text model under ``adj``).
* **Flip rate** - share of predictions that differ from the clean prediction of the same
  (fold, seed, model, utterance); pooled over the folds of a seed.
* **Affected subset** - the utterances a condition actually changed (``affected``); its impact compares
  the attacked and the clean accuracy of the same utterances, session-averaged like Avg.
* **UAR** - unweighted average recall (balanced accuracy); **macro-F1** over the classes present.

Accuracies are fractions in ``[0, 1]``; impacts are percentages; flip rates are fractions.

Statistics:

* :meth:`Analysis.impact_difference` - paired, fold-stratified percentile bootstrap of
  ``impact(fusion) - impact(unimodal)`` for one attack: every resample draws utterances with
  replacement within each fold and applies the same draw to both models, both conditions and every
  seed, then recomputes both impacts exactly as above (see :mod:`featcache.metrics.bootstrap`).
* :meth:`Analysis.additivity` - ``impact(A+T) - (impact(A) + impact(T))`` for a combined attack, with
  the same bootstrap.
* :meth:`Analysis.impact_ci` - the same bootstrap of one impact.
* :meth:`Analysis.affected_difference` - affected-subset impact of one attack minus that of another on
  the same model (adjective masking vs as many random words), each counted on the utterances it changed.

The statistics with intervals live in :mod:`featcache.metrics.intervals` (the base class).

The counting behind every method is in :mod:`featcache.metrics.groups`.
"""

from __future__ import annotations

import math

import numpy as np

from featcache.metrics.bootstrap import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, ResampleWeights
from featcache.metrics.groups import Group, affected_stats, by_session, group_predictions
from featcache.metrics.intervals import Intervals
from featcache.metrics.names import (
    AUDIO_MODEL,
    CLEAN,
    MULTIMODAL_MODEL,
    TEXT_MODEL,
    condition_key,
    natural_key,
    order_conditions,
    order_models,
)
from featcache.metrics.predictions import Predictions
from featcache.metrics.rows import AffectedStats, ModalImpact, ResultRow, SeedStat, SummaryRow
from featcache.metrics.scores import relative_change, scores_from_confusion


class Analysis(Intervals):
    """Grouped counts of a :class:`Predictions` table, and every statistic derived from them.

    Built once (one pass of sorting and counting); each method is then cheap.

    Args:
        predictions: The predictions.
        clean: Name of the clean condition.
        text_model: Name of the unimodal text model.
        audio_model: Name of the unimodal audio model.
        multimodal_model: Name of the paper's fusion model.

    Raises:
        FeatcacheError: Duplicate rows for one (fold, seed, model, condition, utterance), or a fold
            whose rows name more than one session.
    """

    def __init__(
        self,
        predictions: Predictions,
        *,
        clean: str = CLEAN,
        text_model: str = TEXT_MODEL,
        audio_model: str = AUDIO_MODEL,
        multimodal_model: str = MULTIMODAL_MODEL,
    ) -> None:
        self.predictions = predictions
        self.clean = clean
        self.text_model = text_model
        self.audio_model = audio_model
        self.multimodal_model = multimodal_model
        grouping = group_predictions(predictions, clean=clean)
        self._correct = grouping.correct
        self._utt_code = grouping.utt_code
        self._affected = predictions.affected
        self._groups = grouping.groups
        self._weights = ResampleWeights()

    # -- listing ---------------------------------------------------------------------------------

    def models(self) -> list[str]:
        """Models present, text/audio/multimodal first.

        Returns:
            Ordered model names.
        """
        return order_models({m for m, _ in self._groups}, text_model=self.text_model,
                            audio_model=self.audio_model, multimodal_model=self.multimodal_model)

    def fusion_models(self) -> list[str]:
        """Models other than the two unimodal ones, multimodal first.

        Returns:
            Ordered model names.
        """
        return [m for m in self.models() if m not in (self.text_model, self.audio_model)]

    def conditions(self, model: str | None = None) -> list[str]:
        """Conditions present (for one model, or for any), clean first, then the paper's order.

        Args:
            model: A model name, or ``None`` for all models.

        Returns:
            Ordered condition names.
        """
        return order_conditions({c for m, c in self._groups if model is None or m == model}, clean=self.clean)

    def has(self, model: str, condition: str) -> bool:
        """Whether predictions exist for a model under a condition.

        Args:
            model: Model name.
            condition: Condition name.

        Returns:
            True when at least one row exists.
        """
        return (model, condition) in self._groups

    def seeds(self, model: str | None = None, condition: str | None = None) -> tuple[int, ...]:
        """Seeds present (optionally for one model and condition).

        Args:
            model: Model name or ``None``.
            condition: Condition name or ``None``.

        Returns:
            Sorted seeds.
        """
        out = {s for (m, c), by_seed in self._groups.items()
               if (model is None or m == model) and (condition is None or c == condition) for s in by_seed}
        return tuple(sorted(out))

    def sessions(self) -> tuple[str, ...]:
        """Test sessions present, natural order.

        Returns:
            Session names.
        """
        return tuple(sorted({g.session for by_seed in self._groups.values() for folds in by_seed.values()
                             for g in folds.values()}, key=natural_key))

    def find_condition(self, model: str, key: tuple[str | None, str | None]) -> str | None:
        """The condition of a model whose canonical key is ``key``.

        Args:
            model: Model name.
            key: ``(audio_spec, text_spec)``.

        Returns:
            The condition name, or ``None`` when the model has none with that key.
        """
        for c in self.conditions(model):
            if condition_key(c) == key:
                return c
        return None

    # -- per-group ------------------------------------------------------------------------------

    def results(self) -> list[ResultRow]:
        """The tidy table: one row per (fold, seed, model, condition).

        Returns:
            Rows ordered by model, condition, seed, fold.
        """
        out: list[ResultRow] = []
        for model in self.models():
            for cond in self.conditions(model):
                for seed, folds in sorted(self._groups[(model, cond)].items()):
                    for fold, g in sorted(folds.items()):
                        acc, uar, f1 = scores_from_confusion(g.cm)
                        flip = g.flips / g.n_matched if g.n_matched else math.nan
                        am = g.n_affected_matched
                        out.append(ResultRow(
                            fold=fold, session=g.session, seed=seed, model=model, condition=cond, n=g.n,
                            accuracy=float(acc), uar=float(uar), macro_f1=float(f1), flip_rate=flip,
                            n_matched=g.n_matched, n_affected=g.n_affected,
                            accuracy_affected=g.correct_affected / am if am else math.nan,
                            clean_accuracy_affected=g.clean_correct_affected / am if am else math.nan,
                        ))
        return out

    def _by_session(self, model: str, condition: str, seed: int) -> dict[str, list[Group]]:
        return by_session(self._groups.get((model, condition), {}).get(seed, {}))

    def session_accuracy(self, model: str, condition: str, seed: int) -> dict[str, float]:
        """Accuracy per test session for one seed (folds of one session pooled).

        Args:
            model: Model name.
            condition: Condition name.
            seed: Seed.

        Returns:
            ``session -> accuracy``; empty when absent.
        """
        return {s: sum(g.correct for g in gs) / sum(g.n for g in gs)
                for s, gs in self._by_session(model, condition, seed).items()}

    def _session_scores(self, model: str, condition: str, seed: int) -> dict[str, tuple[float, float, float]]:
        out = {}
        for s, gs in self._by_session(model, condition, seed).items():
            acc, uar, f1 = scores_from_confusion(np.sum([g.cm for g in gs], axis=0))
            out[s] = (float(acc), float(uar), float(f1))
        return out

    def confusion(self, model: str, condition: str, *, seed: int | None = None) -> np.ndarray:
        """Confusion matrix of a model under a condition, summed over folds (and seeds unless one is given).

        Args:
            model: Model name.
            condition: Condition name.
            seed: One seed, or ``None`` for all.

        Returns:
            int64 ``[C, C]``, rows true, columns predicted, in the order of ``predictions.labels``.

        Raises:
            KeyError: No predictions for that model, condition (and seed).
        """
        by_seed = self._groups.get((model, condition), {})
        groups = [g for s, folds in by_seed.items() if seed is None or s == seed for g in folds.values()]
        if not groups:
            raise KeyError(f"no predictions for model {model!r} under condition {condition!r}"
                           + ("" if seed is None else f" with seed {seed}"))
        return np.sum([g.cm for g in groups], axis=0).astype(np.int64)

    def accuracy(self, model: str, condition: str) -> SeedStat:
        """The Avg. column: per seed, the mean of the per-session accuracies.

        Args:
            model: Model name.
            condition: Condition name.

        Returns:
            Per-seed averages.
        """
        seeds = self.seeds(model, condition)
        return SeedStat(seeds, tuple(float(np.mean(list(self.session_accuracy(model, condition, s).values())))
                                     for s in seeds))

    def impact(self, model: str, condition: str) -> SeedStat:
        """Impact (percent) of a condition on a model, per seed, against the model's clean condition.

        Both averages run over the sessions the condition and the clean condition share for that seed.

        Args:
            model: Model name.
            condition: Condition name.

        Returns:
            Per-seed impacts; seeds without clean predictions are left out.
        """
        seeds, values = [], []
        for s in self.seeds(model, condition):
            att = self.session_accuracy(model, condition, s)
            base = self.session_accuracy(model, self.clean, s)
            shared = sorted(set(att) & set(base))
            if not shared:
                continue
            seeds.append(s)
            values.append(relative_change(float(np.mean([att[x] for x in shared])),
                                          float(np.mean([base[x] for x in shared]))))
        return SeedStat(tuple(seeds), tuple(values))

    def flip_rate(self, model: str, condition: str) -> SeedStat:
        """Share of predictions that change from clean, per seed (pooled over folds).

        Args:
            model: Model name.
            condition: Condition name.

        Returns:
            Per-seed flip rates (NaN for a seed without clean counterparts).
        """
        seeds = self.seeds(model, condition)
        vals = []
        for s in seeds:
            gs = self._groups[(model, condition)][s].values()
            matched = sum(g.n_matched for g in gs)
            vals.append(sum(g.flips for g in gs) / matched if matched else math.nan)
        return SeedStat(seeds, tuple(vals))

    def affected(self, model: str, condition: str) -> AffectedStats:
        """Scores on the utterances the condition changed (and that have a clean prediction).

        Per seed, the attacked and the clean accuracy of the affected utterances are computed per
        session and averaged over the sessions that have any, like the Avg. column.

        Args:
            model: Model name.
            condition: Condition name.

        Returns:
            The subset's size and scores.
        """
        seeds = self.seeds(model, condition)
        return affected_stats(seeds, [self._by_session(model, condition, s) for s in seeds])

    def parts(self, model: str, condition: str) -> list[tuple[str, str]]:
        """The unimodal (model, condition) cells carrying the parts of an attack, audio part first.

        Args:
            model: A fusion model (a unimodal model gets ``[]``).
            condition: Its condition.

        Returns:
            ``(unimodal model, its condition)`` for each part some unimodal model was evaluated on.
        """
        if model in (self.text_model, self.audio_model) or condition == self.clean:
            return []
        key = condition_key(condition)
        if key is None:
            return []
        out = []
        audio, text = key
        if audio is not None and (c := self.find_condition(self.audio_model, (audio, None))) is not None:
            out.append((self.audio_model, c))
        if text is not None and (c := self.find_condition(self.text_model, (None, text))) is not None:
            out.append((self.text_model, c))
        return out

    def single_modal(self, model: str, condition: str) -> tuple[ModalImpact, ...]:
        """The paper's "Impact S. Modal": the unimodal impacts of the parts of an attack.

        Args:
            model: A fusion model.
            condition: Its condition.

        Returns:
            One :class:`ModalImpact` per part found, audio part first.
        """
        return tuple(ModalImpact(m, c, self.impact(m, c)) for m, c in self.parts(model, condition))

    # -- aggregated -----------------------------------------------------------------------------

    def summary_row(
        self,
        model: str,
        condition: str,
        *,
        n_resamples: int = DEFAULT_RESAMPLES,
        confidence: float = DEFAULT_CONFIDENCE,
        seed: int = 0,
    ) -> SummaryRow:
        """Aggregate one (model, condition) over folds and seeds.

        Args:
            model: Model name.
            condition: Condition name.
            n_resamples: Bootstrap resamples for the fusion-vs-unimodal interval (0: none).
            confidence: Confidence level.
            seed: Resampling seed.

        Returns:
            The aggregated row.

        Raises:
            KeyError: No predictions for that model and condition.
        """
        if not self.has(model, condition):
            raise KeyError(f"no predictions for model {model!r} under condition {condition!r}")
        seeds = self.seeds(model, condition)
        per_seed = {s: self._session_scores(model, condition, s) for s in seeds}
        sessions = tuple(sorted({x for d in per_seed.values() for x in d}, key=natural_key))
        sess_acc = tuple(float(np.mean([per_seed[s][x][0] for s in seeds if x in per_seed[s]])) for x in sessions)

        def avg(i: int) -> SeedStat:
            return SeedStat(seeds, tuple(float(np.mean([v[i] for v in per_seed[s].values()])) for s in seeds))

        n = float(np.mean([sum(g.n for g in self._groups[(model, condition)][s].values()) for s in seeds]))
        is_clean = condition == self.clean
        diff = None
        if not is_clean and model not in (self.text_model, self.audio_model):
            diff = self.impact_difference(model, condition, n_resamples=n_resamples, confidence=confidence, seed=seed)
        return SummaryRow(
            model=model, condition=condition, seeds=seeds, n=n, sessions=sessions, session_accuracy=sess_acc,
            accuracy=avg(0), uar=avg(1), macro_f1=avg(2),
            impact=SeedStat.empty() if is_clean else self.impact(model, condition),
            single_modal=() if is_clean else self.single_modal(model, condition),
            flip_rate=self.flip_rate(model, condition),
            affected=None if is_clean else self.affected(model, condition),
            difference=diff,
        )

    def summary(
        self,
        *,
        n_resamples: int = DEFAULT_RESAMPLES,
        confidence: float = DEFAULT_CONFIDENCE,
        seed: int = 0,
    ) -> list[SummaryRow]:
        """The aggregated table: one row per (model, condition).

        Args:
            n_resamples: Bootstrap resamples for the fusion-vs-unimodal intervals (0: none).
            confidence: Confidence level.
            seed: Resampling seed.

        Returns:
            Rows ordered by model, then condition.
        """
        return [self.summary_row(m, c, n_resamples=n_resamples, confidence=confidence, seed=seed)
                for m in self.models() for c in self.conditions(m)]
