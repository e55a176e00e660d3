"""A stand-alone writer process for the store's crash and concurrency tests.

usage: python store_writer.py ROOT VARIANT N_IDS BATCH SLEEP [DIM]
Prints 'skipped' when the entry was already complete, else 'wrote K' (K = rows written by this process).
A FeatcacheError ends it like the command line does: one 'Error: ...' line on stderr, exit status 1.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from featcache.cache import EntryKey, FeatureStore
from featcache.errors import FeatcacheError


def vector(utt_id: str, dim: int = 16) -> np.ndarray:
    return np.random.default_rng(int(utt_id[1:])).standard_normal(dim).astype(np.float32)


def key(variant: str) -> EntryKey:
    return EntryKey(run="test-run", fold=1, variant=variant, identity={"backbone": "fake", "weights": "0" * 8})


def main() -> None:
    root, variant, n, batch, sleep = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    dim = int(sys.argv[6]) if len(sys.argv) > 6 else 16
    ids = [f"u{i:05d}" for i in range(n)]
    store = FeatureStore(root)
    wrote = 0
    with store.writer(key(variant), ids=ids, provenance={"backbone": "fake"}) as w:
        if w.complete:
            print("skipped", flush=True)
            return
        print(f"resumed {w.n_done}", flush=True)
        while w.pending:
            b = w.pending[:batch]
            w.add(b, np.stack([vector(u, dim) for u in b]), labels=[int(u[1:]) % 4 for u in b],
                  records=[{"i": int(u[1:])} for u in b])
            wrote += len(b)
            time.sleep(sleep)
    print(f"wrote {wrote}", flush=True)


if __name__ == "__main__":
    try:
        main()
    except FeatcacheError as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(1)
