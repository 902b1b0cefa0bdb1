"""`MemoryIdempotency`: the `IdempotentStore` part of `InMemoryJobStore`.

Keys live in an ordered dict with the moment (on the store's monotonic clock) they expire,
in insertion order, which is expiry order because every key of a store is remembered for
the ttl its caller gives (the engine's ``idempotency_ttl``); expired keys are dropped from
the front on each use, so the dict never holds more than the keys of the last ttl, and a
use costs only the keys it drops (an `OrderedDict`: its front is reached in constant time,
however many keys were dropped before). Nothing
awaits between the look-up and the store, so a concurrent repeat finds the first job.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._idempotency import IdempotentJobGoneError
from ._job import Job, NewJob
from ._store_features import Idempotency


class IdempotencyKeys:
    """Remembered keys: key -> (job id, fingerprint, expiry on the monotonic clock)."""

    def __init__(self) -> None:
        self._keys: OrderedDict[str, tuple[uuid.UUID, str, float]] = OrderedDict()

    def expire(self, now: float) -> None:
        """Drop the keys whose ttl has passed (from the oldest on, stopping at the first
        still remembered: nothing is copied)."""
        keys = self._keys
        while keys:
            oldest = next(iter(keys))
            if keys[oldest][2] > now:
                return
            del keys[oldest]

    def get(self, key: str) -> tuple[uuid.UUID, str] | None:
        """The job id and fingerprint ``key`` names, if it is remembered."""
        entry = self._keys.get(key)
        return None if entry is None else (entry[0], entry[1])

    def put(self, key: str, job_id: uuid.UUID, fingerprint: str, until: float) -> None:
        """Remember ``key`` until ``until`` (re-inserted at the end: expiry order)."""
        self._keys.pop(key, None)
        self._keys[key] = (job_id, fingerprint, until)

    def __len__(self) -> int:
        return len(self._keys)


class MemoryIdempotency:
    """Submissions made once per idempotency key; see `async_endpoints.IdempotentStore`."""

    if TYPE_CHECKING:
        _idempotency_keys: IdempotencyKeys
        _monotonic: Callable[[], float]

        async def enqueue(self, new_job: NewJob, *, max_waiting: int | None = None) -> Job: ...

        async def get(self, job_id: uuid.UUID) -> Job | None: ...

    async def enqueue_once(
        self, new_job: NewJob, idempotency: Idempotency, *, max_waiting: int | None = None
    ) -> tuple[Job, str | None]:
        """Store ``new_job`` unless ``idempotency.key`` is remembered (then the job it
        names and its fingerprint).

        Raises:
            IdempotentJobGoneError: the key is remembered but its job is no longer kept.
            As `enqueue` (nothing stored, the key not remembered).
        """
        keys = self._idempotency_keys
        now = self._monotonic()
        keys.expire(now)
        earlier = keys.get(idempotency.key)
        if earlier is not None:
            job = await self.get(earlier[0])
            if job is None:
                raise IdempotentJobGoneError(*earlier)
            return job, earlier[1]
        job = await self.enqueue(new_job, max_waiting=max_waiting)
        keys.put(idempotency.key, job.id, idempotency.fingerprint, now + idempotency.ttl)
        return job, None
