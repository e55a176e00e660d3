"""The report's Layers section: the layer sweeps that ``featcache evaluate --ablation layers`` added, and
the layer weights that ``--layer weighted`` heads learned.

For each sweep (:class:`~featcache.ablate.StoredSweep`, one ablation per hidden state): the table per
layer that ``featcache ablate --layers`` prints (:func:`featcache.ablate.layer_rows` on the sweep's
predictions: clean Avg., UAR, each attack's impact with its paired bootstrap interval), a heatmap of each
attack's impact per layer (``layer_impact_<label>``: rows layers, columns attacks, a diverging colormap
centred on 0, every value written in its cell) and a line plot of clean accuracy and UAR per layer, the
std over seeds as a band (``layer_accuracy_<label>``). For weighted heads
(:class:`~featcache.study.LayerWeightStat`): the mean weight of each layer over folds and seeds, per model
and modality, as a table and a bar plot (``layer_weights``).

The section's inputs are written beside the predictions (``layers.json``), so that ``featcache report``
draws the same section again from the saved predictions. The sweeps' models are left out of the rest of
the report (the paper's tables, the plots, the browser), which they would crowd; ``results.csv`` keeps
them, ``layers.csv`` and ``layer_weights.csv`` hold the section's numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from featcache.errors import FeatcacheError
from featcache.metrics.analysis import Analysis
from featcache.metrics.predictions import Predictions
from featcache.metrics.rows import SeedStat
from featcache.metrics.tables import write_csv
from featcache.report.html import _plot_html
from featcache.report.markup import inline, markdown_to_html
from featcache.report.parts import ORDER, Part
from featcache.report.plots import WIDTH_IN, Plot, _colours, _save, impact_heatmap
from featcache.report.sections import read_section

if TYPE_CHECKING:  # imported where used: a report without layers needs neither (nor torch)
    from featcache.ablate.layers import LayerRow, StoredSweep
    from featcache.study.evaluation import LayerWeightStat

LAYERS_FILE = "layers.json"
"""The section's inputs, beside ``predictions.h5``."""
LAYERS_FORMAT = "featcache-layers"
"""The ``format`` of ``layers.json``."""


@dataclass(frozen=True)
class LayerSection:
    """What the Layers section shows.

    Attributes:
        sweeps: The layer sweeps (their models are in the predictions).
        weights: The learned layer weights of weighted heads.
    """

    sweeps: tuple[StoredSweep, ...] = ()
    weights: tuple[LayerWeightStat, ...] = ()

    @property
    def empty(self) -> bool:
        """Nothing to show."""
        return not self.sweeps and not self.weights

    @property
    def models(self) -> set[str]:
        """Every sweep's models."""
        return {m for s in self.sweeps for m in s.models}

    def to_json(self) -> dict[str, Any]:
        """The section as JSON-able values (read back by :func:`read_layer_section`)."""
        return {"format": LAYERS_FORMAT, "sweeps": [s.to_json() for s in self.sweeps],
                "weights": [w.to_json() for w in self.weights]}


def read_layer_section(path: str | Path) -> LayerSection | None:
    """The section written beside saved predictions (``layers.json``).

    Args:
        path: The file.

    Returns:
        The section, or None when there is no such file.

    Raises:
        FeatcacheError: The file does not read as a section featcache wrote.
    """
    from featcache.ablate.layers import StoredSweep
    from featcache.study.evaluation import LayerWeightStat

    data = read_section(path, LAYERS_FORMAT, what="layers",
                        fix="delete it (the report then has no Layers section) or run `featcache evaluate` again")
    if data is None:
        return None
    try:
        return LayerSection(tuple(StoredSweep.from_json(s) for s in data.get("sweeps", [])),
                            tuple(LayerWeightStat.from_json(w) for w in data.get("weights", [])))
    except FeatcacheError as e:
        raise FeatcacheError(f"{path}: {e}") from None


def without_sweeps(predictions: Predictions, section: LayerSection | None) -> Predictions:
    """The predictions the rest of the report shows: all but the sweeps' (all of them when only sweeps are left).

    Args:
        predictions: Every prediction.
        section: The Layers section, if any.

    Returns:
        The predictions.
    """
    if section is None or not section.sweeps:
        return predictions
    keep = ~np.isin(predictions.model.astype(str), sorted(section.models))
    return predictions.take(keep) if keep.any() else predictions


@dataclass
class SweepTable:
    """One sweep as the report shows it.

    Attributes:
        key: Its part of file names and anchors: its label (with its digest where labels repeat).
        sweep: The sweep.
        analysis: The analysis of its predictions.
        rows: :func:`featcache.ablate.layer_rows`, one per layer.
        attacks: The attack columns.
        header: The line above its table (as ``featcache ablate --layers`` prints it).
        plots: Its heatmap and line plot, once drawn.
    """

    key: str
    sweep: StoredSweep
    analysis: Analysis
    rows: list[LayerRow]
    attacks: tuple[str, ...]
    header: str
    plots: list[Plot] = field(default_factory=list)

    @property
    def markdown(self) -> str:
        """The header and the table."""
        from featcache.ablate.layers import format_layer_table

        return self.header + "\n\n" + format_layer_table(self.rows, attacks=self.attacks)


