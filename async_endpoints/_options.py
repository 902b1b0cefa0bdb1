"""Job options: when a job is due (``delay`` / ``run_at``), where it waits (`Placement`:
queue, partition key, tenant) and the per-handler constants.

A delay is seconds on the store's monotonic clock; a run-at time is turned into one here,
once, against this process's wall clock (the engine hands stores durations, never instants).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from numbers import Real
from typing import Any

from ._errors import ConfigurationError
from ._job import check_label

#: The longest delay, in seconds (100 years): further is a mistake, and would overflow the
#: times a job carries.
MAX_DELAY = 100 * 365.25 * 86400.0

#: ``delay`` of `AsyncEndpoints.map_async_post`: seconds, or ``fn(request, body)`` (sync or
#: async) giving seconds (or None for no delay) per POST.
DelayOption = float | Callable[[Any, Any], float | Awaitable[float | None] | None]


#: ``partition_key`` / ``tenant`` of `AsyncEndpoints.map_async_post`: a string, or
#: ``fn(request, body)`` (sync or async) giving one (or None) per POST.
LabelOption = str | Callable[[Any, Any], str | Awaitable[str | None] | None]


@dataclass(frozen=True, slots=True)
class Placement:
    """Where and when one submission waits: what a POST or `submit` decided for its job.

    Attributes:
        delay: Seconds until it is due (0: at once).
        queue: Its queue (None: its handler's).
        partition_key: Its partition key, or None.
        tenant: Its tenant, or None.
        webhook_url: Where its webhook goes (checked against the allow-list), or None.
    """

    delay: float = 0.0
    queue: str | None = None
    partition_key: str | None = None
    tenant: str | None = None
    webhook_url: str | None = None


#: The placement of a submission with no options: due at once, in its handler's queue.
AT_ONCE = Placement()


def handler_label(value: object, what: str) -> LabelOption | None:
    """A handler's ``partition_key`` or ``tenant`` option checked at wiring time (a function
    is kept as is).

    Raises:
        ConfigurationError: a constant that is not a string of 1 to 255 characters.
    """
    if value is None or callable(value):
        return value
    try:
        return check_label(value, what)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


async def label_for(option: LabelOption | None, request: Any, body: Any, what: str) -> str | None:
    """The value of a ``partition_key`` or ``tenant`` option for one POST.

    Raises:
        ValueError: the function gave something other than None or a string of 1 to 255
            characters.
    """
    if option is None or isinstance(option, str):
        return option
    value = option(request, body)
    if inspect.isawaitable(value):
        value = await value
    return check_label(value, what)


def delay_seconds(delay: object, what: str = "delay") -> float:
    """``delay`` as seconds: a number from 0 to `MAX_DELAY` (not a bool), else `ValueError`."""
    if isinstance(delay, bool) or not isinstance(delay, Real):
        raise ValueError(f"{what} must be a number of seconds, not {delay!r}")
    seconds = float(delay)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{what} must be a finite number of seconds >= 0, not {delay!r}")
    if seconds > MAX_DELAY:
        raise ValueError(f"{what} must be at most {MAX_DELAY:.0f} seconds (100 years)")
    return seconds


def seconds_until(run_at: object) -> float:
    """Seconds from now until ``run_at`` (an aware `datetime`); 0 when it has passed.

    Raises:
        ValueError: ``run_at`` is not a `datetime`, is naive (its zone would be a guess),
            or is more than `MAX_DELAY` seconds ahead.
    """
    if not isinstance(run_at, datetime):
        raise ValueError(f"run_at must be an aware datetime, not {run_at!r}")
    if run_at.tzinfo is None or run_at.utcoffset() is None:
        raise ValueError(f"run_at must be an aware datetime (with a time zone), not {run_at!r}")
    seconds = max(0.0, (run_at - datetime.now(UTC)).total_seconds())
    return delay_seconds(seconds, "run_at's distance from now")


def submission_delay(delay: float | None, run_at: datetime | None) -> float:
    """The seconds a submission waits before it is due, from ``delay`` or ``run_at``.

    Raises:
        ValueError: both are given, or either is invalid (see `delay_seconds`,
            `seconds_until`).
    """
    if delay is not None and run_at is not None:
        raise ValueError("give delay or run_at, not both")
    if run_at is not None:
        return seconds_until(run_at)
    return 0.0 if delay is None else delay_seconds(delay)


def handler_delay(delay: object) -> DelayOption | None:
    """A handler's ``delay`` option checked at wiring time (a function is kept as is).

    Raises:
        ConfigurationError: a constant that is not a finite number of seconds >= 0.
    """
    if delay is None or callable(delay):
        return delay
    try:
        return delay_seconds(delay)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


def handler_max_retries(max_retries: object) -> int | None:
    """A handler's ``max_retries``: None (the setting's) or an int >= 0."""
    if max_retries is None:
        return None
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ConfigurationError(f"max_retries must be an int >= 0, not {max_retries!r}")
    return max_retries


def handler_job_timeout(job_timeout: object) -> float | None:
    """A handler's ``job_timeout``: None (the setting's) or seconds > 0."""
    if job_timeout is None:
        return None
    if (
        isinstance(job_timeout, bool)
        or not isinstance(job_timeout, Real)
        or not 0 < float(job_timeout) <= MAX_DELAY
    ):
        raise ConfigurationError(
            f"job_timeout must be a number of seconds > 0, at most {MAX_DELAY:.0f} "
            f"(100 years), not {job_timeout!r}"
        )
    return float(job_timeout)
