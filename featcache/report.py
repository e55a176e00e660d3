"""The robustness report: the paper's tables, example tables, a plain-language summary and plots.

:func:`write_report` turns a :class:`~featcache.metrics.Predictions` table into a directory::

    tables.md          Tables 3-6 in the layout of Cohen et al. (2023), one table per extra fusion
                       head, and "Beyond the paper" for attacks the paper did not run
    tables.tex         the same tables, booktabs, ready to paste (needs \\usepackage{booktabs})
    table*.csv         the same tables, one CSV each
    examples.md        Tables 7-8: utterances the multimodal model gets right under an attack while
                       the unimodal model gets them wrong
    summary.md         RQ1-RQ3 answered from the numbers, affected-subset impacts, additivity
    results.csv        one row per (fold, seed, model, condition)
    summary.csv        one row per (model, condition)
    impact.png, clean_accuracy.png, flip_rate.png

Accuracies are shown in percent; with more than one seed, Avg. and Impact read ``mean ± std`` over
seeds (sample std) and the session columns hold the mean over seeds. Conditions missing from the
predictions are left out; the tables never invent a row.

The pieces are usable on their own: :func:`build_tables` and :func:`render_markdown` /
:func:`render_latex` / :func:`write_table_csv`; :func:`select_examples` and
:func:`render_examples`; :func:`render_summary`; :func:`write_plots`.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from featcache.errors import FeatcacheError
from featcache.metrics import (
    AUDIO_MODEL,
    CLEAN,
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    MULTIMODAL_MODEL,
    TEXT_MODEL,
    Analysis,
    BootstrapCI,
    Predictions,
    SeedStat,
    SummaryRow,
    condition_key,
    write_results_csv,
    write_summary_csv,
)

PLOT_DPI = 150
"""Resolution of every PNG."""

TEXT_TABLE_ROWS: tuple[tuple[str, str], ...] = (
    ("adj", "Adjectives"),
    ("random-adj", "Random (#adjectives)"),
    ("noun", "Nouns"),
    ("random-noun", "Random (#nouns)"),
    ("no-text", "No text"),
)
"""Rows of Table 4 (text model): paper condition and label."""
AUDIO_TABLE_ROWS: tuple[tuple[str, str], ...] = (
    ("pitch", "Pitch"),
    ("noise", "Noisy audio"),
    ("no-audio", "No audio"),
)
"""Rows of Table 5 (audio model)."""
FUSION_TABLE_SECTIONS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("Text perturbations", (
        ("adj", "Adjectives"), ("random-adj", "Random (#adj.)"), ("noun", "Nouns"), ("random-noun", "Random (#noun)"),
    )),
    ("Audio perturbations", (("pitch", "Pitch"),)),
    ("Text-audio perturbations", (
        ("pitch+adj", "Pitch + adj."), ("pitch+random-adj", "Pitch + rand. (#adj.)"),
        ("pitch+noun", "Pitch + noun"), ("pitch+random-noun", "Pitch + rand. (#noun)"),
    )),
    ("Eliminating one modality", (("no-text", "No text"), ("no-audio", "No audio"))),
    ("Adding white noise", (("noise", "Noisy audio"),)),
)
"""Sections and rows of Table 6 (every fusion model)."""
ATTACK_NAMES: dict[str, str] = {
    "adj": "Adjective masking",
    "noun": "Noun masking",
    "random-adj": "Random masking (#adjectives)",
    "random-noun": "Random masking (#nouns)",
    "pitch": "Pitch modulation (±1 semitone)",
}
"""Display names of attacks in the example tables."""

TABLE_NOTE = (
    "Avg. is the mean of the session accuracies. Impact is the relative change of Avg. from the Baseline, in percent."
)
FUSION_NOTE = (
    " Impact S. Modal copies the impact of the same attack(s) on the unimodal models (audio first, then text)."
)


# ----------------------------------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One table cell.

    Attributes:
        kind: ``"text"`` (verbatim), ``"acc"`` (a fraction shown in percent), ``"impact"`` (percent,
            signed) or ``"smodal"`` (a list of impacts).
        text: The text of a ``"text"`` cell.
        mean: The value of an ``"acc"`` or ``"impact"`` cell.
        std: Its std over seeds (NaN: not shown).
        values: The impacts of an ``"smodal"`` cell.
        bold: Whether to set the cell in bold.
    """

    kind: Literal["text", "acc", "impact", "smodal"]
    text: str = ""
    mean: float = math.nan
    std: float = math.nan
    values: tuple[float, ...] = ()
    bold: bool = False


