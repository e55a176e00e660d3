"""The report's Overview: the study's result at a glance, first on ``report.html``.

* ``overview`` (PNG and SVG) - one heatmap of impact: rows the models (text, audio, multimodal first,
  then the fusion models and ablations, as the tables order them; layer-sweep models are left out as
  everywhere but the Layers section), columns the attacks in the report's order (the paper's first),
  each cell the mean impact over seeds in percent; a cell whose paired bootstrap interval (the one the
  tables show) excludes 0 is set in bold with an asterisk and outlined;
* a compact table of each model's clean Avg. accuracy and UAR (mean ± std over seeds, as the tables
  show them), in ``report.html`` beside the heatmap and in ``summary.md``;
* RQ1-RQ3, each one compact table (:mod:`featcache.report.questions`), RQ1 beside the heatmap and RQ2-RQ3
  under it, so that the first screen (1400 x 900) holds the study's answer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from featcache import paper
from featcache.metrics.analysis import Analysis
from featcache.metrics.names import condition_key
from featcache.metrics.rows import BootstrapCI, SummaryRow
from featcache.report.html import _e, _plot_html
from featcache.report.parts import ORDER, Part
from featcache.report.plots import WIDTH_IN, Plot, _save, impact_heatmap
from featcache.report.questions import Question, question_html
from featcache.report.render import _cell_plain, _num
from featcache.report.tables import Cell

OVERVIEW = "overview"
"""The heatmap's file stem (``overview.png``, ``overview.svg``)."""

RESEARCH_QUESTIONS: tuple[str, ...] = ("rq1", "rq2", "rq3")
"""The questions the Overview answers (:class:`~featcache.report.questions.Question` keys); the others are in
the details."""


def overview_axes(analysis: Analysis) -> tuple[list[str], list[str]]:
    """The heatmap's rows and columns.

    Args:
        analysis: The report's analysis (without layer sweeps).

    Returns:
        ``(models, attacks)``: models in the report's order, attacks the paper's first, then the others.
    """
    attacks = [c for c in analysis.conditions() if c != analysis.clean]
    paper_keys = {condition_key(c) for c in paper.CONDITIONS}
    ours = [c for c in attacks if condition_key(c) in paper_keys]
    return list(analysis.models()), ours + [c for c in attacks if c not in ours]


def draw_overview(analysis: Analysis, summary: Sequence[SummaryRow],
                  cis: Mapping[tuple[str, str], BootstrapCI | None], out_dir: Path, *,
                  confidence: float) -> Plot | None:
    """Draw the impact heatmap (``overview.png`` and ``.svg``).

    Args:
        analysis: The report's analysis.
        summary: Its summary rows.
        cis: ``(model, condition) -> impact interval`` (missing or None: no mark).
        out_dir: Directory.
        confidence: The intervals' confidence level (for the caption).

    Returns:
        The plot, or None when there is no attack to show.
    """
    models, attacks = overview_axes(analysis)
    if not models or not attacks:
        return None
    rows = {(r.model, r.condition): r for r in summary}
    vals = np.full((len(models), len(attacks)), math.nan)
    marks = np.zeros((len(models), len(attacks)), dtype=bool)
    for i, m in enumerate(models):
        for j, a in enumerate(attacks):
            r = rows.get((m, a))
            if r is not None and r.impact.values:
                vals[i, j] = r.impact.mean
            ci = cis.get((m, a))
            marks[i, j] = ci is not None and math.isfinite(ci.low) and ci.excludes_zero
    many = len(attacks) > 14
    width = min(WIDTH_IN, 3.0 + 0.62 * len(attacks)) if many else max(6.0, min(WIDTH_IN, 3.0 + 0.85 * len(attacks)))
    longest = max(len(a) for a in attacks)
    height = 1.3 + 0.32 * len(models) + (0.06 * min(longest, 24) if longest > 8 or len(attacks) > 12 else 0.0)
    fig = impact_heatmap(vals, rows=models, columns=attacks, title="Impact of each attack on each model",
                         xlabel="Attack", ylabel="Model", figsize=(width, min(height, 5.2)), marks=marks,
                         fontsize=(5.0 if len(attacks) > 24 else "x-small") if many else "small")
    pct = f"{round(confidence * 100)} %"
    mark = f" Bold, * and outlined: the paired {pct} interval excludes 0." if marks.any() or cis else ""
    return _save(fig, out_dir, OVERVIEW, "Impact of each attack",
                 "Relative change of clean Avg. accuracy, per model, mean over seeds (red: worse than clean, blue: "
                 "better, grey: not run)." + mark)


