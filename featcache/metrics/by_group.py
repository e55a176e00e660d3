"""Robustness by group: clean accuracy and each attack's impact on the utterances of each group (a speaker's
sex, an accent, a speaker), with paired bootstrap intervals, and the largest gap between the groups, per model.

A grouping maps utterance ids to groups (``{"Ses01F_impro01_F000": "F", ...}``, from
:meth:`featcache.data.Corpus.groups`). Each group's numbers are those of an
:class:`~featcache.metrics.Analysis` of the predictions restricted to its utterances' rows, so every
definition is the one of the whole table:

* **Clean accuracy** - the Avg. column on the group's utterances: per seed, the mean over the test sessions
  that hold any of them of the accuracy on those of the session; mean and sample std over seeds. (With
  leave-one-session-out folds on IEMOCAP every session holds both sexes.)
* **Impact** - ``(Avg. under attack - clean Avg.) / clean Avg. x 100`` on the group's utterances, per seed.
* **Intervals** - the paired, fold-stratified percentile bootstrap of
  :meth:`~featcache.metrics.Analysis.impact_ci` on the group's utterances alone (every resample draws them
  with replacement within each fold; the clean and the attacked prediction of a drawn utterance go
  together); clean accuracy gets the same bootstrap of its Avg. Each group is resampled with its own seed,
  derived from the resampling seed and the group's name (:func:`group_seed`), so groups are drawn
  independently.
* **Gap** - for clean accuracy and for each attack, the group with the highest value minus the group with
  the lowest (per seed, then mean and std over seeds; accuracy as a fraction, impact in percentage
  points). Its interval is the percentile interval of the difference of the two groups' resampled values
  (independent draws of disjoint utterances). The two groups are chosen on the point estimates and the
  interval does not account for that choice: with more than two groups it is narrower than it should be.

Utterances without a group in the grouping are left out of its tables.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from featcache.metrics.analysis import Analysis
from featcache.metrics.bootstrap import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    Replicates,
    impact_statistic,
    percentile_interval,
    seedwise,
)
from featcache.metrics.names import natural_key
from featcache.metrics.rows import BootstrapCI, SeedStat

GAP = "gap"
"""The ``group`` of a gap's row in ``summary.csv`` (its two groups are in ``gap_high`` and ``gap_low``)."""


@dataclass(frozen=True)
class GroupCell:
    """One statistic of one group, or of a gap.

    Attributes:
        stat: Per seed (accuracy as a fraction, impact in percent).
        ci: Its bootstrap interval (of the mean over seeds), or ``None`` when not computed.
    """

    stat: SeedStat
    ci: BootstrapCI | None


@dataclass(frozen=True)
class GroupRow:
    """One group's row of a table.

    Attributes:
        group: The group (``F``).
        n: Its utterances with a clean prediction of the model (distinct ids over folds and seeds).
        accuracy: Clean Avg. accuracy on them.
        impacts: ``attack -> impact`` on them (attacks the model was evaluated on).
    """

    group: str
    n: int
    accuracy: GroupCell
    impacts: Mapping[str, GroupCell]


@dataclass(frozen=True)
class GroupGap:
    """The largest gap between groups in one column of a table.

    Attributes:
        condition: The clean condition (clean accuracy) or an attack (its impact).
        high: The group with the highest value.
        low: The group with the lowest value.
        gap: ``high - low``.
    """

    condition: str
    high: str
    low: str
    gap: GroupCell


@dataclass(frozen=True)
class GroupTable:
    """One model's robustness by one grouping.

    Attributes:
        grouping: The grouping (``sex``).
        model: The model.
        clean: The clean condition.
        attacks: The attack columns, in table order.
        rows: One per group with clean predictions, in natural order of the groups.
        gaps: ``condition -> gap`` for the columns at least two groups have (the clean condition: accuracy).
    """

    grouping: str
    model: str
    clean: str
    attacks: tuple[str, ...]
    rows: tuple[GroupRow, ...]
    gaps: Mapping[str, GroupGap]


