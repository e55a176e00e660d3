"""``featcache variants``: the perturbations, one applied to an utterance, and what the text attacks change."""

from __future__ import annotations

from pathlib import Path

import click

from featcache.cli import cli
from featcache.cli.options import CONTEXT, Group, cache_dir_option, corpus_options, load_corpus_from_options


def variant_text_options(f):  # type: ignore[no-untyped-def]
    """``--mask-token`` and ``--spacy-model``: what the text variants insert and how they find words."""
    from featcache.perturb.base import DEFAULT_MASK_TOKEN
    from featcache.perturb.text_analysis import DEFAULT_MODEL

    f = click.option("--spacy-model", default=DEFAULT_MODEL, help="spaCy pipeline for part-of-speech variants.")(f)
    f = click.option("--mask-token", default=DEFAULT_MASK_TOKEN, help="The text backbone tokenizer's mask token.")(f)
    return f


@cli.group("variants", cls=Group, context_settings=CONTEXT, invoke_without_command=True)
@click.pass_context
def variants(ctx: click.Context) -> None:
    """Perturbation variants; without a subcommand, list them."""
    if ctx.invoked_subcommand is None:
        from featcache.perturb.inspect import variants_hint, variants_table

        click.echo(variants_table())
        click.echo("\n" + variants_hint())


@variants.command("show", context_settings=CONTEXT)
@click.argument("utt_id")
@click.option("--variant", "variant_spec", required=True, help="Variant spec, e.g. adj, pitch, noise:snr_db=10.")
@corpus_options
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the perturbed audio (float wav); required for audio variants.")
@variant_text_options
@cache_dir_option
@click.option("--seed", type=click.IntRange(min=0), default=0, help="Variant seed.")
def variants_show(*, utt_id: str, variant_spec: str, corpus: str, labels: str | None, merge: str | None,
                  out: Path | None, mask_token: str, spacy_model: str, cache_dir: Path, seed: int) -> None:
    """Apply one variant to utterance UTT_ID and print what it did.

    Text variants print the original and perturbed text; audio variants write the perturbed wav to
    --out. Both print the record, which replays the perturbation exactly.
    """
    from featcache.perturb.inspect import show_variant

    c = load_corpus_from_options(corpus, labels, merge)
    shown = show_variant(c, utt_id, variant=variant_spec, seed=seed, out=out, mask_token=mask_token,
                         spacy_model=spacy_model, cache_dir=cache_dir)
    click.echo(shown.format())


@variants.command("stats", context_settings=CONTEXT)
@corpus_options
@variant_text_options
@cache_dir_option
@click.option("--seed", type=click.IntRange(min=0), default=0, help="Variant seed.")
def variants_stats(*, corpus: str, labels: str | None, merge: str | None, mask_token: str, spacy_model: str,
                   cache_dir: Path, seed: int) -> None:
    """Share of nouns and adjectives among all spaCy tokens, and utterances each text attack changes."""
    from featcache.perturb.inspect import corpus_text_stats

    c = load_corpus_from_options(corpus, labels, merge)
    result = corpus_text_stats(c, seed=seed, mask_token=mask_token, spacy_model=spacy_model, cache_dir=cache_dir)
    click.echo(f"corpus: {corpus}  seed: {seed}")
    click.echo(result.format())
