"""``report.html``: one page to look at and listen to, that works offline.

The page is a list of parts (:mod:`featcache.report.parts`): the Overview first (the impact heatmap, clean
accuracy, RQ1-RQ3 as compact tables; :mod:`featcache.report.overview`), then the details on demand, each
collapsed or collapsible: the paper's tables and "Beyond the paper" per model (sortable by a click on a column
header, with bootstrap intervals), the other answers and the affected subset, the plots (PNG inlined as data
URIs, with the SVG beside the page), the Layers and Groups sections where the report has them, the example
tables (7-8) with the masked words marked and audio players, and the utterance browser
(:mod:`featcache.report.browser`). Its CSS and JavaScript (``featcache/report/assets``) are inlined; nothing
is fetched from the network. Audio files and the browser's data files lie beside it.
"""

from __future__ import annotations

import base64
import difflib
import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources

from featcache.metrics.rows import BootstrapCI, ImpactDifference
from featcache.report.audio import AudioFiles
from featcache.report.examples import ExampleTable
from featcache.report.markup import inline
from featcache.report.parts import ORDER, Part, render_parts
from featcache.report.plots import Plot
from featcache.report.render import _cell_plain, _signed
from featcache.report.specs import ATTACK_NAMES
from featcache.report.tables import Cell, Table, TableRow


@dataclass(frozen=True)
class PageContent:
    """Everything ``report.html`` shows.

    Attributes:
        title: Page title.
        seeds_note: The sentence on seeds.
        notes: Sentences on what the page leaves out and why (one each).
        tables: The report's tables.
        impact_cis: ``(model, condition) -> interval`` of each row's impact.
        differences: ``(model, condition) -> fusion-minus-unimodal impact`` where it applies.
        plots: The plots (PNG inlined, SVG linked).
        examples: The example tables.
        example_seed: The seed the examples and the browser show.
        audio: ``(utt_id, condition) -> files`` written beside the page.
        browser: The browser's manifest (see :func:`featcache.report.browser.write_browser`).
        clean: Name of the clean condition.
        parts: The parts the page shows besides its own (tables, plots, examples, browser): the Overview,
            the other answers, the Layers and Groups sections (each placed by its ``place`` and ``order``).
    """

    title: str
    seeds_note: str
    tables: Sequence[Table]
    plots: Sequence[Plot]
    examples: Sequence[ExampleTable]
    example_seed: int
    browser: Mapping[str, object]
    notes: Sequence[str] = ()
    impact_cis: Mapping[tuple[str, str], BootstrapCI | None] = field(default_factory=dict)
    differences: Mapping[tuple[str, str], ImpactDifference | None] = field(default_factory=dict)
    audio: Mapping[tuple[str, str], AudioFiles] = field(default_factory=dict)
    clean: str = "clean"
    parts: Sequence[Part] = ()


def _asset(name: str) -> str:
    return resources.files("featcache.report").joinpath("assets", name).read_text(encoding="utf-8")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


# -- text marks ----------------------------------------------------------------------------------


def mark_changes(clean: str, perturbed: str) -> str:
    """The perturbed text as HTML with every changed word marked (its original in the tooltip).

    Words are compared as whitespace-separated tokens; a masked word becomes
    ``<mark class="changed" title="original">[MASK]</mark>``, a deleted one ``<del>``.

    Args:
        clean: The clean transcription.
        perturbed: What the text model was given.

    Returns:
        HTML.
    """
    a, b = re.findall(r"\S+|\s+", clean), re.findall(r"\S+|\s+", perturbed)
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(_e("".join(b[j1:j2])))
            continue
        original = "".join(a[i1:i2]).strip()
        if j2 > j1:
            new = "".join(b[j1:j2])
            lead = new[: len(new) - len(new.lstrip())]
            trail = new[len(new.rstrip()):]
            out.append(f'{_e(lead)}<mark class="changed" title="{_e(original or "inserted")}">'
                       f"{_e(new.strip())}</mark>{_e(trail)}")
        elif original:
            out.append(f'<del title="deleted">{_e(original)}</del> ')
    return "".join(out)


# -- tables --------------------------------------------------------------------------------------