def sweep_tables(predictions: Predictions, sweeps: Sequence[StoredSweep], *, clean: str, n_resamples: int,
                 confidence: float, seed: int) -> list[SweepTable]:
    """Each sweep's rows from its predictions, with the analysis calls of ``featcache ablate --layers``.

    Args:
        predictions: Every prediction (the sweeps' are picked out).
        sweeps: The sweeps.
        clean: The clean condition.
        n_resamples: Bootstrap resamples (0: no intervals).
        confidence: Confidence level.
        seed: Resampling seed.

    Returns:
        One per sweep with clean predictions.
    """
    if not sweeps:
        return []
    from featcache.ablate.layers import layer_rows, sweep_header

    labels = [s.label for s in sweeps]
    out = []
    for s in sweeps:
        part = predictions.select(model=list(s.models))
        if not len(part) or not np.any(part.condition == clean):
            continue
        analysis = Analysis(part, clean=clean)
        attacks = tuple(c for c in analysis.conditions() if c != clean)
        rows = layer_rows(analysis, s.layers, attacks=attacks, n_resamples=n_resamples, confidence=confidence,
                          seed=seed)
        if not rows:
            continue
        header = sweep_header(s.description, layers=len(rows), folds=len(analysis.sessions()),
                              seeds=len(analysis.seeds()), n_resamples=n_resamples)
        key = s.label if labels.count(s.label) == 1 else f"{s.label}-{s.digest}"
        out.append(SweepTable(key, s, analysis, rows, attacks, header))
    return out


# -- plots ---------------------------------------------------------------------------------------


def _heatmap(t: SweepTable) -> Any:
    vals = np.array([[r.impacts[a][0].mean if a in r.impacts else math.nan for a in t.attacks] for r in t.rows],
                    dtype=float).reshape(len(t.rows), len(t.attacks))
    return impact_heatmap(vals, rows=[str(r.layer) for r in t.rows], columns=t.attacks, xlabel="Attack",
                          ylabel="Hidden state (0: embeddings)",
                          title=f"{t.sweep.name}: impact of each attack per layer",
                          figsize=(max(5.5, min(WIDTH_IN, 3.0 + 1.1 * len(t.attacks))), 1.6 + 0.34 * len(t.rows)))


def _accuracy_figure(t: SweepTable, reference: tuple[str, SeedStat] | None) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN * 0.6, 4.2), layout="constrained")
    ax = fig.subplots()
    x = np.array([r.layer for r in t.rows])
    for k, (label, stats, style) in enumerate((("Clean Avg. accuracy", [r.accuracy for r in t.rows], "-"),
                                               ("UAR", [r.uar for r in t.rows], "--"))):
        y = np.array([s.mean * 100 for s in stats])
        e = np.nan_to_num(np.array([s.std * 100 for s in stats]), nan=0.0)
        ax.errorbar(x, y, yerr=e, marker="os"[k], color=f"C{k}", label=label, capsize=3, linewidth=1.5,
                    linestyle=style)
        ax.fill_between(x, y - e, y + e, color=f"C{k}", alpha=0.12, linewidth=0)
    if reference is not None and math.isfinite(reference[1].mean):
        ax.axhline(reference[1].mean * 100, color="grey", linestyle=":", linewidth=1.2,
                   label=f"{reference[0]} model, clean Avg.")
    ax.set_xticks(x, labels=[str(k) for k in x])
    ax.set_ylim(0, 100)
    ax.set_xlabel("Hidden state (0: embeddings)")
    ax.set_ylabel("Accuracy (%)")
    ax.set_title(f"{t.sweep.name}: clean accuracy per layer")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper", fontsize="small")
    return fig


