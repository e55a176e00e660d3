"""Building blocks shared by every variant: parameters, seeding and the draw/apply contract.

A variant is one named, parameterised transform of one modality. Calling it is two steps:

* :meth:`Variant.draw` looks at the input and makes every random choice for one utterance, returning
  a JSON-serialisable *record* (masked positions, semitone step, noise seed, resulting SNR, ...);
* :meth:`Variant.apply` turns the input and that record into the output, with no randomness at all.

``variant(x, utt_id=..., seed=...)`` does both and returns ``(output, record)``; ``variant.apply(x,
record)`` replays it later, bit for bit. Per-utterance randomness comes from
``np.random.default_rng([seed, stable_int(utt_id)])``, so a result never depends on the order,
batch or worker in which utterances are processed.

The pieces live in modules of their own and are re-exported here, where the transforms import them:

* :mod:`featcache.perturb.params`: the value types (``ParamValue``, ``Record``, ``Modality``), seeding
  (:func:`stable_int`, :func:`utterance_rng`), :class:`Param` and :func:`format_value`;
* :mod:`featcache.perturb.variant`: :class:`Variant` and :class:`IdentityVariant` (``clean``);
* :mod:`featcache.perturb.text_base`: :class:`TextVariant`, :func:`apply_edits` and
  :data:`DEFAULT_MASK_TOKEN`;
* :mod:`featcache.perturb.audio_base`: :class:`AudioVariant`, :func:`as_waveform` and :data:`DEFAULT_SR`.
"""

from __future__ import annotations

from featcache.perturb.audio_base import DEFAULT_SR, AudioVariant, as_waveform
from featcache.perturb.params import (
    Modality,
    Param,
    ParamKind,
    ParamValue,
    Record,
    format_value,
    stable_int,
    utterance_rng,
)
from featcache.perturb.text_base import DEFAULT_MASK_TOKEN, TextVariant, apply_edits
from featcache.perturb.variant import IdentityVariant, Variant

__all__ = [
    "DEFAULT_MASK_TOKEN",
    "DEFAULT_SR",
    "AudioVariant",
    "IdentityVariant",
    "Modality",
    "Param",
    "ParamKind",
    "ParamValue",
    "Record",
    "TextVariant",
    "Variant",
    "apply_edits",
    "as_waveform",
    "format_value",
    "stable_int",
    "utterance_rng",
]