def _sort_value(c: Cell) -> str:
    if c.kind == "smodal":
        vals = [v for v in c.values if math.isfinite(v)]
        return f"{vals[0]:.6g}" if vals else ""
    if c.kind in ("acc", "impact") and math.isfinite(c.mean):
        return f"{c.mean:.6g}"
    return ""


def _ci_text(ci: BootstrapCI | None) -> str:
    if ci is None or not math.isfinite(ci.low):
        return ""
    return f"[{_signed(ci.low)}, {_signed(ci.high)}]"


def _impact_cell(c: Cell, ci: BootstrapCI | None, *, bold: bool) -> str:
    """An Impact cell with its interval under the value (highlighted where it excludes 0)."""
    s = _e(_cell_plain(c))
    s = "<strong>" + s + "</strong>" if bold and s else s
    text = _ci_text(ci)
    cls = ' class="sig"' if text and ci is not None and ci.excludes_zero else ""
    under = f'<span class="ci">{text}</span>' if text else ""
    return f'<td data-v="{_sort_value(c)}"{cls}>{s}{under}</td>'


def _diff_cell(d: ImpactDifference | None) -> str:
    if d is None or not math.isfinite(d.difference.mean):
        return '<td data-v=""></td>'
    text = _ci_text(d.ci)
    cls = ' class="sig"' if text and d.ci is not None and d.ci.excludes_zero else ""
    under = f'<span class="ci">{text}</span>' if text else ""
    return (f'<td data-v="{d.difference.mean:.6g}"{cls} title="vs {_e(d.unimodal)} ({_e(d.unimodal_condition)})">'
            f"{_signed(d.difference.mean)}{under}</td>")


def render_table(table: Table, content: PageContent, *, captioned: bool = True) -> str:
    """One report table as a sortable HTML table, each impact with its interval under it.

    Args:
        table: The table.
        content: The page (for the intervals).
        captioned: Whether to write its caption (not inside a collapsible part that shows it).

    Returns:
        HTML (the table, in a figure with its caption and note).
    """
    has_impact = "Impact" in table.columns
    has_smodal = "Impact S. Modal" in table.columns
    conf = next((ci.confidence for ci in content.impact_cis.values() if ci is not None), 0.95)
    pct = f"{round(conf * 100)}%"
    at = table.columns.index("Impact") if has_impact else -1
    cols = list(table.columns) + ([f"Fusion − S. Modal ({pct} CI)"] if has_smodal else [])
    n = len(cols)
    head = "".join(f'<th data-col="{k}" title="sort">{_e(c)}</th>' for k, c in enumerate(cols))
    body = ["<tbody>"]
    for r in table.rows:
        if r.section:
            body.append(f'</tbody><tbody><tr class="section"><th colspan="{n}">{_e(r.label)}</th></tr>')
            continue
        tds = [f'<th scope="row" data-v="{_e(r.label)}">{_e(r.label)}</th>']
        for k, c in enumerate(r.cells, start=1):
            if k == at and r.condition != content.clean:
                tds.append(_impact_cell(c, content.impact_cis.get((r.model, r.condition)), bold=c.bold))
                continue
            s = _e(_cell_plain(c))
            tds.append(f'<td data-v="{_sort_value(c)}">{"<strong>" + s + "</strong>" if c.bold and s else s}</td>')
        if has_smodal:
            tds.append(_diff_cell(content.differences.get((r.model, r.condition))))
        body.append("<tr>" + "".join(tds) + "</tr>")
    body.append("</tbody>")
    intervals = (f" Under each impact: its {pct} paired bootstrap interval, highlighted where it excludes 0."
                 if has_impact and content.impact_cis else "")
    text = (table.note + intervals).strip()
    note = f'<p class="note">{inline(text)}</p>' if text else ""
    caption = (f"<figcaption><strong>Table {_e(table.number)}.</strong> {inline(table.caption)}</figcaption>"
               if captioned else "")
    return (f'<figure class="table" id="{_e(table.key)}">{caption}<div class="scroll"><table class="sortable"><thead>'
            f'<tr>{head}</tr></thead>{"".join(body)}</table></div>{note}</figure>')


