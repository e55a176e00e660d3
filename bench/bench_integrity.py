"""What the store's integrity checks cost, against reading the vectors they protect.

Writes one entry of the paper's size (5,672 utterances x 768 float32, about 18 MB) into a fresh store,
then times, with a warm page cache (median and minimum of ``--repeats`` runs):

* ``has``: a stat and the 512-byte header (the size check);
* ``read``: every vector through the backend's reader, no check (the baseline);
* ``open``: HDF5 open, stored identity and size check;
* ``open+vectors``: open and read every vector, checked against its digest (what evaluation does);
* ``digest``: the vector digest alone, on vectors already in memory;
* ``sha256``: the whole-file SHA-256 (``FeatureStore.damage``, run before extraction skips an entry,
  and ``cache verify``).

Prints one line per step and ``RATIO check_over_read`` (the digest over the plain read).

usage: python bench/bench_integrity.py [--rows 5672] [--dim 768] [--repeats 15]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from featcache.cache import EntryKey, FeatureStore  # noqa: E402
from featcache.cache.integrity import digest_vectors, file_problem  # noqa: E402


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median and minimum seconds of ``fn`` over ``repeats`` runs (after one warm-up run)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2], times[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=5672)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()

    store = FeatureStore(Path(tempfile.mkdtemp(prefix="bench-integrity-")))
    key = EntryKey(run="text-bench-frozen", fold=None, variant="clean", identity={"weights": "bench"})
    ids = [f"Ses0{1 + i % 5}F_impro01_F{i:05d}" for i in range(args.rows)]
    rng = np.random.default_rng(0)
    with store.writer(key, ids=ids) as w:
        for start in range(0, args.rows, 512):
            batch = ids[start:start + 512]
            w.add(batch, rng.standard_normal((len(batch), args.dim)).astype(np.float32), labels=[0] * len(batch),
                  records=[{}] * len(batch))
    path = store.path(key)
    with store.open(key) as entry:
        matrix = np.array(entry.vectors())

    def read() -> None:
        reader = store.backend.open_entry(path)
        reader.rows(np.arange(reader.shape[0]))
        reader.close()

    def open_vectors() -> None:
        with store.open(key) as entry:
            entry.vectors()

    steps: dict[str, Callable[[], object]] = {
        "has": lambda: store.has(key),
        "read": read,
        "open": lambda: store.open(key).close(),
        "open+vectors": open_vectors,
        "digest": lambda: digest_vectors(matrix),
        "sha256": lambda: file_problem(path),
    }
    print(f"entry: {args.rows} x {args.dim} float32, {path.stat().st_size:,} bytes")
    results = {}
    for name, fn in steps.items():
        results[name] = timed(fn, args.repeats)
        median, best = results[name]
        print(f"{name:<14} median {1000 * median:8.2f} ms   min {1000 * best:8.2f} ms")
    print(f"RATIO check_over_read {results['digest'][0] / results['read'][0]:.3f}")


if __name__ == "__main__":
    main()
