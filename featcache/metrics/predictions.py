"""The :class:`Predictions` table and its HDF5 file.

A :class:`Predictions` table holds one row per (fold, seed, model, condition, utterance) with the
true label, the predicted label, the class probabilities and whether the condition actually changed
that utterance's input; every metric in :mod:`featcache.metrics` is a pure function of it.
:meth:`Predictions.save` and :meth:`Predictions.load` write and read it as HDF5 (no pickle). The file
records a SHA-256 of its datasets (:func:`content_digest`), checked when it is read; two saves of the
same predictions write the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from featcache import __version__
from featcache.cache.atomic import atomic_write
from featcache.errors import DamagedError, FeatcacheError
from featcache.metrics.names import natural_key

PREDICTIONS_FORMAT = "featcache-predictions"
PREDICTIONS_VERSION = 1
DIGEST_ATTR = "content_sha256"
"""Root attribute holding :func:`content_digest` of the datasets (files written before it existed lack it)."""
DIGEST_VERSION = 1
"""Version of :func:`content_digest`'s recipe (a different recipe gets a new number)."""

COLUMNS: tuple[str, ...] = (
    "fold", "session", "seed", "model", "condition", "utt_id", "label", "pred", "probs", "affected",
)
"""The parallel columns of :class:`Predictions`, in storage order."""
_INT_COLUMNS = ("fold", "seed", "label", "pred")
_STR_COLUMNS = ("session", "model", "condition", "utt_id")


def _encode_utf8(col: np.ndarray) -> np.ndarray:
    """UTF-8 bytes of a str array, encoding each distinct value once."""
    if col.size == 0:
        return np.zeros(0, dtype="S1")
    uniq, inv = np.unique(col, return_inverse=True)
    return np.char.encode(uniq, "utf-8")[inv.reshape(-1)]


def _decode_utf8(data: np.ndarray) -> np.ndarray:
    """str array of UTF-8 bytes, decoding each distinct value once."""
    if data.size == 0:
        return np.zeros(data.shape, dtype="<U1")
    uniq, inv = np.unique(data, return_inverse=True)
    return np.char.decode(uniq, "utf-8")[inv.reshape(-1)].reshape(data.shape)


def content_digest(datasets: Mapping[str, np.ndarray]) -> str:
    """The SHA-256 of a predictions file's datasets, as :meth:`Predictions.save` records it.

    Datasets are taken in sorted name order; each adds its name, dtype, shape and bytes. Variable-length
    strings (read from HDF5 as an object array of ``bytes`` or ``str``) add each value's UTF-8 bytes after
    its length, so the digest never depends on how h5py hands them over.

    Args:
        datasets: ``path in the file -> values as read`` (``texts/text``, ``probs``, ...).

    Returns:
        Hex SHA-256.
    """
    h = hashlib.sha256(f"{PREDICTIONS_FORMAT} digest {DIGEST_VERSION}\0".encode())
    for name in sorted(datasets):
        arr = np.asarray(datasets[name])
        if arr.dtype.kind == "O":
            values = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in arr.reshape(-1).tolist()]
            dtype, body = "vlen-utf-8", b"".join(struct.pack("<Q", len(v)) + v for v in values)
        else:
            contiguous = np.ascontiguousarray(arr)
            dtype, body = contiguous.dtype.str, contiguous.tobytes()
        h.update(json.dumps([name, dtype, list(arr.shape), len(body)]).encode() + b"\0")
        h.update(body)
    return h.hexdigest()


def _read_datasets(f: Any) -> dict[str, np.ndarray]:
    """Every dataset of an open HDF5 file, by path."""
    out: dict[str, np.ndarray] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            out[name] = obj[()]

    f.visititems(visit)
    return out


def _vlen_strings(data: np.ndarray) -> list[str]:
    """The values of a variable-length UTF-8 string dataset as read (``bytes`` or ``str`` objects)."""
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.asarray(data).reshape(-1).tolist()]


