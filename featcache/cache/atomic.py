"""Crash-safe writes: every file featcache writes into its store or a report goes through here.

A file is written under a temporary name beside its final one, flushed to disk and renamed over the
final name, so a crash at any moment leaves either the old file or the complete new one; the
temporary file is removed when the write fails (a full disk, a read-only folder). A folder that must
appear complete or not at all (a converted model) is built the same way by :func:`atomic_dir`.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


@contextmanager
def atomic_dir(path: str | os.PathLike[str], *, replace: bool = False) -> Iterator[Path]:
    """Build a folder under a temporary name and rename it to ``path`` when the block succeeds.

    Use as ``with atomic_dir(out) as tmp: <write files into tmp>``. The temporary folder sits beside
    ``path`` (``.<name>.tmp-<pid>-<random>``, so :meth:`FeatureStore.clean` recognises a stray) and gets
    the modes a plain ``mkdir`` gives. When the block ends normally its files and folders are fsynced
    and it is renamed into place; when it raises, the temporary folder is removed and the exception
    propagates. Readers therefore see either no folder (or the old one) or the complete new one.

    Args:
        path: The final folder (its parent is created if missing).
        replace: Replace an existing folder at ``path``: it is renamed aside, the new one renamed into
            place, then the old one removed (renames only, so ``path`` must be on one filesystem with
            its siblings).

    Yields:
        The empty temporary folder to fill.

    Raises:
        FileExistsError: ``path`` exists and ``replace`` is false (checked when the block ends).
        NotADirectoryError: ``path`` exists, ``replace`` is true, and it is a file or a symlink.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
        for sub in sorted(tmp.rglob("*"), reverse=True):  # files before the folders that list them
            if not sub.is_symlink():
                fsync_path(sub)
        fsync_path(tmp)
        if path.exists() or path.is_symlink():
            if not replace:
                raise FileExistsError(errno.EEXIST, "already exists", str(path))
            if path.is_symlink() or not path.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "exists and is not a folder", str(path))
            old = path.with_name(f".{path.name}{TMP_MARK}old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
        fsync_path(path.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