@dataclass(frozen=True)
class TableRow:
    """A data row, or a section heading when ``section`` is set.

    Attributes:
        label: Row label (``"Baseline"``, ``"Adjectives"``, ...) or the section's title.
        condition: The condition shown ("" for a section).
        cells: The value cells, one per column after the first.
        section: Whether the row is a section heading.
    """

    label: str
    condition: str = ""
    cells: tuple[Cell, ...] = ()
    section: bool = False


@dataclass(frozen=True)
class Table:
    """A report table.

    Attributes:
        key: File-friendly identifier (``"table3"``, ``"table6-late"``, ``"beyond"``).
        number: Display number (``"3"``, ``"6b"``, ``"B"``).
        caption: Caption.
        columns: Column headers, the first being the row-label column.
        rows: Rows.
        note: Text under the table.
    """

    key: str
    number: str
    caption: str
    columns: tuple[str, ...]
    rows: tuple[TableRow, ...]
    note: str = ""


def _session_header(session: str) -> str:
    return f"Ses. {session}" if session.isdigit() else session


def _model_title(model: str) -> str:
    return model[:1].upper() + model[1:]


def _acc_cells(row: SummaryRow, sessions: Sequence[str], *, show_std: bool) -> list[Cell]:
    acc = dict(zip(row.sessions, row.session_accuracy))
    cells = [Cell("acc", mean=acc.get(s, math.nan)) for s in sessions]
    cells.append(Cell("acc", mean=row.accuracy.mean, std=row.accuracy.std if show_std else math.nan))
    return cells


def _impact_cell(stat: SeedStat, *, show_std: bool) -> Cell:
    if not stat.values:
        return Cell("text")
    return Cell("impact", mean=stat.mean, std=stat.std if show_std else math.nan)


def _data_row(label: str, row: SummaryRow, sessions: Sequence[str], *, show_std: bool, smodal: bool) -> TableRow:
    cells = _acc_cells(row, sessions, show_std=show_std)
    cells.append(_impact_cell(row.impact, show_std=show_std))
    if smodal:
        vals = tuple(m.impact.mean for m in row.single_modal)
        cells.append(Cell("smodal", values=vals) if vals else Cell("text"))
    return TableRow(label=label, condition=row.condition, cells=tuple(cells))


