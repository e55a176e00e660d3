"""Perturbation attacks as named, seeded, replayable variants.

Every attack is a :class:`Variant`: a stable name, a modality (``"text"`` or ``"audio"``; ``clean`` has
none), JSON-serialisable parameters and a pure function of (input, utterance id, seed). Calling one is
split in two steps, so that every perturbation can be inspected and replayed::

    from featcache.perturb import get_variant

    pitch = get_variant("pitch")                      # or "pitch:steps=-2|2"
    record = pitch.draw(y, utt_id="Ses01F_impro01_F000", seed=0)   # {"step": 1, ...}
    y_shifted = pitch.apply(y, record)                # deterministic given the record
    y_shifted, record = pitch(y, utt_id="Ses01F_impro01_F000", seed=0)   # both at once

Per-utterance randomness is ``np.random.default_rng([seed, stable_int(utt_id)])`` with
:func:`stable_int` a SHA-256 of the id, so results never depend on order, batch or worker.

Specs and names
    :func:`get_variant` parses ``NAME`` or ``NAME:key=value,...`` (``noise:snr_db=10``, ``pos:ADV``);
    ``variant.spec`` is the canonical string, ``variant.params`` the parameters, ``variant.key`` a
    12-hex-digit hash of (kind, version, parameters) for cache keys (``adj`` and ``pos:ADJ`` are the
    same variant and share it). :func:`list_variants` lists the named variants:

    * paper, text: ``adj``, ``noun`` (mask every ADJ/NOUN; ``pos:TAG`` for any UPOS tag),
      ``random-adj``, ``random-noun`` (mask as many uniformly chosen words), ``no-text`` (empty string);
    * paper, audio: ``pitch`` (+/-1 semitone drawn per utterance), ``noise`` (white Gaussian, std 0.1),
      ``no-audio`` (1 s of silence);
    * beyond the paper, each with a sweep: ``asr-0.1|0.2|0.3`` (word deletions/substitutions at a WER),
      ``snr-20|10|5|0`` (noise at a target SNR), ``tempo-0.8|0.9|1.1|1.25``, ``telephone`` (8 kHz,
      300-3400 Hz, mu-law) and ``telephone-2400|1600``, ``reverb-0.3|0.6|1.0`` (RT60 in s),
      ``clip-0.5|0.25|0.1`` (hard clipping relative to the peak), ``pitch-2``.

Text variants
    take the utterance's spaCy analysis (:func:`analyze_texts` / :func:`analyze_corpus`, cached as
    JSON) and the text backbone's mask token as keywords: ``variant(text, utt_id=..., seed=...,
    analysis=..., mask_token="[MASK]")``. Masking replaces spaCy tokens (words, not word pieces) by the
    mask token and keeps every other character, so spacing and punctuation survive.

Audio variants
    take and return 16 kHz float32 mono arrays (``sr=`` for another rate) and never fail on clips
    shorter than an FFT window or on silence.

Combinations
    Text and audio embeddings are stored separately, so a text x audio condition is composed at
    evaluation time from one stored entry of each modality; :mod:`featcache.conditions` parses a
    condition (``pitch+adj``) into its audio and text variants. There is no audio x audio or text x
    text composition.
"""

from __future__ import annotations

from featcache.perturb.base import (
    DEFAULT_MASK_TOKEN,
    DEFAULT_SR,
    AudioVariant,
    Param,
    Record,
    TextVariant,
    Variant,
    stable_int,
    utterance_rng,
)
from featcache.perturb.registry import (
    describe,
    get_variant,
    kinds,
    list_variants,
    register_kind,
    register_preset,
    replay,
)
from featcache.perturb.text_analysis import (
    DEFAULT_MODEL,
    TextAnalysis,
    TextStats,
    Token,
    analyze_corpus,
    analyze_texts,
    text_stats,
)

__all__ = [
    "DEFAULT_MASK_TOKEN",
    "DEFAULT_MODEL",
    "DEFAULT_SR",
    "AudioVariant",
    "Param",
    "Record",
    "TextAnalysis",
    "TextStats",
    "TextVariant",
    "Token",
    "Variant",
    "analyze_corpus",
    "analyze_texts",
    "describe",
    "get_variant",
    "kinds",
    "list_variants",
    "register_kind",
    "register_preset",
    "replay",
    "stable_int",
    "text_stats",
    "utterance_rng",
]
