"""The base class of audio variants and the waveform check every audio variant applies to its input.

:mod:`featcache.perturb.base` re-exports :class:`AudioVariant`, :func:`as_waveform` and
:data:`DEFAULT_SR`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np

from featcache.errors import FeatcacheError
from featcache.perturb.params import Record, utterance_rng
from featcache.perturb.variant import Variant

#: Sample rate every audio variant assumes unless told otherwise.
DEFAULT_SR = 16_000


def as_waveform(audio: Any) -> np.ndarray:
    """Check and convert a waveform to a 1-D float32 array.

    Args:
        audio: Array-like of samples.

    Returns:
        A contiguous float32 1-D array (a copy only when conversion needs one).

    Raises:
        FeatcacheError: Not 1-D, or containing NaN or infinity.
    """
    y = np.ascontiguousarray(audio, dtype=np.float32)
    if y.ndim != 1:
        raise FeatcacheError(f"audio variants take a 1-D mono waveform, got shape {y.shape}; downmix it first")
    if not np.isfinite(y).all():
        raise FeatcacheError("waveform contains NaN or infinite samples; fix the input audio")
    return y


class AudioVariant(Variant):
    """A perturbation of a float32 mono waveform (16 kHz unless ``sr`` says otherwise)."""

    modality = "audio"

    def draw(self, x: np.ndarray, *, utt_id: str, seed: int, sr: int = DEFAULT_SR) -> Record:  # type: ignore[override]
        """Make the random choices for one utterance.

        Args:
            x: The waveform.
            utt_id: Utterance id.
            seed: Variant seed.
            sr: Sample rate in Hz.

        Returns:
            The record: ``variant``, ``key``, ``utt_id``, ``seed``, ``sr``, ``n_samples`` and the
            variant's own fields.

        Raises:
            FeatcacheError: Bad waveform or sample rate.
        """
        y = as_waveform(x)
        if sr <= 0:
            raise FeatcacheError(f"sample rate must be positive, got {sr}")
        rng = utterance_rng(seed, utt_id)
        record = self._header(utt_id=utt_id, seed=seed)
        record.update({"sr": int(sr), "n_samples": int(y.shape[0])})
        record.update(self._draw(y, rng=rng, sr=sr))
        return record

    def apply(self, x: np.ndarray, record: Mapping[str, Any], *, sr: int = DEFAULT_SR) -> np.ndarray:  # type: ignore[override]
        """Produce the perturbed waveform from a record (no randomness).

        Args:
            x: The same waveform the record was drawn for.
            record: From :meth:`draw`.
            sr: Sample rate in Hz; must equal the record's.

        Returns:
            A new float32 1-D array.

        Raises:
            FeatcacheError: Bad waveform, or a record for another variant, sample rate or length.
        """
        y = as_waveform(x)
        self._check_record(record)
        if int(record.get("sr", sr)) != sr or int(record.get("n_samples", y.shape[0])) != y.shape[0]:
            raise FeatcacheError(
                f"record was drawn for {record.get('n_samples')} samples at {record.get('sr')} Hz, "
                f"got {y.shape[0]} samples at {sr} Hz; replay it on the same input"
            )
        out = self._apply(y, record, sr=sr)
        return np.ascontiguousarray(out, dtype=np.float32)

    def _draw(self, y: np.ndarray, *, rng: np.random.Generator, sr: int) -> Record:
        """The variant's own record fields (default: none)."""
        return {}

    @abstractmethod
    def _apply(self, y: np.ndarray, record: Mapping[str, Any], *, sr: int) -> np.ndarray:
        """The transform itself."""
