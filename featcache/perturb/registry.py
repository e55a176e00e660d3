"""Registry of variant kinds and named presets; spec parsing and condition parsing.

A *spec* is ``NAME`` or ``NAME:key=value,key=value``; a kind with a positional parameter also takes a
bare value (``pos:ADV``, ``reverb:0.3``, ``pitch:-2|2``). ``NAME`` is a preset (``adj``, ``snr-10``) or
a kind (``pos``, ``noise``); ``key=value`` pairs override the preset's parameters. The canonical spec of
a variant is the preset name when its parameters equal a preset's, else ``kind:key=value,...`` listing
every parameter in declaration order.

Attacks from other packages: a package declares its :class:`Variant` subclasses (derived from
:class:`~featcache.perturb.text_base.TextVariant` or :class:`~featcache.perturb.audio_base.AudioVariant`,
``draw`` then ``apply``) in the entry-point group ``featcache.attacks``::

    [project.entry-points."featcache.attacks"]
    babble = "my_package.attacks:Babble"

They are registered the first time the registry is asked (:func:`load_attack_plugins`): each class as
a kind, and as a preset of its default parameters named after the kind (so ``featcache variants`` lists
it) when those defaults make a variant. A module that wants more presets registers its kind and presets
itself (:func:`register_kind`, :func:`register_preset`) when imported. A plugin that cannot be loaded,
or whose kind is taken, is skipped with a warning naming it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from featcache.errors import FeatcacheError
from featcache.perturb.asr_errors import AsrErrors
from featcache.perturb.base import IdentityVariant, Modality, ParamValue, Variant, format_value
from featcache.perturb.clipping import Clipping
from featcache.perturb.no_audio import NoAudio
from featcache.perturb.no_text import NoText
from featcache.perturb.noise import Noise
from featcache.perturb.pitch import PitchShift
from featcache.perturb.pos_mask import PosMask
from featcache.perturb.random_mask import RandomMask
from featcache.perturb.reverb import Reverb
from featcache.perturb.telephone import Telephone
from featcache.perturb.tempo import Tempo
from featcache.perturb.transcribed import TranscribedText

log = logging.getLogger(__name__)

#: The entry-point group other packages declare their attacks in.
ATTACK_GROUP = "featcache.attacks"

_KINDS: dict[str, type[Variant]] = {}
#: preset name -> (kind, parameters as given, description)
_PRESETS: dict[str, tuple[str, dict[str, ParamValue], str]] = {}
#: (kind, canonical JSON of the full parameters) -> preset name
_PRESET_BY_PARAMS: dict[tuple[str, str], str] = {}
#: Whether the ``featcache.attacks`` entry points were read (once per process).
_plugins_loaded = False


def _params_id(variant: Variant) -> tuple[str, str]:
    params = {k: list(v) if isinstance(v, tuple) else v for k, v in variant.params.items()}
    return variant.kind, json.dumps(params, sort_keys=True)


def register_kind(cls: type[Variant]) -> type[Variant]:
    """Register a variant class under its ``kind``.

    Args:
        cls: A :class:`Variant` subclass with a unique ``kind``.

    Returns:
        The class (usable as a decorator).

    Raises:
        ValueError: The kind is already registered.
    """
    if cls.kind in _KINDS:
        raise ValueError(f"variant kind {cls.kind!r} is already registered")
    _KINDS[cls.kind] = cls
    return cls


def register_preset(name: str, kind: str, *, description: str = "", **params: Any) -> None:
    """Register a named variant (a kind with fixed parameters), e.g. ``snr-10``.

    Args:
        name: Preset name (letters, digits, ``-``, ``.``; no ``:``, ``,``, ``=``, ``+``).
        kind: A registered kind.
        description: One line for listings (default: the kind's).
        **params: Parameter values.

    Raises:
        ValueError: Bad name, unknown kind, or a name or parameter set already registered.
    """
    if not re.fullmatch(r"[a-z][a-z0-9.\-]*", name) or "+" in name:
        raise ValueError(f"bad variant name {name!r}")
    if kind not in _KINDS:
        raise ValueError(f"unknown variant kind {kind!r}")
    if name in _PRESETS or (name in _KINDS and name != kind):
        raise ValueError(f"variant name {name!r} is already registered")
    variant = _KINDS[kind](**params)
    ident = _params_id(variant)
    if ident in _PRESET_BY_PARAMS:
        raise ValueError(f"preset {name!r} has the same parameters as {_PRESET_BY_PARAMS[ident]!r}")
    _PRESETS[name] = (kind, dict(params), description or _KINDS[kind].description)
    _PRESET_BY_PARAMS[ident] = name


def load_attack_plugins() -> list[str]:
    """Register the attacks other packages declare in :data:`ATTACK_GROUP` (the first call only).

    Every function of this module that reads the registry calls it, so plugins appear wherever variants
    are named or listed.

    Returns:
        The kinds registered by this call (none after the first).
    """
    global _plugins_loaded
    if _plugins_loaded:
        return []
    _plugins_loaded = True
    from importlib.metadata import entry_points

    added: list[str] = []
    for ep in entry_points(group=ATTACK_GROUP):
        try:
            cls = ep.load()
        except Exception as e:  # noqa: BLE001 - a broken plugin must not stop every command
            _skip(ep, f"cannot load it ({type(e).__name__}: {e})")
            continue
        if not (isinstance(cls, type) and issubclass(cls, Variant) and isinstance(getattr(cls, "kind", None), str)
                and getattr(cls, "modality", None) in ("text", "audio")):
            _skip(ep, "not a text or audio Variant subclass with a kind")
            continue
        if _KINDS.get(cls.kind) is cls:  # its module registered it when imported
            continue
        if cls.kind in _KINDS or cls.kind in _PRESETS:
            _skip(ep, f"variant name {cls.kind!r} is already registered")
            continue
        try:
            register_kind(cls)
        except ValueError as e:
            _skip(ep, str(e))
            continue
        added.append(cls.kind)
        try:
            register_preset(cls.kind, cls.kind)
        except (FeatcacheError, ValueError) as e:  # a required parameter: named with it, KIND:key=value
            log.debug("attack plugin %s: no default preset (%s)", ep.name, e)
    return added


def _skip(ep: Any, why: str) -> None:
    log.warning("attack plugin %s (%s, entry-point group %s) skipped: %s", ep.name, ep.value, ATTACK_GROUP, why)


def canonical_spec(variant: Variant) -> str:
    """The canonical spec string of a variant (see the module docstring).

    Args:
        variant: Any variant.

    Returns:
        The spec; ``get_variant(canonical_spec(v)) == v``.
    """
    load_attack_plugins()
    preset = _PRESET_BY_PARAMS.get(_params_id(variant))
    if preset is not None:
        return preset
    items = [f"{k}={format_value(v)}" for k, v in variant.params.items() if v is not None]
    return variant.kind + (":" + ",".join(items) if items else "")


def _valid_names() -> str:
    load_attack_plugins()
    return ", ".join(list(_PRESETS) + [k for k in _KINDS if k not in _PRESETS])


def get_variant(spec: str) -> Variant:
    """Parse a spec string into a variant.

    Args:
        spec: ``NAME`` or ``NAME:key=value,...`` (``noise:snr_db=10``, ``pitch:steps=-2|2``, ``pos:ADV``).

    Returns:
        The variant.

    Raises:
        FeatcacheError: Unknown name or parameter, bad value; the one-line message lists valid choices.
    """
    load_attack_plugins()
    if not isinstance(spec, str) or not spec.strip():
        raise FeatcacheError(f"empty variant spec; valid names: {_valid_names()}")
    name, _, rest = spec.strip().partition(":")
    name = name.strip()
    if name in _PRESETS:
        kind, base, _ = _PRESETS[name]
    elif name in _KINDS:
        kind, base = name, {}
    else:
        raise FeatcacheError(f"unknown variant {name!r}; valid names: {_valid_names()}")
    cls = _KINDS[kind]
    specs = {p.name: p for p in cls.params_spec}
    given: dict[str, ParamValue] = {}
    if rest.strip():
        for i, item in enumerate(rest.split(",")):
            key, eq, raw = item.partition("=")
            key = key.strip()
            if not eq:
                if i > 0 or cls.positional is None or name != kind:
                    valid = ", ".join(specs) if specs else "none"
                    raise FeatcacheError(
                        f"variant {name!r}: {item.strip()!r} is not key=value; valid parameters: {valid}"
                    )
                key, raw = cls.positional, item
            if key not in specs:
                valid = ", ".join(specs) if specs else "none"
                raise FeatcacheError(f"variant {name!r} has no parameter {key!r}; valid parameters: {valid}")
            if key in given:
                raise FeatcacheError(f"variant {name!r}: parameter {key!r} given twice in {spec!r}")
            given[key] = specs[key].parse(raw, variant=name)
    return cls(**{**base, **given})


def list_variants(modality: Modality | None = None) -> list[Variant]:
    """The registered named variants, in listing order.

    Args:
        modality: Only those of this modality (``clean`` has none and is listed only without a filter).

    Returns:
        One variant per preset.
    """
    load_attack_plugins()
    out = [get_variant(name) for name in _PRESETS]
    return [v for v in out if modality is None or v.modality == modality]


def kinds() -> list[str]:
    """Names of the registered variant kinds (what a spec may start with besides a preset name).

    Returns:
        Kind names in registration order.
    """
    load_attack_plugins()
    return list(_KINDS)


def describe(variant: Variant) -> str:
    """One-line description of a variant (its preset's, or its kind's).

    Args:
        variant: A variant.

    Returns:
        The description.
    """
    preset = _PRESETS.get(variant.spec)
    return preset[2] if preset else variant.description


def replay(record: Mapping[str, Any], x: Any, **context: Any) -> Any:
    """Re-apply a stored record to its input.

    Args:
        record: A record from a variant's ``draw`` (it names its variant).
        x: The same input it was drawn for.
        **context: ``mask_token`` for text, ``sr`` for audio.

    Returns:
        The perturbed input, identical to the original run's.

    Raises:
        FeatcacheError: The record names no valid variant or does not fit the input.
    """
    if "variant" not in record:
        raise FeatcacheError("record has no 'variant' field; it was not made by featcache.perturb")
    return get_variant(str(record["variant"])).apply(x, record, **context)


for _cls in (
    IdentityVariant,
    PosMask,
    RandomMask,
    NoText,
    AsrErrors,
    TranscribedText,
    PitchShift,
    Noise,
    NoAudio,
    Tempo,
    Telephone,
    Reverb,
    Clipping,
):
    register_kind(_cls)

register_preset("clean", "clean")
register_preset("adj", "pos", tag="ADJ", description="mask every adjective (the paper)")
register_preset("noun", "pos", tag="NOUN", description="mask every noun (the paper)")
register_preset("random-adj", "random", tag="ADJ", description="mask as many random words as adjectives (the paper)")
register_preset("random-noun", "random", tag="NOUN", description="mask as many random words as nouns (the paper)")
register_preset("no-text", "no-text", description="empty transcription (the paper)")
for _wer in (0.1, 0.2, 0.3):
    register_preset(f"asr-{format_value(_wer)}", "asr", wer=_wer)
register_preset("transcribed", "transcribed",
                description="the packaged Whisper base's transcript of the clean audio instead of the gold text")
register_preset("transcribed-10s", "transcribed", window=10.0,
                description="as transcribed, each clip padded to a multiple of 10 s instead of Whisper's 30 s (faster)")
register_preset("pitch", "pitch", description="pitch shift by -1 or +1 semitone, drawn per utterance (the paper)")
register_preset("pitch-2", "pitch", steps=(-2.0, 2.0), description="pitch shift by -2 or +2 semitones")
register_preset("noise", "noise", description="white Gaussian noise, std 0.1 (the paper)")
for _snr in (20.0, 10.0, 5.0, 0.0):
    register_preset(
        f"snr-{format_value(_snr)}",
        "noise",
        snr_db=_snr,
        description=f"white Gaussian noise at {format_value(_snr)} dB SNR",
    )
register_preset("no-audio", "no-audio", description="1 s of silence (the paper)")
for _rate in (0.8, 0.9, 1.1, 1.25):
    register_preset(
        f"tempo-{format_value(_rate)}",
        "tempo",
        rate=_rate,
        description=f"tempo x{format_value(_rate)} at constant pitch",
    )
register_preset("telephone", "telephone")
for _high in (2400.0, 1600.0):
    register_preset(
        f"telephone-{format_value(_high)}",
        "telephone",
        high_hz=_high,
        description=f"telephone channel, band 300-{format_value(_high)} Hz",
    )
for _rt60 in (0.3, 0.6, 1.0):
    register_preset(
        f"reverb-{format_value(_rt60)}",
        "reverb",
        rt60=_rt60,
        description=f"reverberation, RT60 {format_value(_rt60)} s",
    )
for _level in (0.5, 0.25, 0.1):
    register_preset(
        f"clip-{format_value(_level)}",
        "clip",
        level=_level,
        description=f"hard clipping at {format_value(_level)} of the peak",
    )
