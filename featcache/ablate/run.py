"""``featcache ablate`` end to end: train (or load), evaluate and compare, and print the table."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from featcache.ablate.catalog import Ablation, ablation
from featcache.ablate.evaluation import (
    ComparisonRow,
    compare,
    evaluate_ablation,
    format_comparison,
)
from featcache.ablate.spec import AblationSpec, _print
from featcache.ablate.training import train_ablation
from featcache.data.corpus import fold_noun
from featcache.errors import FeatcacheError
from featcache.metrics import DEFAULT_RESAMPLES, Predictions
from featcache.paper import PAPER_MODELS
from featcache.study import Study, evaluate, train_heads

# ------------------------------------------------------------------------------------------------
# the whole sequence
# ------------------------------------------------------------------------------------------------


@dataclass
class AblationResult:
    """What :func:`run_ablation` did.

    Attributes:
        ablation: The ablation.
        training: One record per fold and seed (see :func:`train_ablation`).
        predictions: The ablation's and the paper's heads' predictions.
        rows: The comparison, one row per condition.
        table: The comparison as printed.
        missing: Commands that make what could not be evaluated.
    """

    ablation: Ablation
    training: list[dict[str, Any]]
    predictions: Predictions
    rows: list[ComparisonRow]
    table: str
    missing: list[str] = field(default_factory=list)


def run_ablation(
    study: Study,
    spec: AblationSpec,
    *,
    conditions: Sequence[str] | None = None,
    device: str = "cpu",
    n_resamples: int = DEFAULT_RESAMPLES,
    echo: Callable[..., Any] = _print,
    progress: bool = True,
) -> AblationResult:
    """Train an ablation over every fold and seed, evaluate it and the paper's heads under every
    condition, and compare them: the sequence behind ``featcache ablate``.

    The paper's heads of a frozen study are trained first when missing (as ``featcache train-heads``
    would); those of a fine-tuned study come from ``featcache finetune``.

    Args:
        study: The study.
        spec: The ablation's options.
        conditions: Conditions (default: as :meth:`Study.conditions`).
        device: Where to train.
        n_resamples: Bootstrap resamples of the intervals (0: none).
        echo: Where messages go (``err=True`` for the missing-entry lines).
        progress: Progress bars.

    Returns:
        The result; :attr:`AblationResult.table` is what was printed.

    Raises:
        FeatcacheError: An invalid option, or nothing of the ablation could be evaluated.
        MissingEntries: Training vectors are missing (names the command that makes them).
    """
    abl = ablation(study, spec)
    echo(f"ablation {abl.name} (model {abl.model}): {abl.spec.describe(study.head_settings)}")
    _, training = train_ablation(study, abl, device=device, progress=progress)
    refs = study.models(PAPER_MODELS)
    train_heads(study, models=refs, device=device, progress=progress)
    conds, skipped = study.conditions(conditions)
    for line in skipped:
        echo(line)
    paper_preds, missing = evaluate(study, models=refs, conditions=conds, progress=progress)
    abl_preds, abl_missing = evaluate_ablation(study, abl, conditions=conds, progress=progress)
    missing += [m for m in abl_missing if m not in missing]
    for cmd in missing:
        echo(f"missing: {cmd}", err=True)
    if len(abl_preds) == 0:
        raise FeatcacheError(f"{study.store.root}: nothing of {abl.name} could be evaluated; run the commands above")
    preds = Predictions.concat([p for p in (paper_preds, abl_preds) if len(p)])
    rows = compare(preds, model=abl.model, reference=abl.reference, n_resamples=n_resamples)
    n_heads = len(study.folds) * len(study.seeds)
    header = (f"{abl.model} vs the paper's heads, {len(study.folds)} folds x {len(study.seeds)} seeds "
              f"({n_heads} heads each); Avg. = mean of the {fold_noun(study.corpus.sessions)[:-1]} accuracies, "
              "mean ± std over seeds; "
              f"Δ = ablation - {abl.reference}, paired bootstrap CI ({n_resamples} resamples)")
    table = header + "\n\n" + format_comparison(rows, reference=abl.reference)
    echo(table)
    return AblationResult(abl, training, preds, rows, table, missing)
