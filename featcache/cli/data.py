"""``featcache demo-data``, ``featcache data`` and ``featcache presets``: the corpus, its folds, the named settings."""

from __future__ import annotations

from pathlib import Path

import click

from featcache.cli import cli
from featcache.cli.options import CONTEXT, Group, corpus_options, load_corpus_from_options
from featcache.paper import DEV_MODES


@cli.command("demo-data", context_settings=CONTEXT)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", default=0, help="Seed of the synthetic corpus (same seed, same bytes).")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty DIRECTORY.")
def demo_data(directory: Path, seed: int, overwrite: bool) -> None:
    """Write the embedded demo corpus to DIRECTORY in the IEMOCAP release layout.

    Read it back with --corpus iemocap:DIRECTORY.
    """
    from featcache.demo import write_demo_corpus

    summary = write_demo_corpus(directory, seed=seed, overwrite=overwrite)
    click.echo(f"wrote the demo corpus to {directory} ({summary})")
    click.echo(f"next: featcache data stats --corpus iemocap:{directory}")


@cli.group(cls=Group, context_settings=CONTEXT)
def data() -> None:
    """Inspect a corpus: label breakdown and folds."""


@data.command("stats", context_settings=CONTEXT)
@corpus_options
def data_stats(corpus: str, labels: str | None, merge: str | None) -> None:
    """Print the label x session breakdown (the paper's Table 2 layout) with durations."""
    from featcache.data import corpus_stats

    c = load_corpus_from_options(corpus, labels, merge)
    stats = corpus_stats(c)
    click.echo(f"{c.name}: {stats.total:,} utterances, modalities: {', '.join(c.modalities) or 'none'}")
    click.echo(stats.format())


@data.command("folds", context_settings=CONTEXT)
@corpus_options
@click.option("--dev", type=click.Choice(DEV_MODES), default="stratified",
              help="How the early-stopping dev set is taken from the training sessions.")
@click.option("--dev-fraction", default=0.1, help="Share of training utterances in a stratified dev set.")
@click.option("--seed", default=0, help="Seed of the dev split.")
def data_folds(corpus: str, labels: str | None, merge: str | None, dev: str, dev_fraction: float, seed: int) -> None:
    """List the folds (leave-one-session-out; a corpus's published folds; its fixed split, one fold per test
    partition) with their split sizes, their speakers per side and how many speakers the test side shares with
    the train and dev sides."""
    from featcache.data.corpus import fold_noun
    from featcache.folds import make_folds

    c = load_corpus_from_options(corpus, labels, merge)
    side = "split" if c.splits is not None else fold_noun(c.sessions)[:-1]
    click.echo(f"{'fold':>4}  {'test ' + side:>12}  {'train':>6}  {'dev':>5}  {'test':>5}  {'spk train':>9}  "
               f"{'spk dev':>7}  {'spk test':>8}  {'spk shared':>10}  digest")
    folds = make_folds(c, dev=dev, dev_fraction=dev_fraction, seed=seed)  # type: ignore[arg-type]
    for f in folds:
        spk = {side: {c.by_id(i).speaker for i in f.split(side)} for side in ("train", "dev", "test")}
        shared = len((spk["train"] | spk["dev"]) & spk["test"])
        click.echo(f"{f.index:>4}  {f.test_session:>12}  {len(f.train):>6}  {len(f.dev):>5}  {len(f.test):>5}  "
                   f"{len(spk['train']):>9}  {len(spk['dev']):>7}  {len(spk['test']):>8}  {shared:>10}  {f.digest}")
    if c.splits is not None:
        parts = {role: ", ".join(p for p in c.partitions if c.splits.get(p) == role) for role in ("train", "dev")}
        dev_from = (f"the corpus's own ({parts['dev']})" if any(f.dev_mode == "corpus" for f in folds)
                    else f"--dev {dev} on the train side (the corpus gives none)")
        click.echo(f"train: {parts['train']}; dev: {dev_from}")


@cli.command("presets", context_settings=CONTEXT)
def presets_cmd() -> None:
    """List the presets (--preset): backbones, frozen or fine-tuned, seeds, encoder options, variants and the
    fine-tuning settings of each model. Every one of them can be overridden by its own option."""
    from featcache.presets import PRESETS

    for p in PRESETS.values():
        click.echo(f"{p.name}: {p.description}")
        click.echo(f"  backbones   text {p.text_backbone}, audio {p.audio_backbone} "
                   f"({'frozen' if p.frozen else 'fine-tuned per fold'})")
        click.echo(f"  encoders    pooling {p.pooling}, max samples {p.max_samples}, whisper input {p.whisper_input}, "
                   f"extraction batch {p.extract_batch_size} (bf16 text {p.bf16_text_batch_size})")
        click.echo(f"  seeds       {','.join(map(str, p.seeds))}")
        for model in ("text", "audio", "multimodal"):
            t = p.train(model)
            click.echo(f"  fine-tune   {model:<10} batch {t.batch_size}, lr {t.lr:g}, at most {t.max_epochs} epochs, "
                       f"patience {t.patience}")
        click.echo(f"  variants    {', '.join(p.variants)}")
