"""The example tables (the paper's Tables 7-8).

:func:`select_examples` finds utterances the multimodal model gets right under an attack while the
unimodal model gets them wrong; :func:`example_tables` does it for each of the paper's example tables
(:data:`featcache.paper.EXAMPLE_TABLES`); :func:`render_examples` shows one table in Markdown, each
utterance with both models' two most probable labels, clean and under every attack, and
:func:`render_examples_file` writes them all (``examples.md``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from featcache import paper
from featcache.metrics.analysis import Analysis
from featcache.metrics.names import CLEAN, MULTIMODAL_MODEL, condition_key
from featcache.metrics.predictions import Predictions
from featcache.report.render import _md_escape, md_code, md_text
from featcache.report.specs import ATTACK_NAMES


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
        text = md_text(ex.text) if ex.text else "(transcription not available)"
        lines.append(f"| {k} | {text}<br>{md_code(ex.utt_id)} | **{md_text(ex.label)}** | | |")
        for r in ex.rows:
            name = "Unperturbed" if r.condition == clean else ATTACK_NAMES.get(r.condition, r.condition)
            shown = f"*{_md_escape(name)}*"
            if r.condition != clean and r.text is not None and r.text != ex.text:
                shown += f": {md_text(r.text)}"
            lines.append(f"| | {shown} | | {format_top(r.model_top)} | {format_top(r.unimodal_top)} |")
    lines += ["", "Each model's two most probable labels; its decision in bold. The true label is in the Label column."]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ExampleTable:
    """One of the paper's example tables, filled from the predictions.

    Attributes:
        number: Table number (``"7"``).
        caption: Caption.
        attacks: The attacks looked at, as the predictions name them (those run on both models).
        model: The fusion model.
        unimodal: The unimodal model it is compared with.
        examples: The examples, best first.
        missing: Why the table is empty when its attacks were not run on both models ("" otherwise).
    """

    number: str
    caption: str
    attacks: tuple[str, ...]
    model: str
    unimodal: str
    examples: tuple[Example, ...]
    missing: str = ""


def example_tables(
    analysis: Analysis,
    *,
    n: int = 5,
    seed: int | None = None,
) -> list[ExampleTable]:
    """The paper's example tables (7-8) for a study that has the multimodal and the unimodal models.

    Args:
        analysis: The analysis (its predictions and model names are used).
        n: Examples per table.
        seed: Seed whose predictions are used (default: the smallest).

    Returns:
        One table per :data:`featcache.paper.EXAMPLE_TABLES` entry (empty, with the reason, when its
        attacks or its unimodal model are missing); none at all without the multimodal model (see
        :func:`featcache.report.tables.scope_note`).
    """
    models = analysis.models()
    mm = analysis.multimodal_model
    if mm not in models or not any(m in models for m in (analysis.text_model, analysis.audio_model)):
        return []
    seeds = analysis.seeds()
    chosen = seed if seed is not None else (seeds[0] if seeds else 0)
    out = []
    for number, attacks, modality, caption in paper.EXAMPLE_TABLES:
        uni = {paper.TEXT: analysis.text_model, paper.AUDIO: analysis.audio_model}[modality]
        if uni not in models:
            out.append(ExampleTable(number, caption, (), mm, uni, (), f"Not available: the {uni} model was not evaluated."))
            continue
        found = [analysis.find_condition(mm, condition_key(a) or (None, None)) for a in attacks]
        present = tuple(c for c in found if c is not None and analysis.has(uni, c))
        if not present:
            out.append(ExampleTable(number, caption, (), mm, uni, (),
                                    "Not available: the attack was not run on both models."))
            continue
        examples = select_examples(analysis.predictions, attacks=present, model=mm, unimodal=uni, n=n, seed=chosen,
                                   clean=analysis.clean)
        out.append(ExampleTable(number, caption, present, mm, uni, tuple(examples)))
    return out


def render_examples_file(
    tables: Sequence[ExampleTable],
    *,
    seed: int,
    scope: str = "",
    clean: str = CLEAN,
) -> str:
    """``examples.md``: every example table, or the one sentence on why there is none.

    Args:
        tables: From :func:`example_tables`.
        seed: The seed whose predictions they show.
        scope: The report's scope note (said once when there is no table).
        clean: Name of the clean condition.

    Returns:
        Markdown text.
    """
    out = ["# Examples", ""]
    if not tables:
        return "\n".join(out + [scope or "No example table: the study lacks the multimodal model or a unimodal one.", ""])
    out += [f"Predictions of seed {seed}; ranked by the fusion model's minus the unimodal model's "
            "probability of the true label, ties by utterance id.", ""]
    for t in tables:
        if t.missing:
            out += [f"**Table {t.number}.** {t.caption}", "", t.missing, ""]
            continue
        out.append(render_examples(t.examples, number=t.number, caption=t.caption, model_title=_title(t.model),
                                   unimodal_title=_title(t.unimodal), clean=clean))
    return "\n".join(out)


def _title(model: str) -> str:
    return model[:1].upper() + model[1:]


__all__ = [
    "Example", "ExampleRow", "ExampleTable", "example_tables", "format_top", "render_examples",
    "render_examples_file", "select_examples",
]
