"""DataLoader workers for extraction and fine-tuning: one loader that reports bad input as one line and
whose workers die with their parent.

Decoding, perturbing and preparing inputs run in DataLoader worker processes. Two things go wrong
with a plain :class:`torch.utils.data.DataLoader` there:

* a :class:`~featcache.errors.FeatcacheError` raised in a worker (an unreadable wav) reaches the
  main process re-wrapped by torch, its message grown into a traceback ("Caught DataError in
  DataLoader worker process 0. Original Traceback ..."), so the command line prints many lines;
* a worker outlives a parent killed with ``kill -9`` (torch's own check runs only between tasks).

:func:`make_loader` builds a :class:`GuardedLoader`: its dataset and collate function run under a
guard that turns a ``FeatcacheError`` into a :class:`WorkerFailure` item, which the loader raises again,
as the original error with its one-line message, in the main process (the same path with
``num_workers=0``). Any other exception is a bug and keeps torch's traceback. Each worker starts with
:func:`worker_init`: one torch thread, no tokenizer threads, and on Linux ``PR_SET_PDEATHSIG`` so that
the kernel kills it when its parent dies.

:func:`fresh_context` gives workers that are not forks of the calling process (``forkserver``), for
loaders that live beside a training step: a forked worker shares the trainer's memory copy-on-write.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info
from torch.utils.data import default_collate

from featcache.errors import FeatcacheError

log = logging.getLogger(__name__)

#: ``prctl`` option: the signal the kernel sends a process when its parent thread exits (linux/prctl.h).
PR_SET_PDEATHSIG = 1


class WorkerFailure:
    """An input error caught in a worker, carried to the main process as a loader item.

    Attributes:
        kind: The error's class (a :class:`~featcache.errors.FeatcacheError`).
        message: Its one-line message.
    """

    def __init__(self, error: FeatcacheError) -> None:
        self.kind, self.message = type(error), str(error)

    def reraise(self) -> None:
        """Raise the error again, with its class and message, in the calling process.

        Raises:
            FeatcacheError: Always; the worker's error (a plain ``FeatcacheError`` with the same message
                when its class cannot be built from a message alone).
        """
        try:
            error = self.kind(self.message)
        except TypeError:
            error = FeatcacheError(self.message)
        raise error


class _Guarded(Dataset):
    """A dataset whose ``FeatcacheError`` becomes a :class:`WorkerFailure` item instead of an exception."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> Any:
        try:
            return self.dataset[i]
        except FeatcacheError as e:
            log.debug("item %s failed in %s", i, "the main process" if get_worker_info() is None
                      else "a DataLoader worker", exc_info=True)  # the worker's traceback, shown with -v
            return WorkerFailure(e)


class _GuardedCollate:
    """A collate function that passes a :class:`WorkerFailure` through (the first one of a batch).

    A class rather than a closure, so that it pickles to workers started with ``spawn``.
    """

    def __init__(self, collate: Callable[[Any], Any], *, batched: bool) -> None:
        self.collate, self.batched = collate, batched

    def __call__(self, data: Any) -> Any:
        if isinstance(data, WorkerFailure):
            return data
        if self.batched:
            failed = next((x for x in data if isinstance(x, WorkerFailure)), None)
            if failed is not None:
                return failed
        return self.collate(data)


class GuardedLoader(DataLoader):
    """A :class:`DataLoader` that raises a worker's :class:`~featcache.errors.FeatcacheError` as itself.

    Build it with :func:`make_loader`; iterate it like any loader (``len``, ``dataset``, ``generator``
    behave as usual; ``dataset`` is the guarded wrapper, ``dataset.dataset`` the original).
    """

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        it = super().__iter__()
        try:
            for item in it:
                if isinstance(item, WorkerFailure):
                    item.reraise()
                yield item
        finally:
            del it  # the last reference: the workers shut down now, not when the error is discarded


