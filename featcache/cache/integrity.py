"""What an entry records about itself at commit, so a damaged one is never used.

Two records, both written when an entry is committed (:meth:`~featcache.cache.EntryWriter.finalize`):

* a **header** in the first :data:`HEADER_SIZE` bytes of the file (HDF5 leaves this "user block" to the
  application and reads the file after it)::

      featcache-entry 1
      {"sha256": "<digest of every byte after the header>", "size": <file size in bytes>}
      <spaces up to byte 511, then a newline>

  :func:`quick_problem` checks it cheaply (one ``stat`` and a 512-byte read: a truncated or extended file
  is caught); :func:`file_problem` also hashes the whole file (what ``featcache cache verify`` and the
  extraction's skip test run).

* **data digests**, stored with the provenance (the ``integrity`` attribute) and checked as the data are
  read (:class:`~featcache.cache.Entry`): SHA-256 of the ids, labels and records, and for the vectors a
  SHA-256 of their block sums (:func:`digest_vectors`), which costs a fraction of reading them.

Entries written before these records existed have neither; they are still read (HDF5 itself refuses a
truncated file) and their vectors are checked against the SHA-256 of ids and vectors they always stored.

The small JSON files beside the entries (a head's ``result.json``, a fine-tuning run's ``config.json``)
are checked by reading them: :func:`read_json_object` says why one does not read.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEADER_SIZE = 512
"""Bytes reserved at the start of an entry file for its header (HDF5's user block; a power of two >= 512)."""

MAGIC = b"featcache-entry 1\n"
"""First line of the header (format 1)."""

INTEGRITY_VERSION = 1
"""Version of the ``integrity`` attribute's digests."""

LEGACY_SIGNATURE = b"\x89HDF\r\n\x1a\n"
"""How an entry written before headers existed starts (the HDF5 signature at byte 0)."""

BLOCK_WORDS = 256
"""64-bit words per summed block in :func:`digest_vectors` (2 KiB)."""


@dataclass(frozen=True)
class Header:
    """The header of an entry file.

    Attributes:
        size: The whole file's size in bytes, header included.
        sha256: Hex SHA-256 of the bytes after the header.
    """

    size: int
    sha256: str

    def encode(self) -> bytes:
        """The :data:`HEADER_SIZE` bytes that hold this header."""
        line = json.dumps({"sha256": self.sha256, "size": self.size}, sort_keys=True).encode() + b"\n"
        head = MAGIC + line
        if len(head) >= HEADER_SIZE:
            raise ValueError("entry header too long")
        return head + b" " * (HEADER_SIZE - len(head) - 1) + b"\n"


def seal(body: bytes | bytearray | memoryview) -> bytes:
    """The header of an entry file whose content after the header is ``body``.

    Args:
        body: Every byte that follows the header (the backend's file image).

    Returns:
        The :data:`HEADER_SIZE` header bytes; the file is the header, then ``body``.
    """
    view = memoryview(body)
    return Header(size=HEADER_SIZE + view.nbytes, sha256=hashlib.sha256(view).hexdigest()).encode()


def read_header(path: str | os.PathLike[str]) -> Header | None:
    """Read an entry file's header.

    Args:
        path: The entry file.

    Returns:
        The header, or None for an entry written before headers existed (it starts with the HDF5
        signature).

    Raises:
        ValueError: The file is shorter than a header, or its header is not one this module writes
            (the message says which).
        OSError: The file cannot be read.
    """
    with open(path, "rb") as f:
        raw = f.read(HEADER_SIZE)
    if raw.startswith(LEGACY_SIGNATURE):
        return None
    if len(raw) < HEADER_SIZE:
        raise ValueError(f"truncated to {len(raw)} bytes, shorter than its {HEADER_SIZE}-byte header")
    if not raw.startswith(MAGIC):
        raise ValueError("no featcache entry header at the start of the file")
    try:
        fields = json.loads(raw[len(MAGIC):].split(b"\n", 1)[0])
        header = Header(size=int(fields["size"]), sha256=str(fields["sha256"]))
    except (ValueError, KeyError, TypeError):
        raise ValueError("damaged entry header") from None
    if header.encode() != raw:
        raise ValueError("damaged entry header")
    return header


def quick_problem(path: str | os.PathLike[str]) -> str:
    """What is wrong with an entry file that a stat and its header show ('' when nothing).

    Args:
        path: An existing entry file.

    Returns:
        ``''``, or the problem (``truncated: 1000 of 18094592 bytes``, ``damaged entry header``, ...).
        An entry without a header (an older version's) gives ``''``: HDF5 checks its size on open.
    """
    try:
        header = read_header(path)
        size = os.stat(path).st_size
    except ValueError as e:
        return str(e)
    except OSError as e:
        return f"unreadable ({e.strerror or type(e).__name__})"
    if header is None or size == header.size:
        return ""
    if size < header.size:
        return f"truncated: {size} of {header.size} bytes"
    return f"{size - header.size} bytes more than the {header.size} written"


def file_problem(path: str | os.PathLike[str]) -> str:
    """:func:`quick_problem`, then the SHA-256 of every byte after the header ('' when it matches).

    Args:
        path: An existing entry file.

    Returns:
        ``''``, or the problem; ``checksum mismatch: ...`` when the bytes changed after the commit. An
        entry without a header gives ``''`` (see :func:`quick_problem`).
    """
    problem = quick_problem(path)
    if problem:
        return problem
    try:
        header = read_header(path)
        if header is None:
            return ""
        digest = sha256_file(path, offset=HEADER_SIZE)
    except (OSError, ValueError) as e:
        return f"unreadable ({type(e).__name__})"
    if digest != header.sha256:
        return "checksum mismatch: the file changed after it was written"
    return ""


def sha256_file(path: str | os.PathLike[str], *, offset: int = 0) -> str:
    """Hex SHA-256 of a file's bytes from ``offset`` on, read in 1 MiB blocks.

    Args:
        path: The file.
        offset: Bytes to skip at the start (an entry's header).

    Returns:
        The digest.

    Raises:
        OSError: The file does not read.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(offset)
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def digest_strings(strings: Sequence[str]) -> str:
    """SHA-256 of strings joined by NUL (which HDF5 strings cannot hold, so the join is unambiguous)."""
    return hashlib.sha256("\0".join(strings).encode("utf-8", "surrogatepass")).hexdigest()


def digest_labels(labels: np.ndarray) -> str:
    """SHA-256 of the labels as little-endian int64."""
    return hashlib.sha256(np.ascontiguousarray(labels, dtype="<i8").tobytes()).hexdigest()


def digest_vectors(vectors: np.ndarray) -> str:
    """A digest of float32 (or float16) vectors that costs a fraction of reading them.

    The bytes are read as little-endian 64-bit words and summed (mod 2^64) in blocks of
    :data:`BLOCK_WORDS`; the digest is the SHA-256 of the shape and the block sums. Any change confined
    to one word changes its block's sum; changes in different blocks (moved or swapped blocks
    included) change the digest with SHA-256's certainty; only changes inside one 2 KiB block whose
    word differences cancel exactly go unseen (``featcache cache verify`` hashes every byte).

    Args:
        vectors: A float32 matrix (rows x dim), or float16, or ``[rows, layers, dim]``.

    Returns:
        Hex SHA-256.
    """
    half = np.asarray(vectors).dtype == np.float16
    v = np.ascontiguousarray(vectors, dtype="<f2" if half else "<f4")
    raw = v.reshape(-1).view(np.uint8)
    n_words = raw.size // 8
    words = raw[: n_words * 8].view("<u8")
    full = n_words - n_words % BLOCK_WORDS
    if v.ndim == 3 or half:  # a layer-wise or half-precision entry: its whole shape and its dtype
        h = hashlib.sha256(struct.pack(f"<{v.ndim}Q", *v.shape) + v.dtype.str.encode())
    else:
        h = hashlib.sha256(struct.pack("<QQ", *(v.shape if v.ndim == 2 else (v.size, 1))))
    h.update(words[:full].reshape(-1, BLOCK_WORDS).sum(axis=1, dtype=np.uint64).astype("<u8").tobytes())
    h.update(struct.pack("<Q", int(words[full:].sum(dtype=np.uint64))))
    h.update(raw[n_words * 8:].tobytes())
    return h.hexdigest()


def digest_bytes(data: bytes | memoryview) -> str:
    """A digest of a small file's bytes at the speed of memory: :func:`digest_vectors`' block sums over the
    bytes as 64-bit words (a changed word changes its block's sum), then SHA-256 of the length and the sums.

    Args:
        data: The bytes.

    Returns:
        ``blocksum:`` and the hex SHA-256 (the prefix names the method, so a record says how it was made).
    """
    raw = np.frombuffer(data, dtype=np.uint8)
    n_words = raw.size // 8
    words = raw[: n_words * 8].view("<u8")
    full = n_words - n_words % BLOCK_WORDS
    h = hashlib.sha256(struct.pack("<Q", raw.size))
    h.update(words[:full].reshape(-1, BLOCK_WORDS).sum(axis=1, dtype=np.uint64).astype("<u8").tobytes())
    h.update(struct.pack("<Q", int(words[full:].sum(dtype=np.uint64))))
    h.update(raw[n_words * 8:].tobytes())
    return "blocksum:" + h.hexdigest()


def digest_like(data: bytes | memoryview, recorded: str) -> str:
    """The digest of ``data`` made the way ``recorded`` was: :func:`digest_bytes` for a ``blocksum:`` digest,
    else a plain hex SHA-256 (what records held before block sums)."""
    return digest_bytes(data) if recorded.startswith("blocksum:") else hashlib.sha256(data).hexdigest()


def digest_file(path: str | os.PathLike[str]) -> str:
    """:func:`digest_bytes` of a whole (small) file, e.g. a head's ``model.safetensors``.

    Raises:
        OSError: The file cannot be read.
    """
    return digest_bytes(Path(path).read_bytes())


def data_digests(*, ids: Sequence[str], labels: np.ndarray, records: Sequence[str], vectors: np.ndarray) -> dict:
    """The ``integrity`` attribute of an entry: digests of its four datasets, as stored.

    Args:
        ids: Utterance ids in row order.
        labels: Class indices.
        records: JSON records (strings).
        vectors: The float32 matrix.

    Returns:
        ``{"version", "ids", "labels", "records", "vectors"}``.
    """
    return {
        "version": INTEGRITY_VERSION,
        "ids": digest_strings(ids),
        "labels": digest_labels(labels),
        "records": digest_strings(records),
        "vectors": digest_vectors(vectors),
    }


def content_digest(provenance: dict) -> str:
    """What an entry holds, as one digest: the SHA-256 of its recorded data digests (ids, labels,
    records, vectors), so two entries with the same contents have the same digest whenever and wherever
    they were written (a head records it for every entry it was trained on).

    Args:
        provenance: The entry's stored attributes (:attr:`~featcache.cache.Entry.provenance`).

    Returns:
        Hex SHA-256 (24 digits); for an entry of an older version, without data digests, the SHA-256 of
        ids and vectors it stored; ``''`` when it has neither.
    """
    digests = provenance.get("integrity")
    if isinstance(digests, dict):
        parts = {k: digests.get(k) for k in ("ids", "labels", "records", "vectors")}
    elif "checksum" in provenance:
        parts = {"checksum": provenance["checksum"]}
    else:
        return ""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def read_json_object(path: str | os.PathLike[str]) -> tuple[dict, str]:
    """Read a JSON object file, or say why it does not read.

    Args:
        path: The file (a head's ``result.json``, a run's ``config.json``, ...).

    Returns:
        ``(object, "")``, or ``({}, problem)`` with the problem in a few words (``empty file``,
        ``unreadable JSON: ...``, ``not a JSON object``, ``unreadable: Permission denied``).
    """
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        return {}, f"unreadable: {e.strerror or type(e).__name__}"
    except ValueError as e:  # UnicodeDecodeError included
        text = " ".join(str(e).split())
        return {}, "empty file" if "line 1 column 1 (char 0)" in text else f"unreadable JSON: {text[:120]}"
    return (obj, "") if isinstance(obj, dict) else ({}, "not a JSON object")
