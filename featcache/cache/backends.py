"""Storage backends of the feature store.

A backend knows how to write and read two things: a *chunk* (one finished batch of an entry that is
still being extracted) and an *entry* (the complete, final matrix with its provenance). The store
records the backend's name in ``store.json`` at its root and in every entry, so a reader never guesses.

A backend renders a chunk or an entry as bytes in memory (:meth:`Backend.chunk_bytes`,
:meth:`Backend.entry_parts`); the store writes them with plain file writes
(:mod:`featcache.cache.atomic`), so a full disk or a read-only folder is an ordinary ``OSError``
there, never a failure inside the storage library (HDF5 crashed the process on ``ENOSPC``). An entry
file starts with a :data:`~featcache.cache.integrity.HEADER_SIZE`-byte header
(:mod:`featcache.cache.integrity`) that the backend's reader skips.

Only the ``hdf5`` backend (h5py) exists today; new ones register in :data:`BACKENDS`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from featcache.cache.integrity import HEADER_SIZE, seal

FORMAT_VERSION = 1


@dataclass
class Block:
    """Rows of an entry: ids, labels, vectors and one JSON record per row."""

    ids: list[str]
    labels: np.ndarray  # int64 class indices (-1 = unknown)
    vectors: np.ndarray  # float32 or float16, [n, dim] or [n, layers, dim]
    records: list[str]  # JSON strings, "" when the variant records nothing


class EntryReader(Protocol):
    """An opened, complete entry. Reads are lazy: vectors are sliced from disk."""

    attrs: dict[str, object]

    @property
    def ids(self) -> list[str]: ...
    def labels(self) -> np.ndarray: ...
    def rows(self, index: np.ndarray) -> np.ndarray: ...
    def records(self) -> list[str]: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    def close(self) -> None: ...


class Backend(Protocol):
    """Renders and reads chunks and entries."""

    name: str
    suffix: str

    def chunk_bytes(self, block: Block, attrs: dict[str, object] | None = None) -> bytes: ...
    def read_chunk(self, path: Path) -> Block: ...
    def chunk_attrs(self, path: Path) -> dict[str, object]: ...
    def entry_parts(self, block: Block, attrs: dict[str, object]) -> tuple[bytes, bytes]: ...
    def open_entry(self, path: Path) -> EntryReader: ...


class HDF5Backend:
    """Entries and chunks as HDF5 files (h5py): datasets ``ids``, ``labels``, ``vectors``, ``records``
    and the provenance as JSON-valued attributes. An entry reserves its first
    :data:`~featcache.cache.integrity.HEADER_SIZE` bytes as HDF5's user block, which holds the header."""

    name = "hdf5"
    suffix = ".h5"

    def _image(self, block: Block, attrs: dict[str, object] | None, *, userblock: int | None) -> bytes:
        """The HDF5 file as bytes, built in memory (HDF5's core driver; nothing touches the disk).

        With ``userblock``, the bytes are what follows a user block of that size. The same block and
        attributes give the same bytes: no object timestamps (``track_times=False``), the attributes in
        name order with sorted JSON keys, the datasets in a fixed order.
        """
        import h5py

        n = len(block.ids)
        vectors = np.ascontiguousarray(block.vectors)
        if vectors.dtype not in (np.float32, np.float16):
            vectors = vectors.astype(np.float32)
        if vectors.ndim < 2:
            vectors = vectors.reshape(n, -1)
        str_dt = h5py.string_dtype("utf-8")
        f = h5py.File(f"featcache-image-{uuid.uuid4().hex}", "w", driver="core", backing_store=False,
                      libver="latest", track_order=True, userblock_size=userblock)
        try:
            f.create_dataset("ids", data=np.array(block.ids, dtype=object), dtype=str_dt, track_times=False)
            f.create_dataset("labels", data=np.asarray(block.labels, dtype=np.int64), track_times=False)
            chunks = (min(max(n, 1), 256), *vectors.shape[1:]) if n and all(vectors.shape[1:]) else None
            f.create_dataset("vectors", data=vectors, chunks=chunks, track_times=False)
            f.create_dataset("records", data=np.array(block.records, dtype=object), dtype=str_dt, track_times=False)
            for k, v in sorted((attrs or {}).items()):  # in name order: the bytes never depend on the dict's
                f.attrs[k] = json.dumps(v, sort_keys=True)
            f.flush()
            return f.id.get_file_image()
        finally:
            f.close()

    def chunk_bytes(self, block: Block, attrs: dict[str, object] | None = None) -> bytes:
        """A chunk file's content (``attrs``: JSON-valued attributes stored with it, as in an entry)."""
        return self._image(block, attrs, userblock=None)

    def chunk_attrs(self, path: Path) -> dict[str, object]:
        """The attributes a chunk file was written with (empty when none)."""
        import h5py

        with h5py.File(path, "r") as f:
            return {k: json.loads(v) for k, v in f.attrs.items()}

    def write_chunk(self, path: Path, block: Block) -> None:
        """Write a chunk file (not atomically: the store writes through :mod:`featcache.cache.atomic`)."""
        Path(path).write_bytes(self.chunk_bytes(block))

    def read_chunk(self, path: Path) -> Block:
        import h5py

        with h5py.File(path, "r") as f:
            return Block(
                ids=[s.decode() if isinstance(s, bytes) else s for s in f["ids"][()]],
                labels=f["labels"][()],
                vectors=f["vectors"][()],
                records=[s.decode() if isinstance(s, bytes) else s for s in f["records"][()]],
            )

    def entry_parts(self, block: Block, attrs: dict[str, object]) -> tuple[bytes, bytes]:
        """An entry file's content as ``(header, body)``: the sealed header, then the HDF5 file after its
        user block (two pieces, so the file is never copied into one more buffer)."""
        body = self._image(block, attrs, userblock=HEADER_SIZE)
        return seal(body), body

    def write_entry(self, path: Path, block: Block, attrs: dict[str, object]) -> None:
        """Write an entry file (not atomically: the store writes through :mod:`featcache.cache.atomic`)."""
        with Path(path).open("wb") as f:
            for part in self.entry_parts(block, attrs):
                f.write(part)

    def open_entry(self, path: Path) -> "HDF5EntryReader":
        return HDF5EntryReader(path)


