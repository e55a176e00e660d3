"""Grouping: one counting pass over a :class:`Predictions` table, and the affected-subset scores.

:func:`group_predictions` sorts the rows once by (fold, seed, model, condition, utterance), matches
every row with the clean prediction of the same (fold, seed, model, utterance) and counts, for every
(fold, seed, model, condition) group at once (one ``np.bincount`` each), its confusion matrix,
correct predictions, flips from clean and affected utterances. Every statistic of
:class:`~featcache.metrics.Analysis` is then a sum over these counts.

* **Flip rate** - share of predictions that differ from the clean prediction of the same
  (fold, seed, model, utterance).
* **Affected subset** - the utterances a condition actually changed (``affected``); its impact compares
  the attacked and the clean accuracy of the same utterances, session-averaged like Avg.
  (:func:`affected_stats`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from featcache.errors import FeatcacheError
from featcache.metrics.names import natural_key
from featcache.metrics.predictions import Predictions
from featcache.metrics.rows import AffectedStats, SeedStat
from featcache.metrics.scores import relative_change


@dataclass
class Group:
    """Counts of one (fold, seed, model, condition) group.

    Attributes:
        fold: Fold index.
        session: The fold's test session.
        seed: Training seed.
        model: Model name.
        condition: Condition name.
        n: Number of rows.
        correct: Correct predictions.
        cm: int64 ``[C, C]`` confusion matrix, rows true, columns predicted.
        flips: Predictions that differ from the clean prediction of the same utterance.
        n_matched: Rows with a clean prediction of the same utterance.
        n_affected: Rows the condition changed.
        n_affected_matched: Affected rows with a clean prediction.
        correct_affected: Correct predictions among those.
        clean_correct_affected: Correct clean predictions of those same utterances.
        rows: Row indices into the predictions, sorted by utterance code.
    """

    fold: int
    session: str
    seed: int
    model: str
    condition: str
    n: int
    correct: int
    cm: np.ndarray
    flips: int
    n_matched: int
    n_affected: int
    n_affected_matched: int
    correct_affected: int
    clean_correct_affected: int
    rows: np.ndarray  # row indices sorted by utterance code


GroupMap = dict[tuple[str, str], dict[int, dict[int, Group]]]
"""``(model, condition) -> seed -> fold -> Group``."""


@dataclass(frozen=True)
class Grouping:
    """The result of :func:`group_predictions`.

    Attributes:
        groups: ``(model, condition) -> seed -> fold ->`` :class:`Group`.
        correct: bool ``[n]``, whether each row's prediction is its true label.
        utt_code: int64 ``[n]``, each row's utterance as an index into the sorted distinct utterance ids.
    """

    groups: GroupMap
    correct: np.ndarray
    utt_code: np.ndarray


def group_predictions(predictions: Predictions, *, clean: str) -> Grouping:
    """Count every (fold, seed, model, condition) group of a predictions table in one pass.

    Args:
        predictions: The predictions.
        clean: Name of the clean condition (the counterpart of flips and affected-subset scores).

    Returns:
        The groups and the per-row arrays the paired bootstrap needs.

    Raises:
        FeatcacheError: Duplicate rows for one (fold, seed, model, condition, utterance), or a fold
            whose rows name more than one session.
    """
    p = predictions
    correct_rows = p.pred == p.label
    codes: dict[str, np.ndarray] = {}
    sizes: dict[str, int] = {}
    for name in ("fold", "seed", "model", "condition", "utt_id", "session"):
        uniq, inv = np.unique(getattr(p, name), return_inverse=True)
        codes[name] = inv.reshape(-1).astype(np.int64)
        sizes[name] = max(1, len(uniq))
    # (fold, seed, model, utt) identifies a clean counterpart
    pair = np.ravel_multi_index(
        (codes["fold"], codes["seed"], codes["model"], codes["utt_id"]),
        (sizes["fold"], sizes["seed"], sizes["model"], sizes["utt_id"]),
    )
    group = np.ravel_multi_index(
        (codes["fold"], codes["seed"], codes["model"], codes["condition"]),
        (sizes["fold"], sizes["seed"], sizes["model"], sizes["condition"]),
    )
    full = group * sizes["utt_id"] + codes["utt_id"]
    order = np.argsort(full, kind="stable")
    if len(order) > 1 and np.any(np.diff(full[order]) == 0):
        i = order[np.flatnonzero(np.diff(full[order]) == 0)[0]]
        raise FeatcacheError(
            f"predictions hold duplicate rows for fold {p.fold[i]}, seed {p.seed[i]}, model {p.model[i]!r}, "
            f"condition {p.condition[i]!r}, utterance {p.utt_id[i]!r}; write each row once"
        )
    is_clean = p.condition == clean
    clean_rows = np.flatnonzero(is_clean)
    clean_pairs = pair[clean_rows]
    srt = np.argsort(clean_pairs, kind="stable")
    clean_pairs, clean_rows = clean_pairs[srt], clean_rows[srt]
    if len(clean_pairs):
        pos = np.minimum(np.searchsorted(clean_pairs, pair), len(clean_pairs) - 1)
        has_clean = clean_pairs[pos] == pair
        match = np.where(has_clean, clean_rows[pos], -1)
    else:
        has_clean = np.zeros(len(p), dtype=bool)
        match = np.full(len(p), -1, dtype=np.int64)
    clean_pred = np.where(has_clean, p.pred[np.maximum(match, 0)], -1) if len(p) else np.zeros(0, np.int64)
    clean_correct = has_clean & (clean_pred == p.label)
    flipped = has_clean & (clean_pred != p.pred)
    aff = p.affected & ~is_clean
    aff_matched = aff & has_clean

    gid_sorted = group[order]
    starts = np.flatnonzero(np.r_[True, gid_sorted[1:] != gid_sorted[:-1]]) if len(order) else np.zeros(0, int)
    ends = np.r_[starts[1:], len(order)]
    gids = gid_sorted[starts] if len(order) else np.zeros(0, int)
    ginv = np.searchsorted(gids, group)
    n_groups = len(gids)
    C = p.n_classes

    def per_group(x: np.ndarray) -> np.ndarray:
        return np.bincount(ginv, weights=x.astype(np.float64), minlength=n_groups).astype(np.int64)

    cms = np.bincount(ginv * C * C + p.label * C + p.pred, minlength=n_groups * C * C).reshape(n_groups, C, C)
    n_rows = np.bincount(ginv, minlength=n_groups)
    correct = per_group(correct_rows)
    flips = per_group(flipped)
    matched = per_group(has_clean)
    n_aff = per_group(aff)
    n_aff_m = per_group(aff_matched)
    corr_aff = per_group(aff_matched & correct_rows)
    ccorr_aff = per_group(aff_matched & clean_correct)

    sess_sorted = codes["session"][order]
    if n_groups:
        s_min = np.minimum.reduceat(sess_sorted, starts)
        s_max = np.maximum.reduceat(sess_sorted, starts)
    groups: GroupMap = {}
    fold_session: dict[int, str] = {}
    for g in range(n_groups):
        rows = order[starts[g]:ends[g]]
        r0 = rows[0]
        fold, seed = int(p.fold[r0]), int(p.seed[r0])
        session = str(p.session[r0])
        if s_min[g] != s_max[g] or fold_session.setdefault(fold, session) != session:
            other = sorted({*np.unique(p.session[rows]).tolist(), fold_session[fold]}, key=natural_key)
            raise FeatcacheError(
                f"fold {fold} names more than one test session ({', '.join(other)}); "
                "give every row of a fold its fold's test session"
            )
        grp = Group(
            fold=fold, session=session, seed=seed, model=str(p.model[r0]), condition=str(p.condition[r0]),
            n=int(n_rows[g]), correct=int(correct[g]), cm=cms[g], flips=int(flips[g]),
            n_matched=int(matched[g]), n_affected=int(n_aff[g]), n_affected_matched=int(n_aff_m[g]),
            correct_affected=int(corr_aff[g]), clean_correct_affected=int(ccorr_aff[g]), rows=rows,
        )
        groups.setdefault((grp.model, grp.condition), {}).setdefault(seed, {})[fold] = grp
    return Grouping(groups=groups, correct=correct_rows, utt_code=codes["utt_id"])


def by_session(folds: Mapping[int, Group]) -> dict[str, list[Group]]:
    """The groups of one (model, condition, seed) by test session.

    Args:
        folds: ``fold -> group`` of one seed.

    Returns:
        ``session -> groups`` (folds of one session together).
    """
    out: dict[str, list[Group]] = {}
    for g in folds.values():
        out.setdefault(g.session, []).append(g)
    return out


def affected_stats(seeds: tuple[int, ...], per_seed: Sequence[Mapping[str, Sequence[Group]]]) -> AffectedStats:
    """Scores on the utterances a condition changed (and that have a clean prediction).

    Per seed, the attacked and the clean accuracy of the affected utterances are computed per
    session and averaged over the sessions that have any, like the Avg. column.

    Args:
        seeds: The seeds.
        per_seed: For each seed, in the same order, its groups by session (see :func:`by_session`).

    Returns:
        The subset's size and scores.
    """
    n, n_aff, acc, cacc, imp = [], [], [], [], []
    for by_sess in per_seed:
        n.append(sum(g.n for gs in by_sess.values() for g in gs))
        n_aff.append(sum(g.n_affected for gs in by_sess.values() for g in gs))
        a_list, c_list = [], []
        for gs in by_sess.values():
            m = sum(g.n_affected_matched for g in gs)
            if m:
                a_list.append(sum(g.correct_affected for g in gs) / m)
                c_list.append(sum(g.clean_correct_affected for g in gs) / m)
        a = float(np.mean(a_list)) if a_list else math.nan
        c = float(np.mean(c_list)) if c_list else math.nan
        acc.append(a)
        cacc.append(c)
        imp.append(relative_change(a, c))
    n_mean = float(np.mean(n)) if n else math.nan
    aff_mean = float(np.mean(n_aff)) if n_aff else math.nan
    return AffectedStats(
        n=n_mean, n_affected=aff_mean, share=aff_mean / n_mean if n_mean else math.nan,
        accuracy=SeedStat(seeds, tuple(acc)), clean_accuracy=SeedStat(seeds, tuple(cacc)),
        impact=SeedStat(seeds, tuple(imp)),
    )
