"""This process's reading of the store's elapsed-time clock, for leases and delays.

Durations in Redis (lease deadlines, due times of delayed retries, offer expiry) are not
measured on the Redis server's wall clock: an NTP step or a resumed VM would move every
deadline at once, re-running live handlers (a step forward) or holding a retry for an
hour (a step back). Instead the store keeps one clock key that every call advances to
the caller's *reading*: the largest value this process has seen, plus the time its own
monotonic clock has measured since. Monotonic clocks do not step, so the key moves with
real time while anyone calls; readings lag by a network hop at most (a reply is older than
its arrival), so a lease measured with it can only come out a little long, never short,
for a command carried out as it arrives. One that waited in a stalled server (``CLIENT
PAUSE``, a long script) is carried out with the reading it was sent with, and nobody moved
the clock meanwhile: a lease counted from it would come out short by the stall. So a lease
a script grants starts where the server's wall clock says the clock would be had it moved
through the stall (bounded; the clock itself never moves by the wall clock, see
``LEASE_FROM`` in ``lua/_lib.lua``), leases running when the stall began get its length on
top at recovery (``expired_leases`` there); and the worker renews a claim answered later than a
third of its lease before starting it (``_claimer.py`` in the core package; ``_waits.py``
for a hand-over), for a reply held up on its way back.
The key starts at the server's wall clock the first time (see ``lua/_lib.lua``); after a
spell in which no process called the store, the first reading of a process that starts
catches it up with the time that passed, unless a live process answers its probe with
its own reading (``lua/clock.lua``, ``_connection.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class ElapsedClock:
    """Milliseconds on the store's elapsed-time clock, as this process can vouch for.

    Args:
        monotonic: Seconds on a clock that never steps (injectable for tests).
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._seen_ms = 0
        self._seen_at: float | None = None

    def reading(self) -> int:
        """The clock now by this process's account; 0 before it has seen the clock."""
        if self._seen_at is None:
            return 0
        return self._seen_ms + int((self._monotonic() - self._seen_at) * 1000)

    def observe(self, clock_ms: int) -> None:
        """Take a value a script returned into account (kept only when it is ahead)."""
        if self._seen_at is None or clock_ms > self.reading():
            self._seen_ms = clock_ms
            self._seen_at = self._monotonic()
