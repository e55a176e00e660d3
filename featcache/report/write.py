"""The whole report: :func:`write_report` writes every file of it into one directory.

See :mod:`featcache.report` for the files; :class:`ReportPaths` names them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from featcache.cache.atomic import atomic_write_json, atomic_write_text
from featcache.cache.integrity import read_json_object
from featcache.errors import FeatcacheError
from featcache.metrics.analysis import Analysis
from featcache.metrics.bootstrap import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES
from featcache.metrics.by_group import GroupTable
from featcache.metrics.names import AUDIO_MODEL, CLEAN, MULTIMODAL_MODEL, TEXT_MODEL
from featcache.metrics.predictions import Predictions
from featcache.metrics.tables import write_results_csv, write_summary_csv
from featcache.report.audio import (
    AUDIO_DIR,
    AudioFiles,
    AudioSource,
    StoreAudio,
    write_audio,
)
from featcache.report.browser import BROWSER_DIR, write_browser
from featcache.report.asr import ASR_FILE, ASR_FORMAT, AsrSection, asr_md, asr_part
from featcache.report.examples import example_tables, render_examples_file
from featcache.report.groups import (
    GROUPS_FILE,
    GROUPS_FORMAT,
    GroupSection,
    groups_summary,
    groups_part,
    render_groups_md,
    section_tables,
)
from featcache.report.html import PageContent, render_page
from featcache.report.layers import (
    LAYERS_FILE,
    LAYERS_FORMAT,
    LayerSection,
    draw_layer_plots,
    layers_summary,
    layers_part,
    render_layers_md,
    sweep_tables,
    without_sweeps,
    write_layer_csvs,
)
from featcache.report.overview import accuracy_rows, draw_overview, overview_md, overview_part
from featcache.report.plots import Plot, draw_plots
from featcache.report.render import (
    latex_escape,
    render_latex,
    render_markdown,
    write_table_csv,
)
from featcache.report.sections import write_section
from featcache.report.questions import questions
from featcache.report.summary import answers_part, render_summary
from featcache.report.tables import build_tables, scope_note

if TYPE_CHECKING:
    from featcache.cache import FeatureStore
    from featcache.data import Corpus

NO_AUDIO_NOTE = ("Audio players are left out: the report needs the corpus (its wavs) and the feature store (the "
                 "perturbation records) to write them; pass `--corpus` and `--cache-dir` to `featcache report`.")
"""What the page and ``featcache report`` say when no audio source was given."""


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
        plots: ``name -> PNG`` (each SVG beside it, same stem).
        html: ``report.html``, or ``None`` when not written.
        audio: ``(utt_id, condition) -> files`` (paths relative to ``out_dir``).
        browser: The utterance browser's data files.
        notes: Sentences on what the report leaves out and why (e.g. no audio source).
        layers: ``layers.json`` (the Layers section's inputs), or ``None`` without the section.
        groups: ``groups.json`` (the Groups section's inputs), or ``None`` without the section.
        group_tables: The Groups section's tables (what ``featcache evaluate --by`` prints).
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
    html: Path | None = None
    audio: dict[tuple[str, str], AudioFiles] = field(default_factory=dict)
    browser: list[Path] = field(default_factory=list)
    notes: tuple[str, ...] = ()
    layers: Path | None = None
    groups: Path | None = None
    group_tables: tuple[GroupTable, ...] = ()


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


OWNED_FILE = ".featcache-report.json"
"""The files of its own that a report wrote under its folder's ``audio/`` and ``browser/`` (relative paths):
the next report into the folder removes only those it does not write again, never a file of someone else's."""


def _owned(out: Path) -> set[str]:
    """The files an earlier report in ``out`` recorded as its own (none when it recorded none, or the record
    does not read: then nothing is removed)."""
    data, problem = read_json_object(out / OWNED_FILE)
    files = data.get("files") if not problem else None
    return {f for f in files if isinstance(f, str)} if isinstance(files, list) else set()