def build_tables(
    analysis: Analysis,
    summary: Sequence[SummaryRow],
) -> list[Table]:
    """Tables 3-6 in the paper's layout, one Table-6 layout per extra fusion head, and "Beyond the paper".

    Args:
        analysis: The analysis the summary rows come from.
        summary: Its :meth:`~featcache.metrics.Analysis.summary`.

    Returns:
        The tables that have any row, in report order.
    """
    rows = {(r.model, r.condition): r for r in summary}
    sessions = list(analysis.sessions())
    show_std = len(analysis.seeds()) > 1
    sess_cols = tuple(_session_header(s) for s in sessions)
    clean = analysis.clean
    tables: list[Table] = []
    placed: dict[str, set[str]] = {}

    # Table 3
    t3 = []
    for m in (analysis.text_model, analysis.audio_model, analysis.multimodal_model):
        if (m, clean) in rows:
            t3.append(TableRow(label=_model_title(m), condition=clean,
                               cells=tuple(_acc_cells(rows[(m, clean)], sessions, show_std=show_std))))
    if t3:
        best = []
        for j in range(len(sessions) + 1):
            vals = [r.cells[j].mean for r in t3]
            top = max((v for v in vals if math.isfinite(v)), default=math.nan)
            best.append([math.isfinite(v) and round(v * 100, 2) == round(top * 100, 2) for v in vals])
        t3 = [TableRow(r.label, r.condition, tuple(Cell(c.kind, c.text, c.mean, c.std, c.values, best[j][i])
                                                    for j, c in enumerate(r.cells))) for i, r in enumerate(t3)]
        tables.append(Table("table3", "3", "Accuracy of the classifiers on the original, unperturbed inputs.",
                            ("Model", *sess_cols, "Avg."), tuple(t3),
                            "Avg. is the mean of the session accuracies. The best value of each column is in bold."))

    def unimodal_table(model: str, key: str, number: str, caption: str,
                       spec: Sequence[tuple[str, str]]) -> None:
        if (model, clean) not in rows:
            return
        out = [_data_row("Baseline", rows[(model, clean)], sessions, show_std=show_std, smodal=False)]
        used = placed.setdefault(model, {clean})
        for paper_cond, label in spec:
            cond = analysis.find_condition(model, condition_key(paper_cond) or (None, None))
            if cond is not None and cond not in used:
                used.add(cond)
                out.append(_data_row(label, rows[(model, cond)], sessions, show_std=show_std, smodal=False))
        tables.append(Table(key, number, caption, ("Method", *sess_cols, "Avg.", "Impact"), tuple(out), TABLE_NOTE))

    unimodal_table(analysis.text_model, "table4", "4",
                   "Accuracy of the text classifier for each test session under the masking attacks.", TEXT_TABLE_ROWS)
    unimodal_table(analysis.audio_model, "table5", "5",
                   "Accuracy of the audio classifier for each test session under the audio attacks.", AUDIO_TABLE_ROWS)

    extra_letter = iter("bcdefghijklmnopqrstuvwxyz")
    for model in analysis.fusion_models():
        if (model, clean) not in rows:
            continue
        out = [_data_row("Baseline", rows[(model, clean)], sessions, show_std=show_std, smodal=True)]
        used = placed.setdefault(model, {clean})
        for title, spec in FUSION_TABLE_SECTIONS:
            section: list[TableRow] = []
            for paper_cond, label in spec:
                cond = analysis.find_condition(model, condition_key(paper_cond) or (None, None))
                if cond is not None and cond not in used:
                    used.add(cond)
                    section.append(_data_row(label, rows[(model, cond)], sessions, show_std=show_std, smodal=True))
            if section:
                out.append(TableRow(label=title, section=True))
                out.extend(section)
        if model == analysis.multimodal_model:
            key, number = "table6", "6"
            caption = "Accuracy of the multimodal classifier for each test session under different conditions."
        else:
            letter = next(extra_letter, "x")
            key, number = f"table6{letter}-{model}", f"6{letter}"
            caption = f"Accuracy of the fusion head `{model}` for each test session under different conditions."
        tables.append(Table(key, number, caption, ("Method", *sess_cols, "Avg.", "Impact", "Impact S. Modal"),
                            tuple(out), TABLE_NOTE + FUSION_NOTE))

    beyond: list[TableRow] = []
    for model in analysis.models():
        extra = [c for c in analysis.conditions(model) if c not in placed.get(model, {clean}) and c != clean]
        if not extra:
            continue
        beyond.append(TableRow(label=f"{_model_title(model)} model", section=True))
        if (model, clean) in rows:
            beyond.append(_data_row("Baseline", rows[(model, clean)], sessions, show_std=show_std, smodal=True))
        for cond in extra:
            beyond.append(_data_row(cond, rows[(model, cond)], sessions, show_std=show_std, smodal=True))
    if beyond:
        tables.append(Table("beyond", "B", "Beyond the paper: accuracy of every model under the other attacks.",
                            ("Method", *sess_cols, "Avg.", "Impact", "Impact S. Modal"), tuple(beyond),
                            TABLE_NOTE + FUSION_NOTE))
    return tables


def _num(v: float) -> str:
    s = f"{v:.2f}"
    return "0.00" if s == "-0.00" else s


def _signed(v: float) -> str:
    s = _num(v)
    return "+" + s if v > 0 and s != "0.00" else s