def _weights_figure(weights: Sequence[LayerWeightStat], colours: dict[str, str]) -> Any:
    from matplotlib.figure import Figure

    mods = list(dict.fromkeys(w.modality for w in weights))
    fig = Figure(figsize=(WIDTH_IN * 0.7, 1.2 + 2.8 * len(mods)), layout="constrained")
    axes = fig.subplots(len(mods), 1, squeeze=False)[:, 0]
    seen: set[str] = set()
    for ax, mod in zip(axes, mods, strict=True):
        ws = [w for w in weights if w.modality == mod]
        layers = sorted({k for w in ws for k in w.layers})
        width = 0.8 / len(ws)
        for k, w in enumerate(ws):
            x = np.array([layers.index(j) for j in w.layers]) + (k - (len(ws) - 1) / 2) * width
            ax.bar(x, w.mean, width=width, yerr=np.nan_to_num(np.array(w.std), nan=0.0), capsize=2,
                   color=colours.get(w.model, f"C{k % 10}"), label=None if w.model in seen else w.model,
                   error_kw={"elinewidth": 0.8})
            seen.add(w.model)
        ax.axhline(1 / len(layers), color="grey", linestyle=":", linewidth=1.0)  # every layer alike
        ax.set_xticks(range(len(layers)), labels=[str(j) for j in layers])
        ax.set_ylabel(f"{mod} weight")
        ax.grid(axis="y", alpha=0.3)
    axes[-1].set_xlabel("Hidden state (0: embeddings)")
    axes[0].set_title("Learned layer weights (--layer weighted)")
    fig.legend(loc="outside right upper", fontsize="small")
    return fig


def draw_layer_plots(tables: Sequence[SweepTable], weights: Sequence[LayerWeightStat], analysis: Analysis,
                     out_dir: Path) -> list[Plot]:
    """Each sweep's heatmap and line plot (kept in :attr:`SweepTable.plots` too) and the weights' bar plot.

    Args:
        tables: The sweeps.
        weights: The learned layer weights.
        analysis: The rest of the report's analysis (the study's own models, for the reference line and colours).
        out_dir: Directory.

    Returns:
        The plots written (PNG and SVG), in section order.
    """
    std_note = " The band is the std over seeds." if len(analysis.seeds()) > 1 else ""
    plots: list[Plot] = []
    for t in tables:
        ref = t.sweep.layers[0][1].reference
        reference = (ref, analysis.accuracy(ref, analysis.clean)) if analysis.has(ref, analysis.clean) else None
        t.plots = [
            _save(_heatmap(t), out_dir, f"layer_impact_{t.key}", f"{t.sweep.name}: impact per layer",
                  "Relative change of clean Avg. accuracy under each attack, per hidden state (mean over seeds; "
                  "blue: better than clean, red: worse)."),
            _save(_accuracy_figure(t, reference), out_dir, f"layer_accuracy_{t.key}",
                  f"{t.sweep.name}: clean accuracy per layer",
                  "Clean Avg. accuracy and UAR of the head on each hidden state (mean over seeds)." + std_note
                  + (f" Dotted: the study's {ref} model." if reference else "")),
        ]
        plots += t.plots
    if weights:
        plots.append(_save(_weights_figure(weights, _colours(analysis.models())), out_dir, "layer_weights",
                           "Learned layer weights", "Mean softmax weight of each hidden state over folds and seeds "
                           "(error bars: std over the heads); dotted: every layer alike."))
    return plots


# -- text ----------------------------------------------------------------------------------------


def _weights_tables(weights: Sequence[LayerWeightStat]) -> list[str]:
    out = []
    for mod in dict.fromkeys(w.modality for w in weights):
        ws = [w for w in weights if w.modality == mod]
        layers = sorted({k for w in ws for k in w.layers})
        lines = [f"| Model ({mod}) | " + " | ".join(f"Layer {k}" for k in layers) + " | Heaviest | Heads |",
                 "|---|" + "---:|" * (len(layers) + 2)]
        for w in ws:
            by = dict(zip(w.layers, zip(w.mean, w.std, strict=True), strict=True))
            cells = ["" if k not in by else f"{by[k][0]:.3f}" + ("" if math.isnan(by[k][1]) else f" ± {by[k][1]:.3f}")
                     for k in layers]
            top = int(np.argmax(w.mean))
            lines.append(f"| {w.model} | " + " | ".join(cells) + f" | {w.layers[top]} | {w.heads} |")
        out.append("\n".join(lines))
    return out


def render_layers_md(tables: Sequence[SweepTable], weights: Sequence[LayerWeightStat], *, level: int = 2) -> str:
    """The section in Markdown (for ``tables.md``).

    Args:
        tables: The sweeps.
        weights: The learned layer weights.
        level: Heading level of the section.

    Returns:
        The Markdown, or "" with nothing to show.
    """
    if not tables and not weights:
        return ""
    h = "#" * level
    md = [f"{h} Layers", ""]
    for t in tables:
        md += [f"{h}# {t.sweep.name}", "", t.markdown, ""]
    if weights:
        md += [f"{h}# Layer weights", "", "Mean softmax weight of each hidden state over the heads of every fold and "
               "seed (± std over them); late and score fuse the weighted text and audio heads.", ""]
        for table in _weights_tables(weights):
            md += [table, ""]
    return "\n".join(md)