def _as_str_array(values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind == "S":
        return _decode_utf8(arr)
    if arr.size == 0:
        return np.zeros(arr.shape, dtype="<U1")
    if arr.dtype.kind != "U":
        arr = arr.astype(str)
    return arr



@dataclass(eq=False)
class Predictions:
    """Parallel columns of evaluation predictions, one row per (fold, seed, model, condition, utterance).

    Attributes:
        fold: int64 ``[n]``, fold index.
        session: str ``[n]``, the fold's test session (``"1"`` .. ``"5"``).
        seed: int64 ``[n]``, training seed.
        model: str ``[n]`` (``"text"``, ``"audio"``, ``"multimodal"``, ``"late"``, ...).
        condition: str ``[n]`` (``"clean"``, ``"adj"``, ``"pitch+adj"``, ``"snr-10"``, ...).
        utt_id: str ``[n]``.
        label: int64 ``[n]``, true class index into ``labels``.
        pred: int64 ``[n]``, predicted class index.
        probs: float32 ``[n, C]``, class probabilities.
        affected: bool ``[n]``, whether the condition changed this utterance's input (False for clean).
        labels: Class names, ``C`` of them.
        texts: Optional ``(condition, utt_id) -> text`` as fed to the text model (for the examples).
    """

    fold: np.ndarray
    session: np.ndarray
    seed: np.ndarray
    model: np.ndarray
    condition: np.ndarray
    utt_id: np.ndarray
    label: np.ndarray
    pred: np.ndarray
    probs: np.ndarray
    affected: np.ndarray
    labels: tuple[str, ...]
    texts: dict[tuple[str, str], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = tuple(str(x) for x in self.labels)
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels must be non-empty and unique, got {self.labels!r}")
        for name in _INT_COLUMNS:
            arr = np.asarray(getattr(self, name))
            if arr.size and arr.dtype.kind not in "iub":
                raise ValueError(f"column {name!r} must hold integers, got dtype {arr.dtype}")
            setattr(self, name, arr.astype(np.int64).reshape(-1))
        for name in _STR_COLUMNS:
            setattr(self, name, _as_str_array(getattr(self, name)).reshape(-1))
        self.affected = np.asarray(self.affected).astype(bool).reshape(-1)
        n = len(self.fold)
        probs = np.asarray(self.probs, dtype=np.float32)
        if probs.size == 0:
            probs = probs.reshape(0, len(self.labels))
        self.probs = probs
        for name in COLUMNS:
            if len(getattr(self, name)) != n:
                raise ValueError(f"column {name!r} has {len(getattr(self, name))} rows, 'fold' has {n}")
        if probs.ndim != 2 or probs.shape[1] != len(self.labels):
            raise ValueError(f"probs must have shape [n, {len(self.labels)}], got {probs.shape}")
        for name in ("label", "pred"):
            col = getattr(self, name)
            if col.size and (col.min() < 0 or col.max() >= len(self.labels)):
                raise ValueError(f"column {name!r} holds a class index outside [0, {len(self.labels)})")
        self.texts = {(str(c), str(u)): str(t) for (c, u), t in dict(self.texts).items()}

    def __len__(self) -> int:
        return len(self.fold)

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.labels)

    def unique(self, column: str) -> tuple[Any, ...]:
        """Distinct values of a column, sorted (strings in natural order).

        Args:
            column: A column name other than ``probs``.

        Returns:
            The sorted distinct values as Python scalars.

        Raises:
            ValueError: Unknown column.
        """
        if column not in COLUMNS or column == "probs":
            raise ValueError(f"unknown column {column!r}; choose one of {[c for c in COLUMNS if c != 'probs']}")
        values = np.unique(getattr(self, column)).tolist()
        return tuple(sorted(values, key=natural_key) if column in _STR_COLUMNS else values)

    def take(self, index: np.ndarray) -> Predictions:
        """Rows by boolean mask or integer index.

        Args:
            index: A boolean mask of length ``n`` or integer row indices.

        Returns:
            A new :class:`Predictions` with the same labels and texts.
        """
        return Predictions(
            **{name: getattr(self, name)[index] for name in COLUMNS}, labels=self.labels, texts=dict(self.texts)
        )

    def select(self, **filters: Any) -> Predictions:
        """Rows whose columns match every filter.

        A filter value is a scalar (equality) or any other iterable (membership):
        ``preds.select(model="text", condition=["clean", "adj"], seed=0, affected=True)``.

        Args:
            **filters: ``column=value`` pairs over any column but ``probs``.

        Returns:
            The matching rows.

        Raises:
            ValueError: Unknown column.
        """
        mask = np.ones(len(self), dtype=bool)
        for name, value in filters.items():
            if name not in COLUMNS or name == "probs":
                raise ValueError(f"cannot filter on {name!r}; columns: {[c for c in COLUMNS if c != 'probs']}")
            col = getattr(self, name)
            if isinstance(value, (str, bytes)) or np.isscalar(value):
                mask &= col == value
            else:
                mask &= np.isin(col, np.asarray(list(value)))
        return self.take(mask)

    @classmethod
    def from_blocks(cls, blocks: Sequence[Mapping[str, np.ndarray]], *, labels: Sequence[str],
                    texts: Mapping[tuple[str, str], str] | None = None) -> Predictions:
        """Rows given as blocks of parallel columns (one dict of :data:`COLUMNS` arrays per block).

        Args:
            blocks: The blocks, in row order; none gives an empty table.
            labels: Class names.
            texts: ``(condition, utt_id) -> text``.

        Returns:
            All rows.
        """
        def empty(name: str) -> np.ndarray:
            if name == "probs":
                return np.zeros((0, len(labels)), np.float32)
            return np.zeros(0, dtype=object if name in _STR_COLUMNS else np.int64 if name in _INT_COLUMNS else bool)

        cols = {name: np.concatenate([b[name] for b in blocks]) if blocks else empty(name) for name in COLUMNS}
        return cls(**cols, labels=tuple(labels), texts=dict(texts or {}))

    @classmethod
    def concat(cls, parts: Sequence[Predictions]) -> Predictions:
        """Stack predictions with the same labels.

        Args:
            parts: At least one :class:`Predictions`.

        Returns:
            All rows, in order; texts merged.

        Raises:
            ValueError: No parts, or parts with different labels.
        """
        if not parts:
            raise ValueError("concat needs at least one Predictions")
        labels = parts[0].labels
        if any(p.labels != labels for p in parts):
            raise ValueError("cannot concatenate predictions over different labels")
        texts: dict[tuple[str, str], str] = {}
        for p in parts:
            texts.update(p.texts)
        cols = {name: np.concatenate([getattr(p, name) for p in parts]) for name in COLUMNS}
        return cls(**cols, labels=labels, texts=texts)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the predictions to an HDF5 file (atomically, by :func:`~featcache.cache.atomic.atomic_write`).

        Layout: one dataset per column (strings as fixed-length UTF-8, gzip), ``labels`` as a UTF-8
        string dataset, ``texts/condition``, ``texts/utt_id``, ``texts/text``; root attributes
        ``format``, ``version``, ``featcache_version`` and :data:`DIGEST_ATTR` (:func:`content_digest`
        of the datasets as written). No pickle, no timestamps: the same predictions give the same bytes.

        Args:
            path: Destination file.

        Returns:
            The path written.
        """
        def write(tmp: Path) -> None:
            with h5py.File(tmp, "w") as f:
                f.attrs["format"] = PREDICTIONS_FORMAT
                f.attrs["version"] = PREDICTIONS_VERSION
                f.attrs["featcache_version"] = __version__
                vlen = h5py.string_dtype("utf-8")
                f.create_dataset("labels", data=np.array(self.labels, dtype=object), dtype=vlen, track_times=False)
                opts: dict[str, Any] = {"track_times": False}  # no object timestamps: the same bytes every time
                if len(self):
                    opts.update(compression="gzip", shuffle=True)
                for name in COLUMNS:
                    col = getattr(self, name)
                    if name in _STR_COLUMNS:
                        encoded = _encode_utf8(col)
                        width = max(1, encoded.dtype.itemsize)
                        f.create_dataset(name, data=encoded.astype(h5py.string_dtype("utf-8", width)), **opts)
                    else:
                        f.create_dataset(name, data=col, **opts)
                keys = sorted(self.texts)
                g = f.create_group("texts")
                for sub, values in (("condition", [k[0] for k in keys]), ("utt_id", [k[1] for k in keys]),
                                    ("text", [self.texts[k] for k in keys])):
                    g.create_dataset(sub, data=np.array(values, dtype=object), dtype=vlen, track_times=False)
                f.attrs[DIGEST_ATTR] = content_digest(_read_datasets(f))

        return atomic_write(path, write)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Predictions:
        """Read predictions written by :meth:`save`, checking them against the digest recorded then.

        A file written before the digest existed (no :data:`DIGEST_ATTR`) is read unchecked.

        Args:
            path: An HDF5 file.

        Returns:
            The predictions.

        Raises:
            DamagedError: The file does not read (cut, not HDF5, a damaged dataset) or its datasets do not
                match the recorded digest (one line naming the file and the command that writes it again).
            FeatcacheError: The file is missing, not a predictions file, from a newer version, or lacks a
                column.
        """
        path = Path(path)
        if not path.is_file():
            raise FeatcacheError(f"predictions file {path} does not exist; run `featcache evaluate` to write it")
        fix = f"write it again: run `featcache evaluate --out {path.parent}` with the options it was evaluated with"
        try:
            with h5py.File(path, "r") as f:
                fmt = f.attrs.get("format")
                if isinstance(fmt, bytes):
                    fmt = fmt.decode("utf-8")
                if fmt != PREDICTIONS_FORMAT:
                    raise FeatcacheError(
                        f"{path} is not a featcache predictions file (format {fmt!r}); write it with Predictions.save"
                    )
                version = int(f.attrs.get("version", 0))
                if version > PREDICTIONS_VERSION:
                    raise FeatcacheError(
                        f"{path} has predictions format version {version}, newer than {PREDICTIONS_VERSION}; "
                        "upgrade featcache to read it"
                    )
                missing = [name for name in (*COLUMNS, "labels") if name not in f]
                if missing:
                    raise FeatcacheError(f"{path} lacks datasets {missing}; re-run `featcache evaluate` to rewrite it")
                recorded = f.attrs.get(DIGEST_ATTR)
                datasets = _read_datasets(f)
        except FeatcacheError:
            raise
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            msg = " ".join(str(exc).split()) or type(exc).__name__
            raise DamagedError(path, f"cannot read it: {msg[:160]}", what="predictions file", fix=fix) from None
        if isinstance(recorded, bytes):
            recorded = recorded.decode("ascii", "replace")
        if recorded is not None and content_digest(datasets) != recorded:
            raise DamagedError(path, "checksum mismatch: its datasets changed after it was written",
                               what="predictions file", fix=fix)
        try:
            labels = tuple(_vlen_strings(datasets["labels"]))
            cols = {name: _decode_utf8(datasets[name]) if name in _STR_COLUMNS else datasets[name]
                    for name in COLUMNS}
            texts: dict[tuple[str, str], str] = {}
            if all(f"texts/{k}" in datasets for k in ("condition", "utt_id", "text")):
                conds, utts, vals = (_vlen_strings(datasets[f"texts/{k}"]) for k in ("condition", "utt_id", "text"))
                texts = {(c, u): t for c, u, t in zip(conds, utts, vals)}
            return cls(**cols, labels=labels, texts=texts)
        except (ValueError, UnicodeDecodeError) as exc:
            raise FeatcacheError(
                f"predictions file {path} is inconsistent ({exc}); re-run `featcache evaluate`"
            ) from None
