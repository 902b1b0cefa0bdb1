"""The two clocks the in-memory store reads: the wall clock for the job's times, the
monotonic clock for durations (leases, retry delays, retention).

A host's wall clock steps (NTP, an operator, a VM resumed): measuring a lease on it would
expire it early after a step forward and re-run a live handler, and a step back would
stretch a retry delay by the size of the step. The monotonic clock never steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """A clock in two parts, as `async_endpoints.testing.ManualClock` is."""

    def __call__(self) -> float:
        """The wall clock: seconds since the epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never steps: what durations are measured on."""
        ...


def clock_parts(
    clock: Clock | Callable[[], float] | None,
) -> tuple[Callable[[], float], Callable[[], float]]:
    """(wall, monotonic) of ``clock``: the host's two clocks for None, and one plain
    callable (seconds since the epoch) for both, as before a store had two clocks."""
    if clock is None:
        return time.time, time.monotonic
    return clock, clock.monotonic if isinstance(clock, Clock) else clock
