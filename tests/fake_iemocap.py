"""Build small fake IEMOCAP release trees (same layout and line formats as the real release)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

#: The paper's Table 1: raw label -> utterances in sessions 1..5.
TABLE1: dict[str, list[int]] = {
    "neu": [384, 362, 320, 258, 384],
    "xxx": [415, 436, 572, 564, 520],
    "fru": [280, 325, 382, 481, 381],
    "ang": [229, 137, 240, 327, 170],
    "sad": [194, 197, 305, 143, 245],
    "hap": [135, 117, 135, 65, 143],
    "exc": [143, 210, 151, 238, 299],
    "sur": [25, 17, 28, 19, 18],
    "oth": [1, 1, 0, 1, 0],
    "fea": [12, 9, 2, 7, 10],
    "dis": [1, 0, 1, 0, 0],
}

#: The paper's Table 2 (what the reader must produce from TABLE1).
TABLE2: dict[str, list[int]] = {
    "fru": [280, 325, 382, 481, 381],
    "ang": [229, 137, 240, 327, 170],
    "sad": [194, 197, 305, 143, 245],
    "hap": [278, 327, 286, 303, 442],
}

WORDS = {
    "ang": "This is a terrible, stupid idea and I hate it!",
    "sad": "I miss you so much.",
    "fru": "Why does the stupid machine never work?",
    "hap": "What a wonderful day, I love it.",
    "exc": "Wow, that is amazing news!",
}


def build(
    root: Path,
    counts: dict[str, list[int]] = TABLE1,
    *,
    audio: bool = False,
    dialogs: int = 4,
    sr: int = 16000,
    seconds: float = 0.25,
) -> Path:
    """Write a fake release under ``root`` and return it.

    Utterances are spread round-robin over ``dialogs`` dialogs per session, alternating speakers.
    """
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    n_sessions = len(next(iter(counts.values())))
    for s in range(1, n_sessions + 1):
        sdir = root / f"Session{s}"
        emo_dir = sdir / "dialog" / "EmoEvaluation"
        tr_dir = sdir / "dialog" / "transcriptions"
        emo_dir.mkdir(parents=True, exist_ok=True)
        tr_dir.mkdir(parents=True, exist_ok=True)
        emo: dict[str, list[str]] = {}
        tr: dict[str, list[str]] = {}
        turn = 0
        for label, per_session in counts.items():
            for _ in range(per_session[s - 1]):
                d = turn % dialogs
                gender = "F" if turn % 2 == 0 else "M"
                dialog = f"Ses{s:02d}{'F' if d % 2 == 0 else 'M'}_impro{d + 1:02d}"
                utt = f"{dialog}_{gender}{turn:03d}"
                start = 1.0 + turn * 3.0
                end = start + 2.5
                emo.setdefault(dialog, ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""])
                emo[dialog] += [
                    f"[{start:.4f} - {end:.4f}]\t{utt}\t{label}\t[2.5000, 3.0000, 3.5000]",
                    "C-E1:\tNeutral;\t()",
                    "A-E1:\tval 3; act 2; dom  2;\t()",
                    "",
                ]
                text = WORDS.get(label, "Okay, fine.")
                tr.setdefault(dialog, []).append(f"{utt} [{start:08.4f}-{end:08.4f}]: {text}")
                if audio:
                    wdir = sdir / "sentences" / "wav" / dialog
                    wdir.mkdir(parents=True, exist_ok=True)
                    t = np.arange(int(sr * seconds)) / sr
                    y = 0.1 * np.sin(2 * np.pi * (150 + 10 * turn % 80) * t) + 0.01 * rng.standard_normal(t.size)
                    sf.write(wdir / f"{utt}.wav", y.astype(np.float32), sr, subtype="PCM_16")
                turn += 1
        for dialog, lines in emo.items():
            (emo_dir / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
        for dialog, lines in tr.items():
            # the release also has lines for turns without an evaluation (e.g. MXX noise turns)
            lines.append(f"{dialog}_MXX0 [000.0000-000.5000]: [LAUGHTER]")
            (tr_dir / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
    return root


def small_counts(per_cell: int = 2, sessions: int = 5) -> dict[str, list[int]]:
    """A tiny table: ``per_cell`` utterances of each kept label per session, plus one dropped xxx."""
    out = {lab: [per_cell] * sessions for lab in ("ang", "sad", "hap", "fru")}
    out["exc"] = [1] * sessions
    out["xxx"] = [1] * sessions
    return out


TEXT_ONLY_WORDS = ("a very good day", "the old red car", "no way at all", "i am so tired now", "what a lovely song")


def text_only_manifest(path: Path, *, per_cell: int = 4) -> Path:
    """A manifest (``id,session,speaker,label,text``) with no audio: 5 sessions x 4 labels x ``per_cell``."""
    import csv

    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "session", "speaker", "label", "text"])
        for s in range(1, 6):
            for li, label in enumerate(("ang", "sad", "hap", "fru")):
                for i in range(per_cell):
                    words = TEXT_ONLY_WORDS[(i + li) % len(TEXT_ONLY_WORDS)]
                    w.writerow([f"s{s}_{label}_{i}", f"Ses0{s}", f"spk{s}", label, f"{label} {words}"])
    return path
