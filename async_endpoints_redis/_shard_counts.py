"""`WaitingCounts`: ``max_waiting`` over every shard of a sharded store, without a fan-out
per submission.

Each shard's enqueue script refuses a job once its own shard holds ``limit`` waiting
(Queued or Scheduled) jobs. A sharded store passes ``limit = max_waiting - the waiting
jobs of the other shards``, as last read: every shard's count is read again (one
`count_waiting` per shard, all at once) when it is older than `FRESH_FOR` seconds, and
this process's own submissions are added to it as they are stored. Submissions of this
process still on their way count too (in the other shards' part of the limit): one that
would pass ``max_waiting`` with them waits for them to end first, so that concurrent
submissions from one process cannot each take the whole limit in their own shard (300 at
once with a limit of 100 stored about 290 before). A refusal is never taken on an old
count: the counts are read again and the submission retried once with the fresh limit,
so a submission is refused only when ``max_waiting`` jobs really wait (at that read) or
this process's submissions in flight were admitted first. What may pass unseen is what
other processes submitted to other shards since the last read (at most `FRESH_FOR`
seconds of it): the limit is a bound on the backlog, not a transaction across shards. A
shard that cannot be read (failing over) counts as it was last read, so that submissions
to the other shards go on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

from async_endpoints._errors import QueueFullError, full_queue_message

if TYPE_CHECKING:
    from ._store import RedisJobStore

T = TypeVar("T")

#: Seconds a read of the shards' waiting counts is used for.
FRESH_FOR = 0.5


class _Shards(Protocol):
    """What `WaitingCounts` needs of the store."""

    @property
    def _shards(self) -> list[RedisJobStore]: ...


class WaitingCounts:
    """The last read waiting count of every shard.

    Args:
        store: The sharded store (its started shards are read).
    """

    def __init__(self, store: _Shards) -> None:
        self._store = store
        self._counts: list[int] = []
        self._in_flight: list[int] = []  # jobs this process is storing now, per shard
        self._settled = asyncio.Event()  # set (and replaced) when a submission ends
        self._read_at = -FRESH_FOR
        self._reading: asyncio.Task[None] | None = None

    async def limited(
        self,
        shard: int,
        max_waiting: int | None,
        store: Callable[[int | None], Awaitable[T]],
        count: int = 1,
    ) -> T:
        """``store(limit)`` for a submission to ``shard``, with the limit of that shard
        (None: no limit), storing ``count`` waiting jobs; retried once on fresh counts
        when refused.

        Raises:
            QueueFullError: ``max_waiting`` jobs wait in all shards together.
        """
        if max_waiting is None:
            return await store(None)
        # (a shard not read yet: one the store serves since its last read, after a
        # resharding was recorded)
        if time.monotonic() - self._read_at > FRESH_FOR or shard >= len(self._counts):
            await self._read()
            if shard >= len(self._counts):  # the shared read began before it was served
                await self._read_all()
        while (flying := sum(self._in_flight)) and (
            sum(self._counts) + flying + count > max_waiting
        ):
            await self._settled.wait()  # the submissions in flight may fill the limit
            if time.monotonic() - self._read_at > FRESH_FOR:
                await self._read()
        self._in_flight[shard] += count
        try:
            try:
                stored = await store(self._limit(shard, max_waiting))
            except QueueFullError:
                await self._read_all()  # a refusal is never taken on an old count
                try:
                    stored = await store(self._limit(shard, max_waiting))
                except QueueFullError as exc:
                    raise QueueFullError(
                        full_queue_message(max_waiting), retry_after=exc.retry_after
                    ) from None
            self.add(shard, count)
        finally:
            self._in_flight[shard] -= count
            settled, self._settled = self._settled, asyncio.Event()
            settled.set()
        return stored

    def add(self, shard: int, count: int) -> None:
        """Count ``count`` jobs this process just stored in ``shard``."""
        if self._counts:
            self._counts[shard] += count

    def _limit(self, shard: int, max_waiting: int) -> int:
        elsewhere = sum(self._counts) - self._counts[shard]
        elsewhere += sum(self._in_flight) - self._in_flight[shard]
        return max(0, max_waiting - elsewhere)

    async def _read(self) -> None:
        """Read every shard's count (one read at a time, shared by its callers)."""
        reading = self._reading
        if reading is None or reading.done():
            reading = self._reading = asyncio.ensure_future(self._read_all())
        await asyncio.shield(reading)

    async def _read_all(self) -> None:
        shards = self._store._shards
        started = time.monotonic()
        read = await asyncio.gather(
            *(shard.count_waiting() for shard in shards), return_exceptions=True
        )
        for failure in read:
            if isinstance(failure, BaseException) and not isinstance(failure, Exception):
                raise failure
        known = self._counts + [0] * (len(shards) - len(self._counts))
        self._in_flight += [0] * (len(shards) - len(self._in_flight))
        # A shard that cannot be read keeps its last count: submissions to the others go on.
        self._counts = [
            known[index] if isinstance(count, BaseException) else count
            for index, count in enumerate(read)
        ]
        self._read_at = started
