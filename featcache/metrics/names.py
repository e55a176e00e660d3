"""Names of the clean condition and of the paper's models, and the order of models in tables.

Conditions are parsed, matched across spellings and ordered by :mod:`featcache.conditions`
(``adj``, ``pos:ADJ`` and ``adj+clean`` are one condition); the names here come from
:mod:`featcache.paper`.
"""

from __future__ import annotations

from collections.abc import Iterable

from featcache import paper
from featcache.conditions import CLEAN_NAME, PAPER_CONDITIONS, condition_key, natural_key
from featcache.conditions import order as order_conditions

__all__ = ["AUDIO_MODEL", "CLEAN", "MULTIMODAL_MODEL", "PAPER_CONDITIONS", "TEXT_MODEL", "condition_key",
           "natural_key", "order_conditions", "order_models"]

CLEAN = CLEAN_NAME
"""Name of the unperturbed condition: the baseline of every impact."""
TEXT_MODEL = paper.TEXT
"""Name of the unimodal text model."""
AUDIO_MODEL = paper.AUDIO
"""Name of the unimodal audio model."""
MULTIMODAL_MODEL = paper.MULTIMODAL
"""Name of the paper's feature-level fusion model."""


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
