"""Lock files in the store (an entry's writer lock, a fine-tuning run's, a training run's ``fit.lock``): never
through a symbolic link.

A lock file is opened with ``O_NOFOLLOW`` (filelock does so itself; :func:`acquire_lock` also looks at the path
first, so a filelock that followed links would not write through one either), so a lock file that was replaced
by a symbolic link, to a file elsewhere or in a loop (``ELOOP``), is refused in one
:class:`~featcache.errors.StoreError` line naming it and saying to remove it, and nothing is written through it.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from featcache.cache.atomic import error_number
from featcache.errors import StoreError


def linked_lock_error(path: str | os.PathLike[str]) -> StoreError:
    """The one-line error for a lock file that is a symbolic link.

    Args:
        path: The lock file.

    Returns:
        ``<path>: lock file is a symbolic link ...; remove it ...`` (a loop says so, with ``ELOOP``'s words).
    """
    try:
        os.stat(path)
        loop = False
    except OSError as e:
        loop = e.errno == errno.ELOOP
    try:
        target = os.readlink(path)
    except OSError:
        target = ""
    what = ("a symbolic link loop (too many levels of symbolic links)" if loop
            else f"a symbolic link (to {target})" if target else "a symbolic link")
    return StoreError(f"{path}: lock file is {what}; remove it (no process holds a link as its lock) and run "
                      "the command again: it makes a new lock file")


@contextmanager
def linked_lock_refused(path: str | os.PathLike[str]) -> Iterator[None]:
    """Refuse a lock file that is a symbolic link, before the block and when the block's open of it ends in
    ``ELOOP`` (``O_NOFOLLOW`` on a link).

    Wrap only the taking of the lock in it: an ``ELOOP`` from other work would be blamed on the lock.

    Args:
        path: The lock file.

    Raises:
        StoreError: The lock file is a symbolic link (:func:`linked_lock_error`); nothing was written.
    """
    try:
        is_link = stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        is_link = False  # not there yet (or its folder is not): the lock's own open says what is wrong
    if is_link:
        raise linked_lock_error(path)
    try:
        yield
    except OSError as exc:
        if error_number(exc) == errno.ELOOP:
            raise linked_lock_error(path) from None
        raise


def acquire_lock(path: str | os.PathLike[str], *, timeout: float = -1) -> Any:
    """Take a :class:`filelock.FileLock` on a lock file in the store, refusing one that is a symbolic link.

    Args:
        path: The lock file (created when missing).
        timeout: Seconds to wait for another holder; -1 waits for ever, 0 does not wait.

    Returns:
        The held lock; release it with ``release()``.

    Raises:
        filelock.Timeout: Another process held it past ``timeout``.
        StoreError: The lock file is a symbolic link (one line naming it: remove it).
    """
    from filelock import FileLock

    lock = FileLock(str(Path(path)), timeout=timeout)
    with linked_lock_refused(path):
        lock.acquire()
    return lock


@contextmanager
def held_lock(path: str | os.PathLike[str], *, timeout: float = -1) -> Iterator[Any]:
    """Hold a lock file in the store for the block (:func:`acquire_lock`), released when it ends.

    Args:
        path: The lock file (created when missing).
        timeout: Seconds to wait for another holder; -1 waits for ever.

    Yields:
        The held lock.

    Raises:
        filelock.Timeout: Another process held it past ``timeout``.
        StoreError: The lock file is a symbolic link (one line naming it: remove it).
    """
    lock = acquire_lock(path, timeout=timeout)
    try:
        yield lock
    finally:
        lock.release()