def _replace_owned(out: Path, written: set[str]) -> None:
    """Remove the earlier report's own files that this one did not write, then record this one's."""
    for rel in sorted(_owned(out) - written):
        path = out / rel
        if rel.split("/", 1)[0] in (AUDIO_DIR, BROWSER_DIR) and ".." not in Path(rel).parts and path.is_file():
            path.unlink()
    atomic_write_json(out / OWNED_FILE, {"format": "featcache-report-files", "files": sorted(written)})


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
    html: bool = True,
    audio: AudioSource | None = None,
    corpus: Corpus | None = None,
    store: FeatureStore | None = None,
    layers: LayerSection | None = None,
    groups: GroupSection | None = None,
    asr: AsrSection | None = None,
) -> ReportPaths:
    """Write the full robustness report for a set of predictions.

    Args:
        predictions: The evaluator's predictions.
        out_dir: Report directory (created; existing report files are replaced).
        title: Title of ``tables.md``, ``summary.md`` and ``report.html``.
        seeds_note: Sentence on seeds under the headings (default: :func:`default_seeds_note`).
        n_examples: Examples per example table.
        example_seed: Seed whose predictions feed the examples and the browser (default: the smallest).
        n_resamples: Bootstrap resamples (0: no intervals).
        confidence: Confidence level of the intervals.
        bootstrap_seed: Resampling seed.
        clean: Name of the clean condition.
        text_model: Name of the text model.
        audio_model: Name of the audio model.
        multimodal_model: Name of the paper's fusion model.
        plots: Whether to draw the plots (PNG and SVG).
        html: Whether to write ``report.html`` with its audio and browser files.
        audio: Where the examples' clean and perturbed waveforms come from (default: from ``corpus``
            and ``store`` when a corpus is given, see :class:`~featcache.report.audio.StoreAudio`).
        corpus: The corpus the predictions were made on (for the audio players).
        store: The feature store holding the perturbation records (for the perturbed audio).
        layers: The Layers section: layer sweeps (their models are shown there, not in the rest of the
            report) and learned layer weights (see :mod:`featcache.report.layers`); written to
            ``layers.json`` so that ``featcache report`` shows it again.
        groups: The Groups section: robustness by group for each grouping (see :mod:`featcache.report.groups`),
            in ``tables.md``, ``summary.md``, ``report.html`` and ``summary.csv``; written to ``groups.json``.
        asr: The Speech recognition section: the word error rate of each condition whose text a recogniser made
            (see :mod:`featcache.report.asr`), in ``summary.md`` and ``report.html``; written to ``asr.json``.

    Returns:
        The paths written.

    Raises:
        FeatcacheError: No predictions, or no clean predictions to compare against. (An example whose
            audio cannot be read or replayed loses its players, with a note on the page.)
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
    section = layers if layers is not None and not layers.empty else None
    analysis = Analysis(without_sweeps(predictions, section), clean=clean, text_model=text_model,
                        audio_model=audio_model, multimodal_model=multimodal_model)
    sweeps = sweep_tables(predictions, section.sweeps if section else (), clean=clean, n_resamples=n_resamples,
                          confidence=confidence, seed=bootstrap_seed)
    weights = section.weights if section else ()
    grouped = groups if groups is not None and not groups.empty else None
    group_tabs = section_tables(analysis, grouped, n_resamples=n_resamples, confidence=confidence, seed=bootstrap_seed)
    summary = analysis.summary(n_resamples=n_resamples, confidence=confidence, seed=bootstrap_seed)
    note = default_seeds_note(analysis.seeds()) if seeds_note is None else seeds_note
    scope = scope_note(analysis)

    tables = build_tables(analysis, summary)
    md = [f"# {title}", ""] + ([note, ""] if note else []) + ([scope, ""] if scope else [])
    tex = [f"% {latex_escape(title)}", "% Requires \\usepackage{booktabs} in the preamble."]
    if note:
        tex.append(f"% {latex_escape(note)}")
    tex.append("")
    csvs: dict[str, Path] = {}
    for t in tables:
        md += [render_markdown(t)]
        tex += [render_latex(t)]
        csvs[t.key] = write_table_csv(t, out / f"{t.key}.csv")
    layers_md = render_layers_md(sweeps, weights)
    md += [layers_md] if layers_md else []
    groups_md = render_groups_md(group_tabs)
    md += [groups_md] if groups_md else []
    csvs.update(write_layer_csvs(sweeps, weights, out))
    tables_md = atomic_write_text(out / "tables.md", "\n".join(md))
    tables_tex = atomic_write_text(out / "tables.tex", "\n".join(tex))

    seeds = analysis.seeds()
    chosen_seed = example_seed if example_seed is not None else (seeds[0] if seeds else 0)
    ex_tables = example_tables(analysis, n=n_examples, seed=chosen_seed)
    examples_md = atomic_write_text(out / "examples.md", render_examples_file(ex_tables, seed=chosen_seed, scope=scope,
                                                                              clean=clean))

    asked = questions(analysis, summary, n_resamples=n_resamples, confidence=confidence, seed=bootstrap_seed)
    summary_text = render_summary(analysis, summary, title=f"Summary of {title}", seeds_note=note, asked=asked)
    summary_text += ("\n" + layers_summary(sweeps, weights)) if sweeps or weights else ""
    groups_text = groups_summary(group_tabs)
    summary_text += ("\n" + groups_text) if groups_text else ""
    heard = asr if asr is not None and not asr.empty else None
    asr_text = asr_md(heard)
    summary_text += ("\n" + asr_text.rstrip("\n") + "\n") if asr_text else ""
    accuracy = accuracy_rows(analysis, summary, n_resamples=n_resamples, confidence=confidence, seed=bootstrap_seed)
    overview = overview_md(accuracy)
    at = summary_text.find("\n## ")
    summary_md = atomic_write_text(out / "summary.md", summary_text if not overview or at < 0 else
                                   summary_text[:at + 1] + overview + summary_text[at:])
    results = analysis.results() + [r for t in sweeps for r in t.analysis.results()]
    results_csv = write_results_csv(results, out / "results.csv")
    summary_csv = write_summary_csv(summary, out / "summary.csv", text_model=text_model, audio_model=audio_model,
                                    groups=group_tabs)
    rows = [(r.model, r.condition) for t in tables for r in t.rows if not r.section and r.condition != clean]
    cis = ({key: analysis.impact_ci(*key, n_resamples=n_resamples, confidence=confidence, seed=bootstrap_seed)
            for key in dict.fromkeys(rows)} if n_resamples > 0 and (plots or html) else {})
    heatmap = draw_overview(analysis, summary, cis, out, confidence=confidence) if plots else None
    drawn: list[Plot] = draw_plots(analysis, summary, out) if plots else []
    layer_plots = draw_layer_plots(sweeps, weights, analysis, out) if plots else []
    layers_json = write_section(out / LAYERS_FILE, LAYERS_FORMAT, section.to_json() if section else None)
    groups_json = write_section(out / GROUPS_FILE, GROUPS_FORMAT, grouped.to_json() if grouped else None)
    write_section(out / ASR_FILE, ASR_FORMAT, heard.to_json() if heard else None)
    paths = ReportPaths(out_dir=out, tables_md=tables_md, tables_tex=tables_tex, table_csvs=csvs,
                        examples_md=examples_md, summary_md=summary_md, results_csv=results_csv,
                        summary_csv=summary_csv,
                        plots={p.name: p.png for p in ([heatmap] if heatmap else []) + drawn + layer_plots},
                        layers=layers_json, groups=groups_json, group_tables=tuple(group_tabs))
    if not html:
        return paths

    notes = [scope] if scope else []
    if audio is None and corpus is not None:
        audio = StoreAudio(corpus, store)
    files: dict[tuple[str, str], AudioFiles] = {}
    if audio is None:
        notes.append(NO_AUDIO_NOTE)
    else:
        wanted = [(ex.utt_id, a) for t in ex_tables for ex in t.examples for a in t.attacks]
        failed: list[str] = []
        files = write_audio(audio, wanted, out, on_error=failed.append)
        if failed:
            notes.append(f"Audio left out where it could not be read or replayed: {'; '.join(failed)}.")
        if not files and wanted:
            notes.append("Audio players are left out: the corpus holds no audio for the examples.")
        if isinstance(audio, StoreAudio) and audio.store is None:
            notes.append("Perturbed audio is left out: it is replayed from the records in the feature store; "
                         "pass `--cache-dir` too.")
        elif isinstance(audio, StoreAudio) and audio.missing:
            notes.append(f"No stored perturbation record for {', '.join(audio.missing)}: those players are left out.")
    manifest, browser_files = write_browser(analysis, out, seed=chosen_seed, audio=files)
    written = {f.clean for f in files.values()} | {f.perturbed for f in files.values() if f.perturbed}
    _replace_owned(out, written | {Path(p).relative_to(out).as_posix() for p in browser_files})
    differences = {(r.model, r.condition): r.difference for r in summary}
    parts = [p for p in (
        overview_part(heatmap, accuracy, asked),
        answers_part(asked, summary),
        layers_part(sweeps, weights, next((p for p in layer_plots if p.name == "layer_weights"), None)),
        groups_part(group_tabs),
        asr_part(heard)) if p is not None]
    page = render_page(PageContent(
        title=title, seeds_note=note, notes=tuple(notes), tables=tables, impact_cis=cis,
        differences=differences, plots=drawn, examples=ex_tables, example_seed=chosen_seed, audio=files,
        browser=manifest, clean=clean, parts=tuple(parts)))
    report_html = atomic_write_text(out / "report.html", page)
    return ReportPaths(out_dir=out, tables_md=tables_md, tables_tex=tables_tex, table_csvs=csvs,
                       examples_md=examples_md, summary_md=summary_md, results_csv=results_csv,
                       summary_csv=summary_csv, plots=paths.plots, html=report_html, audio=files,
                       browser=browser_files, notes=tuple(notes), layers=layers_json, groups=groups_json,
                       group_tables=tuple(group_tabs))
