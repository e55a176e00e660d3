"""Compare two stores and two report folders of the same featcache command byte for byte: every file must be
identical, except that an entry may differ in its 512-byte header and its `created` attribute (its creation
time), nowhere else.

usage: python scripts/compare_runs.py STORE_A STORE_B REPORT_A REPORT_B
"""
import collections
import pathlib
import sys

import h5py
import numpy as np


def files(root):
    root = pathlib.Path(root)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

sa, sb, ra, rb = sys.argv[1:5]
a, b = files(sa), files(sb)
print("store files:", len(a), len(b), "same names:", a.keys() == b.keys())
diff = [k for k in a if a[k] != b.get(k)]
print("differing store files by folder:", dict(collections.Counter(k.split("/")[0] for k in diff)))
print("heads files:", sum(k.startswith("heads/") for k in a), "differing:", sum(k.startswith("heads/") for k in diff))
ok = True
for k in diff:
    if not k.endswith(".h5"):
        ok = False; print("NOT AN ENTRY:", k); continue
    x, y = np.frombuffer(a[k], np.uint8), np.frombuffer(b[k], np.uint8)
    d = np.flatnonzero(x != y) if x.size == y.size else None
    with h5py.File(pathlib.Path(sa) / k) as fa, h5py.File(pathlib.Path(sb) / k) as fb:
        other = [n for n in fa.attrs if n != "created" and fa.attrs[n] != fb.attrs[n]]
        data = all(np.array_equal(fa[n][()], fb[n][()]) for n in fa)
        created = fa.attrs["created"]
    body = d[d >= 512] if d is not None else None
    pos = a[k].find(created.encode())
    inside = d is not None and (body.size == 0 or (pos >= 0 and body.min() >= pos and body.max() < pos + len(created)))
    ok &= inside and not other and data
print("entries differ only in their header and created time:", ok)
ra_, rb_ = files(ra), files(rb)
report_diff = [k for k in ra_ if ra_[k] != rb_.get(k)]
print("report files:", len(ra_), len(rb_), "same names:", ra_.keys() == rb_.keys(), "differing:", report_diff)
sys.exit(0 if ok and a.keys() == b.keys() and ra_.keys() == rb_.keys() and not report_diff else 1)
