"""`ManualClock`: time that moves only when a test says so."""

from __future__ import annotations


class ManualClock:
    """A clock for `InMemoryJobStore(clock=...)`: call it for the time, `advance` to move it.

    Args:
        start: Seconds since the epoch at the start (default 2026-01-01T00:00:00Z).
    """

    def __init__(self, start: float = 1_767_225_600.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (never backward)."""
        if seconds < 0:
            raise ValueError("a clock cannot go back")
        self.now += seconds
