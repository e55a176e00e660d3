"""Orchestration: the stages of a study in order, each skipping what the store already holds.

One path for everything the command line runs: :func:`plan_encoder_runs` and :func:`run_extractions`
(``featcache extract``; each entry is planned once), :func:`finetune_all`, :func:`evaluate_and_report`
(``featcache evaluate`` and the end of ``featcache run``) and :func:`run_study` (``featcache run``).
Messages go to an ``echo`` callable, so the command line and a notebook print the same lines.

Fine-tuning and extraction are built as a graph of jobs (:func:`finetune_jobs`, :func:`extraction_jobs`)
and handed to an executor (:mod:`featcache.executors`): ``local`` runs them in order in this process,
``ray`` as Ray tasks on a cluster, an entry's shards in parallel and each extraction after the
fine-tuning run it needs.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featcache.errors import DamagedError, FeatcacheError
from featcache.executors import Executor, Job, LocalExecutor, finished_run, span
from featcache.extract import DEFAULT_SHARD_SIZE, EncoderRun, ExtractReport, entry_ids, plan_entry, transcription_time
from featcache import paper
from featcache.paper import ALL_MODELS, MODALITIES, PAPER_MODELS, TrainSettings, uses
from featcache.study import Study, evaluate, train_heads

if TYPE_CHECKING:
    from featcache.ablate import Ablation, StoredSweep

log = logging.getLogger(__name__)

Echo = Callable[..., Any]


def _print(message: str, *, err: bool = False) -> None:
    print(message, file=sys.stderr if err else sys.stdout)


@dataclass(frozen=True)
class PlannedRun:
    """One encoder run and the fold its weights belong to (None: frozen, shared by all folds).

    Attributes:
        run: The encoder run, or None when a fine-tuning job of the same graph makes it.
        fold: The entries' fold.
        fold_options: The fold's dev-split options.
        after: The name of the ``finetune`` job whose run gives the weights (when ``run`` is None).
        modality: The run's modality (given when ``run`` is None).
    """

    run: EncoderRun | None
    fold: int | None
    fold_options: dict | None = None
    after: str | None = None
    modality: str = ""

    @property
    def label(self) -> str:
        """Names the encoder in job names."""
        return self.run.name if self.run is not None else f"{self.modality} of [{self.after}]"


def expand_variants(specs: Sequence[str]) -> list[str]:
    """Canonical variant specs, in order and without repeats; ``all`` stands for every registered
    perturbation (clean excluded, and ``transcribed``: a speech recogniser runs only when named).

    Raises:
        FeatcacheError: An unknown variant (one line, listing the valid names).
    """
    from featcache.perturb import get_variant, list_variants

    out: list[str] = []
    for v in specs:
        names = [x.spec for x in list_variants() if x.modality is not None
                 and not getattr(x, "needs_transcripts", False)] if v == "all" else [v]
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
        DamagedError: A run's encoder weights no longer match the checksum recorded when it finished.
    """
    corpus = study.corpus
    mods = [m for m in corpus.modalities if modality in ("all", m)]
    if not mods:
        raise FeatcacheError(f"{corpus.name}: has no {modality} modality to extract")
    if study.frozen:
        return [PlannedRun(study.frozen_encoder(m), None) for m in mods]
    from featcache.finetune import find_runs, run_differences

    plans: list[PlannedRun] = []
    for k in folds or study.folds:
        found = False
        for ft in find_runs(study.store, corpus=corpus, fold=k):
            if run_differences(ft.config, study.run_config(ft.modality, fold=k, seed=ft.config["seed"])):
                continue  # another study's run (other settings): its vectors are not this study's
            damaged = ft.damage(deep=True)  # its encoder weights' SHA-256, before they make any vector
            if damaged is not None:
                cmd = study.command("finetune", modality=ft.modality, fold=k, seed=ft.config["seed"])
                raise DamagedError(damaged[0], damaged[1], what="fine-tuning run",
                                   fix=f"delete {ft.path} and run `{cmd}` (it trains the run again)")
            for m in ft.modalities:
                if m in mods:
                    run = study.finetuned_encoder(m, ft)
                    plans.append(PlannedRun(run, k, ft.config["fold_options"]))
                    found = True
        if not found:
            cmd = study.command("finetune", modality=mods[0], fold=k, seed=study.seeds[0])
            raise FeatcacheError(f"{study.store.root}: no fine-tuned backbone for fold {k}; run `{cmd}` first, "
                                 "or extract with --frozen")
    return plans


