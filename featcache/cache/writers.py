"""Writing one entry: :class:`EntryWriter` (batch by batch, resumable, committed by one atomic rename)
and :func:`batch_block`, the check of a finished batch that every writer runs (the shard writer too,
:mod:`featcache.cache.shards`).

The crash-safety protocol is the store's (:mod:`featcache.cache.store`): finished batches go to the
entry's ``.partial`` folder as chunk files renamed into place, and :meth:`EntryWriter.finalize` assembles
them in sorted id order into a temporary file renamed over the entry's name.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import numpy as np

from featcache import __version__
from featcache.cache.atomic import (
    TMP_MARK,
    atomic_dir,
    atomic_write_bytes,
    fsync_path,
    write_errors_translated,
)
from featcache.cache.backends import FORMAT_VERSION, Block, concat_blocks
from featcache.cache.integrity import data_digests
from featcache.cache.keys import EntryKey, _checksum, _is_tmp_name, ids_digest
from featcache.cache.locks import acquire_lock
from featcache.errors import StoreError

if TYPE_CHECKING:
    from featcache.cache.store import FeatureStore


STORE_DTYPES: tuple[str, ...] = ("float32", "float16")
"""How vectors may be stored; an entry's key names its own (``store_dtype`` in its identity, float32 when
absent)."""


def store_dtype(key: EntryKey) -> np.dtype:
    """The dtype an entry's vectors are stored as: its identity's ``store_dtype``, float32 when absent.

    Raises:
        StoreError: A dtype other than :data:`STORE_DTYPES`.
    """
    name = key.identity.get("store_dtype", "float32")
    if name not in STORE_DTYPES:
        raise StoreError(f"{key}: store dtype {name!r} is not one of {', '.join(STORE_DTYPES)}")
    return np.dtype(name)


def batch_block(key: EntryKey, pending: Sequence[str], ids: Sequence[str], vectors: np.ndarray, *,
                labels: Sequence[int] | np.ndarray | None, records: Sequence[dict | None] | None, part: str) -> Block:
    """One finished batch checked against what its writer still expects, as a :class:`Block`.

    Args:
        key: The entry (named in errors).
        pending: Ids the writer has not received yet.
        ids: The batch's ids.
        vectors: One row per id: ``[n, dim]``, or ``[n, layers, dim]`` for an entry of several hidden states
            (stored as :func:`store_dtype` says).
        labels: Class index per id (-1 when None).
        records: The variant's record per id (JSON-encoded; empty when None).
        part: What the writer writes, for the error (``this entry``, ``shard 3``).

    Returns:
        The block.

    Raises:
        StoreError: Unknown or repeated ids, or a shape mismatch.
    """
    vectors = np.asarray(vectors, dtype=store_dtype(key))
    if vectors.ndim not in (2, 3) or vectors.shape[0] != len(ids):
        raise StoreError(f"{key}: got {vectors.shape} vectors for {len(ids)} ids")
    waiting = set(pending)
    bad = [u for u in ids if u not in waiting]
    if bad:
        raise StoreError(f"{key}: id {bad[0]!r} is already written or not part of {part}")
    return Block(
        ids=list(ids),
        labels=np.asarray(labels if labels is not None else [-1] * len(ids), dtype=np.int64),
        vectors=vectors,
        records=[json.dumps(r, sort_keys=True) if r else "" for r in (records or [None] * len(ids))],
    )


class EntryWriter:
    """Writes one entry batch by batch; see :mod:`featcache.cache.store` for the crash-safety protocol.

    Use as a context manager::

        with store.writer(key, ids=ids, provenance=prov) as w:
            for batch_ids in batches(w.pending):
                w.add(batch_ids, vectors, labels=labels, records=records)
        # complete here: the entry was renamed into place

    Attributes:
        complete: True when the entry exists (written now or found complete on entry).
        pending: Ids not yet written, in the order given.
        replaced: The problem of a damaged entry found on entry and moved aside ('' when none).

    Raises:
        StoreError: (on entry) Another process holds the lock past ``lock_timeout``, the lock file is a
            symbolic link, or the store is read-only; (from any write) the disk is full (one line; complete
            entries are untouched).
    """

    def __init__(
        self, store: FeatureStore, key: EntryKey, *, ids: Sequence[str], provenance: dict, lock_timeout: float
    ) -> None:
        if len(set(ids)) != len(ids):
            raise StoreError(f"{key}: duplicate utterance ids given to the writer")
        self.store, self.key = store, key
        self.ids = list(ids)
        self.provenance = provenance
        self.lock_timeout = lock_timeout
        self.final = store.path(key)
        self.partial = store._partial_dir(key)
        self.complete = False
        self._done: set[str] = set()
        self._n_chunks = 0
        self._lock = None
        self.pending: list[str] = []
        self._made: list[Path] = []  # the .partial folder and .lock file this writer created, if it did
        self._added = 0
        self.replaced = ""

    def __enter__(self) -> "EntryWriter":
        from filelock import Timeout

        with write_errors_translated(self.final):
            self.store._init_root()
            self.final.parent.mkdir(parents=True, exist_ok=True)
            lock_path = self.store._lock_path(self.key)
            made_lock = not lock_path.exists() and not lock_path.is_symlink()
            try:
                lock = acquire_lock(lock_path, timeout=self.lock_timeout)
            except Timeout:
                raise StoreError(f"{self.final}: another process is writing this entry; wait for it or retry") from None
            self._lock = lock
        try:
            if self.final.exists():
                self.replaced = self.store.damage(self.key)
                if not self.replaced:
                    self.complete = True
                    self.pending = []
                    return self
                self.store._set_aside(self.final, self.replaced)
            made_partial = not self.partial.is_dir()
            with write_errors_translated(self.partial):
                self._resume()
            self._made = [p for p, made in ((self.partial, made_partial), (lock_path, made_lock)) if made]
        except BaseException:
            self._lock.release()
            raise
        return self

    def _resume(self) -> None:
        backend = self.store.backend
        meta_path = self.partial / "meta.json"
        meta = {"identity": self.key.full_identity, "ids_digest": ids_digest(sorted(self.ids)), "n_ids": len(self.ids)}
        if self.partial.is_dir():
            try:
                old = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                old = None
            if old != meta:
                shutil.rmtree(self.partial)
        parent = self.final.parent
        for pattern in (f".{self.final.name}{TMP_MARK}*", f"{self.final.name}{TMP_MARK}*"):  # (older name)
            for stale in parent.glob(pattern):
                stale.unlink(missing_ok=True)  # a finalisation killed before its rename
        for stale in parent.glob(f"{self.partial.name}{TMP_MARK}*"):  # an older version's killed start
            shutil.rmtree(stale, ignore_errors=True)
        for stale in parent.glob(f".{self.partial.name}{TMP_MARK}*"):
            shutil.rmtree(stale, ignore_errors=True)
        if not self.partial.is_dir():
            with atomic_dir(self.partial) as tmp:
                (tmp / "meta.json").write_text(json.dumps(meta))
        wanted = set(self.ids)
        for chunk in sorted(self.partial.glob(f"chunk-*{backend.suffix}")):
            try:
                block = backend.read_chunk(chunk)
            except Exception:  # noqa: BLE001 - cannot happen with atomic renames, but never trust it
                chunk.unlink(missing_ok=True)
                continue
            if not set(block.ids) <= wanted:
                chunk.unlink()
                continue
            self._done.update(block.ids)
            self._n_chunks = max(self._n_chunks, int(chunk.stem.split("-")[1]) + 1)
        for leftover in self.partial.iterdir():
            if _is_tmp_name(leftover.name):  # a chunk write killed before its rename
                leftover.unlink(missing_ok=True)
        self.pending = [u for u in self.ids if u not in self._done]

    @property
    def n_done(self) -> int:
        return len(self._done)

    def add(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        *,
        labels: Sequence[int] | np.ndarray | None = None,
        records: Sequence[dict | None] | None = None,
    ) -> None:
        """Write one finished batch durably (it survives a crash from now on).

        Raises:
            StoreError: Unknown or repeated ids, or a shape mismatch.
        """
        if self.complete:
            raise StoreError(f"{self.final}: entry is already complete")
        block = batch_block(self.key, self.pending, ids, vectors, labels=labels, records=records, part="this entry")
        name = f"chunk-{self._n_chunks:06d}{self.store.backend.suffix}"
        atomic_write_bytes(self.partial / name, self.store.backend.chunk_bytes(block))
        self._n_chunks += 1
        self._added += 1
        self._done.update(ids)
        done = set(ids)
        self.pending = [u for u in self.pending if u not in done]

    def finalize(self) -> None:
        """Assemble the chunks in sorted id order and rename the entry into place.

        Raises:
            StoreError: Some ids were never written.
        """
        if self.complete:
            return
        if self.pending:
            raise StoreError(f"{self.key}: {len(self.pending)} utterance(s) not written yet (e.g. {self.pending[0]!r})")
        backend = self.store.backend
        blocks = [backend.read_chunk(c) for c in sorted(self.partial.glob(f"chunk-*{backend.suffix}"))]
        block = concat_blocks(blocks)
        order = np.argsort(np.array(block.ids, dtype=object), kind="stable") if block.ids else np.zeros(0, np.int64)
        block = Block(
            ids=[block.ids[i] for i in order],
            labels=block.labels[order],
            vectors=block.vectors[order] if len(order) else block.vectors.reshape(0, 0),
            records=[block.records[i] for i in order],
        )
        attrs = {
            **self.provenance,
            "identity": self.key.full_identity,
            "complete": True,
            "backend": backend.name,
            "format_version": FORMAT_VERSION,
            "featcache_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "n": len(block.ids),
            "dim": int(block.vectors.shape[-1]) if block.vectors.ndim >= 2 else 0,
            "checksum": _checksum(block.ids, block.vectors),
            "integrity": data_digests(ids=block.ids, labels=block.labels, records=block.records,
                                      vectors=block.vectors),
        }
        atomic_write_bytes(self.final, *backend.entry_parts(block, attrs))
        fsync_path(self.final.parent)  # the rename is durable before the chunks go
        shutil.rmtree(self.partial, ignore_errors=True)
        self.complete = True

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is None and not self.complete:
                self.finalize()
        finally:
            if exc_type is not None and not self.complete and not self._added:
                self._undo_start()
            if self._lock is not None:
                self._lock.release()

    def _undo_start(self) -> None:
        """After an error before the first batch: remove the ``.partial`` folder and ``.lock`` file this
        writer created (still holding the lock; a waiting writer notices the unlinked lock file and
        retries), so that a failed start leaves the store as it was."""
        for path in self._made:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
