"""Word error rate of transcripts against gold text: word-level Levenshtein distance over normalised words."""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["edit_distance", "normalize_words", "word_error_rate"]

_PUNCT = re.compile(r"[^\w\s']|(?<!\w)'|'(?!\w)")


def normalize_words(text: str) -> list[str]:
    """The words of ``text``, lowercased, punctuation removed (an apostrophe inside a word is kept: ``don't``).

    Args:
        text: Any text.

    Returns:
        The words, in order.
    """
    return _PUNCT.sub(" ", text.lower()).split()


def edit_distance(reference: list[str], hypothesis: list[str]) -> int:
    """Levenshtein distance between two word sequences (substitutions, insertions and deletions cost 1).

    Args:
        reference: The gold words.
        hypothesis: The recognised words.

    Returns:
        The smallest number of edits turning ``hypothesis`` into ``reference``.
    """
    previous = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, start=1):
        current = [i]
        for j, hyp_word in enumerate(hypothesis, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word)))
        previous = current
    return previous[-1]


def word_error_rate(pairs: Iterable[tuple[str, str]]) -> tuple[float, int]:
    """Corpus word error rate: total word edits over total reference words.

    Args:
        pairs: ``(gold text, transcript)`` per utterance.

    Returns:
        ``(wer, reference words)``; the rate is 0.0 when there are no reference words and no hypothesis words,
        and the number of hypothesis words counts as the errors when there are no reference words (rate ``inf``
        if any).
    """
    errors = words = 0
    for reference, hypothesis in pairs:
        ref, hyp = normalize_words(reference), normalize_words(hypothesis)
        errors += edit_distance(ref, hyp)
        words += len(ref)
    if words == 0:
        return (0.0 if errors == 0 else float("inf")), 0
    return errors / words, words
