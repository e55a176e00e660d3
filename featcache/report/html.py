"""``report.html``: one page to look at and listen to, that works offline.

The page holds the summary's answers (RQ1-RQ3 and the rest of ``summary.md``), the paper's tables and
"Beyond the paper" (sortable by a click on a column header, with bootstrap intervals), the plots
(PNG inlined as data URIs, with the SVG beside the page), the Layers and Groups sections where the report has
them (:mod:`featcache.report.layers`, :mod:`featcache.report.groups`), the example tables (7-8) with the masked
words marked and audio players, and the utterance browser (:mod:`featcache.report.browser`). Its CSS
and JavaScript (``featcache/report/assets``) are inlined; nothing is fetched from the network. Audio
files and the browser's data files lie beside it.
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
from featcache.report.markup import inline, markdown_to_html
from featcache.report.plots import Plot
from featcache.report.render import _cell_plain, _signed
from featcache.report.specs import ATTACK_NAMES
from featcache.report.tables import Cell, Table


@dataclass(frozen=True)
class PageContent:
    """Everything ``report.html`` shows.

    Attributes:
        title: Page title.
        seeds_note: The sentence on seeds.
        notes: Sentences on what the page leaves out and why (one each).
        summary_md: ``summary.md`` (its answers are shown as HTML).
        tables: The report's tables.
        impact_cis: ``(model, condition) -> interval`` of each row's impact.
        differences: ``(model, condition) -> fusion-minus-unimodal impact`` where it applies.
        plots: The plots (PNG inlined, SVG linked).
        examples: The example tables.
        example_seed: The seed the examples and the browser show.
        audio: ``(utt_id, condition) -> files`` written beside the page.
        browser: The browser's manifest (see :func:`featcache.report.browser.write_browser`).
        clean: Name of the clean condition.
        layers: The Layers section's HTML (:func:`featcache.report.layers.render_layers_html`; "" for none).
        groups: The Groups section's HTML (:func:`featcache.report.groups.render_groups_html`; "" for none).
        overview: The Overview section's HTML, shown first (:func:`featcache.report.overview.render_overview_html`;
            "" for none).
    """

    title: str
    seeds_note: str
    summary_md: str
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
    layers: str = ""
    groups: str = ""
    overview: str = ""


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


def _ci_cell(ci: BootstrapCI | None) -> str:
    if ci is None or not math.isfinite(ci.low):
        return '<td data-v=""></td>'
    cls = ' class="sig"' if ci.excludes_zero else ""
    return f'<td data-v="{ci.low:.6g}"{cls}>[{_signed(ci.low)}, {_signed(ci.high)}]</td>'


def _diff_cell(d: ImpactDifference | None) -> str:
    if d is None or not math.isfinite(d.difference.mean):
        return '<td data-v=""></td>'
    ci = d.ci
    text = f"{_signed(d.difference.mean)}"
    cls = ""
    if ci is not None and math.isfinite(ci.low):
        text += f" [{_signed(ci.low)}, {_signed(ci.high)}]"
        cls = ' class="sig"' if ci.excludes_zero else ""
    return f'<td data-v="{d.difference.mean:.6g}"{cls} title="vs {_e(d.unimodal)} ({_e(d.unimodal_condition)})">{text}</td>'


def render_table(table: Table, content: PageContent) -> str:
    """One report table as a sortable HTML table, with interval columns where they apply.

    Args:
        table: The table.
        content: The page (for the intervals).

    Returns:
        HTML.
    """
    has_impact = "Impact" in table.columns
    has_smodal = "Impact S. Modal" in table.columns
    conf = next((ci.confidence for ci in content.impact_cis.values() if ci is not None), 0.95)
    pct = f"{round(conf * 100)}%"
    at = table.columns.index("Impact") + 1 if has_impact else len(table.columns)  # the interval beside Impact
    cols = list(table.columns[:at]) + ([f"Impact {pct} CI"] if has_impact else []) + list(table.columns[at:]) + (
        [f"Fusion − S. Modal [{pct} CI]"] if has_smodal else [])
    n = len(cols)
    head = "".join(f'<th data-col="{k}" title="sort">{_e(c)}</th>' for k, c in enumerate(cols))
    body = ["<tbody>"]
    for r in table.rows:
        if r.section:
            body.append(f'</tbody><tbody><tr class="section"><th colspan="{n}">{_e(r.label)}</th></tr>')
            continue
        tds = [f'<th scope="row" data-v="{_e(r.label)}">{_e(r.label)}</th>']
        for c in r.cells:
            s = _e(_cell_plain(c))
            tds.append(f'<td data-v="{_sort_value(c)}">{"<strong>" + s + "</strong>" if c.bold and s else s}</td>')
        key = (r.model, r.condition)
        if has_impact:
            tds.insert(at, _ci_cell(content.impact_cis.get(key)) if r.condition != content.clean
                       else '<td data-v=""></td>')
        if has_smodal:
            tds.append(_diff_cell(content.differences.get(key)))
        body.append("<tr>" + "".join(tds) + "</tr>")
    body.append("</tbody>")
    note = f'<p class="note">{inline(table.note)}</p>' if table.note else ""
    return (f'<figure class="table" id="{_e(table.key)}"><figcaption><strong>Table {_e(table.number)}.</strong> '
            f'{inline(table.caption)}</figcaption><div class="scroll"><table class="sortable"><thead><tr>{head}'
            f'</tr></thead>{"".join(body)}</table></div>{note}</figure>')


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


def render_page(content: PageContent) -> str:
    """The whole ``report.html``.

    Args:
        content: What the page shows.

    Returns:
        The HTML document.
    """
    summary = content.summary_md.split("\n", 1)[1] if content.summary_md.startswith("# ") else content.summary_md
    summary = summary.replace(content.seeds_note, "", 1) if content.seeds_note else summary
    notes = "".join(f'<p class="notice">{inline(n)}</p>' for n in content.notes if n)
    tables = "\n".join(render_table(t, content) for t in content.tables)
    plots = "\n".join(_plot_html(p) for p in content.plots) or "<p>No plot: nothing to draw.</p>"
    examples = render_examples(content) or "<p>No example table (see the note at the top).</p>"
    layers = "\n" + content.layers if content.layers else ""
    layers += "\n" + content.groups if content.groups else ""
    sections = (*((("overview", "Overview"),) if content.overview else ()), ("summary", "Summary"),
                ("tables", "Tables"), ("plots", "Plots"),
                *((("layers", "Layers"),) if content.layers else ()),
                *((("groups", "Groups"),) if content.groups else ()), ("examples", "Examples"),
                ("browser", "Utterance browser"))
    nav = "".join(f'<a href="#{k}">{v}</a>' for k, v in sections)
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
{content.overview}
<section id="summary"><h2>Summary</h2>{markdown_to_html(summary, shift=1)}</section>
<section id="tables"><h2>Tables</h2><p class="muted">Click a column header to sort (again to reverse, a third
time to restore); rows stay within their section. Intervals: paired, fold-stratified bootstrap over utterances;
highlighted where they exclude 0.</p>
{tables}</section>
<section id="plots"><h2>Plots</h2>{plots}</section>{layers}
<section id="examples"><h2>Examples</h2>{examples}</section>
<section id="browser"><h2>Utterance browser</h2>{_browser_html(content)}</section>
</main>
<script>{_asset("report.js")}</script>
</body></html>
"""


__all__ = ["PageContent", "mark_changes", "render_examples", "render_page", "render_table"]
