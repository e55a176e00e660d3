"""Evaluating an ablation under every condition it can see, and comparing it with the paper's heads
(paired bootstrap intervals of the differences)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from featcache.ablate.catalog import Ablation
from featcache.metrics import (
    DEFAULT_RESAMPLES,
    Analysis,
    BootstrapCI,
    ImpactDifference,
    Predictions,
    SeedStat,
)
from featcache.metrics.bootstrap import seedwise
from featcache.paper import PAPER_MODELS
from featcache.study import Study, evaluate_head

# ------------------------------------------------------------------------------------------------
# evaluation
# ------------------------------------------------------------------------------------------------


def evaluate_ablation(study: Study, abl: Ablation, *, conditions: Sequence[str] | None = None,
                      progress: bool = True) -> tuple[Predictions, list[str]]:
    """Run the ablation's heads over the stored test vectors of every condition it can see.

    Args:
        study: The study.
        abl: The ablation.
        conditions: Conditions (default: as :meth:`Study.conditions`); ``clean`` is always evaluated,
            conditions that perturb a modality the ablation does not read are left out.
        progress: Progress bar.

    Returns:
        ``(predictions, missing)``: rows of the model ``ablate:<name>``, and the commands that make what
        was missing (an untrained head: the ``featcache ablate`` command; a missing entry: its extract
        command).
    """
    from tqdm import tqdm

    from featcache.ensemble import torch_threads
    from featcache.heads import load_head

    conds, _ = study.conditions(conditions)
    conds = [c for c in conds if set(c.modalities) <= set(abl.spec.modalities)]
    blocks: list[dict[str, np.ndarray]] = []
    missing: list[str] = []
    jobs = [(k, s) for k in study.folds for s in study.seeds]
    vs = abl.vector_study(study)
    try:
        for k, s in tqdm(jobs, desc=f"evaluate {abl.name}", unit="head", disable=not progress, leave=False):
            head_dir = abl.head_dir(study, fold=k, seed=s)
            if abl.trained_head(study, vs, fold=k, seed=s) is None:
                cmd = abl.command(study)
                if cmd not in missing:
                    missing.append(cmd)
                continue
            with torch_threads(1):  # small matmuls: see featcache.study.evaluate
                blocks += evaluate_head(vs, load_head(head_dir).eval(), model=abl.model, reads=abl.spec.modalities,
                                        conditions=conds, fold=k, seed=s, missing=missing)
    finally:
        study.close()
        vs.close()
    return Predictions.from_blocks(blocks, labels=study.corpus.labels), missing


# ------------------------------------------------------------------------------------------------
# comparison
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ComparisonRow:
    """One condition: the paper's heads, the ablation, and the ablation's difference from its reference.

    Attributes:
        condition: The condition.
        paper: Avg. accuracy (fractions, per seed) of each paper model evaluated under it.
        ablation: Avg. accuracy of the ablation.
        accuracy_difference: ``ablation - reference`` Avg. accuracy in points, per seed.
        accuracy_ci: Paired bootstrap interval of that difference (points), or ``None``.
        reference_impact: Impact (percent) on the reference model; empty for clean.
        ablation_impact: Impact on the ablation; empty for clean.
        impact_difference: ``impact(ablation) - impact(reference)`` with its paired bootstrap interval
            (positive: the ablation loses less), or ``None`` for clean.
    """

    condition: str
    paper: dict[str, SeedStat]
    ablation: SeedStat
    accuracy_difference: SeedStat
    accuracy_ci: BootstrapCI | None
    reference_impact: SeedStat
    ablation_impact: SeedStat
    impact_difference: ImpactDifference | None


def compare(predictions: Predictions, *, model: str, reference: str, n_resamples: int = DEFAULT_RESAMPLES,
            seed: int = 0, analysis: Analysis | None = None) -> list[ComparisonRow]:
    """Compare an ablation with a paper model in one predictions table, condition by condition.

    Args:
        predictions: Rows of the ablation and of the paper's models.
        model: The ablation's model name (``ablate:<name>``).
        reference: The paper model it is compared with (``multimodal``, ``text`` or ``audio``).
        n_resamples: Bootstrap resamples (0: no intervals).
        seed: Resampling seed.
        analysis: The :class:`Analysis` of ``predictions``, if already built.

    Returns:
        One row per condition the ablation was evaluated on, clean first, in table order.
    """
    an = analysis or Analysis(predictions)
    rows = []
    for cond in an.conditions(model):
        papers = {m: an.accuracy(m, cond) for m in PAPER_MODELS if an.has(m, cond)}
        acc = an.accuracy(model, cond)
        ref = papers.get(reference, SeedStat.empty())
        diff = seedwise(lambda a, b: (a - b) * 100.0, acc, ref)
        ci = None
        if n_resamples > 0 and an.has(reference, cond):
            ci = an.bootstrap([(model, cond), (reference, cond)], lambda a: (a[0] - a[1]) * 100.0,
                              n_resamples=n_resamples, seed=seed)
        clean = cond == an.clean
        idiff = None if clean else an.impact_difference(model, cond, unimodal=reference, unimodal_condition=cond,
                                                         n_resamples=n_resamples, seed=seed)
        rows.append(ComparisonRow(
            condition=cond, paper=papers, ablation=acc, accuracy_difference=diff, accuracy_ci=ci,
            reference_impact=SeedStat.empty() if clean or not an.has(reference, cond) else an.impact(reference, cond),
            ablation_impact=SeedStat.empty() if clean else an.impact(model, cond), impact_difference=idiff,
        ))
    return rows


def comparison_records(rows: Sequence[ComparisonRow], *, model: str, reference: str) -> list[dict[str, Any]]:
    """Comparison rows as flat dicts (accuracies in percent, impacts in percent, differences in points).

    Args:
        rows: From :func:`compare`.
        model: The ablation's model name.
        reference: The reference model.

    Returns:
        One dict per condition, all with the same keys.
    """
    out = []
    for r in rows:
        rec: dict[str, Any] = {"condition": r.condition}
        for m in PAPER_MODELS:
            s = r.paper.get(m)
            rec[f"{m}_acc"] = s.mean * 100 if s else None
        rec.update({"model": model, "reference": reference, "acc": r.ablation.mean * 100,
                    "acc_std": r.ablation.std * 100, "acc_diff": r.accuracy_difference.mean,
                    "acc_diff_low": r.accuracy_ci.low if r.accuracy_ci else None,
                    "acc_diff_high": r.accuracy_ci.high if r.accuracy_ci else None,
                    "reference_impact": r.reference_impact.mean if r.reference_impact.seeds else None,
                    "impact": r.ablation_impact.mean if r.ablation_impact.seeds else None})
        d = r.impact_difference
        rec.update({"impact_diff": d.difference.mean if d else None,
                    "impact_diff_low": d.ci.low if d and d.ci else None,
                    "impact_diff_high": d.ci.high if d and d.ci else None})
        out.append(rec)
    return out


def _acc(s: SeedStat | None) -> str:
    if s is None or not s.seeds:
        return ""
    return f"{s.mean * 100:.2f}" + ("" if math.isnan(s.std) else f" ± {s.std * 100:.2f}")


def _pct(s: SeedStat) -> str:
    if not s.seeds:
        return ""
    return f"{s.mean:+.2f}%" + ("" if math.isnan(s.std) else f" ± {s.std:.2f}")


def _diff(value: float, ci: BootstrapCI | None) -> str:
    if math.isnan(value):
        return ""
    return f"{value:+.2f}" + (f" [{ci.low:+.2f}, {ci.high:+.2f}]" if ci is not None and not math.isnan(ci.low) else "")


def format_comparison(rows: Sequence[ComparisonRow], *, reference: str, confidence: float = 0.95) -> str:
    """The side-by-side Markdown table that ``featcache ablate`` prints.

    Columns: the condition; Avg. accuracy of the paper's text, audio and multimodal heads and of the
    ablation (mean ± std over seeds); the difference of Avg. from the reference, in points, with its
    paired bootstrap interval; the impact on the reference and on the ablation; and the difference of
    the impacts with its interval (positive: the ablation loses less).

    Args:
        rows: From :func:`compare`.
        reference: The reference model.
        confidence: The intervals' level, for the header.

    Returns:
        The table.
    """
    level = f"{confidence * 100:.0f}%"
    ref = reference.capitalize()
    head = ["Condition", "Text", "Audio", "Multimodal", "Ablation", f"Δ Avg. [{level} CI]", f"Impact {ref}",
            "Impact ablation", f"Δ Impact [{level} CI]"]
    lines = ["| " + " | ".join(head) + " |", "|:---|" + "---:|" * (len(head) - 1)]
    for r in rows:
        d = r.impact_difference
        cells = [r.condition, *(_acc(r.paper.get(m)) for m in PAPER_MODELS), _acc(r.ablation),
                 _diff(r.accuracy_difference.mean if r.accuracy_difference.seeds else math.nan, r.accuracy_ci),
                 _pct(r.reference_impact), _pct(r.ablation_impact),
                 _diff(d.difference.mean, d.ci) if d is not None and d.difference.seeds else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
