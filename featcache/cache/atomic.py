"""Crash-safe writes: every file featcache writes into its store or a report goes through here.

A file is written under a temporary name beside its final one, flushed to disk and renamed over the
final name, so a crash at any moment leaves either the old file or the complete new one; the
temporary file is removed when the write fails (a full disk, a read-only folder).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

TMP_MARK = ".tmp-"
"""Marks a temporary file (``.<name>.tmp-<pid>``); :meth:`FeatureStore.clean` removes strays."""


def tmp_path(path: Path) -> Path:
    """The temporary name a write of ``path`` uses in this process."""
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")


def fsync_path(path: Path) -> None:
    """Flush a written file (or a folder's entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Write a file under a temporary name, fsync it and rename it over ``path``.

    Args:
        path: The final file name (its folder is created if missing).
        write: Writes the content to the temporary path it is given.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    try:
        write(tmp)
        fsync_path(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: object, *, indent: int | None = 2,
                      sort_keys: bool = True) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (NaN refused, so every file is strict JSON)."""
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, allow_nan=False) + "\n"
    return atomic_write_text(path, text)