def accuracy_rows(analysis: Analysis, summary: Sequence[SummaryRow], *, n_resamples: int = 0,
                  confidence: float = 0.95, seed: int = 0) -> list[tuple[str, str, str, str]]:
    """Each model's clean Avg. accuracy and UAR as the tables show them, and the Avg.'s bootstrap interval.

    Args:
        analysis: The report's analysis.
        summary: Its summary rows.
        n_resamples: Bootstrap resamples of the intervals (0: none).
        confidence: Their confidence level.
        seed: Their resampling seed.

    Returns:
        ``(model, avg, uar, interval)`` per model with clean predictions, in the report's order (``interval``:
        ``"[71.25, 76.10]"``, or "" without one).
    """
    rows = {(r.model, r.condition): r for r in summary}
    show_std = len(analysis.seeds()) > 1
    out = []
    for m in analysis.models():
        r = rows.get((m, analysis.clean))
        if r is None:
            continue
        cells = [Cell("acc", mean=s.mean, std=s.std if show_std else math.nan) for s in (r.accuracy, r.uar)]
        ci = (analysis.accuracy_ci(m, n_resamples=n_resamples, confidence=confidence, seed=seed)
              if n_resamples > 0 else None)
        interval = f"[{_num(ci.low)}, {_num(ci.high)}]" if ci is not None and math.isfinite(ci.low) else ""
        out.append((m, _cell_plain(cells[0]), _cell_plain(cells[1]), interval))
    return out


def overview_md(rows: Sequence[tuple[str, str, str, str]]) -> str:
    """The Overview for ``summary.md``: clean Avg. accuracy (with its interval) and UAR per model.

    Args:
        rows: :func:`accuracy_rows`.

    Returns:
        The Markdown, or "" with no clean row.
    """
    if not rows:
        return ""
    ci = any(i for *_, i in rows)
    lines = ["## Overview", "", "Clean accuracy per model (%; ± over seeds" + (", then the paired bootstrap interval"
             if ci else "") + "; the impact of every attack is in `overview.png`).", "",
             "| Model | Clean Avg. | UAR |", "|---|---:|---:|"]
    lines += [f"| {m} | {a}{' ' + i if i else ''} | {u} |" for m, a, u, i in rows]
    return "\n".join(lines) + "\n"


def overview_part(plot: Plot | None, rows: Sequence[tuple[str, str, str, str]],
                  asked: Sequence[Question]) -> Part | None:
    """The Overview part of ``report.html``, first on the page: the heatmap (inlined) with the clean accuracy
    table and RQ1 beside it, and RQ2-RQ3 under it, each question one compact table
    (:func:`featcache.report.questions.question_html`).

    Args:
        plot: The heatmap, if drawn.
        rows: :func:`accuracy_rows`.
        asked: The questions; RQ1-RQ3 are shown here (the others in the details).

    Returns:
        The part, or None with nothing to show.
    """
    rq = {q.key: q for q in asked if q.key in RESEARCH_QUESTIONS}
    if plot is None and not rows and not rq:
        return None
    body = "".join(f'<tr><th scope="row">{_e(m)}</th><td>{_e(a)}' + (f'<span class="ci">{_e(i)}</span>' if i else "")
                   + f"</td><td>{_e(u)}</td></tr>" for m, a, u, i in rows)
    note = "; the Avg.'s paired interval under it" if any(i for *_, i in rows) else ""
    table = (f'<figure class="overview-acc"><figcaption><strong>Clean accuracy</strong> (%; ± over seeds{note}).'
             f'</figcaption><table class="plain"><thead><tr><th>Model</th><th>Avg.</th><th>UAR</th></tr></thead>'
             f"<tbody>{body}</tbody></table></figure>") if rows else ""
    image = _plot_html(plot) if plot is not None else ""
    side = table + (question_html(rq["rq1"]) if "rq1" in rq else "")
    under = "".join(question_html(rq[k]) for k in ("rq2", "rq3") if k in rq)
    legend = ('<p class="note legend">Question cells: the difference in points, its paired bootstrap interval and '
              'the answer: <span class="q-yes">yes</span> <span class="q-yes-ns">yes (n.s.)</span> '
              '<span class="q-no-ns">no (n.s.)</span> <span class="q-no">no</span>; n.s.: the interval includes 0. '
              "The values behind a cell are in its tooltip.</p>") if rq else ""
    return Part("overview", "Overview",
                f'<div class="overview-grid"><div class="overview-main">{image}<div class="questions">{under}</div></div>'
                f'<div class="overview-side">{side}</div></div>{legend}', place="overview", order=ORDER["overview"])


__all__ = ["OVERVIEW", "RESEARCH_QUESTIONS", "accuracy_rows", "draw_overview", "overview_axes", "overview_md",
           "overview_part"]
