"""Whether this process met trouble reaching Redis lately: a call that failed (no answer
within its deadline, the connection lost) or that was held up for half a second or more.

A process that met such trouble may have lived through a Redis stall; its stale-claim
recovery then tells the store so, and the store is gentle with the leases whose deadline
fell in a quiet spell just before (``lua/_lib.lua``, ``CLOCK_QUIET``): to a call sent after
a stall, the stall looks like a quiet spell, and the workers of those leases may still be
settling or renewing them. A process that met no trouble (it was idle, or a test's clock
moved on) recovers every lease that has run out at once.
"""

from __future__ import annotations

import math
import time

#: How long after trouble recovery stays gentle (s): its next passes after a stall.
TROUBLE_WINDOW = 30.0
#: A call that took this long (s) counts as trouble: it was held up, Redis may have stalled.
HELD_UP = 0.5


class Trouble:
    """When this process (one store; the shards of a sharded store share one) last met
    trouble reaching Redis."""

    def __init__(self) -> None:
        self._until = -math.inf

    def met(self) -> None:
        """A call failed, or was held up."""
        self._until = time.monotonic() + TROUBLE_WINDOW

    def took(self, seconds: float) -> None:
        """A call answered after ``seconds``: trouble when that is `HELD_UP` or more."""
        if seconds >= HELD_UP:
            self.met()

    @property
    def recent(self) -> bool:
        """Whether trouble was met within `TROUBLE_WINDOW`."""
        return time.monotonic() < self._until
