"""`RetryPolicy`: pure backoff arithmetic, computed once in core; stores persist the result."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from ._lifecycle import has_retries
from ._options import MAX_DELAY


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff between attempts.

    The delay before retry ``n`` (1 for the first retry) is::

        min(base_delay * 2 ** (n - 1), max_delay) * (1 + jitter * u),   u uniform in [0, 1)

    so jitter only ever lengthens a delay, by at most ``jitter`` (25 % by default), which
    spreads out retries of jobs that failed together.

    Attributes:
        max_retries: Retries after the first attempt.
        base_delay: Seconds before the first retry.
        max_delay: Cap, in seconds, on one delay before jitter.
        jitter: The largest fraction by which jitter lengthens a delay (0 disables it).
    """

    max_retries: int = 3
    base_delay: float = 2.0
    max_delay: float = 300.0
    jitter: float = 0.25
    random: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def delay(self, retry_number: int, base_delay: float | None = None) -> float:
        """Seconds to wait before retry ``retry_number`` (1-based); ``base_delay``
        replaces the policy's own (a handler may carry another)."""
        if retry_number < 1:
            raise ValueError(f"retry_number starts at 1, got {retry_number}")
        exponent = min(retry_number - 1, 64)
        first = self.base_delay if base_delay is None else base_delay
        base = min(first * 2.0**exponent, self.max_delay)
        return min(base * (1.0 + self.jitter * self.random()), MAX_DELAY)

    def retry_in(
        self, retry_count: int, max_retries: int | None = None, base_delay: float | None = None
    ) -> float | None:
        """The delay before the next attempt of a job that has had ``retry_count`` retries.

        None when no retries are left (``max_retries`` defaults to the policy's own, a job
        may carry another), so the failure is final. ``base_delay`` replaces the policy's
        own (a handler may carry another).
        """
        limit = self.max_retries if max_retries is None else max_retries
        if not has_retries(retry_count, limit):
            return None
        return self.delay(retry_count + 1, base_delay)
