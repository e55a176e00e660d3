"""Listing and checking a store's entries (``featcache cache ls`` and ``featcache cache verify``).

:func:`iter_entries` finds every entry under ``features/``: complete, partial (an interrupted extraction,
a ``.partial`` folder, or the ``.shards`` folder of an interrupted distributed one) or broken;
:func:`verify` and :func:`check_entry` read every byte of the complete ones. The store's methods of the
same names (:class:`~featcache.cache.FeatureStore`) call these.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from featcache.cache.integrity import data_digests, file_problem, quick_problem
from featcache.cache.keys import SHARDS_SUFFIX, _checksum

if TYPE_CHECKING:
    from featcache.cache.store import FeatureStore


@dataclass
class EntryInfo:
    """What ``featcache cache ls`` shows about one entry."""

    path: Path
    status: str  # complete | partial | broken
    run: str = ""
    fold: int | None = None
    variant: str = ""
    rows: int = 0
    dim: int = 0
    layers: int = 0  # hidden states per utterance (0: one vector, the last layer's)
    size_bytes: int = 0
    provenance: dict = field(default_factory=dict)
    problem: str = ""


def iter_entries(store: FeatureStore) -> Iterator[EntryInfo]:
    """Every entry under the root: complete, partial (interrupted) or broken.

    Args:
        store: The store.

    Returns:
        An iterator of :class:`EntryInfo`, in path order.
    """
    feats = store.features_dir
    if not feats.is_dir():
        return
    for p in sorted(feats.rglob("*")):
        if p.is_file() and p.suffix == store.backend.suffix and not p.parts[-2].endswith((".partial", SHARDS_SUFFIX)):
            yield _info(store, p)
        elif p.is_dir() and p.suffix == ".partial":
            yield _partial_info(store, p)
        elif p.is_dir() and p.suffix == SHARDS_SUFFIX:
            yield _shards_info(store, p)


def _info(store: FeatureStore, path: Path) -> EntryInfo:
    info = EntryInfo(path=path, status="complete", size_bytes=path.stat().st_size)
    try:
        r = store.backend.open_entry(path)
    except Exception as e:  # noqa: BLE001
        info.status, info.problem = "broken", f"cannot open ({quick_problem(path) or type(e).__name__})"
        return info
    try:
        ident = r.attrs.get("identity", {})
        info.provenance = dict(r.attrs)
        info.run, info.fold, info.variant = ident.get("run", ""), ident.get("fold"), ident.get("variant", "")
        shape = r.shape
        info.rows, info.dim = shape[0], shape[-1]
        info.layers = shape[1] if len(shape) == 3 else 0
    except Exception as e:  # noqa: BLE001
        info.status, info.problem = "broken", f"unreadable ({type(e).__name__})"
    finally:
        r.close()
    return info


def _partial_info(store: FeatureStore, path: Path) -> EntryInfo:
    info = EntryInfo(path=path, status="partial")
    try:
        meta = json.loads((path / "meta.json").read_text())
        ident = meta["identity"]
        info.run, info.fold, info.variant = ident["run"], ident["fold"], ident["variant"]
        chunks = list(path.glob(f"chunk-*{store.backend.suffix}"))
        info.size_bytes = sum(c.stat().st_size for c in chunks)
        info.problem = f"{len(chunks)} chunk(s) of {meta['n_ids']} ids' extraction; rerun to resume"
    except (OSError, ValueError, KeyError):
        info.problem = "interrupted before its first chunk; rerun to resume"
    return info


def _shards_info(store: FeatureStore, path: Path) -> EntryInfo:
    shards = sorted(path.glob(f"s*{store.backend.suffix}"))
    info = EntryInfo(path=path, status="partial", size_bytes=sum(p.stat().st_size for p in shards),
                     problem=f"{len(shards)} shard(s) of a distributed extraction; rerun to finish it")
    if shards:
        try:
            ident = store.backend.chunk_attrs(shards[0]).get("identity", {})
            info.run, info.fold, info.variant = ident["run"], ident["fold"], ident["variant"]
        except Exception:  # noqa: BLE001 - a listing shows what it can
            pass
    return info


def verify(store: FeatureStore) -> list[EntryInfo]:
    """Check every entry: size and SHA-256 of every byte, opens, shapes agree, vectors finite, every
    recorded digest matches.

    Args:
        store: The store.

    Returns:
        All entries, with ``status`` set to ``broken`` and ``problem`` filled for the bad ones.
    """
    out = []
    for info in iter_entries(store):
        if info.status == "complete":
            problem = check_entry(store, info.path)
            if problem:
                info.status, info.problem = "broken", problem
        out.append(info)
    return out


def check_entry(store: FeatureStore, path: Path) -> str:
    """Every check :func:`verify` runs on one complete entry file.

    Args:
        store: The store (its backend opens the file).
        path: The entry file.

    Returns:
        ``''`` when the entry is intact, else its problem (``checksum mismatch ...``, ``cannot open ...``,
        ``non-finite values in vectors``, ...).
    """
    problem = file_problem(path)
    if problem:
        return problem if problem.startswith("checksum") else f"cannot open ({problem})"
    try:
        r = store.backend.open_entry(path)
    except Exception as e:  # noqa: BLE001
        return f"cannot open ({type(e).__name__})"
    try:
        attrs = r.attrs
        if attrs.get("complete") is not True:
            return "not marked complete"
        n = r.shape[0]
        ids = r.ids
        if len(ids) != n or len(r.labels()) != n or len(r.records()) != n:
            return "ids, labels, records and vectors disagree in length"
        if len(set(ids)) != n:
            return "duplicate ids"
        vec = r.rows(np.arange(n))
        if not np.isfinite(vec).all():
            return "non-finite values in vectors"
        if "checksum" in attrs and attrs["checksum"] != _checksum(ids, vec):  # (older entries may lack it)
            return "checksum mismatch: the file changed after it was written"
        digests = attrs.get("integrity")
        if digests is not None:
            ours = data_digests(ids=ids, labels=r.labels(), records=r.records(), vectors=vec)
            if digests != ours:
                bad = [k for k in ours if not isinstance(digests, dict) or digests.get(k) != ours[k]]
                return f"checksum mismatch in {', '.join(bad)}: the file changed after it was written"
        if attrs.get("identity", {}).get("run") is None:
            return "no identity recorded"
    except Exception as e:  # noqa: BLE001
        return f"unreadable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    finally:
        r.close()
    return ""
