"""`ProgressReporter`: a running job's ``ctx.report_progress``, coalesced.

A handler may report as often as it likes; the store sees at most one write per
`INTERVAL` seconds per job. The first report after a quiet interval is written at once
(the handler awaits it); later ones within the interval only replace the value waiting to
be written, which a timer writes once the interval has passed. Before the attempt is
settled the engine calls `ProgressReporter.flush`, so the last value reported always lands
before the job's outcome. Writes are token-checked by the store (`ProgressStore`): once
the claim is lost (cancelled, recovered elsewhere) the reporter stops writing, silently.
A store without `ProgressStore` keeps no progress (reports are checked and dropped).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from typing import Any, cast

from pydantic_core import PydanticSerializationError, to_jsonable_python

from ._errors import JobStoreError
from ._json_numbers import HUGE_INTEGER, huge_integer_in
from ._logs import job_extra
from ._store import Claim, JobStore
from ._store_features import ProgressStore

logger = logging.getLogger("async_endpoints")

#: Seconds between two progress writes of one job, at least.
INTERVAL = 0.1

_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_NOTHING: Any = object()


def progress_value(value: Any, max_size: int | None = None) -> Any:
    """``value`` as plain JSON data (tuples become lists; what pydantic writes as JSON,
    as for a result: models, dataclasses, dates, decimals, sets...).

    Raises:
        ValueError: ``value`` has no JSON form: an unknown type, NaN or Infinity, text
            with a lone surrogate, a dict with keys that are not text, an integer beyond
            ±(2**53 - 1) (`_json_numbers`); or its JSON is larger than ``max_size``
            bytes (UTF-8).
    """
    try:
        try:
            text = _ENCODER.encode(value)
        except TypeError:  # not plain JSON data: as pydantic writes it, if it can
            value = to_jsonable_python(value)
            text = _ENCODER.encode(value)
        size = len(text.encode())  # a lone surrogate has no UTF-8 form
    except (TypeError, ValueError, RecursionError, PydanticSerializationError) as exc:
        raise ValueError(f"progress must be a JSON value: {exc}") from None
    if max_size is not None and size > max_size:
        raise ValueError(f"progress is {size} bytes of JSON, over max_result_size ({max_size})")
    if isinstance(value, dict) and not all(isinstance(key, str) for key in value):
        raise ValueError("progress must be a JSON value: its keys must be text")
    if huge_integer_in(text, value):
        raise ValueError(f"progress must be a JSON value, not {HUGE_INTEGER}")
    return json.loads(text)


class ProgressReporter:
    """The progress of one attempt (one claim), written to the store coalesced."""

    __slots__ = (
        "_claim",
        "_closed",
        "_lock",
        "_next_at",
        "_pending",
        "_store",
        "_task",
        "_timer",
        "last",
        "wrote",
    )

    def __init__(self, store: JobStore, claim: Claim) -> None:
        self._store = cast(ProgressStore, store) if _keeps_progress(type(store)) else None
        self._claim = claim
        self._pending: Any = _NOTHING
        self._next_at = 0.0  # loop time at which the next write may start
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._closed = self._store is None
        #: Whether a value was written, and the last one written.
        self.wrote = False
        self.last: Any = None

    async def report(self, value: Any) -> None:
        """Report ``value`` (already plain JSON data): written now when no write happened
        within `INTERVAL`, else on the timer (or at `flush`)."""
        if self._closed:
            return
        self._pending = value
        if self._timer is not None or self._lock.locked():
            return  # a write is due already; it takes the latest value
        loop = asyncio.get_running_loop()
        wait = self._next_at - loop.time()
        if wait > 0:
            self._timer = loop.call_later(wait, self._write_soon)
        else:
            await self._write()

    def _write_soon(self) -> None:
        self._timer = None
        if not self._closed and self._pending is not _NOTHING:
            self._task = asyncio.ensure_future(self._write())

    async def _write(self) -> None:
        async with self._lock:
            value, self._pending = self._pending, _NOTHING
            if value is _NOTHING or self._closed or self._store is None:
                return
            self._next_at = asyncio.get_running_loop().time() + INTERVAL
            try:
                held = await self._store.set_progress(self._claim, value)
            except JobStoreError as exc:
                job = self._claim.job
                message = "job %s: could not record its progress: %s"
                logger.warning(message, job.id, exc, extra=job_extra(job))
                if self._pending is _NOTHING:
                    self._pending = value  # written by the next write, or the flush
                return
            if held:
                self.wrote, self.last = True, value
            else:
                self._closed = True  # the claim is lost: nothing more is written
        self._arm()

    def _arm(self) -> None:
        """Write a value reported during the last write once the interval has passed."""
        if self._pending is _NOTHING or self._closed or self._timer is not None:
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(0.0, self._next_at - loop.time()), self._write_soon)

    async def flush(self) -> None:
        """Write the value still waiting (if any) now (again at the next flush when the
        store failed: the engine flushes before each try of the settlement)."""
        if self._pending is _NOTHING and self._timer is None and self._task is None:
            return  # nothing reported, nothing under way: the common case costs nothing
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task = self._task
        if task is not None and not task.done():
            await asyncio.shield(task)
        await self._write()
        if self._timer is not None:  # armed by a failed write: the next flush retries
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        """Write no more (the attempt ended without a settlement)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


@functools.cache
def _keeps_progress(store_type: type) -> bool:
    """Whether stores of ``store_type`` keep progress (`ProgressStore`), decided once per
    type: a runtime-checkable Protocol's isinstance looks its methods up on every call,
    too slow for every attempt."""
    return callable(getattr(store_type, "set_progress", None))