def finetune_jobs(
    study: Study,
    *,
    models: Sequence[str] | None = None,
    folds: Sequence[int] | None = None,
    seeds: Sequence[int] | None = None,
    settings: TrainSettings | None = None,
    fold_options: dict[str, Any] | None = None,
    device: str = "auto",
    workers: int = 0,
    precision: str | None = None,
) -> list[Job]:
    """One ``finetune`` job per model x fold x seed (fold-major, as :func:`finetune_all` always ran them).

    Args:
        study: The study (its options, preset and store).
        models: Paper models (default: those the corpus allows).
        folds: Folds (default: all).
        seeds: Seeds (default: the study's).
        settings: Hyperparameters (default: the study's for each model, :meth:`Study.finetune_settings`).
        fold_options: Dev-split options (default: the study's).
        device: ``cpu``, ``cuda`` or ``auto``.
        workers: DataLoader workers of each run.
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (:func:`featcache.train.resolve_precision`;
            default: the study's).

    Returns:
        The jobs, named ``finetune <model> f<K> s<S>``.
    """
    jobs = []
    for k in folds or study.folds:
        for s in seeds or study.seeds:
            for m in models or study.models(PAPER_MODELS):
                args = {"model": m, "fold": k, "seed": s, "settings": settings or study.finetune_settings(m),
                        "options": study.encoder_options,
                        "fold_options": dict(study.fold_options if fold_options is None else fold_options),
                        "device": device, "num_workers": workers,
                        "precision": precision or study.options.finetune_precision}
                jobs.append(Job(name=f"finetune {m} f{k} s{s}", kind="finetune", args=args))
    return jobs


