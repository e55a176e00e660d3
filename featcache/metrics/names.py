"""Names of the clean condition and of the paper's models, the paper's attacks, and their ordering.

Every table and summary orders models and conditions through :func:`order_models` and
:func:`order_conditions`; conditions are matched across spellings by :func:`condition_key`
(``adj``, ``pos:ADJ`` and ``adj+clean`` are one condition).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

from featcache.errors import FeatcacheError

CLEAN = "clean"
"""Name of the unperturbed condition: the baseline of every impact."""
TEXT_MODEL = "text"
"""Name of the unimodal text model."""
AUDIO_MODEL = "audio"
"""Name of the unimodal audio model."""
MULTIMODAL_MODEL = "multimodal"
"""Name of the paper's feature-level fusion model."""

PAPER_CONDITIONS: tuple[str, ...] = (
    "adj", "random-adj", "noun", "random-noun", "pitch",
    "pitch+adj", "pitch+random-adj", "pitch+noun", "pitch+random-noun",
    "no-text", "no-audio", "noise",
)
"""The attacks of the paper's Tables 4-6, in their order."""


def natural_key(value: str) -> tuple[Any, ...]:
    """Sort key that orders digit runs numerically (``"2" < "10"``, ``"snr-5" < "snr-10"``).

    Args:
        value: A string.

    Returns:
        A tuple usable as a sort key.
    """
    parts = re.split(r"(\d+(?:\.\d+)?)", value)
    return tuple((0, float(p), p) if i % 2 else (1, 0.0, p) for i, p in enumerate(parts))


@functools.lru_cache(maxsize=4096)
def condition_key(condition: str) -> tuple[str | None, str | None] | None:
    """The canonical ``(audio_spec, text_spec)`` of a condition, or ``None`` if it does not parse.

    ``adj``, ``pos:ADJ`` and ``adj+clean`` share one key; ``pitch+adj`` and ``adj+pitch`` too.

    Args:
        condition: A condition name as found in the predictions.

    Returns:
        The key from :func:`featcache.perturb.parse_condition`, or ``None`` for a name no registered
        variant explains.
    """
    from featcache.perturb import parse_condition

    try:
        return parse_condition(condition)
    except (FeatcacheError, ValueError, KeyError):
        return None


def order_models(models: Iterable[str], *, text_model: str = TEXT_MODEL, audio_model: str = AUDIO_MODEL,
                 multimodal_model: str = MULTIMODAL_MODEL) -> list[str]:
    """Text, audio and multimodal models first, then the others in natural order.

    Args:
        models: Model names.
        text_model: Name of the text model.
        audio_model: Name of the audio model.
        multimodal_model: Name of the paper's fusion model.

    Returns:
        The ordered names.
    """
    first = [m for m in (text_model, audio_model, multimodal_model) if m in set(models)]
    return first + sorted(set(models) - set(first), key=natural_key)


def order_conditions(conditions: Iterable[str], *, clean: str = CLEAN) -> list[str]:
    """Clean first, then the paper's attacks in its order, then text-only, audio-only, combined, unknown.

    Args:
        conditions: Condition names.
        clean: Name of the clean condition.

    Returns:
        The ordered names.
    """
    paper = {condition_key(c): i for i, c in enumerate(PAPER_CONDITIONS)}

    def key(c: str) -> tuple[Any, ...]:
        if c == clean:
            return (0, 0, ())
        k = condition_key(c)
        if k in paper:
            return (1, paper[k], ())
        if k is None:
            return (5, 0, natural_key(c))
        group = 2 if k[0] is None else 3 if k[1] is None else 4
        return (group, 0, natural_key(c))

    return sorted(set(conditions), key=key)
