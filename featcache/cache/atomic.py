"""Crash-safe writes: every file featcache writes into its store or a report goes through here.

A file is written under a temporary name beside its final one, flushed to disk and renamed over the
final name, so a crash at any moment leaves either the old file or the complete new one; the
temporary file is removed when the write fails (a full disk, a read-only folder). A folder that must
appear complete or not at all (a converted model) is built the same way by :func:`atomic_dir`.

A write that fails because the disk is full (``ENOSPC``, ``EDQUOT``, ``EFBIG``) or the folder is
read-only (``EROFS``, ``EACCES``, ``EPERM``) ends in one :class:`~featcache.errors.StoreError` line
naming the file and what to do (:func:`write_failure`, :func:`write_errors_translated`), also when a
library wrapped the OS error in its own exception (h5py's ``errno = 28``, safetensors' ``os error 28``).

A temporary name holds the writer's process id (``.<name>.tmp-<pid>[-<random>]``), so leftovers of
dead processes can be told from live work (:func:`tmp_owner`, :func:`remove_stale_tmp`).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from featcache.cache.layout import (
    FEATURES,
    HEADS,
    RUNS,
    STORE_META,
    TEXT_ANALYSIS,
    model_cache_root,
)
from featcache.errors import StoreError

TMP_MARK = ".tmp-"
"""Marks a temporary file (``.<name>.tmp-<pid>``); :meth:`FeatureStore.clean` removes strays."""

_FULL = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
         errno.EFBIG: "file size limit exceeded"}
_READ_ONLY = {errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
              errno.EPERM: "operation not permitted"}
_ERRNO_IN_TEXT = re.compile(r"\[Errno (\d+)\]|errno = (\d+)|os error (\d+)")
_STORE_FOLDERS = (FEATURES, RUNS, HEADS, TEXT_ANALYSIS)
_TMP_OWNER = re.compile(r"^(?:old-)?(\d+)(?:-[0-9a-f]+)?$")


def error_number(exc: BaseException) -> int | None:
    """The OS error number behind an exception, also when a library wrapped it in its own error.

    Args:
        exc: The exception; its ``errno``, then its message (``[Errno 28]`` from Python, ``errno = 28``
            from h5py/HDF5, ``os error 28`` from safetensors), then its cause and context are examined.

    Returns:
        The error number, or None when none is found.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        number = getattr(current, "errno", None)
        if isinstance(number, int) and number:
            return number
        found = _ERRNO_IN_TEXT.search(str(current))
        if found:
            return int(next(g for g in found.groups() if g))
        current = current.__cause__ or current.__context__
    return None


def _in_store(path: Path) -> bool:
    """Whether ``path`` lies inside a feature store (a folder holding ``store.json``, or one of its folders)."""
    for folder in path.parents:
        if folder.name in _STORE_FOLDERS or (folder / STORE_META).is_file():
            return True
    return False


def _in_model_cache(path: Path) -> bool:
    root = model_cache_root()
    return path == root or root in path.parents


def write_failure(exc: BaseException, path: str | os.PathLike[str]) -> StoreError | None:
    """The one-line error for a write that failed because the disk is full or the folder read-only.

    Args:
        exc: What the write raised.
        path: The file or folder being written (named first in the message).

    Returns:
        ``<path>: no space left on device writing it; free space or move the store with --cache-dir``
        (or the read-only equivalent, with the fix for where the file lives: the store, the per-user
        model cache or any other folder); None when ``exc`` is not such a failure.
    """
    number = error_number(exc)
    if number not in _FULL and number not in _READ_ONLY:
        return None
    path = Path(path)
    if _in_model_cache(path):
        place, move = "the model cache", "set FEATCACHE_MODELS to another folder"
    elif _in_store(path):
        place, move = "the store", "move the store with --cache-dir"
    else:
        place, move = "this folder", "write to another folder"
    if number in _FULL:
        return StoreError(f"{path}: {_FULL[number]} writing it; free space or {move}")
    what = "use another --cache-dir" if place == "the store" else move
    return StoreError(f"{path}: {place} is read-only ({_READ_ONLY[number]}); {what}")


@contextmanager
def write_errors_translated(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn a full-disk or read-only failure inside the block into :func:`write_failure`'s one line.

    Args:
        path: The file or folder the block writes (named in the message).

    Raises:
        StoreError: The block failed because the disk is full or the folder is read-only; any other
            exception propagates unchanged.
    """
    try:
        yield
    except StoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - libraries wrap OS errors in their own types
        failure = write_failure(exc, path)
        if failure is None:
            raise
        raise failure from None


def tmp_owner(name: str) -> int | None:
    """The process id in a temporary name (``.<name>.tmp-<pid>[-<random>]``, ``...tmp-old-<pid>-<random>``).

    Args:
        name: A file or folder name.

    Returns:
        The pid, or None for a name without one (not temporary, or an older version's ``.tmp`` suffix).
    """
    if TMP_MARK not in name:
        return None
    found = _TMP_OWNER.match(name.rsplit(TMP_MARK, 1)[1])
    return int(found.group(1)) if found else None


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (ours included)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except OverflowError:
        return False
    return True


def remove_stale_tmp(folder: str | os.PathLike[str], name: str) -> list[Path]:
    """Remove the temporary files and folders of ``folder/name`` that dead processes left behind.

    Writes of other live processes (their pid is in the name) are left alone.

    Args:
        folder: The folder holding ``name``.
        name: The final file or folder name whose temporaries (``.<name>.tmp-<pid>...``) to remove.

    Returns:
        The removed paths.
    """
    removed = []
    for path in sorted(Path(folder).glob(f".{name}{TMP_MARK}*")):
        pid = tmp_owner(path.name)
        if pid is None or pid_alive(pid):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


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

    Raises:
        StoreError: The disk is full or the folder read-only (one line, see :func:`write_failure`);
            the temporary file is gone and ``path`` is unchanged.
    """
    path = Path(path)
    tmp = tmp_path(path)
    with write_errors_translated(path):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write(tmp)
            fsync_path(tmp)
            os.replace(tmp, path)
        finally:
            _discard(tmp)
    return path


def _discard(path: Path) -> None:
    """Remove a temporary file or folder if it is there (never raises: the write's own error matters)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink()
    except OSError:
        pass


def atomic_write_bytes(path: str | os.PathLike[str], *parts: bytes | memoryview) -> Path:
    """Write ``parts``, one after the other, to ``path`` atomically (see :func:`atomic_write`)."""

    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            for part in parts:
                f.write(part)

    return atomic_write(path, write)


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
        StoreError: The disk is full or the folder read-only (one line, see :func:`write_failure`);
            the temporary folder is gone and ``path`` is unchanged.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    with write_errors_translated(path):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.mkdir()
            yield tmp
            _commit_dir(tmp, path, replace=replace)
        finally:
            _discard(tmp)


def _commit_dir(tmp: Path, path: Path, *, replace: bool) -> None:
    """fsync a finished temporary folder and rename it to ``path`` (see :func:`atomic_dir`)."""
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
