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

With ``--demo-store DIR`` (the store of ``featcache run --preset demo --cache-dir DIR``), it then runs
``featcache.study.evaluate`` over that store's heads and every condition ``--evaluations`` times and times,
inside those same runs, every check of a head before it is used: its record against its place
(:func:`featcache.heads.record.record_problem`), the digest of each file as it is loaded
(:func:`featcache.cache.integrity.digest_like`), and the content digests of the entries and unimodal heads
it was made from (:meth:`Study.head_inputs`). Prints
``RATIO head_checks_over_evaluate`` (their time over the whole evaluation's; the target is under 0.05).

usage: python bench/bench_integrity.py [--rows 5672] [--dim 768] [--repeats 15]
                                       [--demo-store DIR [--evaluations 3]]
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
    ap.add_argument("--demo-store", type=Path, default=None, help="a store made by `featcache run --preset demo`")
    ap.add_argument("--evaluations", type=int, default=3)
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
    if args.demo_store is not None:
        head_checks(args.demo_store, evaluations=args.evaluations)


def head_checks(cache_dir: Path, *, evaluations: int) -> None:
    """Time the checks of every head inside whole evaluations of the demo study in ``cache_dir``."""
    import featcache.heads.files as head_files
    import featcache.study.core as core
    from featcache import api
    from featcache.study import evaluate

    spent = [0.0]

    def clocked(fn: Callable[..., object]) -> Callable[..., object]:
        def run(*a: object, **k: object) -> object:
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[0] += time.perf_counter() - start
        return run

    core.record_problem = clocked(core.record_problem)  # type: ignore[assignment]
    core.Study.head_inputs = clocked(core.Study.head_inputs)  # type: ignore[method-assign]
    head_files.digest_like = clocked(head_files.digest_like)  # type: ignore[assignment]  (each file, as it is loaded)
    totals, checks = [], []
    for _ in range(evaluations):
        study = api.open_study(corpus="iemocap:demo-corpus", preset="demo", cache_dir=cache_dir)
        spent[0] = 0.0
        start = time.perf_counter()
        preds, missing = evaluate(study, progress=False)
        totals.append(time.perf_counter() - start)
        checks.append(spent[0])
        study.close()
        if missing:
            raise SystemExit(f"the demo store lacks: {missing[0]}; run `featcache run --preset demo --cache-dir {cache_dir}`")
    n_heads = len({(f, s, m) for f, s, m in zip(preds.fold, preds.seed, preds.model)})
    best = min(range(evaluations), key=lambda i: totals[i])
    print(f"evaluate (demo store, {n_heads} heads, {len(preds):,} predictions): median "
          f"{sorted(totals)[evaluations // 2]:.2f} s, min {totals[best]:.2f} s; head checks in that run "
          f"{1000 * checks[best]:.1f} ms ({1000 * checks[best] / n_heads:.2f} ms per head)")
    print(f"RATIO head_checks_over_evaluate {checks[best] / totals[best]:.4f}")


if __name__ == "__main__":
    main()
