"""Speech recognition on the spoken demo corpus: Whisper's own 30 s window against a shorter one, one decoder on
all cores against one single-threaded decoder per core (``featcache.transcribe.transcribe``).

Usage: python bench/bench_transcribe.py [--clips 60] [--windows 30,10] [--corpus DIR] [--repeats 1]

The clips are every k-th utterance of the demo corpus (written to a temporary folder unless ``--corpus`` names
one), espeak-ng speech of 1-8 s as ``featcache run --preset demo`` transcribes it. Each configuration decodes
the same clips into a fresh store and prints seconds of decoding per second of audio, the word error rate
against the gold text, and how many transcripts equal those of the first configuration. The RATIO lines are
measured in this one run:

* ``transcribe_window10_over_window30_time``: the demo's 10 s window against Whisper's 30 s (goal <= 0.35:
  the demo's recognition in a third of the time or less), with the word error rates of both;
* ``transcribe_side_by_side_over_one_decoder_time``: one single-threaded decoder per core (what featcache runs)
  against one decoder on every core, in the short window; both give the same text.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any


def _decode(corpus: Any, recognizer: Any, *, window: float, workers: int, one_decoder: bool) -> tuple[float, Any]:
    """Seconds and result of one transcription of ``corpus`` into a fresh store."""
    from featcache.transcribe import transcribe

    if one_decoder:  # one CTranslate2 replica on every core: what featcache did before decoding side by side
        import ctranslate2

        files = {"model.bin": b"".join(p.read_bytes() for p in recognizer.model_parts)}
        files.update({p.name: p.read_bytes() for p in recognizer.side_files})
        recognizer._models["int8", workers] = ctranslate2.models.Whisper(
            recognizer.name, device="cpu", compute_type="int8", inter_threads=1, intra_threads=workers, files=files)
    with tempfile.TemporaryDirectory() as store:
        start = time.perf_counter()
        result = transcribe(corpus, cache_dir=store, recognizer=recognizer, window_seconds=window, workers=workers,
                            progress=False)
        seconds = time.perf_counter() - start
    recognizer._models.pop(("int8", workers), None)
    return seconds, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=60, help="clips of the demo corpus decoded")
    ap.add_argument("--windows", default="30,10", help="windows in seconds; the first is the reference")
    ap.add_argument("--corpus", default=None, help="a demo corpus folder (default: write one)")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each configuration (the fastest counts)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from featcache.data import load_corpus
    from featcache.demo import write_demo_corpus
    from featcache.transcribe import resolve_recognizer

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.corpus) if args.corpus else write_demo_corpus(Path(tmp) / "demo").root
        corpus = load_corpus(f"iemocap:{root}")
        step = max(1, len(corpus.utterances) // args.clips)
        corpus = dataclasses.replace(corpus, utterances=corpus.utterances[::step][: args.clips])
        recognizer = resolve_recognizer("whisper-base")
        cores = len(os.sched_getaffinity(0))
        windows = [float(w) for w in args.windows.split(",")]
        audio = None
        print(f"{len(corpus.utterances)} clips of the demo corpus; whisper-base int8, greedy; {cores} cores "
              f"({platform.machine()}), load average {os.getloadavg()[0]:.2f}")
        configs = [(w, False) for w in windows] + [(windows[-1], True)]
        timing: dict[tuple[float, bool], float] = {}
        results: dict[tuple[float, bool], Any] = {}
        for _ in range(args.repeats):
            for window, one in configs:
                seconds, result = _decode(corpus, recognizer, window=window, workers=cores, one_decoder=one)
                timing[window, one] = min(seconds, timing.get((window, one), float("inf")))
                results[window, one] = result
                audio = result.audio_seconds
        reference = results[windows[0], False]
        for (window, one), seconds in timing.items():
            r = results[window, one]
            same = sum(a["text"] == b["text"] for a, b in zip(r.records, reference.records))
            how = f"1 decoder x {cores} threads" if one else f"{cores} decoders x 1 thread"
            print(f"window {window:g} s, {how}: {seconds:.1f} s for {audio:.0f} s of audio "
                  f"({seconds / audio:.3f} s per second), WER {100 * r.wer:.1f}% over {r.wer_words} words, "
                  f"{same}/{len(r.records)} transcripts as with the {windows[0]:g} s window")
        short, full = timing[windows[-1], False], timing[windows[0], False]
        print(f"RATIO transcribe_window{windows[-1]:g}_over_window{windows[0]:g}_time = {short / full:.2f} "
              f"(goal <= 0.35; WER {100 * results[windows[-1], False].wer:.1f}% vs {100 * reference.wer:.1f}%)")
        texts_equal = [a["text"] for a in results[windows[-1], True].records] == \
            [a["text"] for a in results[windows[-1], False].records]
        print(f"RATIO transcribe_side_by_side_over_one_decoder_time = {short / timing[windows[-1], True]:.2f} "
              f"(window {windows[-1]:g} s; the same text: {texts_equal})")


if __name__ == "__main__":
    main()
