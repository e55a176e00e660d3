"""``noise``: additive white Gaussian noise, by standard deviation (the paper: 0.1) or by target SNR."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from featcache.errors import FeatcacheError
from featcache.perturb.base import AudioVariant, Param, ParamValue, Record


def _noise(noise_seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(noise_seed).standard_normal(n, dtype=np.float32)


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64))) if x.size else 0.0


class Noise(AudioVariant):
    """Add zero-mean white Gaussian noise: fixed ``std``, or scaled to reach ``snr_db`` exactly.

    The noise itself is regenerated from a recorded seed, so records stay small. Nothing is clipped:
    the output may leave [-1, 1], and the record says by how much. SNR is the ratio of the mean power
    of the whole clip (silences included) to that of the noise added.

    Record: ``noise_seed``, ``noise_std`` (the scale applied to unit-variance noise), ``snr_db`` (the
    SNR the utterance ends up with; ``null`` when undefined: a silent clip, or no noise), ``signal_rms``,
    ``noise_rms``, ``peak`` (max abs of the output) and ``out_of_range_fraction`` (share of output samples
    with magnitude above 1). With ``std=0.1`` a quiet recording gets a very negative SNR, visible here.
    """

    kind = "noise"
    params_spec = (
        Param("std", "float", default=0.1, help="noise standard deviation (full scale 1.0)", low=0.0),
        Param(
            "snr_db", "float", default=None, help="target signal-to-noise ratio in dB (replaces std)", low=-60, high=100
        ),
    )
    description = "additive white Gaussian noise (std, or target snr_db)"

    def _normalize(self, params: dict[str, ParamValue], *, given: frozenset[str]) -> dict[str, ParamValue]:
        if params["snr_db"] is not None:
            if "std" in given and params["std"] is not None:
                raise FeatcacheError("variant 'noise': give std or snr_db, not both; e.g. noise:snr_db=10")
            params["std"] = None
        elif params["std"] is None:
            raise FeatcacheError("variant 'noise' needs std or snr_db; e.g. noise:std=0.1 or noise:snr_db=10")
        return params

    def _draw(self, y: np.ndarray, *, rng: np.random.Generator, sr: int) -> Record:
        noise_seed = int(rng.integers(2**63))
        z = _noise(noise_seed, y.shape[0])
        signal_power = _power(y)
        if self._params["snr_db"] is None:
            noise_std = float(self._params["std"])  # type: ignore[arg-type]
        else:
            unit_power = _power(z)
            target = 10.0 ** (float(self._params["snr_db"]) / 10.0)  # type: ignore[arg-type]
            noise_std = math.sqrt(signal_power / (target * unit_power)) if signal_power > 0 and unit_power > 0 else 0.0
        noise = z * np.float32(noise_std)
        noise_power = _power(noise)
        out = y + noise
        snr = 10.0 * math.log10(signal_power / noise_power) if signal_power > 0 and noise_power > 0 else None
        return {
            "noise_seed": noise_seed,
            "noise_std": noise_std,
            "snr_db": snr,
            "signal_rms": math.sqrt(signal_power),
            "noise_rms": math.sqrt(noise_power),
            "peak": float(np.max(np.abs(out))) if out.size else 0.0,
            "out_of_range_fraction": float(np.mean(np.abs(out) > 1.0)) if out.size else 0.0,
        }

    def _apply(self, y: np.ndarray, record: Mapping[str, Any], *, sr: int) -> np.ndarray:
        return y + _noise(int(record["noise_seed"]), y.shape[0]) * np.float32(record["noise_std"])