def layers_summary(tables: Sequence[SweepTable], weights: Sequence[LayerWeightStat]) -> str:
    """A few lines for ``summary.md``: each sweep's best clean layer and where each attack hurts least and
    most; each weighted model's heaviest layer.

    Args:
        tables: The sweeps.
        weights: The learned layer weights.

    Returns:
        The Markdown, or "" with nothing to say.
    """
    lines = []
    for t in tables:
        best = max(t.rows, key=lambda r: r.accuracy.mean if math.isfinite(r.accuracy.mean) else -1.0)
        parts = [f"best clean Avg. at layer {best.layer} ({best.accuracy.mean * 100:.2f}%)"]
        for a in t.attacks:
            got = [(r.impacts[a][0].mean, r.layer) for r in t.rows if a in r.impacts]
            got = [(v, k) for v, k in got if math.isfinite(v)]
            if got:
                (hi, k_hi), (lo, k_lo) = max(got), min(got)
                parts.append(f"{a} hurts least at layer {k_hi} ({hi:+.2f}%) and most at layer {k_lo} ({lo:+.2f}%)")
        lines.append(f"- **{t.sweep.name}** ({t.sweep.description}): " + "; ".join(parts) + ".")
    for w in weights:
        top = int(np.argmax(w.mean))
        lines.append(f"- **{w.model}** weighs {w.modality} layer {w.layers[top]} most ({w.mean[top]:.3f}; every "
                     f"layer alike would be {1 / len(w.layers):.3f}).")
    return "\n".join(["## Layers", "", *lines, ""]) if lines else ""


def write_layer_csvs(tables: Sequence[SweepTable], weights: Sequence[LayerWeightStat],
                     out_dir: Path) -> dict[str, Path]:
    """``layers.csv`` (one row per sweep, layer, statistic and condition) and ``layer_weights.csv``.

    Args:
        tables: The sweeps.
        weights: The learned layer weights.
        out_dir: Directory.

    Returns:
        ``layers`` and ``layer_weights`` -> the CSV written (those with rows).
    """
    records = []
    for t in tables:
        for r in t.rows:
            base = {"sweep": t.sweep.name, "layer": r.layer, "model": r.ablation.model}
            records.append({**base, "statistic": "clean_avg", "condition": t.analysis.clean, "mean": r.accuracy.mean,
                            "std": r.accuracy.std})
            records.append({**base, "statistic": "uar", "condition": t.analysis.clean, "mean": r.uar.mean,
                            "std": r.uar.std})
            for a in t.attacks:
                if a in r.impacts:
                    stat, ci = r.impacts[a]
                    records.append({**base, "statistic": "impact_pct", "condition": a, "mean": stat.mean,
                                    "std": stat.std, "ci_low": None if ci is None else ci.low,
                                    "ci_high": None if ci is None else ci.high})
    out = {"layers": write_csv(records, out_dir / "layers.csv")} if records else {}
    if weights:
        out["layer_weights"] = write_csv([{"model": w.model, "modality": w.modality, "layer": k, "mean": m, "std": s,
                                           "heads": w.heads} for w in weights
                                          for k, m, s in zip(w.layers, w.mean, w.std, strict=True)],
                                         out_dir / "layer_weights.csv")
    return out


def layers_part(tables: Sequence[SweepTable], weights: Sequence[LayerWeightStat],
                weight_plot: Plot | None) -> Part | None:
    """The Layers part of ``report.html`` (plots inlined as in the Plots part), in the details.

    Args:
        tables: The sweeps (with their plots drawn, if any).
        weights: The learned layer weights.
        weight_plot: The weights' bar plot, if drawn.

    Returns:
        The part, or None with nothing to show.
    """
    from featcache.ablate.layers import format_layer_table

    if not tables and not weights:
        return None
    out = []
    for t in tables:
        out.append(f'<div class="layer-sweep" id="layers-{t.key}"><h3>{inline(t.sweep.name)}</h3>'
                   f'<p class="muted">{inline(t.header)}.</p>')
        out += [_plot_html(p) for p in t.plots]
        out.append(f'<div class="scroll">{markdown_to_html(format_layer_table(t.rows, attacks=t.attacks))}</div></div>')
    if weights:
        out.append('<div class="layer-weights" id="layer-weights"><h3>Layer weights</h3><p class="muted">Mean softmax '
                   "weight of each hidden state over the heads of every fold and seed (± std over them).</p>")
        out += [f'<div class="scroll">{markdown_to_html(t)}</div>' for t in _weights_tables(weights)]
        out += [_plot_html(weight_plot)] if weight_plot is not None else []
        out.append("</div>")
    return Part("layers", "Layers", "\n".join(out), order=ORDER["layers"])


__all__ = ["LAYERS_FILE", "LAYERS_FORMAT", "LayerSection", "SweepTable", "draw_layer_plots", "layers_summary",
           "layers_part", "read_layer_section", "render_layers_md", "sweep_tables", "without_sweeps",
           "write_layer_csvs"]
