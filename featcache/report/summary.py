"""The plain-language summary: RQ1-RQ3 answered from the numbers, affected-subset impacts, additivity.

:func:`render_summary` answers each question with "yes" or "no" and the values behind it: the
accuracies, the impacts, and the bootstrap intervals of
:meth:`~featcache.metrics.Analysis.impact_difference` and :meth:`~featcache.metrics.Analysis.additivity`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from featcache import paper
from featcache.data.corpus import fold_noun
from featcache.metrics.analysis import Analysis
from featcache.metrics.bootstrap import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES
from featcache.metrics.names import condition_key
from featcache.metrics.rows import BootstrapCI, SeedStat, SummaryRow
from featcache.report.render import _num, _signed


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


def _verdict(diff: float, ci: BootstrapCI | None, *, yes_if_positive: bool, otherwise: str) -> str:
    """"yes"/"no" from the sign of a difference, and what its interval says about it.

    Args:
        diff: The difference.
        ci: Its bootstrap interval, or ``None``.
        yes_if_positive: Whether a positive difference answers "yes".
        otherwise: What a "no" whose interval excludes 0 means (``"it loses more"``).

    Returns:
        E.g. ``"yes, the 95% CI [+1.00, +3.00] excludes 0"``.
    """
    yes = diff > 0 if yes_if_positive else diff < 0
    answer = "yes" if yes else "no"
    if ci is None or not math.isfinite(ci.low):
        return f"{answer} (no bootstrap interval)"
    if yes:
        return (f"yes, the {_ci_text(ci)} excludes 0" if ci.excludes_zero
                else f"yes, but the {_ci_text(ci)} includes 0 (not significant)")
    return f"no, the {_ci_text(ci)} excludes 0: {otherwise}" if ci.excludes_zero else f"no; the {_ci_text(ci)} includes 0"


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
        n_resamples: Bootstrap resamples for the part-of-speech and additivity intervals (0: none).
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
                         f"better in {wins}/{len(shared)} {fold_noun(shared)})")
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
                verdict = _verdict(diff, ci, yes_if_positive=True, otherwise="it loses more")
                lines.append(f"- `{c}`, **{m}** vs {unimodal} (`{d.unimodal_condition}`): impact "
                             f"{_pm(d.impact, unit='%')} vs {_pm(d.unimodal_impact, unit='%')}; difference "
                             f"{_signed(diff)} points. Hurt less: **{verdict}**.")
        return lines

    masking = {condition_key(c) for c in paper.TEXT_ATTACKS}
    text_attacks = [c for c in analysis.conditions() if condition_key(c) in masking]
    out += ["## RQ2: are the fusion models hurt less than the text model by the masking attacks?", ""]
    lines = difference_lines(text_attacks, tm)
    out += (lines or ["Not answerable: no masking attack was run on both a fusion model and the text model."]) + [""]

    pitch = [c for c in analysis.conditions() if condition_key(c) == condition_key(paper.COMBINED_AUDIO_ATTACK)]
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
        for pos, random in paper.POS_ATTACKS:
            cp = analysis.find_condition(m, condition_key(pos) or (None, None))
            cr = analysis.find_condition(m, condition_key(random) or (None, None))
            if cp is None or cr is None:
                continue
            d = analysis.affected_difference(m, cp, cr, n_resamples=n_resamples, confidence=confidence,
                                             seed=bootstrap_seed)
            if d is None or not math.isfinite(d.difference.mean):
                continue
            verdict = _verdict(d.difference.mean, d.ci, yes_if_positive=False, otherwise="it hurts less")
            pos_lines.append(f"- `{cp}` vs `{cr}`, **{m}**, on the utterances each changed: impact "
                             f"{_pm(d.impact, unit='%')} vs {_pm(d.other_impact, unit='%')}; difference "
                             f"{_signed(d.difference.mean)} points. Masking the part of speech hurts more than "
                             f"masking as many random words: **{verdict}**.")
    if pos_lines:
        out += ["Part of speech vs random words: each mask's impact on the utterances it changed, the difference "
                "with a paired bootstrap interval (the same utterances drawn for both).", ""] + pos_lines + [""]

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
