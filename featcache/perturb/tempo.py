"""``tempo``: speak faster or slower at the same pitch (``librosa.effects.time_stretch``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from featcache.perturb.base import AudioVariant, Param, Record

#: FFT size of librosa's phase vocoder; shorter clips are zero-padded to it first.
N_FFT = 2048


class Tempo(AudioVariant):
    """Time-stretch by ``rate`` (> 1 faster, < 1 slower); the duration scales by ``1 / rate``.

    Record: ``rate`` and ``out_samples`` (``round(n_samples / rate)``).
    """

    kind = "tempo"
    params_spec = (Param("rate", "float", default=0.9, help="speed factor (>1 faster)", low=0.25, high=4.0),)
    positional = "rate"
    description = "tempo change at constant pitch (librosa.effects.time_stretch)"

    def _draw(self, y: np.ndarray, *, rng: np.random.Generator, sr: int) -> Record:
        rate = float(self._params["rate"])  # type: ignore[arg-type]
        return {"rate": rate, "out_samples": round(y.shape[0] / rate)}

    def _apply(self, y: np.ndarray, record: Mapping[str, Any], *, sr: int) -> np.ndarray:
        import librosa

        n_out = int(record["out_samples"])
        rate = float(record["rate"])
        if y.shape[0] == 0 or n_out == 0:
            return np.zeros(n_out, dtype=np.float32)
        if rate == 1.0:
            return y.copy()
        padded = np.pad(y, (0, max(0, N_FFT - y.shape[0])))
        out = librosa.effects.time_stretch(padded, rate=rate)
        return librosa.util.fix_length(out, size=n_out)
