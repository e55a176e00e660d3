"""A toy featcache plugin: an encoder that is no transformers checkpoint, and an attack.

``ToyEncoder`` (entry point ``featcache.encoders: toy``, backbone ``plugin:toy``) counts the words of a
text into 16 hashed bins; ``Shout`` (entry point ``featcache.attacks: shout``) writes a share of the words
in capitals, which the case-sensitive encoder sees.
"""

from __future__ import annotations

import hashlib
import re
from importlib.metadata import version
from typing import Any

import numpy as np
import torch

from featcache.perturb import Param, Record, TextVariant

DIM = 16
_WORD = re.compile(r"\[MASK\]|\w+")


def _bin(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little") % DIM


class ToyEncoder:
    """A hashed bag of words; hidden state 0 holds the counts, 1 (the last) the counts at unit length."""

    modality = "text"
    dim = DIM
    n_hidden_states = 2
    mask_token = "[MASK]"

    def identity(self) -> dict[str, Any]:
        return {"name": "toy-bow", "version": version("featcache-toy"), "bins": DIM}

    def prepare(self, x: str) -> dict[str, Any]:
        counts = np.zeros(DIM, dtype=np.float32)
        for word in _WORD.findall(x):
            counts[_bin(word)] += 1.0
        return {"counts": counts}

    def collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return {"counts": torch.from_numpy(np.stack([it["counts"] for it in items]))}

    def encode(self, counts: torch.Tensor, layers: tuple[int, ...] | None = None) -> torch.Tensor:
        unit = counts / counts.norm(dim=1, keepdim=True).clamp(min=1.0)
        if layers is None:
            return unit
        states = (counts, unit)
        return torch.stack([states[k] for k in layers], dim=1)


class Shout(TextVariant):
    """Each word that has lower-case letters is written in capitals with probability ``p``."""

    kind = "shout"
    params_spec = (Param("p", "float", default=0.5, help="chance that a word is written in capitals", low=0.0,
                         high=1.0),)
    positional = "p"
    description = "write words in capitals (toy plugin)"
    needs_analysis = False

    def _draw(self, text: str, *, rng: np.random.Generator, analysis: Any) -> Record:
        p = float(self._params["p"])  # type: ignore[arg-type]
        words = list(re.finditer(r"\w+", text))
        drawn = rng.random(len(words)) < p
        edits = [{"start": m.start(), "end": m.end(), "original": m.group(), "text": m.group().upper()}
                 for m, hit in zip(words, drawn) if hit and m.group().upper() != m.group()]
        return {"edits": edits}