def _by_model(table: Table) -> list[tuple[str, Table]]:
    """A table whose sections are models ("Beyond the paper"), cut into one table per model."""
    out: list[tuple[str, list[TableRow]]] = []
    for r in table.rows:
        if r.section:
            out.append((r.label, []))
        elif out:
            out[-1][1].append(r)
    return [(label, Table(f"{table.key}-{k}", table.number, f"{table.caption} {label}.", table.columns,
                          tuple(rows), table.note)) for k, (label, rows) in enumerate(out, start=1) if rows]


def _collapsible(summary: str, body: str, *, open_: bool = False, key: str = "") -> str:
    anchor = f' id="{_e(key)}"' if key else ""
    return f'<details class="part"{anchor}{" open" if open_ else ""}><summary>{summary}</summary>{body}</details>'


def render_tables(content: PageContent) -> str:
    """The Tables part: each of the paper's tables collapsible (Table 3 open), "Beyond the paper" one collapsed
    table per model.

    Args:
        content: The page.

    Returns:
        HTML.
    """
    out = ['<p class="muted">Click a table to open it; click a column header to sort (again to reverse, a third '
           "time to restore); rows stay within their section. Intervals: paired, fold-stratified bootstrap over "
           "utterances.</p>"]
    for t in content.tables:
        if t.key == "beyond":
            for label, sub in _by_model(t):
                out.append(_collapsible(f"<strong>Table {_e(t.number)}.</strong> Beyond the paper: {_e(label)}",
                                        render_table(sub, content, captioned=False), key=f"{t.key}-{_slug(label)}"))
            continue
        out.append(_collapsible(f"<strong>Table {_e(t.number)}.</strong> {inline(t.caption)}",
                                render_table(t, content, captioned=False), open_=t.key == "table3",
                                key=f"open-{t.key}"))
    return "\n".join(out)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")


# -- examples ------------------------------------------------------------------------------------


def _top(top: Sequence[tuple[str, float]], correct: bool) -> str:
    parts = []
    for k, (label, p) in enumerate(top):
        value = f"= {p:.2f}" if p >= 0.1 else "&lt; 0.1"
        parts.append(f"<strong>{_e(label)}</strong> {value}" if k == 0 else f"{_e(label)} {value}")
    cls = "ok" if correct else "wrong"
    return f'<td class="{cls}">{", ".join(parts)}</td>'


def _player(src: str | None, label: str) -> str:
    if src is None:
        return ""
    return f'<audio controls preload="metadata" src="{_e(src)}" aria-label="{_e(label)}"></audio>'


def render_examples(content: PageContent) -> str:
    """The example tables (7-8) with the changed words marked and the audio players.

    Args:
        content: The page.

    Returns:
        HTML.
    """
    out = []
    for t in content.examples:
        out.append(f'<figure class="examples" id="table{_e(t.number)}"><figcaption><strong>Table {_e(t.number)}.'
                   f"</strong> {_e(t.caption)}</figcaption>")
        if t.missing or not t.examples:
            out.append(f"<p>{_e(t.missing or 'No utterance qualifies.')}</p></figure>")
            continue
        model_t, uni_t = t.model[:1].upper() + t.model[1:], t.unimodal[:1].upper() + t.unimodal[1:]
        out.append(f'<div class="scroll"><table class="examples"><thead><tr><th>#</th><th>Transcription</th>'
                   f"<th>Label</th><th>{_e(model_t)}</th><th>{_e(uni_t)}</th><th>Audio</th></tr></thead>")
        for k, ex in enumerate(t.examples, start=1):
            text = _e(ex.text) if ex.text else "<em>(transcription not available)</em>"
            out.append(f'<tbody class="example"><tr class="utt"><td>{k}</td><td>{text} <code>{_e(ex.utt_id)}</code>'
                       f"</td><td><strong>{_e(ex.label)}</strong></td><td></td><td></td><td></td></tr>")
            for r in ex.rows:
                files = content.audio.get((ex.utt_id, r.condition)) or next(
                    (f for (u, _), f in content.audio.items() if u == ex.utt_id), None)
                if r.condition == content.clean:
                    name = "Unperturbed"
                    player = _player(files.clean if files else None, f"{ex.utt_id} clean")
                else:
                    name = ATTACK_NAMES.get(r.condition, r.condition)
                    pert = content.audio.get((ex.utt_id, r.condition))
                    if pert is not None and pert.perturbed is not None:
                        player = _player(pert.perturbed, f"{ex.utt_id} {r.condition}")
                    elif files is not None:
                        player = '<span class="muted">same audio as unperturbed</span>'
                    else:
                        player = ""
                shown = f"<em>{_e(name)}</em>"
                if r.condition != content.clean and r.text is not None and ex.text and r.text != ex.text:
                    shown += ": " + mark_changes(ex.text, r.text)
                out.append(f"<tr><td></td><td>{shown}</td><td></td>{_top(r.model_top, r.model_correct)}"
                           f"{_top(r.unimodal_top, r.unimodal_correct)}<td>{player}</td></tr>")
            out.append("</tbody>")
        out.append("</table></div><p class=\"note\">Each model's two most probable labels; its decision in bold, "
                   "green when right and red when wrong. Changed words are marked (their original in the tooltip)."
                   "</p></figure>")
    return "\n".join(out)


