"""The whole report: :func:`write_report` writes every file of it into one directory.

See :mod:`featcache.report` for the files; :class:`ReportPaths` names them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featcache import paper
from featcache.cache.atomic import atomic_write_text
from featcache.errors import FeatcacheError
from featcache.metrics.analysis import Analysis
from featcache.metrics.bootstrap import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES
from featcache.metrics.names import AUDIO_MODEL, CLEAN, MULTIMODAL_MODEL, TEXT_MODEL, condition_key
from featcache.metrics.predictions import Predictions
from featcache.metrics.tables import write_results_csv, write_summary_csv
from featcache.report.examples import render_examples, select_examples
from featcache.report.plots import write_plots
from featcache.report.render import latex_escape, render_latex, render_markdown, write_table_csv
from featcache.report.summary import render_summary
from featcache.report.tables import _model_title, build_tables


@dataclass(frozen=True)
class ReportPaths:
    """Files written by :func:`write_report`.

    Attributes:
        out_dir: The report directory.
        tables_md: ``tables.md``.
        tables_tex: ``tables.tex``.
        table_csvs: ``table key -> CSV``.
        examples_md: ``examples.md``.
        summary_md: ``summary.md``.
        results_csv: ``results.csv`` (per fold, seed, model, condition).
        summary_csv: ``summary.csv`` (per model, condition).
        plots: ``name -> PNG``.
    """

    out_dir: Path
    tables_md: Path
    tables_tex: Path
    table_csvs: dict[str, Path]
    examples_md: Path
    summary_md: Path
    results_csv: Path
    summary_csv: Path
    plots: dict[str, Path] = field(default_factory=dict)


def default_seeds_note(seeds: Sequence[int]) -> str:
    """The sentence on seeds printed under the report headings.

    Args:
        seeds: Seeds present.

    Returns:
        E.g. ``"Mean over 3 seeds (0, 1, 2); ± is the sample standard deviation over seeds."``.
    """
    if len(seeds) > 1:
        return (f"Mean over {len(seeds)} seeds ({', '.join(map(str, seeds))}); "
                "± is the sample standard deviation over seeds.")
    return f"One seed ({seeds[0]}); no spread over seeds." if seeds else "No seeds."


def write_report(
    predictions: Predictions,
    out_dir: str | os.PathLike[str],
    *,
    title: str = "Robustness report",
    seeds_note: str | None = None,
    n_examples: int = 5,
    example_seed: int | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    bootstrap_seed: int = 0,
    clean: str = CLEAN,
    text_model: str = TEXT_MODEL,
    audio_model: str = AUDIO_MODEL,
    multimodal_model: str = MULTIMODAL_MODEL,
    plots: bool = True,
) -> ReportPaths:
    """Write the full robustness report for a set of predictions.

    Args:
        predictions: The evaluator's predictions.
        out_dir: Report directory (created; existing report files are replaced).
        title: Title of ``tables.md`` and ``summary.md``.
        seeds_note: Sentence on seeds under the headings (default: :func:`default_seeds_note`).
        n_examples: Examples per example table.
        example_seed: Seed whose predictions feed the examples (default: the smallest).
        n_resamples: Bootstrap resamples (0: no intervals).
        confidence: Confidence level of the intervals.
        bootstrap_seed: Resampling seed.
        clean: Name of the clean condition.
        text_model: Name of the text model.
        audio_model: Name of the audio model.
        multimodal_model: Name of the paper's fusion model.
        plots: Whether to draw the PNG plots.

    Returns:
        The paths written.

    Raises:
        FeatcacheError: No predictions, or no clean predictions to compare against.
    """
    if len(predictions) == 0:
        raise FeatcacheError("no predictions to report; run `featcache evaluate` first")
    if not np.any(predictions.condition == clean):
        raise FeatcacheError(
            f"the predictions hold no '{clean}' condition, the baseline of every impact; "
            "evaluate the clean test set too"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    analysis = Analysis(predictions, clean=clean, text_model=text_model, audio_model=audio_model,
                        multimodal_model=multimodal_model)
    summary = analysis.summary(n_resamples=n_resamples, confidence=confidence, seed=bootstrap_seed)
    note = default_seeds_note(analysis.seeds()) if seeds_note is None else seeds_note

    tables = build_tables(analysis, summary)
    md = [f"# {title}", ""] + ([note, ""] if note else [])
    tex = [f"% {latex_escape(title)}", "% Requires \\usepackage{booktabs} in the preamble."]
    if note:
        tex.append(f"% {latex_escape(note)}")
    tex.append("")
    csvs: dict[str, Path] = {}
    for t in tables:
        md += [render_markdown(t)]
        tex += [render_latex(t)]
        csvs[t.key] = write_table_csv(t, out / f"{t.key}.csv")
    tables_md = atomic_write_text(out / "tables.md", "\n".join(md))
    tables_tex = atomic_write_text(out / "tables.tex", "\n".join(tex))

    ex_md = ["# Examples", ""]
    seeds = analysis.seeds()
    chosen_seed = example_seed if example_seed is not None else (seeds[0] if seeds else 0)
    ex_md += [f"Predictions of seed {chosen_seed}; ranked by the fusion model's minus the unimodal model's "
              "probability of the true label, ties by utterance id.", ""]
    mm_title = _model_title(multimodal_model)
    for number, attacks, unimodal, caption in paper.EXAMPLE_TABLES:
        uni = {paper.TEXT: text_model, paper.AUDIO: audio_model}[unimodal]
        found = [analysis.find_condition(multimodal_model, condition_key(a) or (None, None)) for a in attacks]
        present = [c for c in found if c is not None and analysis.has(uni, c)]
        if not present:
            ex_md += [f"**Table {number}.** {caption}", "", "Not available: the attack was not run on both models.", ""]
            continue
        examples = select_examples(predictions, attacks=present, model=multimodal_model, unimodal=uni, n=n_examples,
                                   seed=chosen_seed, clean=clean)
        ex_md.append(render_examples(examples, number=number, caption=caption, model_title=mm_title,
                                     unimodal_title=_model_title(uni), clean=clean))
    examples_md = atomic_write_text(out / "examples.md", "\n".join(ex_md))

    summary_md = atomic_write_text(out / "summary.md", render_summary(
        analysis, summary, title=f"{title}: summary", seeds_note=note, n_resamples=n_resamples,
        confidence=confidence, bootstrap_seed=bootstrap_seed))
    results_csv = write_results_csv(analysis.results(), out / "results.csv")
    summary_csv = write_summary_csv(summary, out / "summary.csv", text_model=text_model, audio_model=audio_model)
    plot_paths = write_plots(analysis, summary, out) if plots else {}
    return ReportPaths(out_dir=out, tables_md=tables_md, tables_tex=tables_tex, table_csvs=csvs,
                       examples_md=examples_md, summary_md=summary_md, results_csv=results_csv,
                       summary_csv=summary_csv, plots=plot_paths)
