"""Tidy tables of an analysis and their CSV files.

:func:`results_table` gives one :class:`~featcache.metrics.ResultRow` per fold, seed, model and
condition (:meth:`Analysis.results <featcache.metrics.Analysis.results>`), :func:`summary_table` one
:class:`~featcache.metrics.SummaryRow` per model and condition
(:meth:`Analysis.summary <featcache.metrics.Analysis.summary>`); :func:`write_results_csv` and
:func:`write_summary_csv` write them as ``results.csv`` and ``summary.csv``.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from featcache.cache.atomic import atomic_write_bytes
from featcache.metrics.analysis import Analysis
from featcache.metrics.bootstrap import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES
from featcache.metrics.by_group import GroupTable, group_records
from featcache.metrics.names import AUDIO_MODEL, CLEAN, TEXT_MODEL, natural_key
from featcache.metrics.predictions import Predictions
from featcache.metrics.rows import ResultRow, SummaryRow


def results_table(predictions: Predictions, *, clean: str = CLEAN) -> list[ResultRow]:
    """One :class:`ResultRow` per (fold, seed, model, condition).

    Args:
        predictions: The predictions.
        clean: Name of the clean condition.

    Returns:
        The tidy rows.
    """
    return Analysis(predictions, clean=clean).results()


def summary_table(
    predictions: Predictions,
    *,
    clean: str = CLEAN,
    text_model: str = TEXT_MODEL,
    audio_model: str = AUDIO_MODEL,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> list[SummaryRow]:
    """One :class:`SummaryRow` per (model, condition).

    Args:
        predictions: The predictions.
        clean: Name of the clean condition.
        text_model: Name of the text model.
        audio_model: Name of the audio model.
        n_resamples: Bootstrap resamples (0: no intervals).
        confidence: Confidence level.
        seed: Resampling seed.

    Returns:
        The aggregated rows.
    """
    analysis = Analysis(predictions, clean=clean, text_model=text_model, audio_model=audio_model)
    return analysis.summary(n_resamples=n_resamples, confidence=confidence, seed=seed)


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return "" if not math.isfinite(float(value)) else repr(round(float(value), 10))
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    return value


def write_csv(records: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write dict records as CSV (header from the union of keys, first-seen order; NaN/None empty).

    Args:
        records: Rows as mappings.
        path: Destination.

    Returns:
        The path written.

    Raises:
        StoreError: The disk is full or the folder read-only (one line naming the file).
    """
    header: list[str] = []
    for r in records:
        header.extend(k for k in r if k not in header)
    f = io.StringIO(newline="")
    w = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
    w.writeheader()
    for r in records:
        w.writerow({k: _csv_value(r.get(k)) for k in header})
    return atomic_write_bytes(path, f.getvalue().encode("utf-8"))  # a full disk or a read-only folder: one line


def result_records(rows: Iterable[ResultRow]) -> list[dict[str, Any]]:
    """Result rows as flat dicts (the columns of ``results.csv``).

    Args:
        rows: Result rows.

    Returns:
        One dict per row.
    """
    return [{f.name: getattr(r, f.name) for f in fields(ResultRow)} for r in rows]


def summary_records(rows: Sequence[SummaryRow], *, text_model: str = TEXT_MODEL,
                    audio_model: str = AUDIO_MODEL) -> list[dict[str, Any]]:
    """Summary rows as flat dicts (the columns of ``summary.csv``).

    Accuracies and flip rates are fractions, impacts percentages; ``acc_ses_<s>`` is the mean over
    seeds of session ``s``'s accuracy.

    Args:
        rows: Summary rows.
        text_model: Name of the text model (for the ``smodal_text_*`` columns).
        audio_model: Name of the audio model (for the ``smodal_audio_*`` columns).

    Returns:
        One dict per row, all with the same keys.
    """
    sessions = sorted({s for r in rows for s in r.sessions}, key=natural_key)
    out = []
    for r in rows:
        rec: dict[str, Any] = {
            "model": r.model, "condition": r.condition, "n_seeds": len(r.seeds), "n": r.n,
        }
        acc = dict(zip(r.sessions, r.session_accuracy))
        for s in sessions:
            rec[f"acc_ses_{s}"] = acc.get(s)
        rec.update({
            "accuracy_mean": r.accuracy.mean, "accuracy_std": r.accuracy.std,
            "uar_mean": r.uar.mean, "uar_std": r.uar.std,
            "macro_f1_mean": r.macro_f1.mean, "macro_f1_std": r.macro_f1.std,
            "impact_mean": r.impact.mean, "impact_std": r.impact.std,
        })
        sm = {m.model: m for m in r.single_modal}
        for tag, name in (("audio", audio_model), ("text", text_model)):
            m = sm.get(name)
            rec[f"smodal_{tag}_condition"] = m.condition if m else None
            rec[f"smodal_{tag}_impact_mean"] = m.impact.mean if m else None
            rec[f"smodal_{tag}_impact_std"] = m.impact.std if m else None
        rec.update({"flip_rate_mean": r.flip_rate.mean, "flip_rate_std": r.flip_rate.std})
        a = r.affected
        rec.update({
            "n_affected": a.n_affected if a else None, "affected_share": a.share if a else None,
            "affected_accuracy_mean": a.accuracy.mean if a else None,
            "affected_clean_accuracy_mean": a.clean_accuracy.mean if a else None,
            "affected_impact_mean": a.impact.mean if a else None,
            "affected_impact_std": a.impact.std if a else None,
        })
        d = r.difference
        ci = d.ci if d else None
        rec.update({
            "ci_versus": f"{d.unimodal}:{d.unimodal_condition}" if d else None,
            "impact_diff_mean": d.difference.mean if d else None,
            "ci_low": ci.low if ci else None, "ci_high": ci.high if ci else None,
            "ci_confidence": ci.confidence if ci else None,
            "ci_excludes_zero": ci.excludes_zero if ci else None,
        })
        out.append(rec)
    return out


def write_results_csv(rows: Iterable[ResultRow], path: str | os.PathLike[str]) -> Path:
    """Write the tidy per-group table.

    Args:
        rows: Result rows.
        path: Destination.

    Returns:
        The path written.
    """
    return write_csv(result_records(rows), path)


def write_summary_csv(rows: Sequence[SummaryRow], path: str | os.PathLike[str], *, text_model: str = TEXT_MODEL,
                      audio_model: str = AUDIO_MODEL, groups: Sequence[GroupTable] = ()) -> Path:
    """Write the aggregated table.

    Args:
        rows: Summary rows.
        path: Destination.
        text_model: Name of the text model.
        audio_model: Name of the audio model.
        groups: Robustness by group: their rows (:func:`~featcache.metrics.by_group.group_records`, with the
            columns ``grouping``, ``group``, ``gap_high``, ``gap_low``, ``group_ci_*``) follow the summary's.

    Returns:
        The path written.
    """
    return write_csv(summary_records(rows, text_model=text_model, audio_model=audio_model) + group_records(groups),
                     path)
