"""Inspecting the perturbation variants without a command line: the listing, one variant applied to
one utterance, and what the text attacks change on a corpus.

``featcache variants`` (in :mod:`featcache.cli`) prints what these functions return.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from featcache.errors import FeatcacheError
from featcache.perturb.base import DEFAULT_MASK_TOKEN, DEFAULT_SR, Record, TextVariant, Variant, format_value
from featcache.perturb.registry import describe, get_variant, kinds, list_variants
from featcache.perturb.text_analysis import DEFAULT_MODEL, TextStats, analyze_corpus, text_stats

if TYPE_CHECKING:
    from featcache.data import Corpus


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


def variants_hint() -> str:
    """How to write a variant that is not in the table (explicit parameters, combinations).

    Returns:
        A short multi-line paragraph naming every variant kind.
    """
    return (
        "Any kind also takes explicit parameters, KIND:key=value,... "
        f"(kinds: {', '.join(kinds())}); e.g. pos:ADV, noise:snr_db=15, reverb:rt60=0.45.\n"
        "Combine one audio and one text variant with '+', e.g. pitch+adj."
    )


@dataclass(frozen=True)
class ShownVariant:
    """One variant applied to one utterance.

    Attributes:
        variant: The variant applied.
        utt_id: The utterance it was applied to.
        lines: What it did, one line each (original and perturbed text, or the audio files).
        record: The record that replays the perturbation exactly.
    """

    variant: Variant
    utt_id: str
    lines: tuple[str, ...]
    record: Record

    def format(self) -> str:
        """The lines, then ``record: `` and the record as indented JSON."""
        return "\n".join([*self.lines, "record: " + json.dumps(self.record, indent=2, ensure_ascii=False)])


def show_variant(
    corpus: Corpus,
    utt_id: str,
    *,
    variant: str,
    seed: int = 0,
    out: Path | None = None,
    mask_token: str = DEFAULT_MASK_TOKEN,
    spacy_model: str = DEFAULT_MODEL,
    cache_dir: str | Path | None = None,
) -> ShownVariant:
    """Apply one variant to one utterance of a corpus.

    Text variants perturb the transcription (analysing the corpus with spaCy first when the variant
    needs part-of-speech tags); audio variants perturb the utterance's wav and write the result to
    ``out`` as a float32 wav at 16 kHz.

    Args:
        corpus: The corpus.
        utt_id: Id of the utterance.
        variant: Variant spec (``adj``, ``pitch``, ``noise:snr_db=10``, ...).
        seed: Variant seed.
        out: Where to write the perturbed audio; required for audio variants.
        mask_token: The text backbone tokenizer's mask token.
        spacy_model: spaCy pipeline for part-of-speech variants.
        cache_dir: Cache root of the spaCy analysis (kept under ``CACHE_DIR/text-analysis``), or None.

    Returns:
        What the variant did and its record.

    Raises:
        FeatcacheError: Unknown variant or utterance, an audio variant without ``out``, or an utterance
            without the modality the variant perturbs.
    """
    v = get_variant(variant)
    if v.modality == "audio" and out is None:
        raise FeatcacheError(f"variant {v.spec!r} perturbs audio; pass --out FILE.wav to receive it")
    utt = corpus.by_id(utt_id)
    if v.modality == "audio":
        assert out is not None
        if utt.audio is None:
            raise FeatcacheError(f"utterance {utt_id!r} has no audio; pick a text variant")
        import soundfile as sf

        from featcache.data import load_audio

        y = load_audio(utt.audio, sr=DEFAULT_SR)
        perturbed, record = v(y, utt_id=utt.id, seed=seed, sr=DEFAULT_SR)
        out.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(out), perturbed, DEFAULT_SR, subtype="FLOAT")
        lines = (
            f"audio: {utt.audio} ({y.shape[0] / DEFAULT_SR:.2f} s)",
            f"wrote: {out} ({perturbed.shape[0] / DEFAULT_SR:.2f} s, float32 wav)",
        )
    else:
        if utt.text is None:
            raise FeatcacheError(f"utterance {utt_id!r} has no text; pick an audio variant")
        analysis = None
        if isinstance(v, TextVariant) and v.needs_analysis:
            analysis = analyze_corpus(corpus, model=spacy_model, cache_dir=cache_dir)[utt.id]
        perturbed, record = v(utt.text, utt_id=utt.id, seed=seed, analysis=analysis, mask_token=mask_token)
        lines = (f"original:  {utt.text}", f"perturbed: {perturbed}")
    return ShownVariant(variant=v, utt_id=utt.id, lines=lines, record=record)


def corpus_text_stats(
    corpus: Corpus,
    *,
    seed: int = 0,
    mask_token: str = DEFAULT_MASK_TOKEN,
    spacy_model: str = DEFAULT_MODEL,
    cache_dir: str | Path | None = None,
) -> TextStats:
    """Part-of-speech shares of a corpus's transcriptions and the utterances each text variant changes.

    Args:
        corpus: The corpus.
        seed: Variant seed for the random variants.
        mask_token: The text backbone tokenizer's mask token.
        spacy_model: spaCy pipeline.
        cache_dir: Cache root of the spaCy analysis, or None.

    Returns:
        The statistics over every registered text variant that needs no speech recogniser.

    Raises:
        FeatcacheError: The corpus has no transcriptions, or the spaCy model is missing.
    """
    texts = {u.id: u.text for u in corpus.utterances if u.text is not None}
    if not texts:
        raise FeatcacheError(f"corpus {corpus.name!r} has no transcriptions")
    analyses = analyze_corpus(corpus, model=spacy_model, cache_dir=cache_dir)
    return text_stats(texts, analyses, variants=list_variants("text"), seed=seed, mask_token=mask_token)


__all__ = ["ShownVariant", "corpus_text_stats", "show_variant", "variants_hint", "variants_table"]