def _cell_plain(c: Cell) -> str:
    if c.kind == "text":
        return c.text
    if c.kind == "smodal":
        return ", ".join(f"{_signed(v)}%" for v in c.values if math.isfinite(v))
    if not math.isfinite(c.mean):
        return ""
    if c.kind == "acc":
        s = _num(c.mean * 100)
        return s + (f" ± {_num(c.std * 100)}" if math.isfinite(c.std) else "")
    s = f"{_signed(c.mean)}%"
    return s + (f" ± {_num(c.std)}" if math.isfinite(c.std) else "")


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(table: Table) -> str:
    """A table as GitHub-flavoured Markdown, caption above and note below.

    Args:
        table: The table.

    Returns:
        Markdown text ending with a newline.
    """
    n = len(table.columns)
    lines = [f"**Table {table.number}.** {_md_escape(table.caption)}", ""]
    lines.append("| " + " | ".join(table.columns) + " |")
    lines.append("|" + "|".join([":---"] + ["---:"] * (n - 1)) + "|")
    for r in table.rows:
        if r.section:
            lines.append("| " + " | ".join([f"**{_md_escape(r.label)}**"] + [""] * (n - 1)) + " |")
            continue
        cells = []
        for c in r.cells:
            s = _md_escape(_cell_plain(c))
            cells.append(f"**{s}**" if c.bold and s else s)
        lines.append("| " + " | ".join([_md_escape(r.label), *cells]) + " |")
    if table.note:
        lines += ["", _md_escape(table.note)]
    return "\n".join(lines) + "\n"


_TEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters (``% _ & # $ { } ~ ^ \\``; ``±`` becomes ``$\\pm$``).

    Args:
        text: Plain text.

    Returns:
        Text safe in a LaTeX paragraph or table cell.
    """
    return "".join(_TEX_SPECIALS.get(ch, ch) for ch in text)


def _tex_text(text: str) -> str:
    """Escape, and set `code` spans in typewriter."""
    parts = text.split("`")
    return "".join(latex_escape(p) if i % 2 == 0 else r"\texttt{" + latex_escape(p) + "}" for i, p in enumerate(parts))


def _cell_tex(c: Cell) -> str:
    s = latex_escape(_cell_plain(c))
    s = s.replace("-", "$-$") if c.kind in ("impact", "smodal") else s
    return r"\textbf{" + s + "}" if c.bold and s else s


def render_latex(table: Table) -> str:
    """A table as a LaTeX ``table`` float with booktabs rules.

    Args:
        table: The table.

    Returns:
        LaTeX source ending with a newline (needs ``\\usepackage{booktabs}``).
    """
    n = len(table.columns)
    out = [
        r"\begin{table}[ht]",
        r"\centering",
        r"\caption{" + _tex_text(table.caption) + "}",
        r"\label{tab:" + table.key + "}",
        r"\begin{tabular}{l" + "r" * (n - 1) + "}",
        r"\toprule",
        " & ".join(latex_escape(c) for c in table.columns) + r" \\",
        r"\midrule",
    ]
    for r in table.rows:
        if r.section:
            out.append(r"\multicolumn{" + str(n) + r"}{l}{\textbf{" + latex_escape(r.label) + r"}} \\")
        else:
            out.append(" & ".join([latex_escape(r.label), *(_cell_tex(c) for c in r.cells)]) + r" \\")
    out.append(r"\bottomrule")
    out.append(r"\end{tabular}")
    if table.note:
        out.append(r"\par\smallskip{\footnotesize " + _tex_text(table.note) + "}")
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


def write_table_csv(table: Table, path: str | os.PathLike[str]) -> Path:
    """A table as CSV: ``section``, ``method``, ``condition``, then the displayed columns.

    Args:
        table: The table.
        path: Destination.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["section", table.columns[0].lower(), "condition", *table.columns[1:]])
        section = ""
        for r in table.rows:
            if r.section:
                section = r.label
                continue
            w.writerow([section, r.label, r.condition, *(_cell_plain(c) for c in r.cells)])
    return path


# ----------------------------------------------------------------------------------------------
# examples (Tables 7-8)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExampleRow:
    """The two models' decisions on one version of an utterance.

    Attributes:
        condition: The condition (clean or an attack).
        text: The text fed to the text encoder under that condition, if known.
        model_top: The fusion model's two most probable ``(label, probability)``.
        unimodal_top: The unimodal model's two most probable ``(label, probability)``.
        model_correct: Whether the fusion model's prediction is the true label.
        unimodal_correct: Whether the unimodal model's prediction is the true label.
    """

    condition: str
    text: str | None
    model_top: tuple[tuple[str, float], ...]
    unimodal_top: tuple[tuple[str, float], ...]
    model_correct: bool
    unimodal_correct: bool


