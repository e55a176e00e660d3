"""A layer sweep: the same head trained on each stored hidden state of layer-wise vectors (``featcache ablate
--layers``), every layer, fold and seed together, and per layer its clean accuracy, UAR and each attack's
impact with its paired bootstrap interval: which layer keeps the emotion when the pitch moves or the
adjectives go.

Each layer is an ablation of its own (:class:`~featcache.ablate.AblationSpec` with ``layer=K``, named
``<label>-layerK-<digest>``), kept in the store like any other: ``featcache ablate --layer K`` with the same
options finds it, and ``featcache evaluate --ablation NAME`` adds it to a report. The layers of one head
together are a :class:`StoredSweep` (:func:`layer_sweeps`): ``featcache evaluate --ablation layers`` (every
sweep of the study) or ``--ablation LABEL-layers`` (those of one label, e.g. ``text-layers``) adds a whole
sweep, and the report tabulates it with :func:`layer_rows`, the numbers ``featcache ablate --layers`` prints.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from featcache.ablate.catalog import Ablation, AblationInfo, list_ablations
from featcache.ablate.evaluation import evaluate_ablation
from featcache.ablate.spec import PREFIX, AblationSpec, _print
from featcache.ablate.training import train_ablations
from featcache.backbones.layers import parse_layers
from featcache.cache import digest
from featcache.conditions import CLEAN
from featcache.errors import FeatcacheError
from featcache.metrics import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, Analysis, BootstrapCI, Predictions, SeedStat
from featcache.study import Study

__all__ = ["SWEEP_SUFFIX", "LayerRow", "LayerSweep", "StoredSweep", "find_layer_sweeps", "format_layer_table",
           "layer_rows", "layer_sweeps", "run_layer_sweep", "stored_layers", "sweep_header"]

SWEEP_SUFFIX = "layers"
"""``--ablation layers`` names every layer sweep of a study, ``--ablation LABEL-layers`` those of one label."""


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

    @property
    def name(self) -> str:
        """``<label>-layers``: what ``featcache evaluate --ablation`` calls the sweep (see :class:`StoredSweep`)."""
        return f"{_base_label(self.rows[0].ablation.spec) if self.rows else ''}-{SWEEP_SUFFIX}"


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
    attacks = [str(c) for c in conds if str(c) != CLEAN]
    rows = layer_rows(Analysis(predictions), [(k, abl) for k, (abl, _) in zip(wanted, trained, strict=True)],
                      attacks=attacks, n_resamples=n_resamples)
    header = sweep_header(replace(trained[0][0].spec, layer=None).describe(study.head_settings), layers=len(rows),
                          folds=len(study.folds), seeds=len(study.seeds), n_resamples=n_resamples)
    table = header + "\n\n" + format_layer_table(rows, attacks=attacks)
    echo(table)
    return LayerSweep(rows, predictions, table, missing)


def layer_rows(
    analysis: Analysis,
    layers: Sequence[tuple[int, Ablation]],
    *,
    attacks: Sequence[str],
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> list[LayerRow]:
    """The rows of a sweep from its predictions (no training): what :func:`run_layer_sweep` prints and the
    report's Layers section shows.

    Args:
        analysis: An analysis of the sweep's predictions (models ``ablate:<name>``).
        layers: ``(hidden state, ablation)`` per layer, in order.
        attacks: The attacks whose impact is shown.
        n_resamples: Bootstrap resamples of the impact intervals (0: none).
        confidence: Confidence level of the intervals.
        seed: Resampling seed.

    Returns:
        One row per layer with clean predictions (layers without are left out).
    """
    rows = []
    for k, abl in layers:
        if not analysis.has(abl.model, CLEAN):
            continue
        impacts = {c: (analysis.impact(abl.model, c),
                       analysis.impact_ci(abl.model, c, n_resamples=n_resamples, confidence=confidence, seed=seed)
                       if n_resamples else None)
                   for c in attacks if analysis.has(abl.model, c)}
        rows.append(LayerRow(k, abl, analysis.accuracy(abl.model, CLEAN), _uar(analysis, abl.model), impacts))
    return rows


def sweep_header(description: str, *, layers: int, folds: int, seeds: int, n_resamples: int) -> str:
    """The line above a sweep's table: the head, how many layers, folds and seeds, what the numbers are.

    Args:
        description: The head (:meth:`AblationSpec.describe`, without the layer).
        layers: Rows of the table.
        folds: Folds per layer.
        seeds: Seeds per layer.
        n_resamples: Bootstrap resamples of the intervals.

    Returns:
        The line.
    """
    return (f"{description}, on each of {layers} hidden states; {folds} folds x {seeds} seeds per layer; Avg. and "
            f"UAR: mean of the sessions, mean ± std over seeds; impact: paired bootstrap CI ({n_resamples} resamples)")


# ------------------------------------------------------------------------------------------------
# the sweeps in the store
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredSweep:
    """A layer sweep kept in the store: the ablations of one head that differ only in their hidden state.

    Attributes:
        label: The label its layers share (``text``, ``concat``, or the ``--name`` given).
        digest: A digest of its options without the layer (tells sweeps of one label apart).
        description: One line saying what the head is (:meth:`AblationSpec.describe`, without the layer).
        layers: ``(hidden state, ablation)`` per layer, in layer order.
    """

    label: str
    digest: str
    description: str
    layers: tuple[tuple[int, Ablation], ...]

    @property
    def name(self) -> str:
        """``<label>-layers``: how ``--ablation`` names it."""
        return f"{self.label}-{SWEEP_SUFFIX}"

    @property
    def models(self) -> tuple[str, ...]:
        """Its layers' models in a predictions table (``ablate:<name>``)."""
        return tuple(abl.model for _, abl in self.layers)

    def to_json(self) -> dict[str, Any]:
        """The sweep as JSON-able values (read back by :meth:`from_json`)."""
        return {"label": self.label, "digest": self.digest, "description": self.description,
                "layers": [{"layer": k, "name": abl.name, "spec": abl.spec.to_json()} for k, abl in self.layers]}

    @classmethod
    def from_json(cls, data: Any) -> StoredSweep:
        """The sweep written by :meth:`to_json`.

        Raises:
            FeatcacheError: Not a sweep written by :meth:`to_json`.
        """
        try:
            layers = tuple((int(d["layer"]), Ablation(str(d["name"]), AblationSpec.from_json(d["spec"])))
                           for d in data["layers"])
            return cls(str(data["label"]), str(data["digest"]), str(data["description"]), layers)
        except (KeyError, TypeError, ValueError) as e:
            raise FeatcacheError(f"layer sweep {str(data)[:80]!r}: not a sweep written by featcache ({e})") from None


