"""Threads of head training: how many (``FEATCACHE_THREADS``) and torch's intra-op count inside a block.

The heads' layers are small matrix products, for which one intra-op thread is fastest per core and several
intra-op threads collapse when another process holds a core; head training therefore runs every operation on
one intra-op thread and uses more cores by training independent slices of the heads in parallel threads.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from featcache.errors import FeatcacheError
from featcache.hardware import usable_cores

THREADS_ENV = "FEATCACHE_THREADS"


# ------------------------------------------------------------------------------------------ threads


def head_threads() -> int:
    """The number of CPU threads head training uses: ``FEATCACHE_THREADS``, else the usable cores (at most 2).

    Each thread trains its own share of the heads with single-threaded operations, so a thread that
    another process delays slows only its share. The default of at most two threads is what
    ``bench/bench_evaluate.py`` measured best on 2 cores, idle and busy; more cores can be given
    explicitly.

    Returns:
        A positive integer.

    Raises:
        FeatcacheError: ``FEATCACHE_THREADS`` is set but not a positive integer.
    """
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return max(1, min(2, usable_cores()))
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise FeatcacheError(f"{THREADS_ENV}={raw!r} is not a positive integer; set it to 1, 2, ... or unset it")
    return value


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with ``torch.set_num_threads(n)`` and restore the previous count afterwards.

    Args:
        n: Intra-op threads inside the block.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
