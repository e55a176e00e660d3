"""The report's Overview: the study's result at a glance, first on ``report.html``.

* ``overview`` (PNG and SVG) - one heatmap of impact: rows the models (text, audio, multimodal first,
  then the fusion models and ablations, as the tables order them; layer-sweep models are left out as
  everywhere but the Layers section), columns the attacks in the report's order (the paper's first),
  each cell the mean impact over seeds in percent; a cell whose paired bootstrap interval (the one the
  tables show) excludes 0 is set in bold with an asterisk and outlined;
* a compact table of each model's clean Avg. accuracy and UAR (mean ± std over seeds, as the tables
  show them), in ``report.html`` beside the heatmap and in ``summary.md``.
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
from featcache.report.plots import WIDTH_IN, Plot, _save, impact_heatmap
from featcache.report.render import _cell_plain
from featcache.report.tables import Cell

OVERVIEW = "overview"
"""The heatmap's file stem (``overview.png``, ``overview.svg``)."""


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
    mark = (f" Bold with * and outlined: the paired bootstrap {pct} interval excludes 0." if marks.any() or cis
            else "")
    return _save(fig, out_dir, OVERVIEW, "Overview: impact of each attack",
                 "Relative change of clean Avg. accuracy under each attack, per model (mean over seeds; blue: better "
                 "than clean, red: worse; grey: not evaluated)." + mark)


def accuracy_rows(analysis: Analysis, summary: Sequence[SummaryRow]) -> list[tuple[str, str, str]]:
    """Each model's clean Avg. accuracy and UAR as the tables show them.

    Args:
        analysis: The report's analysis.
        summary: Its summary rows.

    Returns:
        ``(model, avg, uar)`` per model with clean predictions, in the report's order.
    """
    rows = {(r.model, r.condition): r for r in summary}
    show_std = len(analysis.seeds()) > 1
    out = []
    for m in analysis.models():
        r = rows.get((m, analysis.clean))
        if r is None:
            continue
        cells = [Cell("acc", mean=s.mean, std=s.std if show_std else math.nan) for s in (r.accuracy, r.uar)]
        out.append((m, _cell_plain(cells[0]), _cell_plain(cells[1])))
    return out


def overview_md(analysis: Analysis, summary: Sequence[SummaryRow]) -> str:
    """The Overview for ``summary.md``: clean Avg. accuracy and UAR per model.

    Args:
        analysis: The report's analysis.
        summary: Its summary rows.

    Returns:
        The Markdown, or "" with no clean row.
    """
    rows = accuracy_rows(analysis, summary)
    if not rows:
        return ""
    lines = ["## Overview", "", "Clean accuracy per model (%; the impact of every attack is in `overview.png`).", "",
             "| Model | Clean Avg. | UAR |", "|---|---:|---:|"]
    lines += [f"| {m} | {a} | {u} |" for m, a, u in rows]
    return "\n".join(lines) + "\n"


def render_overview_html(plot: Plot | None, rows: Sequence[tuple[str, str, str]]) -> str:
    """The Overview section of ``report.html``: the heatmap (inlined) and the clean accuracy table beside it.

    Args:
        plot: The heatmap, if drawn.
        rows: :func:`accuracy_rows`.

    Returns:
        HTML, or "" with nothing to show.
    """
    if plot is None and not rows:
        return ""
    body = "".join(f'<tr><th scope="row">{_e(m)}</th><td>{_e(a)}</td><td>{_e(u)}</td></tr>' for m, a, u in rows)
    table = (f'<figure class="overview-acc"><figcaption><strong>Clean accuracy</strong> (%).</figcaption>'
             f'<table class="plain"><thead><tr><th>Model</th><th>Avg.</th><th>UAR</th></tr></thead>'
             f"<tbody>{body}</tbody></table></figure>") if rows else ""
    image = _plot_html(plot) if plot is not None else ""
    return f'<section id="overview"><h2>Overview</h2><div class="overview-grid">{image}{table}</div></section>'


__all__ = ["OVERVIEW", "accuracy_rows", "draw_overview", "overview_axes", "overview_md", "render_overview_html"]