def _base_label(spec: AblationSpec) -> str:
    """The label of a layer ablation without its ``-layerK`` (the default label names the layer)."""
    label = spec.label or ""
    return label.removesuffix(f"-layer{spec.layer}") if spec.layer is not None else label


def layer_sweeps(study: Study, infos: Sequence[AblationInfo] | None = None) -> list[StoredSweep]:
    """The study's layer sweeps in the store: its layer ablations grouped by every option but the layer.

    Args:
        study: The study (a sweep is kept under the study without ``--layer``).
        infos: Its ablations, when already listed (default: :func:`list_ablations`).

    Returns:
        The sweeps, by label and digest; a sweep holds the layers trained so far (one alone, from
        ``featcache ablate --layer K``, is a sweep of one layer).

    Raises:
        FeatcacheError: An unreadable ``ablation.json``.
    """
    groups: dict[tuple[str, str], list[tuple[int, Ablation]]] = {}
    cores: dict[tuple[str, str], AblationSpec] = {}
    for info in list_ablations(study) if infos is None else infos:
        spec = info.ablation.spec
        if spec.layer is None:
            continue
        core = replace(spec, layer=None, label=_base_label(spec))
        key = (core.label or "", digest(core.identity(study.head_settings), 8))
        groups.setdefault(key, []).append((spec.layer, info.ablation))
        cores[key] = core
    return [StoredSweep(label, dig, cores[(label, dig)].describe(study.head_settings),
                        tuple(sorted(groups[(label, dig)], key=lambda t: t[0])))
            for label, dig in sorted(groups)]


def find_layer_sweeps(study: Study, name: str) -> list[StoredSweep] | None:
    """The sweeps that ``--ablation NAME`` names: ``layers`` (every sweep of the study) or ``LABEL-layers``
    (those of one label); None when NAME is no such spelling or an ablation of the study has that name
    or label.

    Args:
        study: The study (with the ``--layers`` the sweeps were trained with).
        name: What ``--ablation`` was given.

    Returns:
        The sweeps, or None.

    Raises:
        FeatcacheError: The spelling names no sweep of the study (says which there are and how to make one).
    """
    wanted = name.removeprefix(PREFIX)
    if wanted != SWEEP_SUFFIX and not wanted.endswith("-" + SWEEP_SUFFIX):
        return None
    infos = list_ablations(study)
    if any(i.ablation.spec.layer is None and wanted in (i.ablation.name, i.ablation.spec.label) for i in infos):
        return None
    sweeps = layer_sweeps(study, infos)
    label = None if wanted == SWEEP_SUFFIX else wanted.removesuffix("-" + SWEEP_SUFFIX)
    found = [s for s in sweeps if label is None or s.label == label]
    if found:
        return found
    if study.options.layers is None:
        raise FeatcacheError(f"ablation (--ablation {name}): layer sweeps are kept with the study of layer-wise "
                             "vectors; give the --layers that `featcache ablate --layers` was given")
    have = ", ".join(dict.fromkeys(s.name for s in sweeps)) or "none yet"
    cmd = study.replace(layer=None).command("ablate")
    raise FeatcacheError(f"ablation (--ablation {name}): no layer sweep of that label in {study.store.root} "
                         f"(sweeps: {have}); make one with `{cmd}` and the head's options (e.g. --modalities text)")


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
        attacks: The attack columns, in order (those no row has an impact for are left out: a text head's
            table has no audio attacks).

    Returns:
        The table.
    """
    attacks = [a for a in attacks if any(a in r.impacts for r in rows)]  # those the head reads (text: text attacks)
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
