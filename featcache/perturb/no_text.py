"""``no-text``: the empty transcription (the paper's *no text* condition)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from featcache.perturb.base import Record, TextVariant

if TYPE_CHECKING:
    from featcache.perturb.text_analysis import TextAnalysis


class NoText(TextVariant):
    """Replace the transcription by the empty string. Record: ``original_length`` (characters)."""

    kind = "no-text"
    needs_analysis = False
    description = "empty transcription"

    def _draw(self, text: str, *, rng: np.random.Generator, analysis: TextAnalysis | None) -> Record:
        return {"original_length": len(text)}

    def changed(self, record: Mapping[str, Any] | None) -> bool:
        """Whether there was text to remove."""
        return bool(record) and int(record.get("original_length", 0)) > 0

    def _apply(self, text: str, record: Mapping[str, Any], *, mask_token: str | None) -> str:
        return ""
