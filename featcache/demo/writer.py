"""Writing the demo corpus: the EmoEvaluation evaluator lines, the directory, every turn's wav,
transcription and annotation, and ``README_DEMO.txt`` (:func:`write_demo_corpus`)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featcache.data import SAMPLE_RATE
from featcache.demo.plan import (
    DEMO_FORMAT,
    DEMO_SESSIONS,
    _check_per_speaker,
    _plan_session,
    _rng,
    demo_counts,
    demo_raw_counts,
)
from featcache.demo.espeak import Synthesizer
from featcache.demo.speech import _draw_prosody, _make_voice, _synthesize
from featcache.demo.text import _make_text
from featcache.errors import FeatcacheError


# --------------------------------------------------------------------------------------------
# Annotations
# --------------------------------------------------------------------------------------------

_CATEGORY = {
    "ang": "Anger",
    "sad": "Sadness",
    "hap": "Happiness",
    "exc": "Excited",
    "fru": "Frustration",
    "neu": "Neutral state",
    "sur": "Surprise",
}
_CONFUSED = {
    "ang": ("fru", "exc"),
    "sad": ("fru", "neu"),
    "hap": ("exc", "neu"),
    "exc": ("hap", "sur"),
    "fru": ("ang", "neu"),
    "neu": ("fru", "sad"),
    "sur": ("exc", "neu"),
}
#: Mean valence, activation, dominance (1-5) of each category.
_VAD = {
    "ang": (1.8, 4.0, 3.9),
    "sad": (2.0, 2.2, 2.2),
    "hap": (4.0, 3.1, 3.1),
    "exc": (4.1, 3.8, 3.3),
    "fru": (2.0, 3.2, 3.2),
    "neu": (3.0, 2.6, 2.8),
    "sur": (3.4, 3.9, 2.9),
}


def _annotation_lines(rng: np.random.Generator, raw: str, gender: str) -> tuple[tuple[float, float, float], list[str]]:
    """Evaluator lines of one turn (majority agrees with ``raw``; none for ``xxx``) and its mean VAD."""
    evaluators = sorted(int(e) for e in rng.choice(np.arange(1, 7), size=3, replace=False))
    if raw == "xxx":
        cats = [str(c) for c in rng.choice(["ang", "sad", "hap", "exc", "fru", "neu"], size=3, replace=False)]
    else:
        cats = [raw, raw, str(rng.choice(_CONFUSED[raw])) if rng.random() < 0.5 else raw]
        cats = [cats[i] for i in rng.permutation(3)]
    lines = [f"C-E{e}:\t{_CATEGORY[c]};\t()" for e, c in zip(evaluators, cats)]
    lines.append(f"C-{gender}1:\t{_CATEGORY[cats[0]]};\t()")
    vads = []
    for e, c in zip(evaluators[:2], cats[:2]):
        v, a, d = (int(np.clip(round(m + rng.normal(0.0, 0.6)), 1, 5)) for m in _VAD[c])
        vads.append((v, a, d))
        lines.append(f"A-E{e}:\tval {v}; act {a}; dom  {d};\t()")
    mean = tuple(float(np.mean([x[i] for x in vads])) for i in range(3))
    return (mean[0], mean[1], mean[2]), lines


# --------------------------------------------------------------------------------------------
# Corpus writer
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoSummary:
    """What :func:`write_demo_corpus` wrote.

    Attributes:
        root: The corpus directory (pass it as ``iemocap:ROOT``).
        seed: Seed it was generated from.
        utterances_per_speaker: Kept turns per speaker.
        counts: ``counts[label][session]`` the reader reports (paper labels, ``exc`` merged into ``hap``).
        raw_counts: ``raw_counts[raw_label][session]`` as written, dropped labels included.
        n_utterances: Kept utterances (sum of ``counts``).
        n_turns: Turns written (wav files), dropped ones included.
        seconds: Total audio duration of all turns.
    """

    root: Path
    seed: int
    utterances_per_speaker: int
    counts: dict[str, dict[str, int]]
    raw_counts: dict[str, dict[str, int]]
    n_utterances: int
    n_turns: int
    seconds: float

    def __str__(self) -> str:
        return (
            f"{self.n_utterances} utterances kept of {self.n_turns} turns, 5 sessions x 2 speakers, "
            f"{self.seconds / 60:.1f} min of audio, seed {self.seed}"
        )


def _prepare_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise FeatcacheError(f"{out_dir}: exists and is not a directory; choose a directory path for the demo corpus")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise FeatcacheError(
                f"{out_dir}: directory is not empty; choose a new or empty directory, or pass --overwrite "
                "(overwrite=True) to replace its demo corpus"
            )
        for p in out_dir.iterdir():
            if re.fullmatch(r"Session\d+", p.name) or p.name in (".demo-partial", "README_DEMO.txt"):
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FeatcacheError(f"{out_dir}: cannot create the directory ({e.strerror}); choose a writable path") from None


def write_demo_corpus(
    out_dir: str | Path,
    *,
    seed: int = 0,
    utterances_per_speaker: int = 40,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> DemoSummary:
    """Write the synthetic demo corpus in the IEMOCAP release layout.

    The same arguments give byte-identical files. The label x session table depends only on
    ``utterances_per_speaker`` (:func:`demo_counts`); the default gives 400 kept utterances (of 450
    turns) and takes about ten seconds (espeak-ng speaks 24 minutes of turns).

    Args:
        out_dir: Directory to write; created if missing. Read it back with
            ``featcache.data.load_corpus("iemocap:OUT_DIR")``.
        seed: Seed of every word and sound.
        utterances_per_speaker: Kept turns per speaker (1 to 1000); each speaker also gets a few
            ``neu``, ``xxx`` and ``sur`` turns that the paper's filter drops.
        overwrite: Replace the demo corpus of a non-empty ``out_dir``: its ``SessionN`` folders and
            ``README_DEMO.txt`` are removed first; other entries are left alone.
        progress: Called as ``progress(done, total)`` after each turn is written.

    Returns:
        A summary with the label tables and the amount of audio.

    Raises:
        FeatcacheError: ``out_dir`` is not empty and ``overwrite`` is False, is a file, or
            ``utterances_per_speaker`` is out of range.
    """
    import soundfile as sf

    _check_per_speaker(utterances_per_speaker)
    seed = int(seed)
    out_dir = Path(out_dir).expanduser()
    _prepare_dir(out_dir, overwrite)
    partial = out_dir / ".demo-partial"
    partial.mkdir()
    plans = {s: _plan_session(seed, s, utterances_per_speaker) for s in range(1, len(DEMO_SESSIONS) + 1)}
    total_turns = sum(len(t) for p in plans.values() for t in p.values())
    done = 0
    seconds = 0.0
    voices = {f"Ses{s:02d}{g}": _make_voice(seed, f"Ses{s:02d}{g}") for s in plans for g in "FM"}
    try:
        with Synthesizer() as synth:
            for s, plan in plans.items():
                sdir = partial / f"Session{s}"
                emo_dir = sdir / "dialog" / "EmoEvaluation"
                trans_dir = sdir / "dialog" / "transcriptions"
                emo_dir.mkdir(parents=True)
                trans_dir.mkdir(parents=True)
                for dialog, turns in plan.items():
                    wav_dir = sdir / "sentences" / "wav" / dialog
                    wav_dir.mkdir(parents=True)
                    t = float(_rng(seed, "timing", dialog).uniform(1.5, 6.0))
                    gaps = _rng(seed, "gaps", dialog).uniform(0.2, 2.0, len(turns))
                    emo_lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
                    trans_lines: list[str] = []
                    for turn, gap in zip(turns, gaps):
                        rng = _rng(seed, "utterance", turn.utt_id)
                        text = _make_text(rng, turn.raw)
                        y = _synthesize(rng, voices[turn.speaker], _draw_prosody(rng, turn.raw), text,
                                       synth=synth)
                        pcm = np.round(y * 32767.0).astype("<i2")
                        sf.write(str(wav_dir / f"{turn.utt_id}.wav"), pcm, SAMPLE_RATE, subtype="PCM_16", format="WAV")
                        dur = len(pcm) / SAMPLE_RATE
                        start, end = t, t + dur
                        t = end + float(gap)
                        seconds += dur
                        vad, ann = _annotation_lines(rng, turn.raw, turn.speaker[-1])
                        emo_lines.append(
                            f"[{start:.4f} - {end:.4f}]\t{turn.utt_id}\t{turn.raw}\t"
                            f"[{vad[0]:.4f}, {vad[1]:.4f}, {vad[2]:.4f}]"
                        )
                        emo_lines.extend(ann)
                        emo_lines.append("")
                        trans_lines.append(f"{turn.utt_id} [{start:08.4f}-{end:08.4f}]: {text.text}")
                        done += 1
                        if progress is not None:
                            progress(done, total_turns)
                    (emo_dir / f"{dialog}.txt").write_text("\n".join(emo_lines) + "\n", encoding="utf-8")
                    (trans_dir / f"{dialog}.txt").write_text("\n".join(trans_lines) + "\n", encoding="utf-8")
            counts = demo_counts(utterances_per_speaker=utterances_per_speaker)
            raw_counts = demo_raw_counts(utterances_per_speaker=utterances_per_speaker)
            readme = _readme(seed, utterances_per_speaker, counts, raw_counts)
            (partial / "README_DEMO.txt").write_text(readme, encoding="utf-8")
            for p in sorted(partial.iterdir()):
                p.rename(out_dir / p.name)
    finally:
        if partial.exists():
            shutil.rmtree(partial)
    n_kept = sum(sum(v.values()) for v in counts.values())
    return DemoSummary(
        root=out_dir,
        seed=seed,
        utterances_per_speaker=utterances_per_speaker,
        counts=counts,
        raw_counts=raw_counts,
        n_utterances=n_kept,
        n_turns=total_turns,
        seconds=round(seconds, 3),
    )


def _readme(
    seed: int,
    utterances_per_speaker: int,
    counts: Mapping[str, Mapping[str, int]],
    raw_counts: Mapping[str, Mapping[str, int]],
) -> str:
    def table(rows: Mapping[str, Mapping[str, int]]) -> list[str]:
        out = ["label  " + "  ".join(f"Ses.{s}" for s in DEMO_SESSIONS) + "  Total"]
        for lab, per in rows.items():
            out.append(f"{lab:<5}  " + "  ".join(f"{per[s]:5d}" for s in DEMO_SESSIONS) + f"  {sum(per.values()):5d}")
        return out

    lines = [
        "featcache demo corpus (synthetic speech and text in the IEMOCAP release layout)",
        f"format {DEMO_FORMAT}, seed {seed}, {utterances_per_speaker} kept utterances per speaker",
        "read it with: --corpus iemocap:<this folder>",
        "",
        "raw labels as written:",
        *table(raw_counts),
        "",
        "after the paper's filter (exc merged into hap; neu, xxx, sur dropped):",
        *table(counts),
        "",
    ]
    return "\n".join(lines)
