"""``summary.md``: RQ1-RQ3 and the other questions answered from the numbers, each as a line, a tally and a
table (:mod:`featcache.report.questions`), and the affected-subset impacts.

Each cell of a question's table is a difference in points with its paired bootstrap interval and the answer
it gives (bold where the interval excludes 0); the Overview of ``report.html`` shows the same tables.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from featcache.metrics.analysis import Analysis
from featcache.metrics.bootstrap import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES
from featcache.metrics.rows import SeedStat, SummaryRow
from featcache.report.parts import ORDER, Part
from featcache.report.questions import Question, question_html, question_md, questions
from featcache.report.render import _num, _signed


def _pm(stat: SeedStat, *, unit: str = "") -> str:
    m, s = stat.mean, stat.std
    if not math.isfinite(m):
        return "n/a"
    body = (_signed(m) if unit == "%" else _num(m)) + unit
    return body + (f" ± {_num(s)}" if math.isfinite(s) else "")


def affected_md(summary: Sequence[SummaryRow]) -> str:
    """The affected-subset table of ``summary.md``: each attack's impact over all utterances and over those it
    changed.

    Args:
        summary: The summary rows.

    Returns:
        The Markdown section.
    """
    out = ["## Affected subset", "",
           "Impact over all utterances and over those the attack actually changed (same utterances, clean vs "
           "attacked; averaged over the folds).", "",
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
    return "\n".join(out + ["", ""])


def render_summary(
    analysis: Analysis,
    summary: Sequence[SummaryRow],
    *,
    title: str = "Robustness summary",
    seeds_note: str = "",
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    bootstrap_seed: int = 0,
    asked: Sequence[Question] | None = None,
) -> str:
    """The summary: each question as one line on how to read it, a tally and its table
    (:mod:`featcache.report.questions`), and the affected-subset table.

    Args:
        analysis: The analysis.
        summary: Its summary rows.
        title: Heading.
        seeds_note: Sentence on the seeds, under the heading.
        n_resamples: Bootstrap resamples for the intervals computed here (0: none).
        confidence: Confidence level.
        bootstrap_seed: Resampling seed.
        asked: The questions, when the caller has them already (default: :func:`~featcache.report.questions.
            questions` of the analysis).

    Returns:
        Markdown text.
    """
    qs = list(asked) if asked is not None else questions(analysis, summary, n_resamples=n_resamples,
                                                          confidence=confidence, seed=bootstrap_seed)
    out = [f"# {title}", ""]
    if seeds_note:
        out += [seeds_note, ""]
    text = "\n".join(out) + "\n"
    for q in qs:
        if q.key == "pos":
            text += affected_md(summary)
        text += question_md(q)
    if not any(q.key == "pos" for q in qs):
        text += affected_md(summary)
    return text.rstrip("\n") + "\n"


def answers_part(asked: Sequence[Question], summary: Sequence[SummaryRow], *,
                 shown: Sequence[str] = ("rq1", "rq2", "rq3")) -> Part | None:
    """The questions the Overview does not show and the affected subset, in the details of ``report.html``:
    each question a collapsible table, the affected subset one collapsed table per model.

    Args:
        asked: The questions.
        summary: The summary rows.
        shown: The questions the Overview shows (left out here).

    Returns:
        The part, or None with nothing to show.
    """
    out = [f'<details class="part" id="more-{html.escape(q.key)}"><summary><strong>{html.escape(q.title)}</strong>'
           f"</summary>{question_html(q)}</details>" for q in asked if q.key not in shown and q.rows]
    by_model: dict[str, list[SummaryRow]] = {}
    for r in summary:
        if r.affected is not None and math.isfinite(r.affected.share):
            by_model.setdefault(r.model, []).append(r)
    for model, rows in by_model.items():
        body = "".join(
            f'<tr><th scope="row">{html.escape(r.condition)}</th><td>{r.affected.n_affected:.0f} / {r.n:.0f} '
            f"({r.affected.share * 100:.1f}%)</td><td>{html.escape(_pm(r.impact, unit='%'))}</td>"
            f"<td>{html.escape(_pm(r.affected.impact, unit='%'))}</td></tr>" for r in rows if r.affected is not None)
        out.append(f'<details class="part" id="affected-{html.escape(model)}"><summary><strong>Affected subset: '
                   f"{html.escape(model)}</strong> ({len(rows)} attacks)</summary><table class=\"plain numbers\"><thead><tr>"
                   "<th>Condition</th><th>Affected</th><th>Impact (all)</th><th>Impact (affected)</th></tr></thead>"
                   f"<tbody>{body}</tbody></table></details>")
    if not out:
        return None
    intro = ('<p class="muted">Each question and model opens on a click. Affected subset: each attack\'s impact over '
             "all utterances and over those it actually changed (same utterances, clean vs attacked).</p>")
    return Part("answers", "More answers", intro + "\n".join(out), order=ORDER["answers"])
