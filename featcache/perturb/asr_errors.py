"""``asr``: word deletions and substitutions at a word error rate, as a speech recogniser makes them."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from featcache.perturb.base import Param, Record, TextVariant

if TYPE_CHECKING:
    from featcache.perturb.text_analysis import TextAnalysis

#: Words substituted for recognised ones: frequent short English words and fillers, the kind a
#: recogniser most often confuses and inserts.
SUBSTITUTES: tuple[str, ...] = (
    "a", "an", "the", "and", "or", "but", "so", "to", "of", "in", "on", "at", "for", "with", "from",
    "it", "is", "was", "be", "are", "that", "this", "there", "they", "he", "she", "we", "you", "i", "me",
    "my", "your", "his", "her", "not", "no", "yes", "do", "did", "have", "had", "can", "will", "would",
    "just", "like", "know", "well", "oh", "uh", "um", "yeah", "right", "what", "when", "then", "now",
    "here", "all", "one",
)  # fmt: skip


class AsrErrors(TextVariant):
    """Turn ``wer`` of the words into errors: each one a substitution or a deletion.

    The number of errors is ``wer * n_words`` rounded up or down at random (so its mean is exactly
    ``wer * n_words``); the erroneous words are drawn uniformly without replacement; each is a
    substitution with probability ``sub_share`` (by a word from :data:`SUBSTITUTES` different from the
    original) and a deletion otherwise (the word and the spacing after it go, or before it when
    punctuation follows). Insertions are not simulated. Record: ``n_words``, ``n_errors``,
    ``n_substitutions``, ``n_deletions`` and ``edits`` (each with ``op``, ``position``, span, original
    and replacement text).
    """

    kind = "asr"
    params_spec = (
        Param("wer", "float", default=0.1, help="word error rate (share of words in error)", low=0.0, high=1.0),
        Param("sub_share", "float", default=0.5, help="share of errors that are substitutions", low=0.0, high=1.0),
    )
    positional = "wer"
    description = "ASR-like word substitutions and deletions at a word error rate"

    def _draw(self, text: str, *, rng: np.random.Generator, analysis: TextAnalysis | None) -> Record:
        assert analysis is not None
        words = analysis.word_indices()
        n = len(words)
        expected = float(self._params["wer"]) * n  # type: ignore[arg-type]
        n_errors = min(n, math.floor(expected) + int(rng.random() < expected - math.floor(expected)))
        chosen = sorted(int(i) for i in rng.choice(n, size=n_errors, replace=False)) if n_errors else []
        sub_share = float(self._params["sub_share"])  # type: ignore[arg-type]
        tokens = analysis.tokens
        edits: list[dict[str, Any]] = []
        claimed = 0  # characters before this offset already belong to an edit
        for word_index in chosen:
            position = words[word_index]
            token = tokens[position]
            original = analysis.token_text(position)
            if rng.random() < sub_share:
                pool = [w for w in SUBSTITUTES if w != original.lower()]
                word = pool[int(rng.integers(len(pool)))]
                if original[:1].isupper():
                    word = word[:1].upper() + word[1:]
                edits.append(
                    {"op": "sub", "position": position, "start": token.start, "end": token.end,
                     "original": original, "text": word}
                )  # fmt: skip
                claimed = token.end
                continue
            start, end = token.start, token.end
            next_start = tokens[position + 1].start if position + 1 < len(tokens) else len(text)
            if next_start > end and text[end:next_start].isspace():
                end = next_start  # take the spacing that follows
            else:
                prev_end = tokens[position - 1].end if position > 0 else 0
                if prev_end >= claimed and text[prev_end:start].isspace():
                    start = prev_end  # punctuation or the end follows: take the spacing before
            edits.append(
                {"op": "del", "position": position, "start": start, "end": end,
                 "original": text[start:end], "text": ""}
            )  # fmt: skip
            claimed = end
        n_subs = sum(e["op"] == "sub" for e in edits)
        return {
            "n_words": n,
            "n_errors": len(edits),
            "n_substitutions": n_subs,
            "n_deletions": len(edits) - n_subs,
            "edits": edits,
        }
