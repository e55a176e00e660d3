"""Which hidden states of an encoder an entry stores: the ``--layers`` value, parsed once.

Hidden state 0 is the output of the embeddings (text) or of the feature encoder and positional convolution
(speech), hidden state K the output of transformer layer K; the last one is the model's last hidden state
(after a final layer norm where the model has one: wav2vec2-large, Whisper), what a last-layer entry holds.
This module imports no torch, so the study options read it at start-up.
"""

from __future__ import annotations

from featcache.errors import FeatcacheError

__all__ = ["parse_layers"]


def parse_layers(text: str | None) -> str | None:
    """A ``--layers`` value in its one spelling: ``all``, or hidden-state indices sorted and joined by commas
    (``12,0-2`` -> ``0,1,2,12``); None stays None (the last layer only).

    Raises:
        FeatcacheError: Text that is not ``all``, ``K``, ``A-B`` or a comma-separated list of them.
    """
    if text is None:
        return None
    text = str(text).strip()
    if text == "all":
        return text
    picked: set[int] = set()
    try:
        for part in (p.strip() for p in text.split(",")):
            first, sep, last = part.partition("-")
            lo, hi = int(first), int(last) if sep else int(first)
            if lo < 0 or hi < lo:
                raise ValueError
            picked.update(range(lo, hi + 1))
    except ValueError:
        raise FeatcacheError(f"layers (--layers {text!r}): write all, or hidden-state numbers like 0,6,12 or 0-12 "
                             "(0 is the embeddings' output)") from None
    return ",".join(map(str, sorted(picked)))
