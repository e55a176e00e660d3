"""Build a small fake EmoBox checkout: ``data/<dataset>`` in the layout and row format the emo-box/EmoBox
repository publishes (``<dataset>.jsonl``, ``label_map.json``, ``data.seg.wrd.stm``,
``fold_K/<dataset>_{train,test}_fold_K.jsonl``) and its audio under ``downloads/<dataset>``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

#: IEMOCAP's label map as EmoBox publishes it (raw emo -> class; exc merged into Happy).
LABEL_MAP = {"neu": "Neutral", "hap": "Happy", "ang": "Angry", "sad": "Sad", "exc": "Happy"}
RAW = ("ang", "hap", "exc", "neu", "sad")
#: The clip written at 22050 Hz while its rows say 16000 Hz (and a length computed at 16000 Hz).
MISSTATED = "A_000"


def fold_of(speaker: str, i: int) -> int:
    """The published fold whose test list holds utterance ``i`` of ``speaker``: A in fold 1, B in fold 2,
    C's even utterances in fold 1 and its odd ones in fold 2 (C is on both sides of both folds)."""
    return {"A": 1, "B": 2}.get(speaker, 1 + i % 2)


def build(root: Path, *, dataset: str = "fakebox", per_speaker: int = 10, seconds: float = 0.3) -> Path:
    """Write the checkout under ``root`` (``root/data/<dataset>``, ``root/downloads/<dataset>``).

    Speakers A, B, C; two folds (see :func:`fold_of`); raw labels cycle through :data:`RAW`.

    Returns:
        The dataset folder (``root/data/<dataset>``), what ``--corpus emobox:DIR`` names.
    """
    rng = np.random.default_rng(0)
    data = root / "data" / dataset
    rows: dict[int, list[dict]] = {1: [], 2: []}
    stm = []
    for spk in ("A", "B", "C"):
        for i in range(per_speaker):
            name = f"{spk}_{i:03d}"
            emo = RAW[i % len(RAW)]
            wav = Path("downloads") / dataset / spk / f"{name}.wav"
            sr = 22050 if name == MISSTATED else 16000
            n = int(seconds * sr)
            t = np.arange(n) / sr
            y = 0.3 * np.sin(2 * np.pi * (150 + 80 * RAW.index(emo)) * t) + 0.01 * rng.standard_normal(n)
            (root / wav).parent.mkdir(parents=True, exist_ok=True)
            sf.write(root / wav, y.astype(np.float32), sr)
            key = f"{dataset}-{name}"
            rows[fold_of(spk, i)].append({"key": key, "dataset": dataset, "wav": wav.as_posix(), "type": "raw",
                                          "sample_rate": 16000, "num_frame": float(n), "task": "category",
                                          "length": n / 16000, "emo": emo, "channel": 1})
            stm.append(f"{key} 1 {spk} 0 {n / 16000} <id={key},lang=en,spk={spk},emotion={emo}> {emo}")
    data.mkdir(parents=True, exist_ok=True)
    (data / "label_map.json").write_text(json.dumps(LABEL_MAP, indent=4))
    (data / "data.seg.wrd.stm").write_text("\n".join(stm) + "\n")
    _jsonl(data / f"{dataset}.jsonl", rows[1] + rows[2])
    for k, other in ((1, 2), (2, 1)):
        _jsonl(data / f"fold_{k}" / f"{dataset}_test_fold_{k}.jsonl", rows[k])
        _jsonl(data / f"fold_{k}" / f"{dataset}_train_fold_{k}.jsonl", rows[other])
    return data


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def build_fixed(root: Path, *, dataset: str = "fakebox") -> Path:
    """A checkout of one dataset with one fold (a fixed split): speaker A's utterances in the train list, B's in
    the valid list, C's in the test list (rows and audio as :func:`build` writes them).

    Returns:
        The dataset folder.
    """
    data = build(root, dataset=dataset)
    rows = [json.loads(line) for k in (1, 2) for line in
            (data / f"fold_{k}" / f"{dataset}_test_fold_{k}.jsonl").read_text().splitlines()]
    shutil.rmtree(data / "fold_2")
    for part, spk in (("train", "A"), ("valid", "B"), ("test", "C")):
        _jsonl(data / "fold_1" / f"{dataset}_{part}_fold_1.jsonl",
               sorted((r for r in rows if r["key"].startswith(f"{dataset}-{spk}_")), key=lambda r: r["key"]))
    return data