@dataclass(frozen=True)
class Example:
    """An utterance the fusion model gets right under an attack while the unimodal model does not.

    Attributes:
        utt_id: Utterance id.
        label: True label.
        text: Clean transcription, if known.
        margin: Largest ``P_fusion(true) - P_unimodal(true)`` over the qualifying attacks.
        attacks: The attacks under which it qualifies.
        rows: Clean row first (when available), then one per attack.
    """

    utt_id: str
    label: str
    text: str | None
    margin: float
    attacks: tuple[str, ...]
    rows: tuple[ExampleRow, ...]


def _top2(probs: np.ndarray, labels: Sequence[str]) -> tuple[tuple[str, float], ...]:
    order = np.argsort(-probs, kind="stable")[:2]
    return tuple((labels[i], float(probs[i])) for i in order)


def select_examples(
    predictions: Predictions,
    *,
    attacks: Sequence[str],
    model: str = MULTIMODAL_MODEL,
    unimodal: str,
    n: int = 5,
    seed: int | None = None,
    clean: str = CLEAN,
) -> list[Example]:
    """Utterances the fusion model classifies correctly under an attack while the unimodal model errs.

    An utterance qualifies when, for at least one attack, the fusion model's prediction equals the
    true label and the unimodal model's does not (same seed, same fold). Qualifying utterances are
    ranked by the largest ``P_fusion(true label) - P_unimodal(true label)`` over their qualifying
    attacks (rounded to 6 decimals), ties broken by utterance id.

    Args:
        predictions: The predictions.
        attacks: Conditions to look at (e.g. ``["pitch"]`` or ``["adj", "noun"]``); those missing for
            either model are skipped.
        model: The fusion model.
        unimodal: The unimodal model.
        n: Number of examples.
        seed: The seed whose predictions are used (default: the smallest present).
        clean: Name of the clean condition.

    Returns:
        Up to ``n`` examples, best first.
    """
    sub = predictions.select(model=[model, unimodal], condition=[clean, *attacks])
    if len(sub) == 0:
        return []
    if seed is None:
        seed = int(sub.seed.min())
    sub = sub.select(seed=seed)
    index = {(m, c, u): i for i, (m, c, u) in enumerate(zip(sub.model.tolist(), sub.condition.tolist(),
                                                             sub.utt_id.tolist()))}
    labels = predictions.labels
    candidates: dict[str, tuple[float, list[str]]] = {}
    for attack in attacks:
        for (m, c, u), i in index.items():
            if m != model or c != attack:
                continue
            j = index.get((unimodal, attack, u))
            if j is None or sub.fold[i] != sub.fold[j]:
                continue
            y = int(sub.label[i])
            if int(sub.pred[i]) == y and int(sub.pred[j]) != y:
                margin = float(sub.probs[i, y]) - float(sub.probs[j, y])
                best, which = candidates.get(u, (-math.inf, []))
                candidates[u] = (max(best, margin), [*which, attack])
    # float32 probabilities: margins equal to 6 decimals are ties, broken by utterance id
    ranked = sorted(candidates.items(), key=lambda kv: (-round(kv[1][0], 6), kv[0]))[:n]
    out = []
    for u, (margin, which) in ranked:
        rows = []
        for cond in (clean, *attacks):
            mi, ui = index.get((model, cond, u)), index.get((unimodal, cond, u))
            if mi is None or ui is None:
                continue
            y = int(sub.label[mi])
            rows.append(ExampleRow(
                condition=cond, text=predictions.texts.get((cond, u)),
                model_top=_top2(sub.probs[mi], labels), unimodal_top=_top2(sub.probs[ui], labels),
                model_correct=int(sub.pred[mi]) == y, unimodal_correct=int(sub.pred[ui]) == y,
            ))
        first = index[(model, which[0], u)]
        out.append(Example(utt_id=u, label=labels[int(sub.label[first])], text=predictions.texts.get((clean, u)),
                           margin=margin, attacks=tuple(which), rows=tuple(rows)))
    return out


