"""The report's tables as data: Tables 3-6 in the layout of Cohen et al. (2023), and "Beyond the paper".

:func:`build_tables` turns an analysis summary into :class:`Table` objects (rows of :class:`Cell`),
one Table-6 layout per extra fusion head, and "Beyond the paper" for attacks the paper did not run;
:mod:`featcache.report.render` writes them as Markdown, LaTeX or CSV.

Accuracies are shown in percent; with more than one seed, Avg., UAR and Impact read ``mean ± std``
over seeds (sample std) and the session columns hold the mean over seeds. Conditions missing from the
predictions are left out; the tables never invent a row, and a column no row fills (Impact S. Modal
in a study without unimodal counterparts) is left out too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from featcache.cache import slug
from featcache.data.corpus import fold_noun, fold_title
from featcache.metrics.analysis import Analysis
from featcache.metrics.names import condition_key
from featcache.metrics.rows import SeedStat, SummaryRow
from featcache.report.specs import (
    AUDIO_TABLE_ROWS,
    FUSION_NOTE,
    FUSION_TABLE_SECTIONS,
    TABLE_NOTE,
    TEXT_TABLE_ROWS,
    UAR_NOTE,
)


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
        model: The model the row is about ("" for a section).
    """

    label: str
    condition: str = ""
    cells: tuple[Cell, ...] = ()
    section: bool = False
    model: str = ""


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


def _model_title(model: str) -> str:
    return model[:1].upper() + model[1:]


def _acc_cells(row: SummaryRow, sessions: Sequence[str], *, show_std: bool) -> list[Cell]:
    """Session accuracies, Avg. and UAR."""
    acc = dict(zip(row.sessions, row.session_accuracy))
    cells = [Cell("acc", mean=acc.get(s, math.nan)) for s in sessions]
    cells.append(Cell("acc", mean=row.accuracy.mean, std=row.accuracy.std if show_std else math.nan))
    cells.append(Cell("acc", mean=row.uar.mean, std=row.uar.std if show_std else math.nan))
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
    return TableRow(label=label, condition=row.condition, cells=tuple(cells), model=row.model)


def _without_empty_smodal(table: Table) -> Table:
    """Drop the last column (Impact S. Modal) and its note when no row has a value in it."""
    if any(r.cells and r.cells[-1].kind == "smodal" for r in table.rows if not r.section):
        return table
    rows = tuple(r if r.section else TableRow(r.label, r.condition, r.cells[:-1], r.section, r.model)
                 for r in table.rows)
    return Table(table.key, table.number, table.caption, table.columns[:-1], rows,
                 table.note.replace(FUSION_NOTE, ""))


def scope_note(analysis: Analysis) -> str:
    """One sentence on what the report leaves out because the study lacks a model, or "".

    The example tables and the Impact S. Modal column compare a fusion model with a unimodal one;
    a study of one modality (or of fusion models only) has nothing to put there.

    Args:
        analysis: The analysis.

    Returns:
        The sentence, or "" when the study has both kinds of model.
    """
    models = analysis.models()
    uni = [m for m in (analysis.text_model, analysis.audio_model) if m in models]
    fusion = analysis.fusion_models()
    if fusion and uni:
        return ""
    if not fusion:
        which = " and ".join(f"the {m} model" for m in uni) or "no model"
        return (f"This study evaluated only {which}, so the report leaves out what compares a fusion model with "
                "a unimodal one: Table 6, the Impact S. Modal column, the fusion-vs-unimodal answers and the "
                "example tables (7-8).")
    return ("This study evaluated no unimodal model, so the report leaves out what compares a fusion model with "
            "a unimodal one: Tables 4-5, the Impact S. Modal column and the example tables (7-8).")


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
    sess_cols = tuple(fold_title(s) for s in sessions)
    clean = analysis.clean
    tables: list[Table] = []
    placed: dict[str, set[str]] = {}

    # Table 3
    t3 = []
    for m in (analysis.text_model, analysis.audio_model, analysis.multimodal_model):
        if (m, clean) in rows:
            t3.append(TableRow(label=_model_title(m), condition=clean,
                               cells=tuple(_acc_cells(rows[(m, clean)], sessions, show_std=show_std)), model=m))
    if t3:
        note = "Avg. is the mean of the session accuracies" + UAR_NOTE + "."
        if len(t3) > 1:  # bold marks the best of several models; with one model it would mark every cell
            best = []
            for j in range(len(sessions) + 2):
                vals = [r.cells[j].mean for r in t3]
                top = max((v for v in vals if math.isfinite(v)), default=math.nan)
                best.append([math.isfinite(v) and round(v * 100, 2) == round(top * 100, 2) for v in vals])
            t3 = [TableRow(r.label, r.condition, tuple(Cell(c.kind, c.text, c.mean, c.std, c.values, best[j][i])
                                                        for j, c in enumerate(r.cells)), model=r.model)
                  for i, r in enumerate(t3)]
            note += " The best value of each column is in bold."
        tables.append(Table("table3", "3", "Accuracy of the classifiers on the original, unperturbed inputs.",
                            ("Model", *sess_cols, "Avg.", "UAR"), tuple(t3), note))

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
        tables.append(Table(key, number, caption, ("Method", *sess_cols, "Avg.", "UAR", "Impact"), tuple(out),
                            TABLE_NOTE))

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
            key, number = f"table6{letter}-{slug(model)}", f"6{letter}"  # ablate:NAME -> ablate_NAME
            caption = f"Accuracy of the fusion head `{model}` for each test session under different conditions."
        tables.append(_without_empty_smodal(Table(key, number, caption,
                                                  ("Method", *sess_cols, "Avg.", "UAR", "Impact", "Impact S. Modal"),
                                                  tuple(out), TABLE_NOTE + FUSION_NOTE)))

    beyond: list[TableRow] = []
    for model in analysis.models():
        extra = [c for c in analysis.conditions(model) if c not in placed.get(model, {clean}) and c != clean]
        if not extra:
            continue
        beyond.append(TableRow(label=f"{_model_title(model)} model", section=True, model=model))
        if (model, clean) in rows:
            beyond.append(_data_row("Baseline", rows[(model, clean)], sessions, show_std=show_std, smodal=True))
        for cond in extra:
            beyond.append(_data_row(cond, rows[(model, cond)], sessions, show_std=show_std, smodal=True))
    if beyond:
        tables.append(_without_empty_smodal(Table(
            "beyond", "B", "Beyond the paper: accuracy of every model under the other attacks.",
            ("Method", *sess_cols, "Avg.", "UAR", "Impact", "Impact S. Modal"), tuple(beyond),
            TABLE_NOTE + FUSION_NOTE)))
    if fold_noun(sessions) == "folds":  # the captions and notes speak of the corpus's folds, not of sessions
        tables = [replace(t, caption=_folds_for_sessions(t.caption), note=_folds_for_sessions(t.note)) for t in tables]
    return tables


def _folds_for_sessions(text: str) -> str:
    """A caption or note of the paper's tables with "session(s)" said as "fold(s)"."""
    return text.replace("sessions", "folds").replace("session", "fold")
