"""``featcache extract`` and ``featcache finetune``: the encoders' stages (vectors into the store, runs per fold)."""

from __future__ import annotations

from typing import Any

import click

from featcache.cli import cli
from featcache.paper import MODALITIES, PAPER_MODELS, SPLITS
from featcache.presets import Preset
from featcache.cli.options import CONTEXT, executor_from, executor_options, fold_list, study_option_set, study_from


def _variant_list(variants: tuple[str, ...]) -> list[str]:
    """Extraction variants: ``all`` means clean and every registered perturbation."""
    from featcache.pipeline import expand_variants

    return expand_variants(["clean", *variants] if "all" in variants else variants)


@cli.command("extract", context_settings=CONTEXT)
@study_option_set("extract")
@click.option("--fold", "folds", default="all", metavar="K|all",
              help="Fold(s) whose fine-tuned backbones to use (ignored with frozen backbones).")
@click.option("--variant", "variants", multiple=True, default=("clean",), metavar="NAME",
              help="Variant to extract (repeatable), or 'all' for clean and every registered variant.")
@click.option("--modality", type=click.Choice([*MODALITIES, "all"]), default="all",
              help="Encoders to run (only those the corpus has).")
@click.option("--split", type=click.Choice(SPLITS), default=None,
              help="Utterances of a fine-tuned fold to embed. [default: all for clean, test for variants]")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Utterances per forward pass. [default: the preset's extraction batch (featcache presets); "
                   f"{Preset.bf16_text_batch_size} transcripts with --precision bf16]")
@click.option("--workers", type=click.IntRange(min=0), default=1,
              help="DataLoader workers for decoding, perturbing and preparing inputs.")
@click.option("--device", default="auto", help="cpu, cuda or auto.")
@executor_options(shards=True)
def extract_cmd(folds: str, variants: tuple[str, ...], modality: str, split: str | None, batch_size: int | None,
                workers: int, device: str, shard_size: int, **kw: Any) -> None:
    """Embed the clean input and perturbed variants into the feature store.

    Entries already stored with the same provenance are skipped; an interrupted run resumes.
    Text x audio combinations (pitch+adj, ...) need no extraction: `evaluate` composes them.
    With --finetuned, the fold's fine-tuning runs made with these options are used (--seed is the
    variant seed here, as --variant-seed elsewhere).

    \b
    Examples:
      featcache extract --corpus iemocap:demo-corpus --variant all
      featcache extract --corpus iemocap:/data/IEMOCAP --preset paper --fold 2 --variant pitch
      featcache extract --corpus iemocap:/data/IEMOCAP --preset paper --variant all --executor ray --address auto
    """
    from featcache.pipeline import plan_encoder_runs, run_extractions

    ex = executor_from(kw)
    study = study_from(kw, "extract")
    plans = plan_encoder_runs(study, modality=modality, folds=fold_list(folds, study.corpus))
    reports = run_extractions(study, plans, variants=_variant_list(variants), split=split,
                              batch_size=batch_size, num_workers=workers,
                              device=device, executor=ex, shard_size=shard_size)
    for r in reports:
        if r.status == "not-applicable":
            continue
        click.echo(f"{r.status:<8} {str(r.key):<60} {r.n_ids:>6} utt  {r.seconds:7.1f} s")
    click.echo(f"store: {study.store.root}")


@cli.command("finetune", context_settings=CONTEXT)
@study_option_set("finetune")
@click.option("--modality", type=click.Choice(PAPER_MODELS), required=True,
              help="Which of the paper's models to fine-tune (multimodal fine-tunes both backbones jointly).")
@click.option("--fold", "folds", required=True, metavar="K[,K...]|all",
              help="Fold K: tests on the K-th session (or published fold, or test partition), trains on the others; "
                   "several (1,2,3) or all make one run each.")
@click.option("--seed", "run_seeds", default="0", metavar="S[,S...]",
              help="Seed of initialisation, shuffling and dropout; several (0,1,2) make one run each.")
@click.option("--workers", type=click.IntRange(min=0), default=1,
              help="DataLoader workers for decoding and cutting audio (a text-only model "
              "tokenises its transcripts once, in the main process).")
@click.option("--device", default="auto", help="cpu, cuda or auto.")
@executor_options(shards=False)
def finetune_cmd(modality: str, folds: str, run_seeds: str, workers: int, device: str, **kw: Any) -> None:
    """Fine-tune the text, audio or multimodal model on one fold (weighted CE, early stopping).

    The run is stored under CACHE/runs/ (safetensors + JSON); rerunning the same command resumes a
    killed run from its last completed epoch, or returns at once when it is finished. Then embed with
    `featcache extract --finetuned --fold K` (and evaluate with `--finetuned`), giving the same options:
    a study uses only the runs its options would make (--lr here is --finetune-lr there, --batch-size
    --finetune-batch-size, --max-epochs --finetune-epochs, --patience --finetune-patience, --precision
    --finetune-precision). Several folds or seeds make one run each, in order or, with `--executor ray`,
    side by side (one GPU each).
    """
    from featcache.executors import finished_run
    from featcache.options import parse_value
    from featcache.pipeline import finetune_jobs

    ex = executor_from(kw)
    study = study_from(kw, "finetune")
    jobs = finetune_jobs(study, models=[modality], folds=fold_list(folds, study.corpus),
                         seeds=parse_value("seeds", run_seeds), settings=study.finetune_settings(modality),
                         fold_options=study.run_fold_options, device=device, workers=workers)
    for result in ex.run(study, jobs, progress=True):
        run = finished_run(result.value)
        res = run.result
        click.echo(f"{run.run_id}: best epoch {res['best_epoch']} of {res['epochs_run']}, "
                   f"dev accuracy {res['best_dev_acc']:.4f} ({res['n_train']} train, {res['n_dev']} dev)")
        click.echo(f"run: {run.path}")