def format_top(top: Sequence[tuple[str, float]]) -> str:
    """The paper's ``"**sad** = 0.99, fru < 0.1"``: the decision in bold, probabilities under 0.1 as ``< 0.1``.

    Args:
        top: ``(label, probability)`` pairs, most probable first.

    Returns:
        Markdown text.
    """
    parts = []
    for k, (label, p) in enumerate(top):
        value = f"= {p:.2f}" if p >= 0.1 else "< 0.1"
        parts.append(f"**{label}** {value}" if k == 0 else f"{label} {value}")
    return ", ".join(parts)


def render_examples(
    examples: Sequence[Example],
    *,
    number: str,
    caption: str,
    model_title: str,
    unimodal_title: str,
    clean: str = CLEAN,
) -> str:
    """An example table (the paper's Tables 7-8) as Markdown.

    Args:
        examples: From :func:`select_examples`.
        number: Table number.
        caption: Caption.
        model_title: Column title of the fusion model.
        unimodal_title: Column title of the unimodal model.
        clean: Name of the clean condition.

    Returns:
        Markdown text ending with a newline.
    """
    lines = [f"**Table {number}.** {_md_escape(caption)}", ""]
    if not examples:
        return "\n".join(lines + ["No utterance qualifies.", ""])
    lines.append(f"| # | Transcription | Label | {model_title} | {unimodal_title} |")
    lines.append("|---:|:---|:---|:---|:---|")
    for k, ex in enumerate(examples, start=1):
        text = _md_escape(ex.text) if ex.text else "(transcription not available)"
        lines.append(f"| {k} | {text}<br>`{_md_escape(ex.utt_id)}` | **{ex.label}** | | |")
        for r in ex.rows:
            name = "Unperturbed" if r.condition == clean else ATTACK_NAMES.get(r.condition, r.condition)
            shown = f"*{_md_escape(name)}*"
            if r.condition != clean and r.text is not None and r.text != ex.text:
                shown += f": {_md_escape(r.text)}"
            lines.append(f"| | {shown} | | {format_top(r.model_top)} | {format_top(r.unimodal_top)} |")
    lines += ["", "Each model's two most probable labels; its decision in bold. The true label is in the Label column."]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# summary
# ----------------------------------------------------------------------------------------------


def _pm(stat: SeedStat, *, percent_of_fraction: bool = False, unit: str = "") -> str:
    scale = 100.0 if percent_of_fraction else 1.0
    m, s = stat.mean * scale, stat.std * scale
    if not math.isfinite(m):
        return "n/a"
    body = (_signed(m) if unit == "%" else _num(m)) + unit
    return body + (f" ± {_num(s)}" if math.isfinite(s) else "")


def _ci_text(ci: BootstrapCI | None) -> str:
    if ci is None or not math.isfinite(ci.low):
        return "no bootstrap interval"
    return f"{round(ci.confidence * 100)}% CI [{_signed(ci.low)}, {_signed(ci.high)}]"