def extraction_jobs(
    study: Study,
    plans: Sequence[PlannedRun],
    *,
    variants: Sequence[str],
    split: str | None = None,
    batch_size: int | None = None,
    num_workers: int = 0,
    device: str = "cpu",
    shard_size: int = DEFAULT_SHARD_SIZE,
    sharded: bool = False,
) -> tuple[list[Job], list[ExtractReport]]:
    """The jobs that extract every variant with every planned run, and the entries already stored.

    An entry whose key is known now (its run exists) and that is stored intact gets no job, only a
    ``skipped`` report. With ``sharded``, an entry of more than ``shard_size`` utterances becomes one
    ``shard`` job per shard and an ``assemble`` job that waits for them; otherwise one ``extract`` job.
    A plan made by a fine-tuning job of the same graph makes jobs that wait for it.

    Args:
        study: The study.
        plans: Encoder runs (:func:`plan_encoder_runs`, or runs that fine-tuning jobs make).
        variants: Variant specs (those of another modality than a run's are left out).
        split: Utterances of a fine-tuned fold (default: all for clean, test for a variant).
        batch_size: Utterances per forward pass (None: the preset's for each run's modality and the study's
            precision, :meth:`~featcache.presets.Preset.extraction_batch_size`).
        num_workers: DataLoader workers of each job.
        device: ``cpu``, ``cuda`` or ``auto``.
        shard_size: Utterances per shard; batches never cross a shard, so the entry's bytes do not depend
            on ``sharded``.
        sharded: Split entries into shard jobs (for executors that run jobs in parallel).

    Returns:
        ``(jobs, skipped)``.

    Raises:
        FeatcacheError: An unknown variant, a modality the corpus lacks, or ``shard_size`` below 1.
    """
    from featcache.perturb import get_variant

    if shard_size < 1:
        raise FeatcacheError(f"shard_size (--shard-size {shard_size}): give at least 1 utterance per shard")
    corpus, store = study.corpus, study.store
    jobs: list[Job] = []
    skipped: list[ExtractReport] = []
    for plan in plans:
        modality = plan.run.modality if plan.run is not None else plan.modality
        for spec in variants:
            if plan.run is not None:
                planned = plan_entry(corpus, store, run=plan.run, variant=spec, fold=plan.fold, split=split,
                                     seed=study.variant_seed, fold_options=plan.fold_options)
                if planned is None:
                    continue
                if store.has(planned.key) and not store.damage(planned.key):
                    skipped.append(ExtractReport(key=planned.key, status="skipped", n_ids=len(planned.ids),
                                                 path=store.path(planned.key)))
                    continue
                n = len(planned.ids)
            else:
                v = get_variant(spec)
                if v.modality is not None and v.modality != modality:
                    continue
                n = len(entry_ids(corpus, fold=plan.fold, variant_modality=v.modality, split=split,
                                  fold_options=plan.fold_options))
            args: dict[str, Any] = {"run": plan.run, "modality": modality, "fold": plan.fold,
                                    "fold_options": plan.fold_options, "variant": spec, "split": split,
                                    "batch_size": batch_size or study.preset.extraction_batch_size(
                                        modality=modality, precision=study.options.precision),
                                    "num_workers": num_workers, "device": device,
                                    "shard_size": shard_size}
            after = (plan.after,) if plan.run is None and plan.after else ()
            name = f"extract {plan.label}/{'shared' if plan.fold is None else f'fold-{plan.fold}'}/{spec}" + (
                f"/{split}" if split else "")
            n_shards = -(-n // shard_size)
            if not sharded or n_shards <= 1:
                jobs.append(Job(name=name, kind="extract", args=args, deps=after))
                continue
            shard_jobs = [Job(name=f"{name} shard {i + 1}/{n_shards}", kind="shard", args={**args, "shard": i},
                              deps=after) for i in range(n_shards)]
            jobs += shard_jobs
            jobs.append(Job(name=f"{name} assemble", kind="assemble", args=args,
                            deps=after + tuple(j.name for j in shard_jobs)))
    return jobs, skipped


def _entry_reports(results: Sequence[Any]) -> list[ExtractReport]:
    """The reports of the jobs that stand for whole entries (``extract`` and ``assemble``), in order."""
    return [r.value for r in results if r.job.kind in ("extract", "assemble")]


def run_extractions(
    study: Study,
    plans: Sequence[PlannedRun],
    *,
    variants: Sequence[str],
    split: str | None = None,
    batch_size: int | None = None,
    num_workers: int = 0,
    device: str = "cpu",
    progress: bool = True,
    executor: Executor | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
) -> list[ExtractReport]:
    """Extract every variant with every planned run, planning each entry once; the local executor loads
    each encoder once (and only if something is missing). An entry is skipped only when it is intact
    (:meth:`~featcache.cache.FeatureStore.damage`); a damaged one is set aside and extracted again.

    Args:
        study: The study.
        plans: The encoder runs (:func:`plan_encoder_runs`).
        variants: Variant specs.
        split: Utterances of a fine-tuned fold (default: all for clean, test for a variant).
        batch_size: Utterances per forward pass (None: the preset's, :func:`extraction_jobs`).
        num_workers: DataLoader workers.
        device: ``cpu``, ``cuda`` or ``auto``.
        progress: Progress bars.
        executor: Where the jobs run (default: :class:`~featcache.executors.LocalExecutor`); any executor
            but the local one gets entries split into shards.
        shard_size: Utterances per shard.

    Returns:
        One report per entry: the stored ones first, then in plan order.

    Raises:
        FeatcacheError: An unknown device (before anything is planned or written), or what extraction raises.
    """
    from featcache.train import resolve_device

    resolve_device(device)
    ex = executor or LocalExecutor()
    jobs, skipped = extraction_jobs(study, plans, variants=variants, split=split, batch_size=batch_size,
                                    num_workers=num_workers, device=device, shard_size=shard_size,
                                    sharded=ex.name != "local")
    return skipped + _entry_reports(ex.run(study, jobs, progress=progress))


def finetune_all(study: Study, *, device: str = "auto", workers: int = 1, progress: bool = True,
                 executor: Executor | None = None) -> list[Any]:
    """Fine-tune (or resume, or find finished) the paper's models the corpus allows, every fold and seed.

    Returns:
        The :class:`~featcache.finetune.FinetuneRun` of each, fold-major.
    """
    jobs = finetune_jobs(study, device=device, workers=workers)
    results = (executor or LocalExecutor()).run(study, jobs, progress=progress)
    study.forget_runs()  # new runs: look them up again
    return [finished_run(r.value) for r in results]


def report_title(study: Study) -> str:
    """A study's report title: the corpus and the preset as the user gave them.

    Args:
        study: The study.

    Returns:
        E.g. ``"featcache: emobox:/data/EmoBox/data/savee, preset demo"``.
    """
    return f"featcache: {study.options.corpus or study.corpus.name}, preset {study.preset.name}"


def evaluate_and_report(
    study: Study,
    *,
    out: Path,
    conditions: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    title: str,
    ablations: Sequence[str] = (),
    by: Sequence[str] = (),
    echo: Echo = _print,
    progress: bool = True,
) -> Any:
    """Evaluate, save the predictions and write the report: the one sequence behind ``evaluate`` and ``run``.

    Conditions the corpus cannot perturb and models it cannot feed are named in one line each; what is
    missing from the store is listed with the command that makes it. Nothing is written when there is
    nothing to evaluate. The report's audio players play the corpus's wavs and the perturbed audio
    replayed from the store's records (``report.html``). With ``--layer weighted`` heads, the layer
    weights they learned are read from them (:func:`featcache.study.layer_weights`) and shown in the
    report's Layers section, beside the layer sweeps that ``ablations`` names.

    Args:
        study: The study.
        out: Report folder (``predictions.h5`` and the report).
        conditions: Conditions (default: see :meth:`Study.conditions`).
        models: Models (default: every model the corpus allows).
        title: Report title.
        ablations: Names of ablations trained by ``featcache ablate`` to evaluate beside the models
            (model ``ablate:<name>`` in the predictions and the report); ``layers`` adds every layer sweep of
            the study (``featcache ablate --layers``), ``LABEL-layers`` those of one label (``text-layers``):
            each layer's ablation is evaluated, and the report's Layers section shows the sweep.
        by: Groupings of the corpus's utterances (``sex``; ``group:accent`` or ``accent`` for a manifest's column;
            comma lists too): each one's tables (robustness by group) are printed after evaluating and shown in
            the report's Groups section (see :mod:`featcache.report.groups`).
        echo: Where messages go (``err=True`` is passed for the missing-entry lines).
        progress: Progress bars.

    Returns:
        The :class:`~featcache.metrics.Predictions`.

    Raises:
        FeatcacheError: Nothing could be evaluated, or an ablation or a grouping is unknown (before anything is
            written).
    """
    from featcache.ablate import evaluate_ablation
    from featcache.metrics import Predictions
    from featcache.report import GroupSection, LayerSection, StoreAudio, format_group_table, table_heading, write_report
    from featcache.study import layer_weights

    found, sweeps = resolve_ablations(study, ablations)
    grouped = GroupSection.from_corpus(study.corpus, by) if by else None

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
    for note in study.run_notes():
        echo(f"note: {note}", err=True)
    for cmd in missing:
        echo(f"missing: {cmd}", err=True)
    if len(preds) == 0:
        raise FeatcacheError(f"{study.store.root}: nothing to evaluate; run the commands above first")
    out.mkdir(parents=True, exist_ok=True)
    section = LayerSection(tuple(sweeps), tuple(layer_weights(study, models=usable)))
    preds.save(out / "predictions.h5")
    audio = StoreAudio(study.corpus, study.store, variant_seed=study.variant_seed)
    from featcache.report import default_seeds_note

    note = f"{default_seeds_note(sorted({int(x) for x in preds.seed}))} {methods_line(study)}"
    from featcache.report import asr_section

    heard = asr_section(study, sorted({str(c) for c in preds.condition}))
    written = write_report(preds, out, title=title, seeds_note=note, audio=audio, corpus=study.corpus,
                           store=study.store, layers=section, groups=grouped, asr=heard)
    for note in written.notes:
        echo(f"note: {note}")
    for t in written.group_tables:  # robustness by group, as the report's Groups section shows it
        echo("")
        echo(f"{table_heading(t)}:")
        echo(format_group_table(t))
    return preds


def methods_line(study: Study) -> str:
    """The report's methods sentence: which checkpoint made each modality's vectors (its name, the digest
    of its weights and, for a hub model, the commit it resolved to), frozen or fine-tuned, the text pooling
    and the hidden states the heads read.

    Returns:
        E.g. ``Vectors: text minilm (weights 3c1f0a9b2d4e), audio bert-base-uncased@86b5e0934494 (weights
        ...); frozen backbones; text pooling mean.``
    """
    from featcache.backbones.resolve import resolve_backbone

    parts = []
    for m in (x for x in MODALITIES if x in study.corpus.modalities):
        name = study.preset.backbone(m)
        resolved = resolve_backbone(name, hash_cache=study.store.weight_hashes_path)
        shown = Path(name).name if Path(name).is_dir() else name.split("@", 1)[0]
        commit = f"@{resolved.revision[:12]}" if getattr(resolved, "revision", None) else ""
        parts.append(f"{m} {shown}{commit} (weights {resolved.weights_hash[:12]})")
    how = "frozen backbones" if study.frozen else "backbones fine-tuned per fold"
    extra = [f"text pooling {study.encoder_options.pooling}"] if paper.TEXT in study.corpus.modalities else []
    if study.corpus.text_source:  # an audio-only corpus read through a speech recogniser
        extra.append(f"text: {study.corpus.text_source}, not gold transcripts")
    if study.options.layers is not None:
        layer = study.options.layer or "the last stored"
        extra.append(f"hidden states {study.options.layers} stored, heads read {layer}")
    return f"Vectors: {', '.join(parts)}; {how}" + "".join(f"; {x}" for x in extra) + "."


def resolve_ablations(study: Study, names: Sequence[str]) -> tuple[list[Ablation], list[StoredSweep]]:
    """What ``--ablation NAME`` (repeated) names: ablations, and layer sweeps (``layers``, ``LABEL-layers``).

    Args:
        study: The study.
        names: The names given.

    Returns:
        ``(ablations, sweeps)``: every :class:`~featcache.ablate.Ablation` to evaluate (each sweep's layers
        included, each once) and the :class:`~featcache.ablate.StoredSweep` named.

    Raises:
        FeatcacheError: A name is no ablation or sweep of the study.
    """
    from featcache.ablate import find_ablation, find_layer_sweeps

    found: list[Ablation] = []
    sweeps: list[StoredSweep] = []
    for name in names:
        named = find_layer_sweeps(study, name)
        if named is None:
            found.append(find_ablation(study, name))
        else:
            sweeps += [s for s in named if s not in sweeps]
    return list(dict.fromkeys(found + [abl for s in sweeps for _, abl in s.layers])), sweeps


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
    executor: Executor | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    by: Sequence[str] = (),
) -> Path:
    """data -> folds -> finetune (or frozen) -> extract -> heads -> evaluate -> report, skipping stored work.

    Fine-tuning and extraction are one job graph run by ``executor``: each extraction job of a fine-tuned
    backbone waits for its fine-tuning run only, so on Ray extraction starts while other runs still
    train. Each stage prints its own time (fine-tuning and extraction: from their first job's start to
    their last job's end, which overlap on Ray); the caller prints the total.

    Args:
        study: The study.
        variants: Variant specs to extract and evaluate (default: the preset's; ``all``: every registered one).
        out: Report folder.
        workers: DataLoader workers for extraction.
        device: ``cpu``, ``cuda`` or ``auto``.
        echo: Where stage messages go.
        progress: Progress bars.
        executor: Where fine-tuning and extraction run (default: in order, in this process).
        shard_size: Utterances per shard of an entry (see :func:`extraction_jobs`).
        by: Groupings of the corpus's utterances whose robustness the report shows per group (``sex``;
            see :func:`evaluate_and_report`); checked before any work starts.

    Returns:
        The report folder.
    """
    from featcache.conditions import conditions_for
    from featcache.train import resolve_device

    resolve_device(device)  # an unknown device is said before any work
    if by:
        from featcache.report import GroupSection

        GroupSection.from_corpus(study.corpus, by)  # and an unknown grouping
    ex = executor or LocalExecutor()
    corpus = study.corpus
    specs = expand_variants(variants or study.preset.variants)
    models = study.models()
    lap = StageClock()

    echo(f"[1/5] corpus {corpus.name}: {len(corpus)} utterances, {len(study.folds)} fold{'s' if len(study.folds) != 1 else ''}, "
         f"modalities {', '.join(corpus.modalities)}; models {', '.join(models)}")
    if study.frozen:
        echo("[2/5] frozen backbones: no fine-tuning")
        ft: list[Job] = []
        plans = plan_encoder_runs(study)
    else:
        ft = finetune_jobs(study, device=device, workers=workers)
        plans = [PlannedRun(None, j.args["fold"], dict(study.fold_options), after=j.name, modality=m)
                 for j in ft for m in uses(j.args["model"])]
    parts = [c.text for c in conditions_for(specs) if c.text is not None and c.text not in specs]
    jobs, skipped = extraction_jobs(study, plans, variants=["clean", *specs, *dict.fromkeys(parts)],
                                    num_workers=workers, device=device,
                                    shard_size=shard_size, sharded=ex.name != "local")
    results = ex.run(study, ft + jobs, progress=progress)
    study.forget_runs()  # new runs: look them up again
    lap()
    if not study.frozen:
        n = len(study.models(PAPER_MODELS))
        echo(f"[2/5] fine-tuned {n} models x {len(study.folds)} folds x {len(study.seeds)} seeds "
             f"[{span(results, ('finetune',)):.0f} s]")
    reports = skipped + _entry_reports(results)
    done = sum(r.status != "skipped" for r in reports)
    took = span(results, ("extract", "shard", "assemble"))
    echo(f"[3/5] extraction: {len(reports)} entries ({done} extracted, {len(reports) - done} already stored) "
         f"[{took:.0f} s]" + (f" on {ex.name}" if ex.name != "local" else ""))
    heard = transcription_time(r.value for r in results)
    if heard is not None:
        echo(f"      speech recognition: {heard[0]:.0f} s of audio decoded in {heard[1]:.0f} s "
             f"({heard[1] / max(heard[0], 1e-9):.3f} s per second of audio)")
    train_heads(study, models=models, device="cpu", progress=progress)
    sweeps = layer_sweeps(study, progress=progress)
    echo(f"[4/5] heads trained for {len(study.folds)} folds x {len(study.seeds)} seeds"
         + (f", and the {' and '.join(m for m, _ in sweeps)} head on each of "
            f"{', '.join(str(len(layers)) for _, layers in sweeps)} layers" if sweeps else "") + f" {lap()}")
    preds = evaluate_and_report(study, out=out, conditions=conditions_for(specs), models=models,
                                ablations=("layers",) if sweeps else (), by=by,
                                title=report_title(study), echo=echo,
                                progress=progress)
    echo(f"[5/5] evaluated {len(preds):,} predictions; report written {lap()}")
    return out


def layer_sweeps(study: Study, *, progress: bool = True) -> list[tuple[str, tuple[int, ...]]]:
    """In a study of layer-wise vectors (``--layers``) whose heads read one layer (no ``--layer``): the text
    and the audio head trained on each stored hidden state (``featcache ablate --layers --modalities M``, the
    layers trained together), so the report's Layers section shows every layer.

    Returns:
        ``(modality, layers)`` per sweep trained (or found); empty in a study without ``--layers``.

    Raises:
        MissingEntries: A clean entry is missing.
    """
    from featcache.ablate import AblationSpec, stored_layers, train_ablations

    if study.options.layers is None or study.options.layer is not None:
        return []
    out, specs = [], []
    for m in (mod for mod in MODALITIES if mod in study.corpus.modalities):
        layers = stored_layers(study, (m,))
        out.append((m, layers))
        specs += [AblationSpec(modalities=(m,), layer=k) for k in layers]
    train_ablations(study, specs, progress=progress)
    return out