def group_seed(seed: int, grouping: str, group: str) -> int:
    """The resampling seed of one group: independent draws per group, the same for the same inputs.

    Args:
        seed: The resampling seed.
        grouping: The grouping.
        group: The group.

    Returns:
        A 32-bit seed.
    """
    digest = hashlib.sha256(f"{seed}\0{grouping}\0{group}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _accuracy_statistic(acc: np.ndarray) -> np.ndarray:
    """Clean Avg. accuracy of the cell ``[(model, clean)]``: ``[1, seeds, B] -> [seeds, B]``."""
    return acc[0]


def _interval(reps: Replicates | None, confidence: float) -> BootstrapCI | None:
    return None if reps is None else percentile_interval(reps, confidence=confidence)


def group_tables(
    analysis: Analysis,
    groups: Mapping[str, str],
    *,
    grouping: str,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> list[GroupTable]:
    """Robustness by group for every model of an analysis (see the module's docstring for the definitions).

    Args:
        analysis: The analysis of every prediction (its clean condition and model names are used).
        groups: ``utterance id -> group``; rows of other utterances are left out.
        grouping: The grouping's name (in the tables and the seeds of the resamples).
        n_resamples: Bootstrap resamples (0: no intervals).
        confidence: Confidence level.
        seed: Resampling seed.

    Returns:
        One table per model with clean predictions of at least one group, in the analysis's model order.

    Raises:
        ValueError: ``n_resamples < 0`` or ``confidence`` outside (0, 1).
    """
    if n_resamples < 0:
        raise ValueError(f"n_resamples must be >= 0, got {n_resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    preds, clean = analysis.predictions, analysis.clean
    uniq, inv = np.unique(preds.utt_id, return_inverse=True)
    of_utt = np.array([groups.get(str(u), "") for u in uniq], dtype=object)
    row_group = of_utt[inv.reshape(-1)] if len(preds) else np.zeros(0, dtype=object)
    names = sorted({g for g in of_utt.tolist() if g}, key=natural_key)
    per_group = {g: Analysis(preds.take(row_group == g), clean=clean, text_model=analysis.text_model,
                             audio_model=analysis.audio_model, multimodal_model=analysis.multimodal_model)
                 for g in names}
    out = []
    for model in analysis.models():
        attacks = tuple(c for c in analysis.conditions(model) if c != clean)
        rows: list[GroupRow] = []
        reps: dict[tuple[str, str], Replicates | None] = {}
        for g, an in per_group.items():
            if not an.has(model, clean):
                continue
            gseed = group_seed(seed, grouping, g)
            cells = {clean: [(model, clean)], **{a: [(model, clean), (model, a)] for a in attacks if an.has(model, a)}}
            for cond, pair in cells.items():
                reps[(g, cond)] = (an.replicates(pair, _accuracy_statistic if cond == clean else impact_statistic,
                                                 n_resamples=n_resamples, seed=gseed) if n_resamples > 0 else None)
            clean_rows = an.predictions.select(model=model, condition=clean)
            rows.append(GroupRow(
                group=g, n=len(np.unique(clean_rows.utt_id)),
                accuracy=GroupCell(an.accuracy(model, clean), _interval(reps[(g, clean)], confidence)),
                impacts={a: GroupCell(an.impact(model, a), _interval(reps[(g, a)], confidence))
                         for a in attacks if (g, a) in reps},
            ))
        if not rows:
            continue
        gaps = {}
        for cond in (clean, *attacks):
            cands = [(r.group, r.accuracy if cond == clean else r.impacts.get(cond)) for r in rows]
            cands = [(g, c) for g, c in cands if c is not None and math.isfinite(c.stat.mean)]
            if len(cands) < 2:
                continue
            (hi, hc), (lo, lc) = max(cands, key=lambda x: x[1].stat.mean), min(cands, key=lambda x: x[1].stat.mean)
            if hi == lo:  # every value equal: the first and the last group
                (hi, hc), (lo, lc) = cands[0], cands[-1]
            rh, rl = reps.get((hi, cond)), reps.get((lo, cond))
            ci = None
            if rh is not None and rl is not None:
                ci = percentile_interval(Replicates(
                    estimate=rh.estimate - rl.estimate, values=rh.values - rl.values,
                    n_utterances=rh.n_utterances + rl.n_utterances, n_resamples=n_resamples, seed=seed,
                ), confidence=confidence)
            gaps[cond] = GroupGap(cond, hi, lo, GroupCell(seedwise(lambda a, b: a - b, hc.stat, lc.stat), ci))
        out.append(GroupTable(grouping=grouping, model=model, clean=clean, attacks=attacks, rows=tuple(rows),
                              gaps=gaps))
    return out


def group_records(tables: Sequence[GroupTable]) -> list[dict[str, Any]]:
    """Group tables as flat dicts: the rows they add to ``summary.csv``.

    One row per (model, grouping, group, condition): ``accuracy_mean``/``accuracy_std`` (a fraction) on the
    clean condition's row, ``impact_mean``/``impact_std`` (percent) on an attack's, and ``group_ci_low`` /
    ``group_ci_high`` its interval; then one row per gap with ``group`` :data:`GAP`, its two groups in
    ``gap_high`` and ``gap_low`` and the gap in the same columns (accuracy in fractions, impact in points).

    Args:
        tables: From :func:`group_tables`.

    Returns:
        The rows.
    """
    out: list[dict[str, Any]] = []

    def record(t: GroupTable, cond: str, group: str, n: int | None, cell: GroupCell,
               gap: GroupGap | None = None) -> dict[str, Any]:
        kind = "accuracy" if cond == t.clean else "impact"
        ci = cell.ci
        return {"model": t.model, "condition": cond, "n_seeds": len(cell.stat.seeds), "n": n,
                "grouping": t.grouping, "group": group, f"{kind}_mean": cell.stat.mean, f"{kind}_std": cell.stat.std,
                "gap_high": gap.high if gap else None, "gap_low": gap.low if gap else None,
                "group_ci_low": ci.low if ci else None, "group_ci_high": ci.high if ci else None,
                "group_ci_confidence": ci.confidence if ci else None}

    for t in tables:
        for r in t.rows:
            out.append(record(t, t.clean, r.group, r.n, r.accuracy))
            out += [record(t, a, r.group, r.n, r.impacts[a]) for a in t.attacks if a in r.impacts]
        out += [record(t, cond, GAP, None, gap.gap, gap) for cond, gap in t.gaps.items()]
    return out


__all__ = ["GAP", "GroupCell", "GroupGap", "GroupRow", "GroupTable", "group_records", "group_seed", "group_tables"]