class HDF5EntryReader:
    """A complete HDF5 entry, opened once; vectors are read on demand."""

    def __init__(self, path: Path) -> None:
        import h5py

        self.path = path
        self._f = h5py.File(path, "r")
        self.attrs: dict[str, object] = {k: json.loads(v) for k, v in self._f.attrs.items()}
        self._ids: list[str] | None = None

    @property
    def ids(self) -> list[str]:
        if self._ids is None:
            self._ids = self._f["ids"].asstr()[()].tolist()
        return self._ids

    def labels(self) -> np.ndarray:
        return self._f["labels"][()]

    def rows(self, index: np.ndarray) -> np.ndarray:
        """Vectors at row positions ``index`` (any order, repeats allowed)."""
        index = np.asarray(index, dtype=np.int64)
        ds = self._f["vectors"]
        if index.size == 0:
            return np.zeros((0, *ds.shape[1:]), dtype=ds.dtype)
        if index.size == ds.shape[0] and np.array_equal(index, np.arange(ds.shape[0])):
            return ds[()]
        order = np.argsort(index, kind="stable")
        uniq, inverse = np.unique(index[order], return_inverse=True)
        block = ds[uniq]  # h5py needs increasing, unique indices
        out = np.empty((index.size, *ds.shape[1:]), dtype=ds.dtype)
        out[order] = block[inverse]
        return out

    def records(self) -> list[str]:
        return self._f["records"].asstr()[()].tolist()

    @property
    def shape(self) -> tuple[int, ...]:
        """``(rows, dim)``, or ``(rows, layers, dim)`` for an entry of several hidden states."""
        return tuple(self._f["vectors"].shape)

    def close(self) -> None:
        self._f.close()


BACKENDS: dict[str, Backend] = {"hdf5": HDF5Backend()}


def get_backend(name: str) -> Backend:
    """Look up a backend by name.

    Raises:
        KeyError: No such backend.
    """
    return BACKENDS[name]


def concat_blocks(blocks: Sequence[Block]) -> Block:
    """Join blocks row-wise."""
    if not blocks:
        return Block(ids=[], labels=np.zeros(0, np.int64), vectors=np.zeros((0, 0), np.float32), records=[])
    return Block(
        ids=[i for b in blocks for i in b.ids],
        labels=np.concatenate([b.labels for b in blocks]),
        vectors=np.concatenate([b.vectors for b in blocks], axis=0),
        records=[r for b in blocks for r in b.records],
    )
