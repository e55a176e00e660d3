"""``telephone``: narrowband telephone channel: 8 kHz round trip, 300-3400 Hz band, G.711 mu-law."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from featcache.errors import FeatcacheError
from featcache.perturb.base import AudioVariant, Param, ParamValue, Record

#: Order of the Butterworth band-pass filter (as designed by ``scipy.signal.butter``).
FILTER_ORDER = 6


class Telephone(AudioVariant):
    """Resample to ``phone_sr`` (``librosa.resample``, soxr), band-pass ``low_hz``-``high_hz``
    (Butterworth, ``scipy.signal.sosfilt``), optionally 8-bit mu-law companding (``librosa.mu_compress``
    / ``mu_expand``, samples beyond +/-1 clipped first), and resample back. Length is unchanged and no
    energy is left above ``phone_sr / 2``.

    Record: ``clipped_fraction`` (share of samples beyond +/-1 cut before the mu-law codec; 0 without it).
    """

    kind = "telephone"
    params_spec = (
        Param("high_hz", "float", default=3400.0, help="upper band edge in Hz", low=100.0),
        Param("low_hz", "float", default=300.0, help="lower band edge in Hz", low=0.0),
        Param("phone_sr", "int", default=8000, help="channel sample rate in Hz", low=1000, high=48000),
        Param("mulaw", "bool", default=True, help="8-bit mu-law companding (G.711)"),
    )
    positional = "high_hz"
    description = "telephone channel: 8 kHz, 300-3400 Hz band-pass, mu-law"

    def _normalize(self, params: dict[str, ParamValue], *, given: frozenset[str]) -> dict[str, ParamValue]:
        low, high, phone_sr = float(params["low_hz"]), float(params["high_hz"]), int(params["phone_sr"])  # type: ignore[arg-type]
        if not low < high < phone_sr / 2:
            raise FeatcacheError(
                f"variant 'telephone': need low_hz < high_hz < phone_sr/2, got {low:g} < {high:g} < {phone_sr / 2:g}"
            )
        return params

    def _draw(self, y: np.ndarray, *, rng: np.random.Generator, sr: int) -> Record:
        if int(self._params["phone_sr"]) >= sr:  # type: ignore[arg-type]
            raise FeatcacheError(f"variant {self.spec!r}: phone_sr must be below the sample rate {sr} Hz")
        clipped = float(np.mean(np.abs(y) > 1.0)) if self._params["mulaw"] and y.size else 0.0
        return {"clipped_fraction": clipped}

    def _apply(self, y: np.ndarray, record: Mapping[str, Any], *, sr: int) -> np.ndarray:
        import librosa
        from scipy.signal import butter, sosfilt

        n = y.shape[0]
        if n == 0:
            return y.copy()
        phone_sr = int(self._params["phone_sr"])  # type: ignore[arg-type]
        x = librosa.resample(y, orig_sr=sr, target_sr=phone_sr, res_type="soxr_hq")
        low, high = float(self._params["low_hz"]), float(self._params["high_hz"])  # type: ignore[arg-type]
        if low > 0:
            sos = butter(FILTER_ORDER, [low, high], btype="bandpass", fs=phone_sr, output="sos")
        else:
            sos = butter(FILTER_ORDER, high, btype="lowpass", fs=phone_sr, output="sos")
        x = sosfilt(sos, x).astype(np.float32)
        if self._params["mulaw"]:
            x = np.clip(x, -1.0, 1.0)
            codes = librosa.mu_compress(x, mu=255, quantize=True)
            x = librosa.mu_expand(codes, mu=255, quantize=True).astype(np.float32)
        out = librosa.resample(x, orig_sr=phone_sr, target_sr=sr, res_type="soxr_hq")
        return librosa.util.fix_length(out, size=n)
