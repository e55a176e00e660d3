"""Reading one complete entry: :class:`Entry`, what :meth:`~featcache.cache.FeatureStore.open` returns.

Datasets are read when first asked for and checked against the digests recorded when the entry was
committed (:mod:`featcache.cache.integrity`); opening, the identity check and the size check are the
store's (:mod:`featcache.cache.store`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from featcache.cache.backends import EntryReader
from featcache.cache.integrity import (
    INTEGRITY_VERSION,
    content_digest,
    digest_labels,
    digest_strings,
    digest_vectors,
)
from featcache.cache.keys import EntryKey, _checksum
from featcache.errors import DamagedError, StoreError


class Entry:
    """A complete entry, opened once; each dataset is read when first asked for and checked then.

    Every dataset is checked against the digest recorded when the entry was committed the first time
    it is read (:mod:`featcache.cache.integrity`); the vectors are read whole once (faster than
    scattered rows), checked, and served from memory after that. An entry of an older version without
    digests has its vectors checked against the SHA-256 of ids and vectors it stored.

    Attributes:
        key: The key it was opened with.
        provenance: All stored attributes (identity, backbone, variant parameters, version, time).

    Raises:
        DamagedError: (from any read) The data read do not match the recorded digest.
        StoreError: Its digests are of a version this featcache does not know.
    """

    def __init__(self, key: EntryKey, reader: EntryReader, path: Path) -> None:
        self.key = key
        self.path = path
        self._r = reader
        self.provenance = reader.attrs
        self._pos: dict[str, int] | None = None
        self._checked: set[str] = set()
        self._matrix: np.ndarray | None = None
        digests = reader.attrs.get("integrity")
        self._digests = digests if isinstance(digests, dict) else None
        if digests is not None and self._digests is None:
            raise DamagedError(path, "unreadable integrity record")
        if self._digests is not None and self._digests.get("version") != INTEGRITY_VERSION:
            raise StoreError(f"{path}: integrity record version {self._digests.get('version')!r} is not one this "
                             f"featcache knows ({INTEGRITY_VERSION}); upgrade featcache, or use another --cache-dir")

    def _check(self, name: str, compute: Callable[[], str]) -> None:
        """Compare dataset ``name`` with its recorded digest, once (entries without digests: nothing to do)."""
        if name in self._checked:
            return
        if self._digests is not None and compute() != self._digests.get(name):
            raise DamagedError(self.path, f"checksum mismatch in {name}: the file changed after it was written")
        self._checked.add(name)

    @property
    def content_digest(self) -> str:
        """One digest of what the entry holds (:func:`~featcache.cache.integrity.content_digest`); what a
        head trained on it records."""
        return content_digest(self.provenance)

    @property
    def ids(self) -> list[str]:
        ids = self._r.ids
        self._check("ids", lambda: digest_strings(ids))
        return ids

    @property
    def dim(self) -> int:
        """Values per vector."""
        return self._r.shape[-1]

    @property
    def layers(self) -> tuple[int, ...] | None:
        """The hidden states a layer-wise entry holds, in their order along its second axis (0: the
        embeddings' output); None for an entry of one vector per utterance (the last layer's)."""
        if len(self._r.shape) != 3:
            return None
        recorded = self.provenance.get("layers")
        if not isinstance(recorded, list) or len(recorded) != self._r.shape[1]:
            raise DamagedError(self.path, "a layer-wise entry without the list of its layers")
        return tuple(int(k) for k in recorded)

    def layer_position(self, layer: int) -> int:
        """Where hidden state ``layer`` is along a layer-wise entry's second axis.

        Raises:
            StoreError: The entry is not layer-wise or does not hold that layer.
        """
        held = self.layers
        if held is None or layer not in held:
            what = "one vector per utterance" if held is None else f"layers {','.join(map(str, held))}"
            raise StoreError(f"{self.path}: holds {what}, not layer {layer}; extract it with `--layers {layer}` "
                             "(or all)")
        return held.index(layer)

    def __len__(self) -> int:
        return self._r.shape[0]

    def _positions(self) -> dict[str, int]:
        if self._pos is None:
            self._pos = {u: i for i, u in enumerate(self.ids)}
        return self._pos

    def _all_vectors(self) -> np.ndarray:
        """Every row, read once and checked, as float32 (read-only: the same array serves every later call)."""
        if self._matrix is None:
            try:
                matrix = self._r.rows(np.arange(len(self)))
            except Exception as e:  # noqa: BLE001 - a backend failure while reading is damage
                raise DamagedError(self.path, f"unreadable vectors ({type(e).__name__})") from None
            if self._digests is not None:
                self._check("vectors", lambda: digest_vectors(matrix))
            elif "checksum" in self.provenance and self.provenance["checksum"] != _checksum(self.ids, matrix):
                raise DamagedError(self.path, "checksum mismatch: the file changed after it was written")
            matrix = np.asarray(matrix, dtype=np.float32)  # float16 entries: exact
            matrix.setflags(write=False)
            self._matrix = matrix
        return self._matrix

    def vectors(self, ids: Sequence[str] | None = None, *, layer: int | None = None) -> np.ndarray:
        """Float32 vectors for ``ids`` (in that order), or every row.

        Args:
            ids: Utterance ids (repeats allowed), or None for every row in stored order.
            layer: For a layer-wise entry, the hidden state wanted (``[rows, dim]``); None: all of them
                (``[rows, layers, dim]``, in :attr:`layers` order). Must be None for other entries.

        Returns:
            A new array for ``ids``; for every row, the entry's own read-only array (or a view of it).

        Raises:
            StoreError: An id is not in the entry, or it does not hold ``layer``.
            DamagedError: The vectors do not match their recorded digest.
        """
        matrix = self._all_vectors()
        if layer is not None:
            matrix = matrix[:, self.layer_position(layer)]
        if ids is None:
            return matrix
        pos = self._positions()
        try:
            index = np.fromiter((pos[u] for u in ids), dtype=np.int64, count=len(ids))
        except KeyError as e:
            raise StoreError(
                f"{self.path}: utterance {e.args[0]!r} is not in this entry; extract it with `featcache extract`"
            ) from None
        return matrix[index]

    def labels(self, ids: Sequence[str] | None = None) -> np.ndarray:
        """Class indices, aligned like :meth:`vectors`.

        Raises:
            DamagedError: The labels do not match their recorded digest.
        """
        labs = self._r.labels()
        self._check("labels", lambda: digest_labels(labs))
        if ids is None:
            return labs
        pos = self._positions()
        return labs[[pos[u] for u in ids]]

    def records(self) -> dict[str, dict]:
        """Per-utterance perturbation records (what was done to each input).

        Raises:
            DamagedError: The records do not match their recorded digest.
        """
        raw = self._r.records()
        self._check("records", lambda: digest_strings(raw))
        try:
            parsed = json.loads("[" + ",".join(r or "{}" for r in raw) + "]")  # one parse, not one per row
        except ValueError:
            raise DamagedError(self.path, "unreadable records") from None
        return dict(zip(self.ids, parsed))

    def close(self) -> None:
        self._r.close()

    def __enter__(self) -> "Entry":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
