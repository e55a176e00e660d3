"""The report's plots, each saved as PNG and SVG (matplotlib only, object API, no pyplot state).

* ``impact_paper`` - impact of the paper's attacks on the paper's three models;
* ``impact_fusion`` - the same attacks on the paper's multimodal model and every fusion ablation;
* ``impact_beyond`` - every model under the attacks beyond the paper;
* ``severity_<kind>-<param>`` - impact against severity, one line per model, for every attack kind
  with more than one strength in the results (``snr-20|10|5|0``, ``asr-0.1|0.2|0.3``; see
  :mod:`featcache.report.severity`);
* ``flip_rate`` - share of the paper's models' predictions each attack changes;
* ``clean_accuracy`` - accuracy per test session on clean input, every model.

:func:`impact_heatmap` draws the impact heatmaps of the Overview (:mod:`featcache.report.overview`) and
the Layers section (:mod:`featcache.report.layers`).

Bars are grouped by attack, one colour per model (the same colour in every figure); figures with many
attacks wrap onto several rows so that each fits a screen. Error bars and bands are the standard
deviation over seeds (none with one seed).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from featcache import paper
from featcache.data.corpus import fold_noun, fold_title
from featcache.metrics.analysis import Analysis
from featcache.metrics.names import condition_key
from featcache.metrics.rows import SeedStat, SummaryRow
from featcache.report.severity import Sweep, severity_sweeps

PLOT_DPI = 150
"""Resolution of every PNG."""
PER_ROW = 12
"""Most attack groups on one row of a bar figure."""
WIDTH_IN = 11.0
"""Width of every figure in inches (1,650 px at :data:`PLOT_DPI`)."""


@dataclass(frozen=True)
class Plot:
    """One plot of the report.

    Attributes:
        name: File stem (``impact_paper``).
        title: Title shown above it.
        caption: One sentence on what it shows.
        png: The PNG.
        svg: The SVG.
    """

    name: str
    title: str
    caption: str
    png: Path
    svg: Path


Series = dict[str, tuple[list[float], list[float]]]
"""``model -> (means, stds)``, one value per category."""


def _save(fig: Any, out_dir: Path, name: str, title: str, caption: str) -> Plot:
    import matplotlib

    png, svg = out_dir / f"{name}.png", out_dir / f"{name}.svg"
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "featcache"}):
        fig.savefig(png, dpi=PLOT_DPI)
        fig.savefig(svg, format="svg", metadata={"Date": None})
    return Plot(name=name, title=title, caption=caption, png=png, svg=svg)


def _colours(models: Sequence[str]) -> dict[str, str]:
    return {m: f"C{k % 10}" for k, m in enumerate(models)}


def impact_heatmap(values: np.ndarray, *, rows: Sequence[str], columns: Sequence[str], title: str, xlabel: str,
                   ylabel: str, figsize: tuple[float, float], marks: np.ndarray | None = None,
                   fontsize: str | float = "small") -> Any:
    """A heatmap of impacts: a diverging colormap (RdBu) centred on 0, every value written in its cell.

    Args:
        values: ``rows x columns`` impacts in percent (NaN: no value, drawn grey with a dash).
        rows: Row labels.
        columns: Column labels (rotated when long or many).
        title: Axes title.
        xlabel: Label of the columns.
        ylabel: Label of the rows.
        figsize: Figure size in inches.
        marks: ``rows x columns`` booleans: cells whose value is set in bold with an asterisk and outlined.
        fontsize: Font size of the values.

    Returns:
        The figure (for :func:`_save`).
    """
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    vals = np.asarray(values, dtype=float).reshape(len(rows), len(columns))
    finite = np.abs(vals[np.isfinite(vals)])
    lim = float(max(finite.max() if finite.size else 0.0, 1.0))
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.subplots()
    cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="#eeeeee")
    image = ax.imshow(np.ma.masked_invalid(vals), cmap=cmap, vmin=-lim, vmax=lim, aspect="auto")
    for i in range(vals.shape[0]):
        for j in range(vals.shape[1]):
            v = vals[i, j]
            marked = marks is not None and bool(marks[i, j]) and math.isfinite(v)
            text = "–" if not math.isfinite(v) else f"{v:+.1f}" + ("*" if marked else "")
            ax.text(j, i, text, ha="center", va="center", fontsize=fontsize,
                    fontweight="bold" if marked else "normal",
                    color="white" if math.isfinite(v) and abs(v) > 0.6 * lim else "black")
            if marked:
                ax.add_patch(Rectangle((j - 0.46, i - 0.44), 0.92, 0.88, fill=False, edgecolor="black",
                                       linewidth=1.0))
    long = max((len(c) for c in columns), default=0) > 8 or len(columns) > 12
    ax.set_xticks(range(len(columns)), labels=list(columns), rotation=(45 if len(columns) > 12 else 20) if long else 0,
                  ha="right" if long else "center", rotation_mode="anchor" if long else "default")
    ax.set_yticks(range(len(rows)), labels=list(rows))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="Impact on Avg. accuracy (%)")
    return fig


def _grouped_bars(categories: Sequence[str], series: Series, colours: dict[str, str], *, ylabel: str,
                  title: str, ylim: tuple[float, float] | None = None) -> Any:
    """Vertical bars grouped by category, one colour per series, wrapped onto rows of :data:`PER_ROW`."""
    from matplotlib.figure import Figure

    n_rows = max(1, math.ceil(len(categories) / PER_ROW))
    per_row = math.ceil(len(categories) / n_rows) if categories else 1
    fig = Figure(figsize=(WIDTH_IN, 1.2 + 3.0 * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, 1, squeeze=False)[:, 0]
    n_ser = max(1, len(series))
    width = 0.8 / n_ser
    for r, ax in enumerate(axes):
        cats = list(categories[r * per_row:(r + 1) * per_row])
        lo = r * per_row
        x = np.arange(len(cats))
        for k, (name, (means, stds)) in enumerate(series.items()):
            m = np.asarray(means[lo:lo + len(cats)], dtype=float)
            s = np.nan_to_num(np.asarray(stds[lo:lo + len(cats)], dtype=float), nan=0.0)
            ax.bar(x + (k - (n_ser - 1) / 2) * width, np.nan_to_num(m), width=width, yerr=s, capsize=2,
                   label=name if r == 0 else None, color=colours.get(name, f"C{k % 10}"),
                   error_kw={"elinewidth": 0.8})
        ax.set_xticks(x, labels=cats, rotation=20 if max((len(c) for c in cats), default=0) > 8 else 0,
                      ha="right" if max((len(c) for c in cats), default=0) > 8 else "center")
        ax.set_xlim(-0.6, max(per_row, len(cats)) - 0.4)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_ylabel(ylabel)
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_title(title)
    fig.legend(loc="outside right upper", fontsize="small")
    return fig


def _impact_series(rows: dict[tuple[str, str], SummaryRow], models: Sequence[str], cats: Sequence[str]) -> Series:
    out: Series = {}
    for m in models:
        stats = [rows[(m, c)].impact if (m, c) in rows else SeedStat.empty() for c in cats]
        if any(math.isfinite(s.mean) for s in stats):
            out[m] = ([s.mean for s in stats], [s.std for s in stats])
    return out


def _severity_figure(sweep: Sweep, rows: dict[tuple[str, str], SummaryRow], models: Sequence[str],
                     colours: dict[str, str]) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN * 0.6, 4.2), layout="constrained")
    ax = fig.subplots()
    xs = [v for v, _ in sweep.points]
    markers = "osD^vP*X"
    for k, m in enumerate(models):
        pts = [(v, rows[(m, c)].impact) for v, c in sweep.points if (m, c) in rows]
        pts = [(v, s) for v, s in pts if math.isfinite(s.mean)]
        if len(pts) < 2:
            continue
        x = np.array([v for v, _ in pts])
        y = np.array([s.mean for _, s in pts])
        e = np.nan_to_num(np.array([s.std for _, s in pts]), nan=0.0)
        colour = colours.get(m, f"C{k % 10}")
        ax.errorbar(x, y, yerr=e, marker=markers[k % len(markers)], color=colour, label=m, capsize=3, linewidth=1.5)
        ax.fill_between(x, y - e, y + e, color=colour, alpha=0.12, linewidth=0)
    ax.set_xticks(xs, labels=[c for _, c in sweep.points])
    if sweep.harsher_when_lower:
        ax.invert_xaxis()
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlabel(sweep.param + (" (reversed: harsher to the right)" if sweep.harsher_when_lower else ""))
    ax.set_ylabel("Impact on Avg. accuracy (%)")
    ax.set_title(f"{sweep.kind}: impact against {sweep.param}")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper", fontsize="small")
    return fig


def draw_plots(analysis: Analysis, summary: Sequence[SummaryRow], out_dir: str | os.PathLike[str]) -> list[Plot]:
    """Draw every plot that has data, as PNG and SVG.

    Args:
        analysis: The analysis.
        summary: Its summary rows.
        out_dir: Directory.

    Returns:
        The plots written, in report order.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = {(r.model, r.condition): r for r in summary}
    models = analysis.models()
    colours = _colours(models)
    attacks = [c for c in analysis.conditions() if c != analysis.clean]
    paper_keys = {condition_key(c) for c in paper.CONDITIONS}
    paper_attacks = [c for c in attacks if condition_key(c) in paper_keys]
    beyond = [c for c in attacks if c not in paper_attacks]
    paper_models = [m for m in (analysis.text_model, analysis.audio_model, analysis.multimodal_model) if m in models]
    fusion = analysis.fusion_models()
    std_note = "; error bars: std over seeds" if len(analysis.seeds()) > 1 else ""
    plots: list[Plot] = []

    def bars(name: str, title: str, caption: str, cats: Sequence[str], series: Series, **kw: Any) -> None:
        if cats and series:
            fig = _grouped_bars(cats, series, colours, title=title, **kw)
            plots.append(_save(fig, out, name, title, caption))

    imp = "Impact on Avg. accuracy (%)"
    bars("impact_paper", "Impact of the paper's attacks on the paper's models",
         f"Relative change of Avg. accuracy from clean, per attack{std_note}.", paper_attacks,
         _impact_series(rows, paper_models, paper_attacks), ylabel=imp)
    if len(fusion) > 1:
        bars("impact_fusion", "Impact of the paper's attacks on the fusion models",
             f"The paper's multimodal model beside the fusion ablations{std_note}.", paper_attacks,
             _impact_series(rows, fusion, paper_attacks), ylabel=imp)
    bars("impact_beyond", "Impact of the attacks beyond the paper",
         f"Every model under the attacks the paper did not run{std_note}.", beyond,
         _impact_series(rows, models, beyond), ylabel=imp)
    for sweep in severity_sweeps(attacks):
        fig = _severity_figure(sweep, rows, models, colours)
        title = f"Severity: {sweep.kind} ({', '.join(c for _, c in sweep.points)})"
        plots.append(_save(fig, out, f"severity_{sweep.name}", title,
                           f"Impact against {sweep.param}, one line per model{std_note.replace('bars', 'bars and bands')}."))
    flip_models = paper_models or models
    flips: Series = {}
    for m in flip_models:
        fr = [rows[(m, c)].flip_rate if (m, c) in rows else SeedStat.empty() for c in attacks]
        if any(math.isfinite(s.mean) for s in fr):
            flips[m] = ([s.mean * 100 for s in fr], [s.std * 100 for s in fr])
    bars("flip_rate", "Flip rate of each attack", f"Share of predictions that differ from the clean ones{std_note}.",
         attacks, flips, ylabel="Predictions changed (%)")

    clean_models = [m for m in models if (m, analysis.clean) in rows]
    if clean_models:
        sessions = list(analysis.sessions())
        cats = [fold_title(s) for s in sessions] + ["Avg."]
        series: Series = {}
        for m in clean_models:
            seeds = analysis.seeds(m, analysis.clean)
            per_seed = [analysis.session_accuracy(m, analysis.clean, s) for s in seeds]
            means, stds = [], []
            for s in sessions:
                vals = SeedStat(seeds, tuple(d.get(s, math.nan) for d in per_seed))
                means.append(vals.mean * 100)
                stds.append(vals.std * 100)
            acc = rows[(m, analysis.clean)].accuracy
            series[m] = (means + [acc.mean * 100], stds + [acc.std * 100])
        fold = fold_noun(sessions)[:-1]  # session, or fold where the corpus's folds are not sessions
        bars("clean_accuracy", f"Clean accuracy per test {fold}",
             f"Accuracy of every model on the unperturbed test {fold}{std_note}.", cats, series,
             ylabel="Accuracy (%)", ylim=(0, 100))
    return plots


def write_plots(analysis: Analysis, summary: Sequence[SummaryRow], out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Draw every plot (PNG and SVG, see :func:`draw_plots`) and name the PNGs.

    Args:
        analysis: The analysis.
        summary: Its summary rows.
        out_dir: Directory.

    Returns:
        ``name -> PNG path``; each SVG lies beside its PNG with the same stem.
    """
    return {p.name: p.png for p in draw_plots(analysis, summary, out_dir)}


__all__ = ["PER_ROW", "PLOT_DPI", "Plot", "draw_plots", "write_plots"]
