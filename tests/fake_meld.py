"""Build a small fake MELD release in the release's layout: ``{train,dev,test}_sent_emo.csv`` (its columns,
cp1252 quotes and all) and each split's clip folder, with a ``.wav`` of the clip's stem (the converted audio)
or an ``.mp4`` where asked."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import soundfile as sf

#: Split -> (CSV, clip folder, dialogues, utterances per dialogue).
SPLITS = {"train": ("train_sent_emo.csv", "train_splits", 4, 5), "dev": ("dev_sent_emo.csv", "dev_splits_complete", 1, 5),
          "test": ("test_sent_emo.csv", "output_repeated_splits_test", 2, 5)}
EMOTIONS = ("joy", "anger", "sadness", "neutral", "surprise")
#: The text of each emotion; anger's has the release's curly apostrophe (a cp1252 byte in the file).
WORDS = {"joy": "Oh, that’s wonderful!", "anger": "I can’t believe you did that!", "sadness": "I miss her so much.",
         "neutral": "The coffee is on the table.", "surprise": "What? Really?"}
SPEAKERS = ("Joey", "Rachel", "Ross")


def build(root: Path, *, seconds: float = 0.3, mp4: tuple[str, ...] = (), encoding: str = "cp1252") -> Path:
    """Write the release under ``root`` and return it.

    Args:
        root: Where.
        seconds: Length of each clip.
        mp4: Ids (``test_dia0_utt1``) whose clip is an ``.mp4`` that no decoder here reads, not a ``.wav``.
        encoding: The CSVs' encoding.

    Returns:
        The release folder, what ``--corpus meld:DIR`` names.
    """
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    sr_no = 0
    for split, (csv_name, folder, dialogues, per) in SPLITS.items():
        (root / folder).mkdir(exist_ok=True)
        buf = io.StringIO(newline="")
        w = csv.writer(buf)
        w.writerow(["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID", "Season",
                    "Episode", "StartTime", "EndTime"])
        for d in range(dialogues):
            for u in range(per):
                sr_no += 1
                emo = EMOTIONS[(d + u) % len(EMOTIONS)]
                stem = f"dia{d}_utt{u}"
                if f"{split}_{stem}" in mp4:
                    (root / folder / f"{stem}.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(64))
                else:
                    t = np.arange(int(seconds * 16000)) / 16000
                    y = 0.3 * np.sin(2 * np.pi * (150 + 50 * EMOTIONS.index(emo)) * t) + 0.01 * rng.standard_normal(t.size)
                    sf.write(root / folder / f"{stem}.wav", y.astype(np.float32), 16000)
                start = 10 + 2 * u
                w.writerow([sr_no, WORDS[emo], SPEAKERS[u % 3], emo, "neutral", d, u, 3, 7,
                            f"00:01:{start:02d},100", f"00:01:{start:02d},{100 + int(seconds * 1000)}"])
        (root / csv_name).write_bytes(buf.getvalue().encode(encoding))
    return root
