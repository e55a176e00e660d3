"""A layer sweep: the same head trained on each stored hidden state of layer-wise vectors (``featcache ablate
--layers``), every layer, fold and seed together, and per layer its clean accuracy, UAR and each attack's
impact with its paired bootstrap interval: which layer keeps the emotion when the pitch moves or the
adjectives go.

Each layer is an ablation of its own (:class:`~featcache.ablate.AblationSpec` with ``layer=K``, named
``<label>-layerK-<digest>``), kept in the store like any other: ``featcache ablate --layer K`` with the same
options finds it, and ``featcache evaluate --ablation NAME`` adds it to a report.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from featcache.ablate.catalog import Ablation
from featcache.ablate.evaluation import evaluate_ablation
from featcache.ablate.spec import AblationSpec, _print
from featcache.ablate.training import train_ablations
from featcache.backbones.layers import parse_layers
from featcache.conditions import CLEAN
from featcache.errors import FeatcacheError
from featcache.metrics import DEFAULT_RESAMPLES, Analysis, BootstrapCI, Predictions, SeedStat
from featcache.study import Study

__all__ = ["LayerRow", "LayerSweep", "format_layer_table", "run_layer_sweep", "stored_layers"]


@dataclass(frozen=True)
class LayerRow:
    """One hidden state of a sweep.

    Attributes:
        layer: The hidden state (0: the embeddings' output).
        ablation: Its ablation.
        accuracy: Clean Avg. accuracy (the mean of the session accuracies), per seed.
        uar: Clean unweighted average recall (the mean over sessions), per seed.
        impacts: Per attack: the impact in percent per seed, and its paired bootstrap interval (None
            without resamples).
    """

    layer: int
    ablation: Ablation
    accuracy: SeedStat
    uar: SeedStat
    impacts: dict[str, tuple[SeedStat, BootstrapCI | None]]


@dataclass
class LayerSweep:
    """What :func:`run_layer_sweep` did.

    Attributes:
        rows: One per layer, in layer order.
        predictions: Every layer's predictions (model ``ablate:<name>`` per layer).
        table: The table as printed.
        missing: Commands that make what could not be evaluated.
    """

    rows: list[LayerRow]
    predictions: Predictions
    table: str
    missing: list[str] = field(default_factory=list)


def stored_layers(study: Study, modalities: Sequence[str]) -> tuple[int, ...]:
    """The hidden states that the study's layer-wise clean entries hold (those of every modality read).

    Raises:
        FeatcacheError: The study stores no layer-wise vectors (``--layers``).
        MissingEntries: A clean entry is not stored (names the extract command).
    """
    if study.options.layers is None:
        raise FeatcacheError("layers (--layers): a layer sweep reads layer-wise vectors; extract them with "
                             "`featcache extract --layers all` and pass the same --layers here")
    held: tuple[int, ...] | None = None
    for m in modalities:
        entry = study.vectors(m, fold=study.folds[0], seed=study.seeds[0], model=m, variant=CLEAN, ids=[])[2]
        layers = entry.layers or ()
        held = layers if held is None else tuple(k for k in held if k in layers)
    return held or ()


def run_layer_sweep(
    study: Study,
    spec: AblationSpec,
    *,
    layers: str | Sequence[int] | None = None,
    conditions: Sequence[str] | None = None,
    device: str = "cpu",
    n_resamples: int = DEFAULT_RESAMPLES,
    echo: Callable[..., Any] = _print,
    progress: bool = True,
) -> LayerSweep:
    """Train ``spec``'s head on each hidden state over every fold and seed (all together), evaluate each
    under every condition, and tabulate clean accuracy, UAR and each attack's impact per layer.

    Args:
        study: A study of layer-wise vectors (``--layers``), without ``--layer``.
        spec: The head (its ``layer`` is set per row).
        layers: The hidden states to sweep (``0-12``, ``all`` or a list; default: every stored one).
        conditions: Conditions (default: as :meth:`Study.conditions`).
        device: Where to train.
        n_resamples: Bootstrap resamples of the impact intervals (0: none).
        echo: Where messages go.
        progress: Progress bars.

    Returns:
        The sweep; :attr:`LayerSweep.table` is what was printed.

    Raises:
        FeatcacheError: No layer-wise vectors, ``--layer`` given, a layer they do not store, or nothing could
            be evaluated.
        MissingEntries: Training vectors are missing (names the command that makes them).
    """
    if study.options.layer is not None:
        raise FeatcacheError(f"layer (--layer {study.options.layer}): a layer sweep trains on every layer; leave "
                             "--layer out (or drop --layers to train on one)")
    held = stored_layers(study, spec.checked().modalities)
    wanted = _wanted(layers, held)
    trained = train_ablations(study, [replace(spec, layer=k, label=spec.label) for k in wanted], device=device,
                              progress=progress)
    conds, skipped = study.conditions(conditions)
    for line in skipped:
        echo(line)
    parts, missing = [], []
    for abl, _ in trained:
        preds, miss = evaluate_ablation(study, abl, conditions=conds, progress=progress)
        missing += [m for m in miss if m not in missing]
        if len(preds):
            parts.append(preds)
    for cmd in missing:
        echo(f"missing: {cmd}", err=True)
    if not parts:
        raise FeatcacheError(f"{study.store.root}: nothing of the layer sweep could be evaluated; run the commands above")
    predictions = Predictions.concat(parts)
    analysis = Analysis(predictions)
    attacks = [str(c) for c in conds if str(c) != CLEAN]
    rows = []
    for k, (abl, _) in zip(wanted, trained, strict=True):
        if not analysis.has(abl.model, CLEAN):
            continue
        impacts = {c: (analysis.impact(abl.model, c),
                       analysis.impact_ci(abl.model, c, n_resamples=n_resamples) if n_resamples else None)
                   for c in attacks if analysis.has(abl.model, c)}
        rows.append(LayerRow(k, abl, analysis.accuracy(abl.model, CLEAN), _uar(analysis, abl.model), impacts))
    first = trained[0][0]
    header = (f"{first.spec.describe(study.head_settings).split('; hidden state')[0]}, on each of {len(rows)} hidden "
              f"states; {len(study.folds)} folds x {len(study.seeds)} seeds per layer; Avg. and UAR: mean of the "
              f"sessions, mean ± std over seeds; impact: paired bootstrap CI ({n_resamples} resamples)")
    table = header + "\n\n" + format_layer_table(rows, attacks=attacks)
    echo(table)
    return LayerSweep(rows, predictions, table, missing)


def _wanted(layers: str | Sequence[int] | None, held: tuple[int, ...]) -> list[int]:
    if layers is None:
        return list(held)
    if isinstance(layers, str):
        spec = parse_layers(layers)
        picked = list(held) if spec == "all" else [int(k) for k in str(spec).split(",")]
    else:
        picked = sorted({int(k) for k in layers})
    absent = [k for k in picked if k not in held]
    if absent:
        raise FeatcacheError(f"layers ({','.join(map(str, absent))}): the stored vectors hold hidden states "
                             f"{','.join(map(str, held))} only")
    return picked


def _uar(analysis: Analysis, model: str) -> SeedStat:
    """Clean UAR per seed: the mean over the sessions (folds) of each fold's UAR."""
    by_seed: dict[int, list[float]] = {}
    for r in analysis.results():
        if r.model == model and r.condition == CLEAN:
            by_seed.setdefault(r.seed, []).append(r.uar)
    seeds = tuple(sorted(by_seed))
    return SeedStat(seeds, tuple(float(np.mean(by_seed[s])) for s in seeds))


def format_layer_table(rows: Sequence[LayerRow], *, attacks: Sequence[str]) -> str:
    """The Markdown table of a sweep: one row per layer; clean Avg. and UAR (percent, mean ± std over seeds),
    then each attack's impact (percent) with its paired bootstrap interval.

    Args:
        rows: From :func:`run_layer_sweep`.
        attacks: The attack columns, in order.

    Returns:
        The table.
    """
    head = ["Layer", "Clean Avg.", "UAR", *(f"{a} impact" for a in attacks)]
    lines = ["| " + " | ".join(head) + " |", "|---:|" + "---:|" * (len(head) - 1)]
    for r in rows:
        cells = [str(r.layer), _pct_of(r.accuracy), _pct_of(r.uar)]
        for a in attacks:
            stat, ci = r.impacts.get(a, (SeedStat.empty(), None))
            text = "" if not stat.seeds else f"{stat.mean:+.2f}%"
            if text and ci is not None and not math.isnan(ci.low):
                text += f" [{ci.low:+.2f}, {ci.high:+.2f}]"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pct_of(s: SeedStat) -> str:
    if not s.seeds:
        return ""
    return f"{s.mean * 100:.2f}" + ("" if math.isnan(s.std) else f" ± {s.std * 100:.2f}")