def worker_init(worker_id: int, *, parent: int) -> None:
    """Set up a DataLoader worker: one torch thread, no tokenizer threads, and die with the parent.

    On Linux the worker asks the kernel (``prctl(PR_SET_PDEATHSIG, SIGKILL)``) to kill it when the
    thread that started it exits, ``kill -9`` included; elsewhere, or when ``prctl`` is unavailable,
    it relies on torch's own check between tasks. A parent that died before the request took effect
    is caught by comparing ``os.getppid()`` with ``parent``. A worker of a ``forkserver``
    (:func:`fresh_context`) is the server's child, and the server lives as long as any of its clients,
    this worker included: such a worker watches ``parent`` from a thread and exits when it ends.

    Args:
        worker_id: The worker's index (given by torch).
        parent: Process id of the process that built the loader.
    """
    del worker_id
    torch.set_num_threads(1)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
                log.debug("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
        except (OSError, AttributeError) as e:  # no libc, or no prctl in it
            log.debug("prctl unavailable (%s); the worker relies on torch's parent check", e)
    if os.getppid() != parent:  # a forkserver's worker: its parent is the server, which lives as long
        if not _alive(parent):  # as any of its clients (this worker too), so it watches ``parent`` itself
            os._exit(0)
        threading.Thread(target=_exit_with, args=(parent,), daemon=True, name="featcache-parent-watch").start()


def _exit_with(pid: int) -> None:
    """Block until process ``pid`` ends, then end this process (a pidfd where Linux has one, else polling)."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux >= 5.3, or the process is gone
        while _alive(pid):
            time.sleep(0.5)
        os._exit(0)
    select.select([fd], [], [])  # readable when the process has ended
    os._exit(0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fresh_context(*, preload: Sequence[str] = ()) -> Any:
    """A multiprocessing context whose workers do not share this process's memory: ``forkserver``.

    A forked DataLoader worker shares its parent's pages copy-on-write while it lives, so every page the
    parent then writes (a training step rewrites its activations, gradients and weights) is copied; a
    worker per epoch pays that again every epoch. ``forkserver`` workers are forks of a small server
    process started once (it imports ``preload`` then, so a worker starts in milliseconds); what they
    run (dataset, collate function) is pickled to them, so it must not hold a model.

    Args:
        preload: Modules the server imports when it starts (those the pickled dataset needs). The server
            starts once per process, so only the first call's list takes effect.

    Returns:
        The ``forkserver`` context, or None (the platform's default) where there is none (Windows).
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return None
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(dict.fromkeys(["featcache.workers", *preload])))
    return ctx


def keep_items(item: Any) -> Any:
    """A collate function for single items that hands them over as they are: numpy arrays stay numpy arrays.

    torch's default for single items converts them to tensors in the worker, and a tensor crosses to the main
    process through a shared-memory file of its own: about 2 ms an item, several times the tokenizing of a
    transcript. A numpy array is pickled through the pipe instead.
    """
    return item


def make_loader(dataset: Dataset, *, num_workers: int, batch_size: int | None = 1,
                collate_fn: Callable[[Any], Any] | None = None, **kwargs: Any) -> GuardedLoader:
    """A :class:`GuardedLoader` over ``dataset``: input errors raised as one line, workers tied to this process.

    Args:
        dataset: A map-style dataset whose ``__getitem__`` may raise :class:`~featcache.errors.FeatcacheError`.
        num_workers: Worker processes (0: load in the main process, with the same error path).
        batch_size: Items per batch, or None for single items (as :class:`DataLoader`).
        collate_fn: Collate function (default: torch's for batches, :func:`keep_items` for single items).
        **kwargs: Any other :class:`DataLoader` argument (``shuffle``, ``generator``, ``prefetch_factor``, ...),
            except ``worker_init_fn``, which is :func:`worker_init`.

    Returns:
        The loader.

    Raises:
        FeatcacheError: A negative number of workers.
    """
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise FeatcacheError(f"workers (--workers {num_workers!r}): give 0 (load in this process) or more")
    if collate_fn is None:
        collate_fn = keep_items if batch_size is None else default_collate
    init = functools.partial(worker_init, parent=os.getpid()) if num_workers else None
    return GuardedLoader(_Guarded(dataset), batch_size=batch_size, num_workers=num_workers,
                         collate_fn=_GuardedCollate(collate_fn, batched=batch_size is not None),
                         worker_init_fn=init, **kwargs)