# -- page ----------------------------------------------------------------------------------------


def _plot_html(plot: Plot) -> str:
    data = base64.b64encode(plot.png.read_bytes()).decode("ascii")
    return (f'<figure class="plot" id="plot-{_e(plot.name)}"><img alt="{_e(plot.title)}" '
            f'src="data:image/png;base64,{data}"><figcaption><strong>{_e(plot.title)}.</strong> {_e(plot.caption)} '
            f'<a href="{_e(plot.svg.name)}">SVG</a> · <a href="{_e(plot.png.name)}">PNG</a></figcaption></figure>')


def _browser_html(content: PageContent) -> str:
    data = json.dumps(content.browser, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    return f"""<div class="filters">
<label>Condition <select id="b-cond"></select></label>
<label>Session <select id="b-session"></select></label>
<label>Label <select id="b-label"></select></label>
<label>Fusion model <select id="b-fusion"></select></label>
<label>Outcome <select id="b-outcome">
<option value="">any</option>
<option value="fuw">fusion right, unimodal wrong</option>
<option value="fwu">fusion wrong, unimodal right</option>
<option value="flip">fusion prediction changed from clean</option>
</select></label>
<label>Search <input id="b-search" type="search" placeholder="utterance id or word"></label>
</div>
<p id="b-status" class="muted" aria-live="polite"></p>
<div class="scroll"><table id="b-table" class="browser"><thead></thead><tbody></tbody></table></div>
<div class="pager"><button id="b-prev" type="button">&larr; Previous</button> <span id="b-page"></span>
<button id="b-next" type="button">Next &rarr;</button></div>
<script type="application/json" id="browser-data">{data}</script>"""


def page_parts(content: PageContent) -> list[Part]:
    """Every part of the page: the caller's (Overview, answers, Layers, Groups) and the page's own (tables,
    plots, examples, utterance browser), each placed by its ``place`` and ``order``.

    Args:
        content: What the page shows.

    Returns:
        The parts, in page order.
    """
    plots = "\n".join(_plot_html(p) for p in content.plots) or "<p>No plot: nothing to draw.</p>"
    examples = render_examples(content) or "<p>No example table (see the note at the top).</p>"
    own = [Part("tables", "Tables", render_tables(content), order=ORDER["tables"]),
           Part("plots", "Plots", _collapsible("The plots", plots, open_=True), order=ORDER["plots"]),
           Part("examples", "Examples", examples, order=ORDER["examples"]),
           Part("browser", "Utterance browser", _browser_html(content), order=ORDER["browser"])]
    return sorted([*content.parts, *own], key=lambda p: (p.place != "overview", p.order))


def render_page(content: PageContent) -> str:
    """The whole ``report.html``.

    Args:
        content: What the page shows.

    Returns:
        The HTML document.
    """
    notes = "".join(f'<p class="notice">{inline(n)}</p>' for n in content.notes if n)
    nav, sections = render_parts(page_parts(content))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(content.title)}</title>
<style>{_asset("report.css")}</style>
</head><body>
<header><h1>{_e(content.title)}</h1><nav>{nav}</nav></header>
<main>
<p class="lead">{inline(content.seeds_note)} Examples and the browser show seed {content.example_seed}.</p>
{notes}
{sections}
</main>
<script>{_asset("report.js")}</script>
</body></html>
"""


__all__ = ["PageContent", "mark_changes", "page_parts", "render_examples", "render_page", "render_table",
           "render_tables"]
