"""`OutageLog`: the warnings of requests answered 503 because the store is unreachable,
kept to a few lines however many requests an outage meets.

Under load a Redis outage turns every request into a ``503`` and, logged one by one, into
thousands of identical warnings a second (an outside run logged 4,100 in a few seconds).
The first of a spell is logged as a warning; the others within `EVERY` seconds go to
DEBUG, and the next warning says how many went there, so the log tells when the outage
began, that it went on, and how much it refused.

`LoopOutage` is the same for a background loop (claiming, the cron scheduler) whose passes
fail while the store is unreachable, and `failed_again` for one whose pass keeps failing
for a reason other than an outage: its traceback once per spell.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

#: Seconds between two warnings of an `OutageLog` during an outage, at least.
EVERY = 10.0


class OutageLog:
    """Warnings about refused requests (every kind counted together), at most one per
    `EVERY` seconds; the rest at DEBUG, counted in the next warning."""

    def __init__(
        self,
        logger: logging.Logger,
        every: float = EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.every = every
        self.clock = clock
        self._quiet_until = -math.inf  # the clock's time before which warnings are DEBUG
        self._quieted = 0

    def warning(self, message: str, *args: Any, extra: Mapping[str, Any] | None = None) -> None:
        """Log ``message % args`` as a warning, or at DEBUG when one was logged less than
        `every` seconds ago (the next warning counts those)."""
        now = self.clock()
        if now < self._quiet_until:
            self._quieted += 1
            self.logger.debug(message, *args, extra=extra)
            return
        self._quiet_until = now + self.every
        if self._quieted:
            message += " (and %d more refused for the store since the last such warning, at DEBUG)"
            args = (*args, self._quieted)
            self._quieted = 0
        self.logger.warning(message, *args, extra=extra)


#: The warnings of every request this process answers 503 for an unreachable store.
STORE_OUTAGE = OutageLog(logging.getLogger("async_endpoints"))


class LoopOutage:
    """A background loop's passes (``what``: "claiming", "cron scheduler") failing because
    the store is unreachable: the first of a spell is a warning, then one every `every`
    seconds saying how long it has lasted (each pass's line at DEBUG), and a line when a
    pass succeeds again; an outage of an hour writes a few hundred lines, not thousands."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        every: float = EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.what = what
        self.every = every
        self.clock = clock
        self._since: float | None = None  # when the spell began
        self._next = 0.0  # when its next warning is due
        self._tries = 0

    def failed(self, exc: BaseException, wait: float) -> None:
        """A pass failed with the store unreachable; the next comes in ``wait`` seconds."""
        now = self.clock()
        self._tries += 1
        if self._since is None:
            self._since, self._next = now, now + self.every
            self.logger.warning("%s paused, store unavailable: %s", self.what, exc)
        elif now >= self._next:
            self._next = now + self.every
            self.logger.warning(
                "%s still paused after %.0f s (%d tries), store unavailable: %s",
                self.what,
                now - self._since,
                self._tries,
                exc,
            )
        else:
            self.logger.debug("%s paused %.2f s, store unavailable: %s", self.what, wait, exc)

    def succeeded(self) -> None:
        """A pass went through: a spell of failures, if any, is over."""
        if self._since is not None:
            lasted = self.clock() - self._since
            self.logger.info("%s resumed after %.1f s: the store answers again", self.what, lasted)
            self._since, self._tries = None, 0


def failed_again(
    logger: logging.Logger, what: str, in_a_row: int, exc: BaseException, wait: float
) -> None:
    """Log the ``in_a_row``-th failure in a row of a background loop's pass (``what``:
    "claiming", "cron scheduler tick"), a failure that is no outage: with its traceback
    the first time only (a refusal that lasts, Redis refusing the store's credentials
    say, would otherwise write one every second), then one line per try."""
    logger.error(
        "%s failed (%d in a row): %s: %s; trying again in %.2f s",
        what,
        in_a_row,
        type(exc).__name__,
        exc,
        wait,
        exc_info=in_a_row == 1,
    )
