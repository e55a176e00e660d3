"""``featcache variants``: list the perturbation variants, show one on an utterance, count what the
text attacks change."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from featcache.errors import FeatcacheError
from featcache.perturb.base import DEFAULT_MASK_TOKEN, DEFAULT_SR, TextVariant, format_value
from featcache.perturb.registry import describe, get_variant, kinds, list_variants
from featcache.perturb.text_analysis import DEFAULT_MODEL, analyze_corpus, text_stats


@contextmanager
def _one_line_errors() -> Iterator[None]:
    try:
        yield
    except FeatcacheError as e:
        raise click.ClickException(str(e)) from None


def _load_corpus(spec: str) -> Any:
    from featcache.data import load_corpus

    return load_corpus(spec)


def _load_audio(path: Path, *, sr: int) -> Any:
    from featcache.data import load_audio

    return load_audio(path, sr=sr)


def variants_table() -> str:
    """The registered variants as a fixed-width table (name, modality, parameters, description).

    Returns:
        The table, one variant a line after a header.
    """
    rows = [("NAME", "MODALITY", "PARAMETERS", "DESCRIPTION")]
    for variant in list_variants():
        params = ", ".join(f"{k}={format_value(v)}" for k, v in variant.params.items() if v is not None)
        rows.append((variant.spec, variant.modality or "-", params or "-", describe(variant)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip() for r in rows)


_cache_dir_option = click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="./cache",
    envvar="FEATCACHE_CACHE",
    show_envvar=True,
    show_default=True,
    help="Cache root (the spaCy analysis is kept under CACHE_DIR/text-analysis).",
)
_seed_option = click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Variant seed.")
_corpus_option = click.option(
    "--corpus", "corpus_spec", required=True, help="Corpus spec: iemocap:DIR or manifest:FILE.csv."
)
_mask_option = click.option(
    "--mask-token", default=DEFAULT_MASK_TOKEN, show_default=True, help="The text backbone tokenizer's mask token."
)
_model_option = click.option("--spacy-model", default=DEFAULT_MODEL, show_default=True, help="spaCy pipeline.")


@click.group("variants", invoke_without_command=True)
@click.pass_context
def variants(ctx: click.Context) -> None:
    """Perturbation variants; without a subcommand, list them."""
    if ctx.invoked_subcommand is None:
        click.echo(variants_table())
        click.echo(
            "\nAny kind also takes explicit parameters, KIND:key=value,... "
            f"(kinds: {', '.join(kinds())}); e.g. pos:ADV, noise:snr_db=15, reverb:rt60=0.45.\n"
            "Combine one audio and one text variant with '+', e.g. pitch+adj."
        )


@variants.command("show")
@click.argument("utt_id")
@click.option("--variant", "variant_spec", required=True, help="Variant spec, e.g. adj, pitch, noise:snr_db=10.")
@_corpus_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the perturbed audio (float wav); required for audio variants.",
)
@_mask_option
@_model_option
@_cache_dir_option
@_seed_option
def show(
    utt_id: str,
    variant_spec: str,
    corpus_spec: str,
    out: Path | None,
    mask_token: str,
    spacy_model: str,
    cache_dir: Path,
    seed: int,
) -> None:
    """Apply one variant to utterance UTT_ID and print what it did.

    Text variants print the original and perturbed text; audio variants write the perturbed wav to
    --out. Both print the record, which replays the perturbation exactly.
    """
    with _one_line_errors():
        variant = get_variant(variant_spec)
        if variant.modality == "audio" and out is None:
            raise click.ClickException(f"variant {variant.spec!r} perturbs audio; pass --out FILE.wav to receive it")
        corpus = _load_corpus(corpus_spec)
        utt = corpus.by_id(utt_id)
        if variant.modality == "audio":
            assert out is not None
            if utt.audio is None:
                raise click.ClickException(f"utterance {utt_id!r} has no audio; pick a text variant")
            import soundfile as sf

            y = _load_audio(utt.audio, sr=DEFAULT_SR)
            perturbed, record = variant(y, utt_id=utt.id, seed=seed, sr=DEFAULT_SR)
            out.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(out), perturbed, DEFAULT_SR, subtype="FLOAT")
            click.echo(f"audio: {utt.audio} ({y.shape[0] / DEFAULT_SR:.2f} s)")
            click.echo(f"wrote: {out} ({perturbed.shape[0] / DEFAULT_SR:.2f} s, float32 wav)")
        else:
            if utt.text is None:
                raise click.ClickException(f"utterance {utt_id!r} has no text; pick an audio variant")
            analysis = None
            if isinstance(variant, TextVariant) and variant.needs_analysis:
                analysis = analyze_corpus(corpus, model=spacy_model, cache_dir=cache_dir)[utt.id]
            perturbed, record = variant(utt.text, utt_id=utt.id, seed=seed, analysis=analysis, mask_token=mask_token)
            click.echo(f"original:  {utt.text}")
            click.echo(f"perturbed: {perturbed}")
        click.echo("record: " + json.dumps(record, indent=2, ensure_ascii=False))


@variants.command("stats")
@_corpus_option
@_mask_option
@_model_option
@_cache_dir_option
@_seed_option
def stats(corpus_spec: str, mask_token: str, spacy_model: str, cache_dir: Path, seed: int) -> None:
    """Share of nouns and adjectives among all spaCy tokens, and utterances each text attack changes."""
    with _one_line_errors():
        corpus = _load_corpus(corpus_spec)
        texts = {u.id: u.text for u in corpus.utterances if u.text is not None}
        if not texts:
            raise click.ClickException(f"corpus {corpus_spec!r} has no transcriptions")
        analyses = analyze_corpus(corpus, model=spacy_model, cache_dir=cache_dir)
        result = text_stats(texts, analyses, variants=list_variants("text"), seed=seed, mask_token=mask_token)
        click.echo(f"corpus: {corpus_spec}  seed: {seed}")
        click.echo(result.format())


__all__ = ["variants", "variants_table"]