def render_summary(
    analysis: Analysis,
    summary: Sequence[SummaryRow],
    *,
    title: str = "Robustness summary",
    seeds_note: str = "",
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    bootstrap_seed: int = 0,
) -> str:
    """The headline checks, answered from the numbers ("yes"/"no" with the values behind them).

    Args:
        analysis: The analysis.
        summary: Its summary rows.
        title: Heading.
        seeds_note: Sentence on the seeds, under the heading.
        n_resamples: Bootstrap resamples for the additivity intervals (0: none).
        confidence: Confidence level.
        bootstrap_seed: Resampling seed.

    Returns:
        Markdown text.
    """
    rows = {(r.model, r.condition): r for r in summary}
    clean = analysis.clean
    tm, am = analysis.text_model, analysis.audio_model
    out = [f"# {title}", ""]
    if seeds_note:
        out += [seeds_note, ""]

    out += ["## RQ1: does fusion beat each modality on clean input?", ""]
    uni = [m for m in (tm, am) if (m, clean) in rows]
    fusion = [m for m in analysis.fusion_models() if (m, clean) in rows]
    if not fusion or not uni:
        out.append("Not answerable: clean predictions of a fusion model and of a unimodal model are needed.")
    for m in fusion if uni else []:
        r = rows[(m, clean)]
        parts, beats = [], []
        for u in uni:
            ru = rows[(u, clean)]
            gap = (r.accuracy.mean - ru.accuracy.mean) * 100
            beats.append(gap > 0)
            acc_m, acc_u = dict(zip(r.sessions, r.session_accuracy)), dict(zip(ru.sessions, ru.session_accuracy))
            shared = [s for s in r.sessions if s in acc_u]
            wins = sum(acc_m[s] > acc_u[s] for s in shared)
            parts.append(f"{u} {_pm(ru.accuracy, percent_of_fraction=True)} ({_signed(gap)} points; "
                         f"better in {wins}/{len(shared)} sessions)")
        answer = "yes" if all(beats) else "no"
        out.append(f"- **{m}**: {answer}. Avg. accuracy {_pm(r.accuracy, percent_of_fraction=True)} vs "
                   + "; ".join(parts) + ".")
    out.append("")

    def difference_lines(conds: Sequence[str], unimodal: str) -> list[str]:
        lines = []
        for m in analysis.fusion_models():
            for c in conds:
                r = rows.get((m, c))
                if r is None or r.difference is None or r.difference.unimodal != unimodal:
                    continue
                d = r.difference
                diff = d.difference.mean
                ci = d.ci
                if not math.isfinite(diff):
                    continue
                answer = "yes" if diff > 0 else "no"
                if ci is None or not math.isfinite(ci.low):
                    verdict = f"{answer} (no bootstrap interval)"
                elif diff > 0:
                    verdict = (f"yes, the {_ci_text(ci)} excludes 0" if ci.low > 0
                               else f"yes, but the {_ci_text(ci)} includes 0 (not significant)")
                else:
                    verdict = (f"no, the {_ci_text(ci)} excludes 0: it loses more" if ci.high < 0
                               else f"no; the {_ci_text(ci)} includes 0")
                lines.append(f"- `{c}`, **{m}** vs {unimodal} (`{d.unimodal_condition}`): impact "
                             f"{_pm(d.impact, unit='%')} vs {_pm(d.unimodal_impact, unit='%')}; difference "
                             f"{_signed(diff)} points. Hurt less: **{verdict}**.")
        return lines

    masking = {condition_key(c) for c in ("adj", "random-adj", "noun", "random-noun")}
    text_attacks = [c for c in analysis.conditions() if condition_key(c) in masking]
    out += ["## RQ2: are the fusion models hurt less than the text model by the masking attacks?", ""]
    lines = difference_lines(text_attacks, tm)
    out += (lines or ["Not answerable: no masking attack was run on both a fusion model and the text model."]) + [""]

    pitch = [c for c in analysis.conditions() if condition_key(c) == condition_key("pitch")]
    out += ["## RQ3: are the fusion models hurt less than the audio model by pitch modulation?", ""]
    lines = difference_lines(pitch, am)
    out += (lines or ["Not answerable: pitch modulation was not run on both a fusion model and the audio model."])
    out.append("")

    others = [c for c in analysis.conditions() if c != clean and c not in text_attacks and c not in pitch]
    lines = difference_lines(others, tm) + difference_lines(others, am)
    if lines:
        out += ["## Other single-modality attacks: are the fusion models hurt less than the unimodal model?", ""]
        out += lines + [""]

    out += ["## Affected subset", "",
            "Impact over all utterances and over those the attack actually changed (same utterances, clean vs "
            "attacked; session-averaged).", "",
            "| Model | Condition | Affected | Impact (all) | Impact (affected) |",
            "|:---|:---|---:|---:|---:|"]
    any_aff = False
    for r in summary:
        if r.affected is None or not math.isfinite(r.affected.share):
            continue
        any_aff = True
        a = r.affected
        out.append(f"| {r.model} | {r.condition} | {a.n_affected:.0f} / {r.n:.0f} ({a.share * 100:.1f}%) | "
                   f"{_pm(r.impact, unit='%')} | {_pm(a.impact, unit='%')} |")
    if not any_aff:
        out.append("| (no attacked predictions) | | | | |")
    out.append("")
    pos_lines = []
    for m in analysis.models():
        for pos in ("adj", "noun"):
            cp = analysis.find_condition(m, condition_key(pos) or (None, None))
            cr = analysis.find_condition(m, condition_key(f"random-{pos}") or (None, None))
            if cp is None or cr is None:
                continue
            ip, ir = rows[(m, cp)].affected, rows[(m, cr)].affected
            if ip is None or ir is None:
                continue
            worse = ip.impact.mean < ir.impact.mean
            pos_lines.append(f"- **{m}**, on affected utterances: `{cp}` {_pm(ip.impact, unit='%')} vs `{cr}` "
                             f"{_pm(ir.impact, unit='%')}. Masking the part of speech hurts more than masking as many "
                             f"random words: **{'yes' if worse else 'no'}**.")
    if pos_lines:
        out += ["Part of speech vs random words (compared where both masks change the input):", ""] + pos_lines + [""]

    out += ["## Additivity of combined attacks", ""]
    add_lines = []
    for m in analysis.models():
        for c in analysis.conditions(m):
            k = condition_key(c)
            if k is None or k[0] is None or k[1] is None:
                continue
            add = analysis.additivity(m, c, n_resamples=n_resamples, confidence=confidence, seed=bootstrap_seed)
            if add is None:
                continue
            ci = add.ci
            if ci is not None and math.isfinite(ci.low):
                verdict = ("no (the CI of the difference excludes 0)" if ci.excludes_zero
                           else "yes (the CI of the difference includes 0)")
            else:
                verdict = "no interval"
            add_lines.append(
                f"- `{c}`, **{m}**: combined {_pm(add.combined, unit='%')} vs sum of parts "
                f"{_pm(add.sum, unit='%')} (`{add.audio_condition}` {_pm(add.audio, unit='%')}, `{add.text_condition}` "
                f"{_pm(add.text, unit='%')}); difference {_signed(add.difference.mean)} points, {_ci_text(ci)}. "
                f"Consistent with additivity: **{verdict}**."
            )
    out += (add_lines or ["No combined attack with both of its parts was run on the same model."]) + [""]
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------
# plots
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# the report
# ----------------------------------------------------------------------------------------------


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


