"""``pitch``: shift the voice pitch by a semitone step drawn per utterance (the paper: +/-1, i.e. half a tone)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from featcache.perturb.base import AudioVariant, Param, Record

#: FFT size of librosa's phase vocoder; shorter clips are zero-padded to it and trimmed back.
N_FFT = 2048


class PitchShift(AudioVariant):
    """``librosa.effects.pitch_shift(y, sr=sr, n_steps=step)`` with ``step`` drawn uniformly from ``steps``.

    The duration is unchanged. Record: ``step`` (semitones, or ``12 / bins_per_octave`` units).
    """

    kind = "pitch"
    params_spec = (
        Param("steps", "floats", default=(-1.0, 1.0), help="set of steps to draw from, e.g. -1|1", low=-24, high=24),
        Param("bins_per_octave", "int", default=12, help="steps per octave (12: semitones)", low=1, high=96),
    )
    positional = "steps"
    description = "pitch shift by a step drawn uniformly from a set (librosa.effects.pitch_shift)"

    def _draw(self, y: np.ndarray, *, rng: np.random.Generator, sr: int) -> Record:
        steps: tuple[float, ...] = self._params["steps"]  # type: ignore[assignment]
        step = float(steps[int(rng.integers(len(steps)))])
        return {"step": int(step) if step.is_integer() else step}

    def _apply(self, y: np.ndarray, record: Mapping[str, Any], *, sr: int) -> np.ndarray:
        import librosa

        step = float(record["step"])
        if y.shape[0] == 0 or step == 0.0:
            return y.copy()
        padded = np.pad(y, (0, max(0, N_FFT - y.shape[0])))
        out = librosa.effects.pitch_shift(
            padded,
            sr=sr,
            n_steps=step,
            bins_per_octave=int(self._params["bins_per_octave"]),  # type: ignore[arg-type]
        )
        return out[: y.shape[0]]
