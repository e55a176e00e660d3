"""Time every audio attack on synthetic speech-like clips and print ms per second of audio.

Usage: python bench/bench_attacks.py [--clips 20] [--min-s 1] [--max-s 8] [--variants pitch,noise]

Each variant first runs once on a short clip (library warm-up, not timed), then draws and applies on
every clip; the table reports the time of that one run divided by the total audio duration.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Sequence

import numpy as np

from featcache.perturb import get_variant, list_variants

SR = 16_000


def synthetic_clips(*, count: int, min_s: float, max_s: float, seed: int) -> list[np.ndarray]:
    """Speech-like clips: a harmonic tone with a gliding F0, a syllable-rate envelope and a little noise.

    Args:
        count: Number of clips.
        min_s: Shortest duration in seconds.
        max_s: Longest duration in seconds.
        seed: Random seed.

    Returns:
        float32 mono clips at 16 kHz, durations evenly spread over [min_s, max_s].
    """
    rng = np.random.default_rng(seed)
    clips = []
    for duration in np.linspace(min_s, max_s, count):
        t = np.arange(round(duration * SR)) / SR
        f0 = rng.uniform(100, 250) * (1 + 0.1 * np.sin(2 * np.pi * 0.5 * t))
        phase = 2 * np.pi * np.cumsum(f0) / SR
        voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
        envelope = np.clip(np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)), 0, None)
        y = 0.2 * voiced * envelope + 0.005 * rng.standard_normal(t.size)
        clips.append(y.astype(np.float32))
    return clips


def bench(specs: Sequence[str], clips: Sequence[np.ndarray]) -> list[tuple[str, float, float]]:
    """Time each variant over all clips.

    Args:
        specs: Variant specs.
        clips: Waveforms at 16 kHz.

    Returns:
        ``(spec, total milliseconds, milliseconds per second of audio)`` per variant.
    """
    seconds = sum(c.shape[0] for c in clips) / SR
    warm = clips[0][: SR // 2]
    rows = []
    for spec in specs:
        variant = get_variant(spec)
        variant(warm, utt_id="warm-up", seed=0, sr=SR)
        start = time.perf_counter()
        for i, clip in enumerate(clips):
            variant(clip, utt_id=f"clip{i:03d}", seed=0, sr=SR)
        elapsed_ms = 1000 * (time.perf_counter() - start)
        rows.append((variant.spec, elapsed_ms, elapsed_ms / seconds))
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments, run the benchmark and print the table.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--min-s", type=float, default=1.0)
    parser.add_argument("--max-s", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", default="", help="comma-separated specs (default: every audio variant)")
    args = parser.parse_args(argv)
    specs = [s for s in args.variants.split(",") if s] or [v.spec for v in list_variants("audio")]
    clips = synthetic_clips(count=args.clips, min_s=args.min_s, max_s=args.max_s, seed=args.seed)
    seconds = sum(c.shape[0] for c in clips) / SR
    print(f"{len(clips)} clips, {seconds:.1f} s of 16 kHz audio; {platform.processor() or platform.machine()}")
    width = max(len(s) for s in specs)
    print(f"{'variant':<{width}}  {'total ms':>9}  {'ms per s audio':>14}")
    for spec, total_ms, per_second in bench(specs, clips):
        print(f"{spec:<{width}}  {total_ms:>9.1f}  {per_second:>14.2f}")


if __name__ == "__main__":
    main()
