"""``featcache train-heads``, ``evaluate``, ``ablate`` and ``run``: the commands that take a whole study's
options (:class:`~featcache.options.StudyOptions`, every field a flag)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from featcache.cli import cli
from featcache.cli.options import CONTEXT, executor_from, executor_options, study_from, study_option_set
from featcache.errors import FeatcacheError
from featcache.paper import ABLATION_FUSIONS, ALL_MODELS, FUSION_HIDDEN, HIDDEN, MODALITIES, TEXT_POOLINGS


def _study(**kw: Any):  # type: ignore[no-untyped-def]
    """The :class:`~featcache.study.Study` of study options given by their field names (as the commands get them)."""
    return study_from(kw)


by_option = click.option(
    "--by", "by", multiple=True, metavar="GROUPING",
    help="Robustness by group (repeatable, or a comma list): per group of the corpus's utterances, each model's clean "
         "accuracy and each attack's impact with paired bootstrap intervals, and the largest gap between groups; "
         "printed, and in the report's Groups section and summary.csv. IEMOCAP has sex (the speaker's, from the "
         "utterance id), a manifest every group:NAME column (--by accent or --by group:accent), EmoBox speaker.")


@cli.command("train-heads", context_settings=CONTEXT)
@study_option_set()
@click.option("--models", default=",".join(ALL_MODELS),
              help="Heads to train on the stored clean vectors of each fold and seed (those the corpus's "
                   "modalities allow).")
@click.option("--device", default="cpu", help="cpu or cuda.")
def train_heads_cmd(models: str, device: str, **kw: Any) -> None:
    """Train the paper's heads and fusion ablations on cached vectors (seconds per fold on a CPU).

    text/audio/multimodal: the paper's heads; late: average of the unimodal probabilities; score:
    learned weights over the unimodal scores; gated: a per-utterance gate between modalities; mdrop:
    the multimodal head trained with modality dropout. Weighted cross-entropy and early stopping on the
    dev set, as in the paper. Trained heads are kept in the store and not retrained.
    """
    from featcache.study import train_heads

    study = study_from(kw)
    wanted = [m.strip() for m in models.split(",") if m.strip()]
    usable = study.models(wanted)
    if usable != wanted:
        click.echo(f"{study.corpus.name}: modalities {', '.join(study.corpus.modalities) or 'none'}; "
                   f"training {', '.join(usable) or 'no head'}")
    rows = train_heads(study, models=usable, device=device)
    for r in rows:
        acc = r.get("best_dev_acc")
        click.echo(f"fold {r['fold']} seed {r['seed']} {r['model']:<10} "
                   + (f"dev acc {acc:.4f} (epoch {r['best_epoch']})" if acc is not None else "no training needed"))
    click.echo(f"heads: {study.store.heads_root(study.key)}")


@cli.command("evaluate", context_settings=CONTEXT)
@study_option_set()
@click.option("--condition", "conditions", multiple=True, metavar="COND",
              help="Condition to evaluate (repeatable), e.g. adj, pitch, pitch+adj. [default: the paper's conditions "
                   "(Table 6 rows; missing ones are listed with the command that makes them), then every other "
                   "variant the store holds]")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("featcache-report"),
              help="Folder for predictions.h5, results.csv and the report.")
@click.option("--ablation", "ablations", multiple=True, metavar="NAME",
              help="Also evaluate an ablation trained by `featcache ablate` (repeatable; its name or label, see "
                   "`featcache ablate --list`); it is the model ablate:NAME in the predictions and the report. "
                   "'layers' adds every layer sweep of the study (`featcache ablate --layers` with the same "
                   "--layers), 'LABEL-layers' those of one label (e.g. text-layers for --modalities text, "
                   "concat-layers for the default head): every layer is evaluated and the report gets a Layers "
                   "section (impact heatmap, clean accuracy per layer, the table per layer).")
@by_option
def evaluate_cmd(conditions: tuple[str, ...], out: Path, ablations: tuple[str, ...], by: tuple[str, ...],
                 **kw: Any) -> None:
    """Evaluate every fold x seed x model x condition from the store only (no encoder is loaded).

    Writes one tidy results file (one row per fold/seed/model/condition), the per-utterance predictions
    and the report. Missing entries are listed with the exact command that makes them.

    With --layer weighted, the report's Layers section shows the layer weights the heads learned (mean
    over folds and seeds, per model and modality).

    \b
    Example (a layer sweep in the report):
      featcache ablate --corpus iemocap:demo-corpus --layers all --modalities text
      featcache evaluate --corpus iemocap:demo-corpus --layers all --ablation text-layers
    Example (robustness by the speaker's sex):
      featcache evaluate --corpus iemocap:demo-corpus --by sex
    """
    from featcache.pipeline import evaluate_and_report, report_title

    study = study_from(kw)
    evaluate_and_report(study, out=out, conditions=list(conditions) or None, ablations=ablations, by=by,
                        title=report_title(study), echo=click.echo)
    click.echo(f"results and report: {out}")
    click.echo(f"open: {out / 'report.html'}")


@cli.command("ablate", context_settings=CONTEXT)
@study_option_set()
@click.option("--list", "list_", is_flag=True, help="List this study's ablations in the store and exit.")
@click.option("--name", "label", default=None, metavar="LABEL",
              help="A label for the ablation (the name is LABEL-<digest of the options>). [default: the fusion, or "
                   "the one modality]")
@click.option("--fusion", type=click.Choice(list(ABLATION_FUSIONS)), default="concat",
              help="concat: the paper's multimodal head (bodies concatenated, FC layers); late: average of the "
                   "unimodal probabilities; score: learned weights over the unimodal scores; gated: a per-utterance "
                   "gate.")
@click.option("--modalities", type=click.Choice(["both", *MODALITIES]), default="both",
              help="The inputs the head reads (one modality: a unimodal head, compared with the paper's).")
@click.option("--hidden", default=",".join(map(str, HIDDEN)), metavar="N,N,...",
              help="Layer sizes of each modality's body.")
@click.option("--fusion-hidden", type=click.IntRange(min=1), default=FUSION_HIDDEN,
              help="Size of the layer after the fusion (concat, gated).")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Body dropout of both modalities. [default: the paper's, text 0 and audio 0.2]")
@click.option("--modality-dropout", type=click.FloatRange(0, 1), default=0.0,
              help="Probability of zeroing one modality of a training example (concat, gated).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="AdamW learning rate. [default: --head-lr]")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Most epochs. [default: --head-epochs]")
@click.option("--train-on", default=None, metavar="V,V,...",
              help="Train on attacks: mix the stored training vectors of these variants (e.g. adj,pitch) into the "
                   "training set. [default: clean only]")
@click.option("--mix", type=click.FloatRange(0, 1), default=0.5,
              help="With --train-on: probability that a training utterance's vector of a modality is replaced by "
                   "its attacked one (drawn once per seed, modality and utterance).")
@click.option("--text-pooling", type=click.Choice(TEXT_POOLINGS), default=None,
              help="Train and evaluate the variant on text vectors pooled this way while the paper's heads keep the "
                   "study's --pooling (frozen backbones; the entries must be extracted with that pooling). "
                   "[default: the study's]")
@click.option("--condition", "conditions", multiple=True, metavar="COND",
              help="Condition to evaluate (repeatable). [default: as `featcache evaluate`]")
@click.option("--resamples", type=click.IntRange(min=0), default=1000,
              help="Bootstrap resamples of the confidence intervals (0: none).")
@click.option("--device", default="cpu", help="cpu or cuda.")
def ablate_cmd(list_: bool, label: str | None, fusion: str, modalities: str, hidden: str, fusion_hidden: int,
               dropout: float | None, modality_dropout: float, lr: float | None, epochs: int | None, train_on: str | None,
               mix: float, text_pooling: str | None, conditions: tuple[str, ...], resamples: int, device: str,
               **kw: Any) -> None:
    """Train a head or fusion variant over all folds x seeds and compare it with the paper's heads.

    The variant is trained on the study's cached vectors (with --train-on, on a mix of clean and attacked
    training vectors), evaluated under every condition, and printed side by side with the paper's text,
    audio and multimodal heads: Avg. accuracy, impact per attack, and the paired bootstrap CI of the
    differences. It is kept in the store under its name; add it to a report with
    `featcache evaluate --ablation NAME`.

    With --layers (layer-wise vectors) and no --layer, the variant is trained on each stored hidden state
    (every layer, fold and seed together) and a table per layer is printed: clean accuracy, UAR and each
    attack's impact with its paired bootstrap interval. Add the sweep to a report with
    `featcache evaluate --layers ... --ablation LABEL-layers` (e.g. text-layers; 'layers' for every sweep).

    \b
    Example:
      featcache ablate --corpus iemocap:demo-corpus --train-on adj,pitch --mix 0.5
      featcache ablate --corpus iemocap:demo-corpus --layers all --modalities text
    """
    from featcache.ablate import AblationSpec, list_ablations, parse_variant_list, run_ablation, run_layer_sweep

    study = study_from(kw)
    if list_:
        infos = list_ablations(study)
        if not infos:
            click.echo(f"{study.store.root}: no ablations of this study yet")
        for i in infos:
            click.echo(f"{i.ablation.name:<28} {i.trained}/{i.expected} heads  {i.description}")
        return
    try:
        sizes = tuple(int(x) for x in hidden.split(",") if x.strip())
    except ValueError:
        raise FeatcacheError(f"--hidden {hidden!r}: write layer sizes separated by commas, e.g. 512,256") from None
    spec = AblationSpec(fusion=fusion, modalities=("text", "audio") if modalities == "both" else (modalities,),
                        hidden=sizes, fusion_hidden=fusion_hidden, dropout=dropout, modality_dropout=modality_dropout,
                        lr=lr, epochs=epochs, train_on=parse_variant_list(train_on or ""), mix=mix,
                        pooling=text_pooling, label=label)
    if study.options.layers is not None and study.options.layer is None:  # every stored layer: a layer sweep
        sweep = run_layer_sweep(study, spec, conditions=list(conditions) or None, device=device,
                                n_resamples=resamples, echo=click.echo)
        click.echo(f"{len(sweep.rows)} ablations, one per layer, in {sweep.rows[0].ablation.folder(study).parent}; "
                   f"one layer alone: the same command with --layer K; in a report: "
                   f"{study.command('evaluate')} --ablation {sweep.name}")
        return
    result = run_ablation(study, spec, conditions=list(conditions) or None, device=device, n_resamples=resamples,
                          echo=click.echo)
    click.echo(f"ablation: {result.ablation.folder(study)}; in a report: "
               f"{study.command('evaluate')} --ablation {result.ablation.name}")


@cli.command("run", context_settings=CONTEXT)
@study_option_set(corpus_required=False)
@click.option("--variant", "variants", multiple=True, metavar="NAME",
              help="Variants to extract and evaluate (repeatable; 'all' for every registered one). [default: preset's]")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Report folder. [default: featcache-report/<preset>]")
@click.option("--workers", type=click.IntRange(min=0), default=1, help="DataLoader workers for decoding and perturbing.")
@click.option("--device", default="auto", help="cpu, cuda or auto.")
@by_option
@executor_options(shards=True)
def run_cmd(variants: tuple[str, ...], out: Path | None, workers: int, device: str, shard_size: int,
            by: tuple[str, ...], **kw: Any) -> None:
    """Run the whole study: data -> folds -> finetune (or frozen) -> extract -> heads -> evaluate -> report.

    Whatever the store already holds is skipped, so a rerun after a crash or after adding one variant
    does only the missing work. Without --corpus, the demo corpus is written to ./demo-corpus first.

    With --executor ray, every fine-tuning run and every shard of an entry is a Ray task (one GPU each
    when the cluster has GPUs); extraction with a fine-tuned backbone starts as soon as its run is done.

    \b
    Example (the README's main command):
      featcache run --preset demo
    """
    import time

    from featcache.pipeline import run_study

    t0 = time.perf_counter()
    ex = executor_from(kw)
    if not kw.get("corpus"):
        from featcache.demo import write_demo_corpus

        root = Path("demo-corpus")
        if not root.is_dir():
            click.echo("writing the demo corpus to ./demo-corpus")
            write_demo_corpus(root)
        kw["corpus"] = f"iemocap:{root}"
    study = study_from(kw)
    out = out or Path("featcache-report") / study.preset.name
    run_study(study, variants=list(variants) or None, out=out, workers=workers, device=device, echo=click.echo,
              executor=ex, shard_size=shard_size, by=by)
    click.echo(f"done in {time.perf_counter() - t0:.0f} s in all")
    click.echo(f"tables: {out / 'tables.md'} (also .csv, .tex); examples: {out / 'examples.md'}; "
               f"summary: {out / 'summary.md'}; plots: {out}/*.png, *.svg")
    click.echo(f"open: {out / 'report.html'}")


