"""Cleaning a store (``featcache cache clean``): removing what interrupted work left behind.

That is ``.partial`` folders, ``.shards`` folders, temporary files of killed writers
(:mod:`featcache.cache.atomic`), damaged entries set aside and the temporary folders of killed conversions
in the per-user model cache; live work is left alone (see :func:`clean`, which
:meth:`FeatureStore.clean <featcache.cache.FeatureStore.clean>` calls).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from featcache.cache.atomic import (
    TMP_MARK,
    pid_alive,
    tmp_owner,
    write_errors_translated,
)
from featcache.cache.keys import DAMAGED_SUFFIX, SHARDS_SUFFIX, _is_tmp_name
from featcache.cache.layout import model_cache_root
from featcache.cache.listing import iter_entries
from featcache.cache.locks import acquire_lock
from featcache.errors import StoreError

if TYPE_CHECKING:
    from featcache.cache.store import FeatureStore


def clean(store: FeatureStore, *, dry_run: bool, on_skip: Callable[[Path, str], None] | None = None) -> list[Path]:
    """Remove what interrupted work left behind; complete entries, runs, heads and analyses stay.

    That is every ``.partial`` directory (an interrupted extraction; a rerun would resume it), every
    ``.shards`` folder (an interrupted distributed extraction; a rerun would reuse its shards), every
    temporary file or folder of a killed writer (a name holding ``.tmp-``, or ending in ``.tmp`` as
    older versions named them) in the store root and its ``features/``, ``models/``, ``runs/``,
    ``heads/`` and ``text-analysis/`` folders, every damaged entry a writer set aside
    (``.damaged``), and the temporary folders of killed conversions in the per-user model cache
    (:func:`~featcache.cache.layout.model_cache_root`).

    Live work is left alone: a ``.partial`` directory is removed only while holding its entry's
    writer lock (tried without waiting), a ``.shards`` folder only when no running process is writing
    a shard into it (a job on another machine is not seen; its assembly then extracts the shard
    again), and a temporary name whose process id belongs to a running
    process is kept; each one left is passed to ``on_skip``.

    Args:
        store: The store.
        dry_run: Only list what would be removed.
        on_skip: Called with each path left alone and the reason.

    Returns:
        The removed (or, with ``dry_run``, removable) paths: partial extractions first, then
        temporary files in path order, then the model cache's; nothing inside a listed folder is
        listed again.

    Raises:
        StoreError: The store is read-only (one line).
    """
    skip = on_skip or (lambda path, why: None)
    found: list[Path] = []
    kept: list[Path] = []
    locks = []
    try:
        for info in iter_entries(store):
            if info.status != "partial":
                continue
            if info.path.suffix == SHARDS_SUFFIX:
                live = [p for p in info.path.iterdir() if (pid := tmp_owner(p.name)) is not None and pid_alive(pid)]
                if live:
                    kept.append(info.path)
                    skip(info.path, f"process {tmp_owner(live[0].name)} is writing a shard")
                else:
                    found.append(info.path)
                continue
            lock = _try_lock(info.path.with_name(info.path.name[: -len(".partial")] + ".lock"), dry_run=dry_run)
            if lock is False:
                kept.append(info.path)
                skip(info.path, "an extraction is writing it")
                continue
            if lock is not None:
                locks.append(lock)
            found.append(info.path)
        strays: list[Path] = []
        if store.root.is_dir():
            strays += [p for p in store.root.iterdir() if _is_tmp_name(p.name)]
        for folder in store.folders():
            if folder.is_dir():
                strays += [p for p in folder.rglob("*") if _is_tmp_name(p.name) or
                           (p.name.endswith(DAMAGED_SUFFIX) and p.is_file())]
        models = model_cache_root()
        cached = sorted(p for p in models.iterdir() if TMP_MARK in p.name) if models.is_dir() else []
        for path in [*sorted(strays), *cached]:
            if any(path.is_relative_to(done) for done in (*found, *kept)):
                continue
            pid = tmp_owner(path.name)
            if pid is not None and pid_alive(pid):
                kept.append(path)
                skip(path, f"process {pid} is writing it")
                continue
            if path in cached and pid is None:
                continue  # the model cache holds only what featcache writes; leave unknown names
            found.append(path)
        if not dry_run:
            for path in found:
                _remove(path)
    finally:
        for lock in locks:
            lock.release()
    return found


def _try_lock(lock_path: Path, *, dry_run: bool):  # type: ignore[no-untyped-def]
    """Take a writer lock without waiting: the held lock, None when there is nothing to lock (no
    lock file in a dry run, or a read-only store in a dry run: no writer can be there either), or
    False when another process holds it.

    Raises:
        StoreError: The store is read-only and this is not a dry run, or the lock file is a symbolic link.
    """
    from filelock import Timeout

    if dry_run and not lock_path.exists() and not lock_path.is_symlink():
        return None
    try:
        with write_errors_translated(lock_path):
            lock = acquire_lock(lock_path, timeout=0)
    except Timeout:
        return False
    except StoreError:
        if dry_run:
            return None
        raise
    return lock


def _remove(path: Path) -> None:
    """Remove a file or folder tree (already gone is fine; a read-only store is one line)."""
    with write_errors_translated(path):
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            pass
