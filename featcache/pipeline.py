"""Orchestration: the stages of a study in order, each skipping what the store already holds.

One path for everything the command line runs: :func:`plan_encoder_runs` and :func:`run_extractions`
(``featcache extract``; each entry is planned once), :func:`finetune_all`, :func:`evaluate_and_report`
(``featcache evaluate`` and the end of ``featcache run``) and :func:`run_study` (``featcache run``).
Messages go to an ``echo`` callable, so the command line and a notebook print the same lines.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featcache.backbones.encoders import load_encoder
from featcache.errors import FeatcacheError
from featcache.extract import EncoderRun, ExtractReport, extract, plan_entry
from featcache.paper import ALL_MODELS, PAPER_MODELS, uses
from featcache.study import Study, evaluate, train_heads

log = logging.getLogger(__name__)

Echo = Callable[..., Any]


def _print(message: str, *, err: bool = False) -> None:
    print(message, file=sys.stderr if err else sys.stdout)


@dataclass(frozen=True)
class PlannedRun:
    """One encoder run and the fold its weights belong to (None: frozen, shared by all folds)."""

    run: EncoderRun
    fold: int | None
    fold_options: dict | None = None


def expand_variants(specs: Sequence[str]) -> list[str]:
    """Canonical variant specs, in order and without repeats; ``all`` stands for every registered
    perturbation (clean excluded).

    Raises:
        FeatcacheError: An unknown variant (one line, listing the valid names).
    """
    from featcache.perturb import get_variant, list_variants

    out: list[str] = []
    for v in specs:
        names = [x.spec for x in list_variants() if x.modality is not None] if v == "all" else [v]
        for name in names:
            spec = get_variant(name).spec
            if spec not in out:
                out.append(spec)
    return out


def plan_encoder_runs(
    study: Study,
    *,
    modality: str = "all",
    folds: Sequence[int] | None = None,
) -> list[PlannedRun]:
    """List the encoder runs to extract with.

    Args:
        study: The study (its corpus's modalities limit the runs; frozen or fine-tuned backbones).
        modality: ``text``, ``audio`` or ``all``.
        folds: Folds whose fine-tuned runs to use (None: all).

    Returns:
        The planned runs.

    Raises:
        FeatcacheError: The corpus lacks the modality, or a fine-tuned run is missing (names the
            command that makes it).
    """
    corpus = study.corpus
    mods = [m for m in corpus.modalities if modality in ("all", m)]
    if not mods:
        raise FeatcacheError(f"{corpus.name}: has no {modality} modality to extract")
    if study.frozen:
        return [PlannedRun(EncoderRun(m, study.preset.backbone(m), study.options), None) for m in mods]
    from featcache.finetune import find_runs

    plans: list[PlannedRun] = []
    for k in folds or study.folds:
        found = False
        for ft in find_runs(study.store, corpus=corpus, fold=k):
            for m in ft.modalities:
                if m in mods and ft.config["backbones"].get(m) == study.preset.backbone(m):
                    run = EncoderRun(m, study.preset.backbone(m), ft.encoder_options(), ft.encoder_weights(m),
                                     ft.run_id)
                    plans.append(PlannedRun(run, k, ft.config["fold_options"]))
                    found = True
        if not found:
            cmd = study.command("finetune", modality=mods[0], fold=k, seed=study.seeds[0])
            raise FeatcacheError(f"{study.store.root}: no fine-tuned backbone for fold {k}; run `{cmd}` first, "
                                 "or extract with --frozen")
    return plans


def run_extractions(
    study: Study,
    plans: Sequence[PlannedRun],
    *,
    variants: Sequence[str],
    split: str | None = None,
    batch_size: int = 8,
    num_workers: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> list[ExtractReport]:
    """Extract every variant with every planned run, planning each entry once and loading each encoder
    once (and only if something is missing). An entry is skipped only when it is intact
    (:meth:`~featcache.cache.FeatureStore.damage`); a damaged one is set aside and extracted again."""
    corpus, store = study.corpus, study.store
    reports: list[ExtractReport] = []
    for plan in plans:
        encoder = None
        for spec in variants:
            kw: dict[str, Any] = dict(run=plan.run, variant=spec, fold=plan.fold, split=split, seed=study.variant_seed,
                                      fold_options=plan.fold_options)
            planned = plan_entry(corpus, store, **kw)
            if planned is None:
                continue
            if store.has(planned.key) and not store.damage(planned.key):
                reports.append(ExtractReport(key=planned.key, status="skipped", n_ids=len(planned.ids),
                                             path=store.path(planned.key)))
                continue
            if encoder is None:  # loaded once per run, and only when something is missing
                encoder = load_encoder(planned.resolved, options=plan.run.options, weights=plan.run.weights)
            reports.append(extract(corpus, store, **kw, batch_size=batch_size, num_workers=num_workers,
                                   device=device, encoder=encoder, progress=progress, planned=planned))
    return reports


def finetune_all(study: Study, *, device: str = "auto", workers: int = 1, progress: bool = True) -> list[Any]:
    """Fine-tune (or resume, or find finished) the paper's models the corpus allows, every fold and seed."""
    from featcache.finetune import finetune

    runs = []
    for k in study.folds:
        for s in study.seeds:
            for m in study.models(PAPER_MODELS):
                runs.append(finetune(study.corpus, study.store, preset=study.preset, modality=m, fold=k, seed=s,
                                     options=study.options, fold_options=study.fold_options, device=device,
                                     num_workers=workers, progress=progress))
    study.forget_runs()  # new runs: look them up again
    return runs


def evaluate_and_report(
    study: Study,
    *,
    out: Path,
    conditions: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    title: str,
    ablations: Sequence[str] = (),
    echo: Echo = _print,
    progress: bool = True,
) -> Any:
    """Evaluate, save the predictions and write the report: the one sequence behind ``evaluate`` and ``run``.

    Conditions the corpus cannot perturb and models it cannot feed are named in one line each; what is
    missing from the store is listed with the command that makes it. Nothing is written when there is
    nothing to evaluate. The report's audio players play the corpus's wavs and the perturbed audio
    replayed from the store's records (``report.html``).

    Args:
        study: The study.
        out: Report folder (``predictions.h5`` and the report).
        conditions: Conditions (default: see :meth:`Study.conditions`).
        models: Models (default: every model the corpus allows).
        title: Report title.
        ablations: Names of ablations trained by ``featcache ablate`` to evaluate beside the models
            (model ``ablate:<name>`` in the predictions and the report).
        echo: Where messages go (``err=True`` is passed for the missing-entry lines).
        progress: Progress bars.

    Returns:
        The :class:`~featcache.metrics.Predictions`.

    Raises:
        FeatcacheError: Nothing could be evaluated, or an ablation is unknown (before anything is written).
    """
    from featcache.ablate import evaluate_ablation, find_ablation
    from featcache.metrics import Predictions
    from featcache.report import StoreAudio, write_report

    found = [find_ablation(study, name) for name in ablations]

    wanted = list(models or ALL_MODELS)
    usable = study.models(wanted)
    if len(usable) < len(wanted) and models is None:
        echo(f"{study.corpus.name}: modalities {', '.join(study.corpus.modalities) or 'none'}; evaluating "
             f"{', '.join(usable) or 'no model'}")
    for m in wanted:
        if m not in usable and models is not None:
            echo(f"skipping model {m}: the corpus has no {' and no '.join(x for x in uses(m) if x not in study.corpus.modalities)}")
    conds, skipped = study.conditions(conditions)
    for line in skipped:
        echo(line)
    preds, missing = evaluate(study, models=usable, conditions=conds, progress=progress)
    for abl in found:
        extra, extra_missing = evaluate_ablation(study, abl, conditions=conds, progress=progress)
        missing += [m for m in extra_missing if m not in missing]
        preds = Predictions.concat([p for p in (preds, extra) if len(p)]) if len(extra) else preds
    for cmd in missing:
        echo(f"missing: {cmd}", err=True)
    if len(preds) == 0:
        raise FeatcacheError(f"{study.store.root}: nothing to evaluate; run the commands above first")
    out.mkdir(parents=True, exist_ok=True)
    preds.save(out / "predictions.h5")
    audio = StoreAudio(study.corpus, study.store, variant_seed=study.variant_seed)
    written = write_report(preds, out, title=title, audio=audio, corpus=study.corpus, store=study.store)
    for note in written.notes:
        echo(f"note: {note}")
    return preds


class StageClock:
    """Each call returns the time since the previous one (or since it was made) as ``[N s]``: a stage's
    own time, not the time since the start."""

    def __init__(self) -> None:
        self._last = time.perf_counter()

    def __call__(self) -> str:
        now = time.perf_counter()
        took, self._last = now - self._last, now
        return f"[{took:.0f} s]"


def run_study(
    study: Study,
    *,
    variants: Sequence[str] | None = None,
    out: Path,
    workers: int = 1,
    device: str = "auto",
    echo: Echo = _print,
    progress: bool = True,
) -> Path:
    """data -> folds -> finetune (or frozen) -> extract -> heads -> evaluate -> report, skipping stored work.

    Each stage prints its own time; the caller prints the total.

    Args:
        study: The study.
        variants: Variant specs to extract and evaluate (default: the preset's; ``all``: every registered one).
        out: Report folder.
        workers: DataLoader workers for extraction.
        device: ``cpu``, ``cuda`` or ``auto``.
        echo: Where stage messages go.
        progress: Progress bars.

    Returns:
        The report folder.
    """
    from featcache.conditions import conditions_for

    corpus = study.corpus
    specs = expand_variants(variants or study.preset.variants)
    models = study.models()
    lap = StageClock()

    echo(f"[1/5] corpus {corpus.name}: {len(corpus)} utterances, {len(study.folds)} folds, "
         f"modalities {', '.join(corpus.modalities)}; models {', '.join(models)}")
    if study.frozen:
        echo("[2/5] frozen backbones: no fine-tuning")
    else:
        finetune_all(study, device=device, workers=workers, progress=progress)
        n = len(study.models(PAPER_MODELS))
        echo(f"[2/5] fine-tuned {n} models x {len(study.folds)} folds x {len(study.seeds)} seeds {lap()}")
    reports = run_extractions(study, plan_encoder_runs(study), variants=["clean", *specs],
                              batch_size=study.preset.extract_batch_size, num_workers=workers, device=device,
                              progress=progress)
    done = sum(r.status != "skipped" for r in reports)
    echo(f"[3/5] extraction: {len(reports)} entries ({done} extracted, {len(reports) - done} already stored) {lap()}")
    train_heads(study, models=models, device="cpu", progress=progress)
    echo(f"[4/5] heads trained for {len(study.folds)} folds x {len(study.seeds)} seeds {lap()}")
    preds = evaluate_and_report(study, out=out, conditions=conditions_for(specs), models=models,
                                title=f"featcache {study.preset.name} study: {corpus.name}", echo=echo,
                                progress=progress)
    echo(f"[5/5] evaluated {len(preds):,} predictions; report written {lap()}")
    return out
