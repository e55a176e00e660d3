"""``clip``: hard clipping, as an overdriven microphone or converter produces it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from featcache.perturb.base import AudioVariant, Param, Record


class Clipping(AudioVariant):
    """Clip samples to +/- a threshold: ``level`` times the clip's own peak (``relative=true``, so every
    utterance is distorted alike whatever its recording level) or ``level`` itself (``relative=false``).

    Record: ``peak`` (input max abs), ``threshold`` and ``clipped_fraction`` (share of samples cut).
    """

    kind = "clip"
    params_spec = (
        Param(
            "level",
            "float",
            default=0.25,
            help="clip level (share of the peak, or absolute)",
            low=0.0,
            low_open=True,
            high=1.0,
        ),
        Param("relative", "bool", default=True, help="level is relative to each clip's peak"),
    )
    positional = "level"
    description = "hard clipping at a level relative to the clip's peak"

    def _draw(self, y: np.ndarray, *, rng: np.random.Generator, sr: int) -> Record:
        peak = float(np.max(np.abs(y))) if y.size else 0.0
        level = float(self._params["level"])  # type: ignore[arg-type]
        threshold = float(np.float32(level * peak if self._params["relative"] else level))
        clipped = float(np.mean(np.abs(y) > threshold)) if y.size else 0.0
        return {"peak": peak, "threshold": threshold, "clipped_fraction": clipped}

    def _apply(self, y: np.ndarray, record: Mapping[str, Any], *, sr: int) -> np.ndarray:
        threshold = np.float32(record["threshold"])
        return np.asarray(np.clip(y, -threshold, threshold))
