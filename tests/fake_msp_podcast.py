"""Build a small fake MSP-Podcast release in the release's layout: ``Labels/labels_consensus.csv`` (its
columns and letter classes), ``Audios/<FileName>.wav`` and ``Transcripts/<stem>.txt``."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf

#: Clips per partition, as ``Split_Set`` names them.
PARTITIONS: dict[str, int] = {"Train": 24, "Development": 6, "Test1": 9, "Test2": 3}
#: EmoClass letters in turn: the four kept by default (A S H N) and two that are not (U surprise, X no agreement).
CLASSES = ("A", "S", "H", "N", "A", "S", "H", "N", "U", "X")
WORDS = {"A": "this is a terrible stupid idea", "S": "i miss them so much", "H": "what a wonderful day",
         "N": "the meeting is at noon", "U": "oh really is it", "X": "well maybe"}
#: Speakers of each partition (no speaker on two sides); every third clip's speaker is Unknown.
SPEAKERS = {"Train": ("12", "15"), "Development": ("30",), "Test1": ("41", "42"), "Test2": ("50",)}


def build(root: Path, *, seconds: float = 0.3, transcripts: bool = True) -> Path:
    """Write the release under ``root`` and return it.

    Returns:
        The release folder, what ``--corpus msp-podcast:DIR`` names.
    """
    rng = np.random.default_rng(0)
    (root / "Labels").mkdir(parents=True, exist_ok=True)
    (root / "Audios").mkdir(exist_ok=True)
    if transcripts:
        (root / "Transcripts").mkdir(exist_ok=True)
    rows = []
    n = 0
    for part, count in PARTITIONS.items():
        for i in range(count):
            n += 1
            stem = f"MSP-PODCAST_{n // 10 + 1:04d}_{n % 10 + 1:04d}"
            emo = CLASSES[i % len(CLASSES)]
            spk = "Unknown" if i % 3 == 2 else SPEAKERS[part][i % len(SPEAKERS[part])]
            gender = "Unknown" if spk == "Unknown" else ("Female" if int(spk) % 2 else "Male")
            t = np.arange(int(seconds * 16000)) / 16000
            y = 0.3 * np.sin(2 * np.pi * (150 + 40 * CLASSES.index(emo)) * t) + 0.01 * rng.standard_normal(t.size)
            sf.write(root / "Audios" / f"{stem}.wav", y.astype(np.float32), 16000)
            if transcripts:
                (root / "Transcripts" / f"{stem}.txt").write_text(WORDS[emo] + "\n")
            rows.append([f"{stem}.wav", emo, f"{rng.uniform(1, 7):.1f}", f"{rng.uniform(1, 7):.1f}",
                         f"{rng.uniform(1, 7):.1f}", spk, gender, part])
    with (root / "Labels" / "labels_consensus.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set"])
        w.writerows(rows)
    return root
