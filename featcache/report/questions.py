"""The research questions as compact tables: the study's answers at a glance.

Each question is one :class:`Question`: rows the models it asks about (the fusion models for RQ1-RQ3),
columns what it compares (the unimodal models for RQ1, the attacks for RQ2-RQ3), each cell one
:class:`Answer` - a difference in points, its paired bootstrap interval and the answer it gives. The same
objects are written as Markdown tables in ``summary.md`` (:func:`question_md`) and as coloured tables in the
Overview of ``report.html`` (:mod:`featcache.report.html`), so the two never disagree.

* RQ1 - does fusion beat each modality on clean input? (fusion minus unimodal clean Avg. accuracy);
* RQ2 - are the fusion models hurt less than the text model by the masking attacks? (fusion minus text impact);
* RQ3 - are they hurt less than the audio model by pitch modulation? (fusion minus audio impact);
* the other single-modality attacks, asked as RQ2-RQ3 ask;
* part of speech vs random words (each mask's impact on the utterances it changed, every model);
* additivity of combined attacks (combined impact minus the sum of its parts' impacts, every model).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from featcache import paper
from featcache.data.corpus import fold_noun
from featcache.metrics.analysis import Analysis
from featcache.metrics.names import condition_key
from featcache.metrics.rows import BootstrapCI, SeedStat, SummaryRow
from featcache.report.render import _num, _signed

Verdict = Literal["yes", "yes-ns", "no-ns", "no"]
"""``yes``/``no``: the answer, its interval excluding 0; ``yes-ns``/``no-ns``: the sign's answer, its interval
including 0 (or no interval computed)."""

VERDICT_WORDS: dict[Verdict, str] = {"yes": "yes", "yes-ns": "yes (n.s.)", "no-ns": "no (n.s.)", "no": "no"}
"""A verdict as the tables write it (n.s.: the interval includes 0, not significant)."""


@dataclass(frozen=True)
class Answer:
    """One cell of a question's table.

    Attributes:
        value: The difference the question is decided on (points; mean over seeds).
        ci: Its paired bootstrap interval, or None when none was computed.
        verdict: The answer the cell gives.
        detail: What the difference is made of, in words (the tooltip in ``report.html``).
    """

    value: float
    ci: BootstrapCI | None
    verdict: Verdict
    detail: str = ""

    @property
    def interval(self) -> str:
        """``"[+0.38, +7.32]"``, or "" without an interval."""
        if self.ci is None or not math.isfinite(self.ci.low):
            return ""
        return f"[{_signed(self.ci.low)}, {_signed(self.ci.high)}]"


@dataclass(frozen=True)
class Question:
    """A question answered as one table.

    Attributes:
        key: Its anchor (``rq1``, ``rq2``, ``rq3``, ``others``, ``pos``, ``additivity``).
        title: Its heading (``"RQ2: are the fusion models hurt less ..."``).
        how: One sentence on how to read a cell.
        columns: Column headers after the row label.
        rows: ``(row label, cells)``, a cell None where the study has nothing to compare.
        empty: What the question says when no cell could be computed.
        yes_means: What a "yes" says, for the tally (``"hurt less"``).
        no_means: What a "no" says (``"hurt more"``).
    """

    key: str
    title: str
    how: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[Answer | None, ...]], ...]
    empty: str
    yes_means: str = "yes"
    no_means: str = "no"

    @property
    def answers(self) -> list[Answer]:
        """Every computed cell."""
        return [a for _, cells in self.rows for a in cells if a is not None]

    @property
    def tally(self) -> str:
        """One line counting the answers (``"Hurt less in 8 of 10 comparisons (6 significant); hurt more in 2
        (0 significant)."``; significant: the interval excludes 0), or "" with none."""
        answers = self.answers
        if not answers:
            return ""
        yes = [a for a in answers if a.verdict in ("yes", "yes-ns")]
        no = [a for a in answers if a.verdict in ("no", "no-ns")]
        n = len(answers)
        word = "comparison" if n == 1 else "comparisons"
        parts = [f"{self.yes_means[:1].upper() + self.yes_means[1:]} in {len(yes)} of {n} {word} "
                 f"({sum(a.verdict == 'yes' for a in yes)} significant)",
                 f"{self.no_means} in {len(no)} ({sum(a.verdict == 'no' for a in no)} significant)"]
        return "; ".join(parts) + "."


def verdict(value: float, ci: BootstrapCI | None, *, yes_if_positive: bool) -> Verdict:
    """The answer of a difference: its sign, and whether its interval excludes 0.

    Args:
        value: The difference.
        ci: Its interval, or None.
        yes_if_positive: Whether a positive difference answers "yes".

    Returns:
        The verdict.
    """
    yes = value > 0 if yes_if_positive else value < 0
    significant = ci is not None and math.isfinite(ci.low) and ci.excludes_zero
    if yes:
        return "yes" if significant else "yes-ns"
    return "no" if significant else "no-ns"


def _pm(stat: SeedStat, *, scale: float = 1.0, unit: str = "") -> str:
    m, s = stat.mean * scale, stat.std * scale
    if not math.isfinite(m):
        return "n/a"
    body = (_signed(m) if unit == "%" else _num(m)) + unit
    return body + (f" ± {_num(s)}" if math.isfinite(s) else "")


def _rq1(analysis: Analysis, rows: dict[tuple[str, str], SummaryRow], *, n_resamples: int, confidence: float,
         seed: int) -> Question:
    clean = analysis.clean
    uni = [m for m in (analysis.text_model, analysis.audio_model) if (m, clean) in rows]
    fusion = [m for m in analysis.fusion_models() if (m, clean) in rows] if uni else []
    out = []
    for m in fusion:
        r, cells = rows[(m, clean)], []
        for u in uni:
            ru = rows[(u, clean)]
            gap = (r.accuracy.mean - ru.accuracy.mean) * 100
            ci = (analysis.accuracy_difference(m, u, n_resamples=n_resamples, confidence=confidence, seed=seed)
                  if n_resamples > 0 else None)
            acc_m, acc_u = dict(zip(r.sessions, r.session_accuracy)), dict(zip(ru.sessions, ru.session_accuracy))
            shared = [s for s in r.sessions if s in acc_u]
            wins = sum(acc_m[s] > acc_u[s] for s in shared)
            detail = (f"Avg. accuracy {_pm(r.accuracy, scale=100)} vs {u} {_pm(ru.accuracy, scale=100)}; better in "
                      f"{wins}/{len(shared)} {fold_noun(shared)}")
            cells.append(Answer(gap, ci, verdict(gap, ci, yes_if_positive=True), detail))
        out.append((m, tuple(cells)))
    return Question(
        "rq1", "RQ1: does fusion beat each modality on clean input?",
        "Each cell: the fusion model's clean Avg. accuracy minus the unimodal model's, in points, with its paired "
        "bootstrap interval; positive: fusion is better.",
        tuple(f"vs {u}" for u in uni), tuple(out),
        "Not answerable: clean predictions of a fusion model and of a unimodal model are needed.",
        yes_means="better", no_means="worse")


def _difference_question(analysis: Analysis, rows: dict[tuple[str, str], SummaryRow], conds: Sequence[str],
                         unimodal: Sequence[str], *, key: str, title: str, versus: str, empty: str) -> Question:
    """Fusion minus unimodal impact per (fusion model, attack), the unimodal model the attack's own."""
    columns: list[str] = []
    against: dict[str, str] = {}
    for c in conds:
        for m in analysis.fusion_models():
            r = rows.get((m, c))
            if r is not None and r.difference is not None and r.difference.unimodal in unimodal \
                    and math.isfinite(r.difference.difference.mean):
                against.setdefault(c, r.difference.unimodal)
        if c in against:
            columns.append(c)
    out = []
    for m in analysis.fusion_models():
        cells: list[Answer | None] = []
        for c in columns:
            r = rows.get((m, c))
            d = r.difference if r is not None else None
            if d is None or d.unimodal != against[c] or not math.isfinite(d.difference.mean):
                cells.append(None)
                continue
            diff = d.difference.mean
            detail = (f"impact {_pm(d.impact, unit='%')} vs {d.unimodal} ({d.unimodal_condition}) "
                      f"{_pm(d.unimodal_impact, unit='%')}")
            cells.append(Answer(diff, d.ci, verdict(diff, d.ci, yes_if_positive=True), detail))
        if any(a is not None for a in cells):
            out.append((m, tuple(cells)))
    headers = tuple(c if len(set(against.values())) == 1 and versus else f"{c} (vs {against[c]})" for c in columns)
    how = ("Each cell: the fusion model's impact minus the " + (versus or "unimodal") + " model's under the same "
           "attack, in points, with its paired bootstrap interval; positive: the fusion model is hurt less.")
    return Question(key, title, how, headers, tuple(out), empty, yes_means="hurt less", no_means="hurt more")


def _pos(analysis: Analysis, *, n_resamples: int, confidence: float, seed: int) -> Question:
    pairs: list[tuple[str, str]] = []
    cells_of: dict[str, dict[int, Answer]] = {}
    for m in analysis.models():
        for pos, random in paper.POS_ATTACKS:
            cp = analysis.find_condition(m, condition_key(pos) or (None, None))
            cr = analysis.find_condition(m, condition_key(random) or (None, None))
            if cp is None or cr is None:
                continue
            d = analysis.affected_difference(m, cp, cr, n_resamples=n_resamples, confidence=confidence, seed=seed)
            if d is None or not math.isfinite(d.difference.mean):
                continue
            if (pos, random) not in pairs:
                pairs.append((pos, random))
            detail = f"{cp} {_pm(d.impact, unit='%')} vs {cr} {_pm(d.other_impact, unit='%')} on the utterances each changed"
            cells_of.setdefault(m, {})[pairs.index((pos, random))] = Answer(
                d.difference.mean, d.ci, verdict(d.difference.mean, d.ci, yes_if_positive=False), detail)
    rows = tuple((m, tuple(cells_of[m].get(k) for k in range(len(pairs)))) for m in analysis.models() if m in cells_of)
    return Question(
        "pos", "Part of speech vs random words: does masking the part of speech hurt more?",
        "Each cell: the mask's impact minus the impact of masking as many random words, each on the utterances it "
        "changed, in points, with a paired bootstrap interval (the same utterances drawn for both); negative: the "
        "part of speech hurts more.",
        tuple(f"{p} vs {r}" for p, r in pairs), rows, "", yes_means="hurts more", no_means="hurts less")


def _additivity(analysis: Analysis, *, n_resamples: int, confidence: float, seed: int) -> Question:
    columns: list[str] = []
    cells_of: dict[str, dict[str, Answer]] = {}
    for m in analysis.models():
        for c in analysis.conditions(m):
            k = condition_key(c)
            if k is None or k[0] is None or k[1] is None:
                continue
            add = analysis.additivity(m, c, n_resamples=n_resamples, confidence=confidence, seed=seed)
            if add is None or not math.isfinite(add.difference.mean):
                continue
            if c not in columns:
                columns.append(c)
            ci = add.ci
            significant = ci is not None and math.isfinite(ci.low) and ci.excludes_zero
            detail = (f"combined {_pm(add.combined, unit='%')} vs {add.audio_condition} {_pm(add.audio, unit='%')} + "
                      f"{add.text_condition} {_pm(add.text, unit='%')} = {_pm(add.sum, unit='%')}")
            cells_of.setdefault(m, {})[c] = Answer(add.difference.mean, ci, "no" if significant else "yes-ns", detail)
    rows = tuple((m, tuple(cells_of[m].get(c) for c in columns)) for m in analysis.models() if m in cells_of)
    return Question(
        "additivity", "Additivity of combined attacks: does a combined attack cost the sum of its parts?",
        "Each cell: the combined attack's impact minus the sum of its audio and text parts' impacts, in points, with "
        "its paired bootstrap interval; yes (n.s.): the interval includes 0, consistent with additivity.",
        tuple(columns), rows, "No combined attack with both of its parts was run on the same model.",
        yes_means="consistent with additivity", no_means="not additive")


def questions(analysis: Analysis, summary: Sequence[SummaryRow], *, n_resamples: int, confidence: float,
              seed: int) -> list[Question]:
    """Every question the study can be asked, in the report's order (RQ1-RQ3 first).

    Args:
        analysis: The report's analysis.
        summary: Its summary rows (with their fusion-minus-unimodal differences and intervals).
        n_resamples: Bootstrap resamples of the intervals computed here (0: none).
        confidence: Their confidence level.
        seed: Their resampling seed.

    Returns:
        RQ1, RQ2 and RQ3 always (each may be empty, saying why), then the other attacks, part of speech vs
        random words and additivity where they have a cell.
    """
    rows = {(r.model, r.condition): r for r in summary}
    tm, am = analysis.text_model, analysis.audio_model
    masking = {condition_key(c) for c in paper.TEXT_ATTACKS}
    text_attacks = [c for c in analysis.conditions() if condition_key(c) in masking]
    pitch = [c for c in analysis.conditions() if condition_key(c) == condition_key(paper.COMBINED_AUDIO_ATTACK)]
    others = [c for c in analysis.conditions() if c != analysis.clean and c not in text_attacks and c not in pitch]
    out = [
        _rq1(analysis, rows, n_resamples=n_resamples, confidence=confidence, seed=seed),
        _difference_question(analysis, rows, text_attacks, (tm,), key="rq2", versus="text",
                             title="RQ2: are the fusion models hurt less than the text model by the masking attacks?",
                             empty="Not answerable: no masking attack was run on both a fusion model and the text model."),
        _difference_question(analysis, rows, pitch, (am,), key="rq3", versus="audio",
                             title="RQ3: are the fusion models hurt less than the audio model by pitch modulation?",
                             empty="Not answerable: pitch modulation was not run on both a fusion model and the audio "
                                   "model."),
    ]
    extra: list[Callable[[], Question]] = [
        lambda: _difference_question(
            analysis, rows, others, (tm, am), key="others", versus="",
            title="Other single-modality attacks: are the fusion models hurt less than the unimodal model?", empty=""),
        lambda: _pos(analysis, n_resamples=n_resamples, confidence=confidence, seed=seed),
        lambda: _additivity(analysis, n_resamples=n_resamples, confidence=confidence, seed=seed),
    ]
    for make in extra:
        q = make()
        if q.rows or q.empty:
            out.append(q)
    return out


def answer_md(a: Answer | None) -> str:
    """A cell as ``summary.md`` writes it: ``+3.64 [+0.38, +7.32] **yes**`` (bold where significant)."""
    if a is None:
        return ""
    word = VERDICT_WORDS[a.verdict]
    word = f"**{word}**" if a.verdict in ("yes", "no") else word
    return " ".join(p for p in (_signed(a.value), a.interval, word) if p)


def question_md(q: Question, *, level: int = 2) -> str:
    """A question as Markdown: its heading, how to read it, the tally and its table.

    Args:
        q: The question.
        level: Heading level.

    Returns:
        The Markdown (ending in a blank line).
    """
    out = [f"{'#' * level} {q.title}", ""]
    if not q.rows:
        return "\n".join(out + [q.empty, "", ""])
    out += [q.how + " " + q.tally, ""]
    out.append("| Model | " + " | ".join(c.replace("|", "\\|") for c in q.columns) + " |")
    out.append("|:---|" + "---:|" * len(q.columns))
    out += [f"| {m} | " + " | ".join(answer_md(a) for a in cells) + " |" for m, cells in q.rows]
    return "\n".join(out + ["", ""])


def _h(text: object) -> str:
    return html.escape(str(text), quote=True)


def answer_html(a: Answer | None) -> str:
    """A cell of ``report.html``: the difference, its interval and the answer, coloured by the answer (the
    values behind it in the tooltip)."""
    if a is None:
        return '<td class="q-none"></td>'
    word = VERDICT_WORDS[a.verdict]
    interval = f'<span class="ci">{_h(a.interval)}</span>' if a.interval else ""
    return (f'<td class="q-{a.verdict}" data-v="{a.value:.6g}" title="{_h(a.detail)}">{_h(_signed(a.value))} '
            f'<span class="verdict">{_h(word)}</span>{interval}</td>')


def question_html(q: Question) -> str:
    """A question as a compact table of ``report.html``: its title as the caption, the tally under it.

    Args:
        q: The question.

    Returns:
        HTML (a ``figure``).
    """
    caption = f'<figcaption><strong>{_h(q.title)}</strong></figcaption>'
    if not q.rows:
        return f'<figure class="question" id="q-{_h(q.key)}">{caption}<p class="muted">{_h(q.empty)}</p></figure>'
    head = "<th>Model</th>" + "".join(f"<th>{_h(c)}</th>" for c in q.columns)
    body = "".join(f'<tr><th scope="row">{_h(m)}</th>' + "".join(answer_html(a) for a in cells) + "</tr>"
                   for m, cells in q.rows)
    return (f'<figure class="question" id="q-{_h(q.key)}">{caption}<table class="question"><thead><tr>{head}'
            f'</tr></thead><tbody>{body}</tbody></table><p class="note">{_h(q.tally)}</p></figure>')


__all__ = ["VERDICT_WORDS", "Answer", "Question", "Verdict", "answer_html", "answer_md", "question_html", "question_md",
           "questions", "verdict"]
