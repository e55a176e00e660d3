"""``random:TAG`` (``random-adj``, ``random-noun``): mask as many random words as the utterance has
words of one part of speech (the paper's control attacks)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from featcache.errors import FeatcacheError
from featcache.perturb.base import Param, ParamValue, Record, TextVariant
from featcache.perturb.pos_mask import UPOS_TAGS, mask_record

if TYPE_CHECKING:
    from featcache.perturb.text_analysis import TextAnalysis


class RandomMask(TextVariant):
    """Mask exactly as many words as the utterance has tokens tagged ``tag``, chosen uniformly.

    The words are drawn without replacement among the utterance's words (tokens that are neither
    punctuation nor whitespace), whatever their tag; an utterance with no ``tag`` token stays as it is.
    Record: ``positions``, ``count``, ``n_words``, ``edits``.
    """

    kind = "random"
    params_spec = (
        Param("tag", "str", default=None, help="POS tag whose count sets how many words to mask", choices=UPOS_TAGS),
    )
    positional = "tag"
    description = "mask as many uniformly chosen words as there are words with this POS tag"

    def _normalize(self, params: dict[str, ParamValue], *, given: frozenset[str]) -> dict[str, ParamValue]:
        if params["tag"] is None:
            raise FeatcacheError(f"variant 'random' needs a tag, e.g. random:ADJ; valid tags: {', '.join(UPOS_TAGS)}")
        return params

    def _draw(self, text: str, *, rng: np.random.Generator, analysis: TextAnalysis | None) -> Record:
        assert analysis is not None
        words = analysis.word_indices()
        count = min(len(analysis.pos_indices(str(self._params["tag"]))), len(words))
        chosen = rng.choice(len(words), size=count, replace=False) if count else np.empty(0, dtype=int)
        return mask_record(analysis, [words[int(i)] for i in chosen])