def _atomic_text(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


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
    tables_md = _atomic_text(out / "tables.md", "\n".join(md))
    tables_tex = _atomic_text(out / "tables.tex", "\n".join(tex))

    ex_md = ["# Examples", ""]
    seeds = analysis.seeds()
    chosen_seed = example_seed if example_seed is not None else (seeds[0] if seeds else 0)
    ex_md += [f"Predictions of seed {chosen_seed}; ranked by the fusion model's minus the unimodal model's "
              "probability of the true label, ties by utterance id.", ""]
    mm_title = _model_title(multimodal_model)
    for number, attacks, uni, caption in (
        ("7", ["pitch"], audio_model,
         "Utterances the multimodal classifier gets right under pitch modulation while the audio classifier errs."),
        ("8", ["adj", "noun"], text_model,
         "Utterances the multimodal classifier gets right under adjective or noun masking while the text "
         "classifier errs."),
    ):
        found = [analysis.find_condition(multimodal_model, condition_key(a) or (None, None)) for a in attacks]
        present = [c for c in found if c is not None and analysis.has(uni, c)]
        if not present:
            ex_md += [f"**Table {number}.** {caption}", "", "Not available: the attack was not run on both models.", ""]
            continue
        examples = select_examples(predictions, attacks=present, model=multimodal_model, unimodal=uni, n=n_examples,
                                   seed=chosen_seed, clean=clean)
        ex_md.append(render_examples(examples, number=number, caption=caption, model_title=mm_title,
                                     unimodal_title=_model_title(uni), clean=clean))
    examples_md = _atomic_text(out / "examples.md", "\n".join(ex_md))

    summary_md = _atomic_text(out / "summary.md", render_summary(
        analysis, summary, title=f"{title}: summary", seeds_note=note, n_resamples=n_resamples,
        confidence=confidence, bootstrap_seed=bootstrap_seed))
    results_csv = write_results_csv(analysis.results(), out / "results.csv")
    summary_csv = write_summary_csv(summary, out / "summary.csv", text_model=text_model, audio_model=audio_model)
    plot_paths = write_plots(analysis, summary, out) if plots else {}
    return ReportPaths(out_dir=out, tables_md=tables_md, tables_tex=tables_tex, table_csvs=csvs,
                       examples_md=examples_md, summary_md=summary_md, results_csv=results_csv,
                       summary_csv=summary_csv, plots=plot_paths)
