"""`ManualClock`: time that moves only when a test says so."""

from __future__ import annotations


class ManualClock:
    """A clock for `InMemoryJobStore(clock=...)`, in two parts like a host's clocks.

    Calling it gives the wall clock (seconds since the epoch), which stamps the job's times;
    `monotonic` gives the clock that leases, retry delays and retention are measured on.
    `advance` moves both, as time passing does; `step_wall` moves the wall clock alone, as
    an NTP correction or an operator setting the date does.

    Args:
        start: The wall clock at the start, in seconds since the epoch (default
            2026-01-01T00:00:00Z).
    """

    def __init__(self, start: float = 1_767_225_600.0) -> None:
        self.now = start
        self.elapsed = 0.0

    def __call__(self) -> float:
        """The wall clock: seconds since the epoch."""
        return self.now

    def monotonic(self) -> float:
        """Seconds elapsed since the clock was made: moved by `advance` only."""
        return self.elapsed

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass: both clocks move forward (never backward)."""
        if seconds < 0:
            raise ValueError("a clock cannot go back")
        self.now += seconds
        self.elapsed += seconds

    def step_wall(self, seconds: float) -> None:
        """Step the wall clock alone by ``seconds`` (negative to set it back); no time passes."""
        self.now += seconds
