"""The base class of text variants and the span editing that masking variants record and replay.

A text variant's record holds character-offset ``edits``; :func:`apply_edits` replays them on the same
text, checking that each span still holds what was recorded.  :mod:`featcache.perturb.base` re-exports
:class:`TextVariant`, :func:`apply_edits` and :data:`DEFAULT_MASK_TOKEN`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from featcache.errors import FeatcacheError
from featcache.perturb.params import Record, utterance_rng
from featcache.perturb.variant import Variant

if TYPE_CHECKING:
    from featcache.perturb.text_analysis import TextAnalysis

#: Mask token used when the caller names none: BERT's, as in the paper.
DEFAULT_MASK_TOKEN = "[MASK]"


def apply_edits(text: str, edits: list[Mapping[str, Any]], *, mask_token: str | None) -> str:
    """Replace character spans of a text, checking that each span still holds what was recorded.

    Args:
        text: The original text.
        edits: Dicts with ``start``, ``end`` (character offsets), ``original`` (the text expected at that
            span) and ``text`` (the replacement; ``None`` means the mask token). Spans must not overlap.
        mask_token: What a ``None`` replacement becomes (``None``: the backbone has no mask token).

    Returns:
        The edited text; spacing and punctuation outside the spans are kept as they are.

    Raises:
        FeatcacheError: A span is out of range, overlaps another, or does not hold its ``original``;
            or a word is to be masked and there is no mask token.
    """
    if mask_token is None and any(e["text"] is None for e in edits):
        raise FeatcacheError(
            "this text backbone's tokenizer has no mask token, so masking variants cannot run on it; "
            "pick a masked-language-model backbone (BERT, RoBERTa) or a non-masking variant"
        )
    pieces: list[str] = []
    cursor = 0
    for edit in sorted(edits, key=lambda e: (int(e["start"]), int(e["end"]))):
        start, end = int(edit["start"]), int(edit["end"])
        if start < cursor or end < start or end > len(text):
            raise FeatcacheError(
                f"text edit [{start}, {end}) does not fit a text of {len(text)} characters; "
                "the record was drawn for another text"
            )
        if text[start:end] != edit["original"]:
            raise FeatcacheError(
                f"text edit [{start}, {end}) expected {edit['original']!r} but found {text[start:end]!r}; "
                "the record was drawn for another text"
            )
        pieces.append(text[cursor:start])
        replacement = edit["text"]
        pieces.append(str(mask_token) if replacement is None else str(replacement))
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)


class TextVariant(Variant):
    """A perturbation of the transcription fed to the text encoder.

    Every text variant accepts the same keywords, so callers pass them uniformly: ``analysis`` (the
    utterance's :class:`~featcache.perturb.text_analysis.TextAnalysis`) and ``mask_token`` (the text
    backbone tokenizer's mask token, ``[MASK]`` for BERT, ``<mask>`` for RoBERTa).
    """

    modality = "text"
    #: Whether :meth:`draw` needs the spaCy analysis.
    needs_analysis: ClassVar[bool] = True

    def draw(  # type: ignore[override]  # text variants take text-specific keywords
        self,
        x: str,
        *,
        utt_id: str,
        seed: int,
        analysis: TextAnalysis | None = None,
        mask_token: str | None = DEFAULT_MASK_TOKEN,
    ) -> Record:
        """Make the random choices for one utterance.

        Args:
            x: The utterance's text.
            utt_id: Utterance id.
            seed: Variant seed.
            analysis: spaCy analysis of exactly this text (needed by word-level variants).
            mask_token: Unused by the choice; accepted so that callers can pass it uniformly.

        Returns:
            The record: ``variant``, ``key``, ``utt_id``, ``seed`` and the variant's own fields.

        Raises:
            FeatcacheError: Not a string, missing analysis, or an analysis of another text.
        """
        if not isinstance(x, str):
            raise FeatcacheError(f"variant {self.spec!r} perturbs text, got {type(x).__name__}")
        if self.needs_analysis:
            if analysis is None:
                raise FeatcacheError(
                    f"variant {self.spec!r} needs the utterance's spaCy analysis; pass analysis=... "
                    "(see featcache.perturb.analyze_texts)"
                )
            if analysis.text != x:
                raise FeatcacheError(
                    f"utterance {utt_id!r}: the spaCy analysis is of another text; re-run the analysis "
                    "(delete the stale file under CACHE/text-analysis)"
                )
        rng = utterance_rng(seed, utt_id)
        record = self._header(utt_id=utt_id, seed=seed)
        record.update(self._draw(x, rng=rng, analysis=analysis))
        return record

    def apply(  # type: ignore[override]
        self,
        x: str,
        record: Mapping[str, Any],
        *,
        analysis: TextAnalysis | None = None,
        mask_token: str | None = DEFAULT_MASK_TOKEN,
    ) -> str:
        """Produce the perturbed text from a record (no randomness).

        Args:
            x: The same text the record was drawn for.
            record: From :meth:`draw`.
            analysis: Unused (the record holds character offsets); accepted for uniform calls.
            mask_token: Replacement for masked words.

        Returns:
            The perturbed text.

        Raises:
            FeatcacheError: Not a string, or the record belongs to another variant or text.
        """
        if not isinstance(x, str):
            raise FeatcacheError(f"variant {self.spec!r} perturbs text, got {type(x).__name__}")
        self._check_record(record)
        return self._apply(x, record, mask_token=mask_token)

    def changed(self, record: Mapping[str, Any] | None) -> bool:
        """Whether the record edits the text (a masking that found no word to mask leaves it as it was)."""
        return bool(record) and bool(record.get("edits"))

    @abstractmethod
    def _draw(self, text: str, *, rng: np.random.Generator, analysis: TextAnalysis | None) -> Record:
        """The variant's own record fields."""

    def _apply(self, text: str, record: Mapping[str, Any], *, mask_token: str | None) -> str:
        """Default: apply the record's ``edits`` (see :func:`apply_edits`)."""
        return apply_edits(text, list(record["edits"]), mask_token=mask_token)
