"""A trained head's record (``result.json``, written after the head's files): what the head is, a digest
of each of its files, and what it was made from; checked before the head is used.

A record holds:

* its **place**: the study key, fold, seed and model it was trained for (a folder moved or swapped with
  another is caught);
* ``files``: a digest of every file of the head (:func:`~featcache.cache.integrity.digest_bytes`: SHA-256
  over 2 KiB block sums, at the speed of memory), by path relative to the record's folder; a flipped bit in
  ``model.safetensors`` is caught as the head is loaded (:func:`featcache.heads.load_head` checks the bytes
  it loads), before it predicts anything;
* ``inputs``: what it was made from: the content digest of each entry it was trained on, by modality
  (:func:`featcache.cache.integrity.content_digest`: the same vectors give the same digest in any store),
  and for a fusion of trained unimodal heads the digest of each of their weight files (``text_head``,
  ``audio_head``); a head whose inputs have changed since (its vectors extracted again, a unimodal head
  trained again) is stale.

Records of an older version lack ``files`` and ``inputs``; those heads are used as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from featcache.cache.integrity import digest_file, digest_like

RECORD_FILE = "result.json"
"""A trained head's record, next to its files (the last file written: a head is complete once it exists)."""

_REQUIRED = ("fold", "seed", "model")
"""Place fields every record has held (``study`` came later: an older record without it is not compared)."""

RECORD_VERSION = 1
"""Version of the ``files`` / ``inputs`` fields (``lineage`` in the record)."""


def file_digests(folder: Path, files: list[Path]) -> dict[str, str]:
    """The digest of each file (:func:`~featcache.cache.integrity.digest_file`), by its path relative to
    ``folder`` (sorted, ``/``-separated).

    Raises:
        OSError: A file cannot be read.
    """
    return {f.relative_to(folder).as_posix(): digest_file(f) for f in sorted(files)}


def head_files(head_dir: Path) -> list[Path]:
    """The files of a head saved by :func:`featcache.heads.save_head`."""
    from featcache.heads.files import CONFIG_FILE, WEIGHTS_FILE

    return [head_dir / CONFIG_FILE, head_dir / WEIGHTS_FILE]


def make_record(folder: Path, *, place: Mapping[str, Any], head_dirs: list[Path], inputs: Mapping[str, str],
                extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The record of a head whose files are written.

    Args:
        folder: Where the record goes (file paths are relative to it).
        place: What the head is (``study``, ``fold``, ``seed``, ``model``).
        head_dirs: The saved heads the record covers (one; an ablation's late fusion also its parts).
        inputs: Digest of each thing it was made from (see the module docstring).
        extra: Training outcome (best epoch, dev accuracy, ...).

    Returns:
        The record, to be written as :data:`RECORD_FILE` in ``folder``.
    """
    files = [f for d in head_dirs for f in head_files(d)]
    return {**place, **(extra or {}), "lineage": RECORD_VERSION, "files": file_digests(folder, files),
            "inputs": dict(sorted(inputs.items()))}


def record_problem(record: Mapping[str, Any], *, folder: Path, place: Mapping[str, Any],
                   inputs: Mapping[str, str] | None = None, files: bool = True) -> tuple[Path, str] | None:
    """What disagrees between a head's record and its place, its files or its inputs, or None.

    Args:
        record: The record read from ``folder/result.json``.
        folder: The record's folder.
        place: What the head must be (keys missing from an older record are not compared).
        inputs: The digests its inputs have now, by name (None or a name left out: not compared).
        files: Hash its files (False: the caller checks them as it loads them, see
            :func:`featcache.heads.load_head`'s ``expect``).

    Returns:
        ``(file, problem)``: the file that disagrees (the record itself for a place or an input) and what
        is wrong, in a few words.
    """
    path = folder / RECORD_FILE
    compared = [k for k in place if k in record or k in _REQUIRED]
    if any(record.get(k) != place[k] for k in compared):
        held = ", ".join(f"{k} {record.get(k)!r}" for k in compared)
        want = ", ".join(f"{k} {place[k]!r}" for k in compared)
        return path, f"holds the head of {held}, not of {want}"
    recorded_files = record.get("files")
    if isinstance(recorded_files, dict):
        for name, digest in sorted(recorded_files.items()) if files else ():
            f = folder / name
            try:
                if digest_like(f.read_bytes(), str(digest)) != digest:
                    return f, "checksum mismatch: the file changed after the head was saved"
            except FileNotFoundError:
                return f, "missing head file"
            except OSError as e:
                return f, f"unreadable: {e.strerror or type(e).__name__}"
    elif "lineage" in record:
        return path, "no file digests in the head's record"
    recorded = record.get("inputs")
    if isinstance(recorded, dict) and inputs:
        for name, digest in sorted(recorded.items()):
            now = inputs.get(name)
            if now is not None and now != digest:
                what = f"another {name.removesuffix('_head')} head" if name.endswith("_head") else f"other {name} vectors"
                return path, (f"stale: trained on {what} than the store holds now (made again since the head "
                              "was trained)")
    return None
