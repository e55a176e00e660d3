"""``pos:TAG`` (``adj``, ``noun``): mask every word of one part of speech (the paper's POS attacks)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from featcache.errors import FeatcacheError
from featcache.perturb.base import Param, ParamValue, Record, TextVariant

if TYPE_CHECKING:
    from featcache.perturb.text_analysis import TextAnalysis

#: Universal POS tags (spaCy also uses SPACE).
UPOS_TAGS: tuple[str, ...] = (
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT",
    "SCONJ", "SYM", "VERB", "X", "SPACE",
)  # fmt: skip


def mask_record(analysis: TextAnalysis, positions: list[int]) -> Record:
    """Record fields that mask the given tokens.

    Args:
        analysis: The utterance's analysis.
        positions: Token indices to mask.

    Returns:
        ``positions``, ``count``, ``n_words`` and ``edits`` (character spans replaced by the mask token).
    """
    positions = sorted(int(p) for p in positions)
    return {
        "positions": positions,
        "count": len(positions),
        "n_words": len(analysis.word_indices()),
        "edits": [
            {
                "start": analysis.tokens[p].start,
                "end": analysis.tokens[p].end,
                "original": analysis.token_text(p),
                "text": None,
            }
            for p in positions
        ],
    }


class PosMask(TextVariant):
    """Replace every token whose universal POS tag is ``tag`` by the mask token.

    Masking works on spaCy tokens, not word pieces, and the string is rebuilt from character offsets,
    so spacing and punctuation stay as they were (``baggage- I`` -> ``[MASK]- I``). Record:
    ``positions`` (token indices), ``count``, ``n_words``, ``edits``.
    """

    kind = "pos"
    params_spec = (Param("tag", "str", default=None, help="universal POS tag to mask", choices=UPOS_TAGS),)
    positional = "tag"
    description = "mask every word with this universal POS tag"

    def _normalize(self, params: dict[str, ParamValue], *, given: frozenset[str]) -> dict[str, ParamValue]:
        if params["tag"] is None:
            raise FeatcacheError(f"variant 'pos' needs a tag, e.g. pos:ADV; valid tags: {', '.join(UPOS_TAGS)}")
        return params

    def _draw(self, text: str, *, rng: np.random.Generator, analysis: TextAnalysis | None) -> Record:
        assert analysis is not None
        return mask_record(analysis, list(analysis.pos_indices(str(self._params["tag"]))))
