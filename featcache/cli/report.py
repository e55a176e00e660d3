"""``featcache report``: the report from saved predictions."""

from __future__ import annotations

from pathlib import Path

import click

from featcache.cli import cli
from featcache.cli.options import CONTEXT, load_corpus_from_options, optional_corpus_options


@cli.command("report", context_settings=CONTEXT)
@click.option("--predictions", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=Path("featcache-report/predictions.h5"), help="Predictions written by `featcache evaluate`.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Report folder. [default: the predictions' folder]")
@click.option("--title", default="featcache report", help="Title of the report.")
@optional_corpus_options
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None, envvar="FEATCACHE_CACHE",
              show_envvar=True,
              help="Feature store the predictions were evaluated from: its perturbation records replay the perturbed "
                   "audio of the examples. [default: none]")
@click.option("--variant-seed", type=int, default=None,
              help="Seed of the perturbations to replay (as given to extract --seed). [default: any stored]")
def report_cmd(predictions: Path, out: Path | None, title: str, corpus: str | None, labels: str | None,
               merge: str | None, cache_dir: Path | None, variant_seed: int | None) -> None:
    """Write report.html, tables (Markdown, CSV, LaTeX), examples and plots from saved predictions.

    With --corpus (its wavs) and --cache-dir (the perturbation records), report.html gets audio
    players for the examples' clean and perturbed audio; without them it says once that they are left out.
    The Layers section (layer sweeps, learned layer weights), the Groups section (`featcache evaluate
    --by`) and the Speech recognition section are drawn again from the layers.json, groups.json and asr.json
    that `featcache evaluate` wrote beside the predictions.
    """
    from featcache.metrics import Predictions
    from featcache.report import (ASR_FILE, GROUPS_FILE, LAYERS_FILE, StoreAudio, read_asr_section, read_group_section,
                                  read_layer_section, write_report)

    out = out or predictions.parent
    audio = None
    if corpus:
        from featcache.cache import FeatureStore

        c = load_corpus_from_options(corpus, labels, merge)
        store = FeatureStore(cache_dir) if cache_dir is not None else None
        audio = StoreAudio(c, store, variant_seed=variant_seed)
    written = write_report(Predictions.load(predictions), out, title=title, audio=audio,
                           layers=read_layer_section(predictions.parent / LAYERS_FILE),
                           groups=read_group_section(predictions.parent / GROUPS_FILE),
                           asr=read_asr_section(predictions.parent / ASR_FILE))
    for note in written.notes:
        click.echo(f"note: {note}")
    click.echo(f"report: {out}")
    click.echo(f"open: {written.html}")


