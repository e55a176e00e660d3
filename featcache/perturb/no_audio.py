"""``no-audio``: a short clip of complete silence instead of the speech (the paper's *no audio* condition)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from featcache.perturb.base import AudioVariant, Param, Record


class NoAudio(AudioVariant):
    """Replace the waveform by ``duration`` seconds of zeros. Record: ``out_samples``."""

    kind = "no-audio"
    params_spec = (
        Param(
            "duration", "float", default=1.0, help="length of the silence in seconds", low=0.0, low_open=True, high=60.0
        ),
    )
    positional = "duration"
    description = "a short clip of complete silence"

    def _draw(self, y: np.ndarray, *, rng: np.random.Generator, sr: int) -> Record:
        return {"out_samples": max(1, round(float(self._params["duration"]) * sr))}  # type: ignore[arg-type]

    def _apply(self, y: np.ndarray, record: Mapping[str, Any], *, sr: int) -> np.ndarray:
        return np.zeros(int(record["out_samples"]), dtype=np.float32)
