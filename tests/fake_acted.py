"""Build small fake RAVDESS and CREMA-D trees, named as the releases name their files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def _wav(path: Path, freq: float, *, seconds: float = 0.2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * 16000)) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000)


def build_ravdess(root: Path, *, actors: int = 8) -> Path:
    """``Actor_NN/03-01-EE-01-SS-01-NN.wav`` for emotions 01..08 and both statements, plus a song file
    (``03-02-...``) and a video's audio (``01-01-...``), which the reader skips.

    Returns:
        The folder, what ``--corpus ravdess:DIR`` names.
    """
    for a in range(1, actors + 1):
        for e in range(1, 9):
            for s in (1, 2):
                _wav(root / f"Actor_{a:02d}" / f"03-01-{e:02d}-01-{s:02d}-01-{a:02d}.wav", 100 + 30 * e)
        _wav(root / f"Actor_{a:02d}" / f"03-02-03-01-01-01-{a:02d}.wav", 300)
        _wav(root / f"Actor_{a:02d}" / f"01-01-03-01-01-01-{a:02d}.wav", 300)
    return root


def build_crema_d(root: Path, *, actors: int = 10) -> Path:
    """``AudioWAV/AAAA_SSS_EEE_LL.wav`` for actors 1001.., two sentences and the six emotions.

    Returns:
        The release folder, what ``--corpus crema-d:DIR`` names.
    """
    for a in range(1001, 1001 + actors):
        for i, emo in enumerate(("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")):
            for sentence in ("IEO", "DFA"):
                _wav(root / "AudioWAV" / f"{a}_{sentence}_{emo}_XX.wav", 120 + 40 * i)
    return root
