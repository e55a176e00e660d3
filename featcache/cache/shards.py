"""Shards: one entry extracted by several processes (Ray tasks), one shard each, then assembled.

A shard is a fixed slice of an entry's utterances, written by a :class:`ShardWriter` as one file in the
entry's ``.shards`` folder (named by :meth:`~featcache.cache.FeatureStore.shard_path`), under a temporary
name renamed into place, so it is there whole or not at all. :func:`assemble_shards` feeds every shard to
the entry's ordinary writer (:class:`~featcache.cache.writers.EntryWriter`) and removes the folder; see
:mod:`featcache.cache.store` for the whole protocol.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING

import numpy as np

from featcache.cache.atomic import atomic_write_bytes, write_errors_translated
from featcache.cache.backends import Block, concat_blocks
from featcache.cache.keys import EntryKey
from featcache.cache.writers import batch_block
from featcache.errors import StoreError

if TYPE_CHECKING:
    from featcache.cache.store import FeatureStore


def read_shard(store: FeatureStore, key: EntryKey, *, index: int, ids: Sequence[str]) -> tuple[Block, dict] | None:
    """What :meth:`FeatureStore.read_shard <featcache.cache.FeatureStore.read_shard>` returns.

    Args:
        store: The store.
        key: The entry.
        index: The shard's index among the entry's shards.
        ids: The shard's utterance ids.

    Returns:
        The stored shard holding exactly ``ids`` and its provenance, or None when it is absent or does not
        read (a shard is written whole or not at all, so that means it was never finished).
    """
    path = store.shard_path(key, index=index, size=len(ids))
    if not path.is_file():
        return None
    try:
        attrs = store.backend.chunk_attrs(path)
        block = store.backend.read_chunk(path)
    except Exception:  # noqa: BLE001 - any backend failure: treat it as never written
        return None
    if attrs.get("identity") != key.full_identity or sorted(block.ids) != sorted(ids):
        return None
    provenance = attrs.get("provenance")
    return block, provenance if isinstance(provenance, dict) else {}


def assemble_shards(store: FeatureStore, key: EntryKey, *, shards: Sequence[Sequence[str]],
                    lock_timeout: float) -> str:
    """What :meth:`FeatureStore.assemble_shards <featcache.cache.FeatureStore.assemble_shards>` does: commit
    an entry from its stored shards through the entry's writer, then remove the shards.

    Args:
        store: The store.
        key: The entry.
        shards: Each shard's ids, in shard order (their union is the entry's ids).
        lock_timeout: Seconds to wait for another writer of the entry (-1: forever).

    Returns:
        The writer's status: ``written``, ``resumed``, ``replaced`` or ``skipped``.

    Raises:
        StoreError: A shard is missing (names the first), or the store's writes fail (one line).
    """
    ids = [u for part in shards for u in part]
    if store.has(key) and not store.damage(key):
        drop_shards(store, key)
        return "skipped"
    found = []
    for i, part in enumerate(shards):
        got = read_shard(store, key, index=i, ids=part)
        if got is None:
            raise StoreError(f"{store.shard_path(key, index=i, size=len(part))}: shard {i} of {key} is not "
                             "stored; extract it first")
        found.append(got)
    with store.writer(key, ids=ids, provenance=found[0][1], lock_timeout=lock_timeout) as w:
        status = "skipped" if w.complete else "replaced" if w.replaced else "resumed" if w.n_done else "written"
        for block, _ in found:
            if w.complete:
                break
            pending = set(w.pending)
            keep = [i for i, u in enumerate(block.ids) if u in pending]
            if keep:
                w.add([block.ids[i] for i in keep], block.vectors[keep], labels=block.labels[keep],
                      records=[json.loads(block.records[i]) if block.records[i] else None for i in keep])
    drop_shards(store, key)
    return status


def drop_shards(store: FeatureStore, key: EntryKey) -> None:
    """Remove an entry's ``.shards`` folder, if there is one.

    Raises:
        StoreError: The store is read-only (one line).
    """
    folder = store.shards_dir(key)
    if folder.is_dir():
        with write_errors_translated(folder):
            shutil.rmtree(folder, ignore_errors=True)


class ShardWriter:
    """Writes one shard of an entry (:meth:`~featcache.cache.FeatureStore.shard_writer`): rows are kept in
    memory and the shard file is written once, atomically, when the ``with`` block ends without an error; a
    shard already stored is ``complete`` on entry. The same interface as
    :class:`~featcache.cache.writers.EntryWriter`, so extraction writes either.

    Attributes:
        complete: True when the shard is stored (found on entry, or written now).
        pending: Ids not yet added.
        final: The shard file.

    Raises:
        StoreError: (from ``add``) unknown or repeated ids, a shape mismatch; (on exit) ids never added, a
            full disk or a read-only store (one line).
    """

    replaced = ""
    n_done = 0

    def __init__(self, store: FeatureStore, key: EntryKey, *, index: int, ids: Sequence[str], provenance: dict) -> None:
        if len(set(ids)) != len(ids):
            raise StoreError(f"{key}: duplicate utterance ids given to the shard writer")
        self.store, self.key, self.index = store, key, index
        self.ids = list(ids)
        self.provenance = provenance
        self.final = store.shard_path(key, index=index, size=len(self.ids))
        self.complete = False
        self.pending: list[str] = []
        self._blocks: list[Block] = []

    def __enter__(self) -> "ShardWriter":
        self.complete = self.store.has_shard(self.key, index=self.index, ids=self.ids)
        self.pending = [] if self.complete else list(self.ids)
        return self

    def add(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        *,
        labels: Sequence[int] | np.ndarray | None = None,
        records: Sequence[dict | None] | None = None,
    ) -> None:
        """Keep one finished batch (written with the shard at the end of the ``with`` block).

        Raises:
            StoreError: Unknown or repeated ids, or a shape mismatch.
        """
        self._blocks.append(batch_block(self.key, self.pending, ids, vectors, labels=labels, records=records,
                                        part=f"shard {self.index}"))
        done = set(ids)
        self.pending = [u for u in self.pending if u not in done]

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None or self.complete:
            return
        if self.pending:
            raise StoreError(f"{self.key}: {len(self.pending)} utterance(s) of shard {self.index} not written "
                             f"(e.g. {self.pending[0]!r})")
        attrs = {"identity": self.key.full_identity, "provenance": self.provenance, "shard": self.index}
        with write_errors_translated(self.final):
            self.store._init_root()
            self.final.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.final, self.store.backend.chunk_bytes(concat_blocks(self._blocks), attrs))
        self.complete = True
