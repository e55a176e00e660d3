"""The report's PNG plots: impact per attack and model, clean accuracy per session, flip rate per attack.

Drawn with matplotlib's object API (no pyplot state); error bars are the std over seeds.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from featcache.metrics.analysis import Analysis
from featcache.metrics.rows import SeedStat, SummaryRow
from featcache.report.tables import _session_header

PLOT_DPI = 150
"""Resolution of every PNG."""


def _grouped_barh(path: Path, categories: Sequence[str], series: dict[str, tuple[list[float], list[float]]],
                  *, xlabel: str, title: str) -> Path:
    from matplotlib.figure import Figure

    n_cat, n_ser = len(categories), max(1, len(series))
    fig = Figure(figsize=(8.0, max(3.0, 0.2 * n_cat * n_ser + 1.5)), layout="constrained")
    ax = fig.subplots()
    height = 0.8 / n_ser
    y = np.arange(n_cat)
    for k, (name, (means, stds)) in enumerate(series.items()):
        m = np.asarray(means, dtype=float)
        s = np.nan_to_num(np.asarray(stds, dtype=float), nan=0.0)
        ax.barh(y + (k - (n_ser - 1) / 2) * height, np.nan_to_num(m), height=height, xerr=s, capsize=2,
                label=name, color=f"C{k % 10}")
    ax.set_yticks(y, labels=list(categories))
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="outside right upper", fontsize="small")
    fig.savefig(path, dpi=PLOT_DPI)
    return path


def write_plots(analysis: Analysis, summary: Sequence[SummaryRow], out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """PNG plots: impact per attack and model, clean accuracy per session, flip rate per attack.

    Error bars are the std over seeds (none with one seed).

    Args:
        analysis: The analysis.
        summary: Its summary rows.
        out_dir: Directory.

    Returns:
        ``name -> path`` for the plots written (``impact``, ``clean_accuracy``, ``flip_rate``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = {(r.model, r.condition): r for r in summary}
    models = analysis.models()
    attacks = [c for c in analysis.conditions() if c != analysis.clean]
    paths: dict[str, Path] = {}
    if attacks:
        series = {}
        flips = {}
        for m in models:
            if not any((m, c) in rows for c in attacks):
                continue
            imp = [rows[(m, c)].impact if (m, c) in rows else SeedStat.empty() for c in attacks]
            series[m] = ([s.mean for s in imp], [s.std for s in imp])
            fr = [rows[(m, c)].flip_rate if (m, c) in rows else SeedStat.empty() for c in attacks]
            flips[m] = ([s.mean * 100 for s in fr], [s.std * 100 for s in fr])
        paths["impact"] = _grouped_barh(out_dir / "impact.png", attacks, series,
                                        xlabel="Impact on Avg. accuracy (%)", title="Impact of each attack")
        paths["flip_rate"] = _grouped_barh(out_dir / "flip_rate.png", attacks, flips,
                                           xlabel="Predictions changed from clean (%)",
                                           title="Flip rate of each attack")
    clean_models = [m for m in models if (m, analysis.clean) in rows]
    if clean_models:
        from matplotlib.figure import Figure

        sessions = list(analysis.sessions())
        cats = [_session_header(s) for s in sessions] + ["Avg."]
        fig = Figure(figsize=(max(6.0, 0.3 * len(cats) * len(clean_models) + 2.5), 4.0), layout="constrained")
        ax = fig.subplots()
        width = 0.8 / len(clean_models)
        x = np.arange(len(cats))
        for k, m in enumerate(clean_models):
            seeds = analysis.seeds(m, analysis.clean)
            per_seed = [analysis.session_accuracy(m, analysis.clean, s) for s in seeds]
            means, stds = [], []
            for s in sessions:
                vals = SeedStat(seeds, tuple(d.get(s, math.nan) for d in per_seed))
                means.append(vals.mean * 100)
                stds.append(vals.std * 100)
            acc = rows[(m, analysis.clean)].accuracy
            means.append(acc.mean * 100)
            stds.append(acc.std * 100)
            ax.bar(x + (k - (len(clean_models) - 1) / 2) * width, np.nan_to_num(means), width=width,
                   yerr=np.nan_to_num(stds), capsize=2, label=m, color=f"C{k % 10}")
        ax.set_xticks(x, labels=cats)
        ax.set_ylabel("Accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title("Clean accuracy per test session")
        ax.grid(axis="y", alpha=0.3)
        fig.legend(loc="outside right upper", fontsize="small")
        paths["clean_accuracy"] = out_dir / "clean_accuracy.png"
        fig.savefig(paths["clean_accuracy"], dpi=PLOT_DPI)
    return paths
