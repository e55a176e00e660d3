"""Peak memory of an extraction over N utterances versus 4N utterances (goal: ratio <= 1.1).

Usage: python bench/bench_memory.py [--n 200] [--shapes equal|drawn] [--backbone tiny-wav2vec2] [--workers 0]
                                    [--repeats 1]

Two corpora of speech-like 16 kHz wav files are written, with durations drawn like IEMOCAP's
(lognormal, mean 4.5 s, clipped to 0.6..--max-s): the small one has N clips, the large one repeats
the small one's durations four times (new waveforms). Peak memory also depends on the largest batch
(its longest clips times how many of them share a batch), so by default (``--shapes equal``) each
drawn duration is used for ``--batch-size`` consecutive clips: every batch of both corpora is full
and both corpora have the same batch shapes, and only the corpus size differs. ``--shapes drawn``
uses N independent draws instead (the large corpus then also has fuller batches of its longest clips).

Each extraction (clean variant, into a fresh store) runs in a fresh subprocess that reads its own
peak RSS with ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` at the end; it also reports the peak
before the extraction started (after imports and the model load); with --workers > 0 also the
largest peak of its forked children (``RUSAGE_CHILDREN``: DataLoader workers, which count the pages
they share with the parent). The default backbone is a tiny randomly initialised wav2vec 2.0 (2
layers, 32-d, 50 frames per second), so the run is quick and the model does not hide the pipeline's
own memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from _synth import cpu_count, iemocap_durations, local_backbone, peak_rss_mib, wav2vec2_checkpoint, write_corpus


def child(manifest: Path, store_root: Path, backbone: Path, *, workers: int, batch_size: int, threads: int) -> None:
    """Extract the clean variant of one corpus and print one JSON line with the memory readings.

    Args:
        manifest: The corpus manifest.
        store_root: A fresh store directory.
        backbone: Checkpoint directory.
        workers: DataLoader workers.
        batch_size: Utterances per forward pass.
        threads: Torch threads.
    """
    import resource

    import torch

    from featcache.backbones.encoders import load_encoder
    from featcache.backbones.resolve import resolve_backbone
    from featcache.cache import FeatureStore
    from featcache.data import read_manifest
    from featcache.extract import EncoderRun, extract

    torch.set_num_threads(threads)
    store = FeatureStore(store_root)
    corpus = read_manifest(manifest)
    run = EncoderRun(modality="audio", backbone=str(backbone))
    encoder = load_encoder(resolve_backbone(str(backbone), models_dir=store.models_dir), options=run.options)
    before = peak_rss_mib()
    start = time.perf_counter()
    report = extract(corpus, store, run=run, variant="clean", batch_size=batch_size, num_workers=workers,
                     encoder=encoder, progress=False)
    seconds = time.perf_counter() - start
    with store.open(report.key) as entry:
        n_stored = len(entry)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"n": len(corpus), "stored": n_stored, "status": report.status, "seconds": seconds,
                      "peak_before_mib": before, "peak_mib": peak_rss_mib(), "workers_peak_mib": children}))


def measure(manifest: Path, store_root: Path, backbone: Path, *, workers: int, batch_size: int,
            threads: int) -> dict[str, float]:
    """Run :func:`child` in a fresh interpreter and return its readings.

    Args:
        manifest: The corpus manifest.
        store_root: A fresh store directory.
        backbone: Checkpoint directory.
        workers: DataLoader workers.
        batch_size: Utterances per forward pass.
        threads: Torch threads.

    Returns:
        The child's JSON readings.

    Raises:
        RuntimeError: The subprocess failed (its stderr's last line is included).
    """
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(manifest), "--child-store", str(store_root),
           "--backbone", str(backbone), "--workers", str(workers), "--batch-size", str(batch_size),
           "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"measurement subprocess failed ({proc.returncode}): {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments, measure N and 4N and print the table and the ratio.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="utterances of the small corpus (the large one has 4N)")
    parser.add_argument("--max-s", type=float, default=12.0, help="longest clip in seconds")
    parser.add_argument("--shapes", choices=("equal", "drawn"), default="equal",
                        help="equal: each duration fills whole batches, so both corpora have the same batch shapes")
    parser.add_argument("--backbone", default="tiny-wav2vec2",
                        help="tiny-wav2vec2 (built in a temp dir), whisper-base, or an audio checkpoint directory")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the extracting process")
    parser.add_argument("--repeats", type=int, default=1,
                        help="fresh subprocesses per corpus; the median run is reported (allocator noise)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="persistent folder for converted backbones (default: $FEATCACHE_CACHE/models, "
                             "else ./cache/models)")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-store", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        child(args.child, args.child_store, Path(args.backbone), workers=args.workers, batch_size=args.batch_size,
              threads=args.threads)
        return

    from featcache.cache import default_root

    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        root = Path(tmp)
        if args.backbone == "tiny-wav2vec2":
            backbone = wav2vec2_checkpoint(root / "tiny-wav2vec2", seed=args.seed, size="tiny")
        else:
            backbone = local_backbone(args.backbone, models_dir=args.models_dir or default_root() / "models")
        if args.shapes == "equal":
            groups = -(-args.n // args.batch_size)
            durations = np.repeat(iemocap_durations(groups, seed=args.seed, high_s=args.max_s), args.batch_size)
        else:
            durations = iemocap_durations(args.n, seed=args.seed, high_s=args.max_s)
        n = len(durations)
        t0 = time.perf_counter()
        small = write_corpus(root / "small", durations, seed=args.seed)
        large = write_corpus(root / "large", np.tile(durations, 4), seed=args.seed + 1)
        total = durations.sum()
        print(f"corpora: {n} and {4 * n} clips ({args.shapes} batch shapes), {total:.0f} s and {4 * total:.0f} s of "
              f"audio (clip durations mean {durations.mean():.2f} s, max {durations.max():.2f} s; the large corpus "
              f"repeats the small one's durations), written in {time.perf_counter() - t0:.1f} s")
        print(f"backbone {args.backbone}; workers {args.workers}; batch {args.batch_size}; {args.threads} torch "
              f"threads; {cpu_count()} cores ({platform.processor() or platform.machine()}); "
              f"python {platform.python_version()}")
        rows = []
        for label, manifest in (("N", small), ("4N", large)):
            runs = []
            for i in range(max(1, args.repeats)):
                runs.append(measure(manifest, root / f"store-{label}-{i}", backbone, workers=args.workers,
                                    batch_size=args.batch_size, threads=args.threads))
            runs.sort(key=lambda r: r["peak_mib"])
            if len(runs) > 1:
                peaks = ", ".join(f"{r['peak_mib']:.1f}" for r in runs)
                print(f"  {label}: peak MiB per run {peaks}")
            rows.append((label, runs[(len(runs) - 1) // 2]))  # the median run (the lower one of an even count)
        print()
        workers_col = f" {'workers peak MiB':>16}" if args.workers else ""
        print(f"{'corpus':<6} {'utts':>5} {'stored':>6} {'seconds':>8} {'peak before MiB':>15} {'peak MiB':>9} "
              f"{'extraction +MiB':>15}{workers_col}")
        for label, r in rows:
            workers_val = f" {r['workers_peak_mib']:>16.1f}" if args.workers else ""
            print(f"{label:<6} {r['n']:>5} {r['stored']:>6} {r['seconds']:>8.1f} {r['peak_before_mib']:>15.1f} "
                  f"{r['peak_mib']:>9.1f} {r['peak_mib'] - r['peak_before_mib']:>15.1f}{workers_val}")
        (_, small_r), (_, large_r) = rows
        ratio = large_r["peak_mib"] / small_r["peak_mib"]
        grow = (large_r["peak_mib"] - large_r["peak_before_mib"]) - (small_r["peak_mib"] - small_r["peak_before_mib"])
        print()
        print("peak before: after imports and the model load; extraction +MiB: what the extraction added to the peak.")
        print(f"4N - N difference of the extraction's own increment: {grow:+.1f} MiB "
              f"({grow / (3 * n) * 1024:+.1f} KiB per extra utterance)")
        print(f"RATIO memory = {ratio:.3f} (goal <= 1.1; peak RSS {large_r['peak_mib']:.1f} MiB at {4 * n} "
              f"utterances / {small_r['peak_mib']:.1f} MiB at {n})")


if __name__ == "__main__":
    main()
