"""A Ray ``worker_process_setup_hook`` for the tests: kills a worker once in the middle of a job.

Every Ray worker of the test module's Ray instance runs :func:`install` when it starts. When the folder
named by ``FEATCACHE_TEST_FAULTS`` holds a file ``arm`` (and no file ``killed`` yet), the first
:meth:`EntryWriter.add <featcache.cache.store.EntryWriter.add>` in any worker writes its chunk, records
``killed`` and ends the worker process at once (``os._exit``), as a crash or a lost node would: Ray must
start the job again, and the store must make the retry finish the entry with the same bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "FEATCACHE_TEST_FAULTS"


def install() -> None:
    """Patch the entry writer of this worker process (does nothing without ``FEATCACHE_TEST_FAULTS``)."""
    folder = os.environ.get(ENV)
    if not folder:
        return
    from featcache.cache.store import EntryWriter

    original = EntryWriter.add

    def add(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        original(self, *args, **kwargs)
        arm, killed = Path(folder) / "arm", Path(folder) / "killed"
        if arm.exists() and not killed.exists():
            killed.write_text(f"{os.getpid()} {self.key}\n")
            os._exit(1)

    EntryWriter.add = add  # type: ignore[method-assign]
