"""``reverb``: room reverberation from a synthetic impulse response with a given RT60."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from featcache.perturb.base import AudioVariant, Param, Record


def make_rir(*, rt60: float, drr_db: float, sr: int, seed: int) -> np.ndarray:
    """A synthetic room impulse response: a direct path then exponentially decaying Gaussian noise.

    The tail's amplitude falls by 60 dB in ``rt60`` seconds (its energy decay curve has slope
    ``-60 / rt60`` dB/s), it lasts ``rt60`` seconds, and its energy is ``drr_db`` below the direct
    path's. The whole response has unit energy, so the output keeps roughly the input's level.

    Args:
        rt60: Reverberation time in seconds.
        drr_db: Direct-to-reverberant energy ratio in dB.
        sr: Sample rate in Hz.
        seed: Seed of the noise tail.

    Returns:
        The impulse response, float64, ``max(2, ceil(rt60 * sr))`` samples.
    """
    n = max(2, math.ceil(rt60 * sr))
    t = np.arange(1, n, dtype=np.float64) / sr
    tail = np.random.default_rng(seed).standard_normal(n - 1) * np.exp(-3.0 * math.log(10.0) * t / rt60)
    tail *= math.sqrt(10.0 ** (-drr_db / 10.0) / float(np.sum(tail**2)))
    rir = np.concatenate([[1.0], tail])
    return rir / math.sqrt(float(np.sum(rir**2)))


class Reverb(AudioVariant):
    """Convolve with :func:`make_rir` (seeded per utterance) and keep the original length.

    Record: ``rir_seed``, ``rt60``, ``drr_db``, ``rir_samples``.
    """

    kind = "reverb"
    params_spec = (
        Param("rt60", "float", default=0.6, help="reverberation time in seconds", low=0.05, high=5.0),
        Param("drr_db", "float", default=0.0, help="direct-to-reverberant ratio in dB", low=-30.0, high=30.0),
    )
    positional = "rt60"
    description = "reverberation: synthetic exponentially decaying RIR with an RT60"

    def _draw(self, y: np.ndarray, *, rng: np.random.Generator, sr: int) -> Record:
        rt60 = float(self._params["rt60"])  # type: ignore[arg-type]
        return {
            "rir_seed": int(rng.integers(2**63)),
            "rt60": rt60,
            "drr_db": float(self._params["drr_db"]),  # type: ignore[arg-type]
            "rir_samples": max(2, math.ceil(rt60 * sr)),
        }

    def _apply(self, y: np.ndarray, record: Mapping[str, Any], *, sr: int) -> np.ndarray:
        from scipy.signal import oaconvolve

        if y.shape[0] == 0:
            return y.copy()
        rir = make_rir(rt60=float(record["rt60"]), drr_db=float(record["drr_db"]), sr=sr, seed=int(record["rir_seed"]))
        return np.asarray(oaconvolve(y.astype(np.float64), rir)[: y.shape[0]])
