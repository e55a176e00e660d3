"""Where head training's time goes: a clock that :func:`~featcache.ensemble.fit_ensemble` laps at every phase of
every step, switched on for a block with :func:`step_clock`.

Wall-clock laps, not a profiler's per-operator times: torch.profiler's self times of a stack's step were measured
to charge a backward matrix product with several times its cost (a bfloat16 weight gradient that took 1.3 ms in
isolation and 1.9 ms timed inside the step was listed at 18 ms), which misplaces where the time goes. A lap
costs about 0.3 µs, against steps of milliseconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

PHASES = ("setup", "gather", "masks", "weights", "forward", "loss", "backward", "gradients", "optimizer", "evaluate")
"""The phases, in a step's order: ``setup`` (stacks built, an epoch's shuffles laid out, stopped members taken
out), ``gather`` (the batch's input rows), ``masks`` (dropout and modality-dropout draws), ``weights`` (the
low-precision copies of the master weights), ``forward``, ``loss`` (and reading it), ``backward``, ``gradients``
(widened to float32 for AdamW), ``optimizer`` (AdamW), ``evaluate`` (dev forward passes, metrics, early stopping,
best weights kept, finished heads handed to the caller's ``on_done``)."""


class StepClock:
    """Seconds spent in each :data:`PHASES` entry, summed over every step of every stack and thread.

    Attributes:
        seconds: Seconds per phase (thread-seconds: two stacks trained in parallel both count).
        steps: Optimiser steps of stacks (one per stack and batch).
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.steps = 0
        self._lock = threading.Lock()

    def lap(self, phase: str, since: float) -> float:
        """Add the time from ``since`` to now to ``phase``.

        Args:
            phase: One of :data:`PHASES`.
            since: A ``time.perf_counter()`` reading.

        Returns:
            Now, as ``time.perf_counter()``: the start of the next lap.

        Raises:
            KeyError: An unknown phase.
        """
        now = time.perf_counter()
        with self._lock:
            self.seconds[phase] += now - since
            if phase == "optimizer":
                self.steps += 1
        return now

    def total(self) -> float:
        """Thread-seconds over every phase."""
        return sum(self.seconds.values())

    def shares(self) -> dict[str, float]:
        """Each phase's share of :meth:`total` (0 where nothing was timed)."""
        total = self.total()
        return {k: (v / total if total else 0.0) for k, v in self.seconds.items()}


_ACTIVE: list[StepClock] = []


@contextmanager
def step_clock() -> Iterator[StepClock]:
    """Time every phase of head training inside the block (every :func:`~featcache.ensemble.fit_ensemble` call
    started in it, from any thread); on a GPU each lap waits for the device first.

    Yields:
        The :class:`StepClock` the block's training laps.
    """
    clock = StepClock()
    _ACTIVE.append(clock)
    try:
        yield clock
    finally:
        _ACTIVE.remove(clock)


def active_clock() -> StepClock | None:
    """The innermost :func:`step_clock` block's clock, or None outside every block."""
    return _ACTIVE[-1] if _ACTIVE else None
