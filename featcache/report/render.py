"""A :class:`~featcache.report.Table` as Markdown, LaTeX (booktabs) or CSV, and the number formats of the report.

Accuracies (fractions) are shown in percent with two decimals, impacts as signed percentages; a
``± std`` follows where the cell has one.
"""

from __future__ import annotations

import csv
import html
import io
import math
import os
from pathlib import Path

from featcache.cache.atomic import atomic_write_bytes
from featcache.report.tables import Cell, Table


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


def md_text(text: str) -> str:
    """Text from the corpus (a transcript, a label) for a Markdown table cell: markup shown as text, never
    rendered (``<img onerror=...>`` stays visible characters in every Markdown viewer)."""
    return _md_escape(html.escape(text, quote=False))


def md_code(text: str) -> str:
    """Text from the corpus (an utterance id) as a Markdown code span, whatever backticks it holds."""
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{_md_escape(text)}{pad}{fence}"


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
    f = io.StringIO(newline="")
    w = csv.writer(f, lineterminator="\n")
    w.writerow(["section", table.columns[0].lower(), "condition", *table.columns[1:]])
    section = ""
    for r in table.rows:
        if r.section:
            section = r.label
            continue
        w.writerow([section, r.label, r.condition, *(_cell_plain(c) for c in r.cells)])
    return atomic_write_bytes(path, f.getvalue().encode("utf-8"))  # a full disk or a read-only folder: one line
