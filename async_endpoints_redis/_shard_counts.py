"""`WaitingCounts`: ``max_waiting`` over every shard of a sharded store, without a fan-out
per submission.

Each shard's enqueue script refuses a job once its own shard holds ``limit`` waiting
(Queued or Scheduled) jobs. A sharded store passes ``limit = max_waiting - the waiting
jobs of the other shards``, as last read: each other shard's count is read again (one
`count_waiting`, one read of a shard under way at a time, shared by the submissions
that need it) when it is older than `FRESH_FOR` seconds, and this process's own
submissions are added to it as they are stored. A submission waits for those reads
`READ_WITHIN` seconds at most from their start: a shard that answers later (a frozen
master: its read waits for the socket timeout), or whose read failed, counts as it was
last read, and is not waited for until one of its reads answers in time, so that
submissions to the other shards go on, promptly, and one to that shard waits for its
own call alone. Submissions of this process still on their way count too (in the other
shards' part of the limit): one that would pass ``max_waiting`` with them waits for
them to end first, so that concurrent submissions from one process cannot each take the
whole limit in their own shard (300 at once with a limit of 100 stored about 290
before). A refusal is never taken on an old count: the other shards' counts are read
again (those that answer in time) and the submission retried once with the fresh
limit, so a submission is refused only when ``max_waiting`` jobs really wait (at that
read) or this process's submissions in flight were admitted first. What may pass unseen
is what other processes submitted to other shards since the last read (at most
`FRESH_FOR` seconds of it, or since the last answer of a shard that does not answer):
the limit is a bound on the backlog, not a transaction across shards.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from async_endpoints._errors import QueueFullError, full_queue_message

if TYPE_CHECKING:
    from ._store import RedisJobStore

T = TypeVar("T")

#: Seconds a shard's read waiting count is used for.
FRESH_FOR = 0.5
#: Seconds a submission waits for a shard's count, from the start of its read.
READ_WITHIN = 0.25


class _Shards(Protocol):
    """What `WaitingCounts` needs of the store."""

    @property
    def _shards(self) -> list[RedisJobStore]: ...


@dataclass
class _Count:
    """One shard's last read waiting count."""

    count: int = 0
    read_at: float = -math.inf  # when the read that gave it began
    reading: asyncio.Task[None] | None = None  # the read under way
    began: float = 0.0  # when that read began
    late: bool = False  # its last read failed or answered after READ_WITHIN
    added: int = 0  # jobs this process stored in the shard, ever


class WaitingCounts:
    """The last read waiting count of every shard.

    Args:
        store: The sharded store (its started shards are read).
    """

    def __init__(self, store: _Shards) -> None:
        self._store = store
        self._counts: list[_Count] = []
        self._in_flight: list[int] = []  # jobs this process is storing now, per shard
        self._settled = asyncio.Event()  # set (and replaced) when a submission ends

    async def limited(
        self,
        shard: int,
        max_waiting: int | None,
        store: Callable[[int | None], Awaitable[T]],
        count: int = 1,
        full: Callable[[int], str] = full_queue_message,
    ) -> T:
        """``store(limit)`` for a submission to ``shard``, with the limit of that shard
        (None: no limit), storing ``count`` waiting jobs; retried once on fresh counts
        when refused.

        Raises:
            QueueFullError: ``max_waiting`` jobs wait in all shards together.
        """
        if max_waiting is None:
            return await store(None)
        await self._refresh(shard)
        while (flying := sum(self._in_flight)) and (self._total() + flying + count > max_waiting):
            await self._settled.wait()  # the submissions in flight may fill the limit
            await self._refresh(shard)
        self._in_flight[shard] += count
        try:
            try:
                stored = await store(self._limit(shard, max_waiting))
            except QueueFullError:
                await self._refresh(shard, time.monotonic())  # never on an old count
                try:
                    stored = await store(self._limit(shard, max_waiting))
                except QueueFullError as exc:
                    raise QueueFullError(full(max_waiting), retry_after=exc.retry_after) from None
            self.add(shard, count)
        finally:
            self._in_flight[shard] -= count
            settled, self._settled = self._settled, asyncio.Event()
            settled.set()
        return stored

    def add(self, shard: int, count: int) -> None:
        """Count ``count`` jobs this process just stored in ``shard``."""
        if shard < len(self._counts):
            self._counts[shard].count += count
            self._counts[shard].added += count

    def cancel(self) -> None:
        """Stop the reads under way (the store is closing)."""
        for known in self._counts:
            if known.reading is not None:
                known.reading.cancel()

    def _total(self) -> int:
        return sum(known.count for known in self._counts)

    def _limit(self, shard: int, max_waiting: int) -> int:
        elsewhere = self._total() - self._counts[shard].count
        elsewhere += sum(self._in_flight) - self._in_flight[shard]
        return max(0, max_waiting - elsewhere)

    async def _refresh(self, shard: int, refused_at: float | None = None) -> None:
        """Read the counts of the shards other than ``shard`` that are older than
        `FRESH_FOR` (or, after a refusal at ``refused_at``, than it), waiting for each
        read `READ_WITHIN` seconds at most from its start and not at all for a shard
        that did not answer in time lately (see the module docstring)."""
        shards = self._store._shards
        self._counts += [_Count() for _ in range(len(shards) - len(self._counts))]
        self._in_flight += [0] * (len(shards) - len(self._in_flight))
        now = time.monotonic()
        waits: dict[asyncio.Task[None], float] = {}
        for index, known in enumerate(self._counts):
            if refused_at is not None:
                fresh = known.read_at >= refused_at
            else:
                fresh = now - known.read_at <= FRESH_FOR
            if index == shard or fresh:
                continue
            if known.reading is None or known.reading.done():
                known.began = now
                known.reading = asyncio.ensure_future(self._read(shards[index], known))
            if not known.late:
                waits[known.reading] = known.began + READ_WITHIN
        if waits:
            # Not cancelled at the deadline (nor with this call): a read goes on for the
            # next submissions, which use its count once it answers.
            await asyncio.wait(waits, timeout=max(0.0, max(waits.values()) - now))

    @staticmethod
    async def _read(shard: RedisJobStore, known: _Count) -> None:
        began, added = known.began, known.added
        try:
            count = await shard.count_waiting()
        except Exception:
            known.late = True  # a shard that cannot be read keeps its last count
            return
        # This process's jobs stored while the read was on its way count on top of it
        # (some maybe twice, for a read's time): never fewer than are known to wait.
        known.count, known.read_at = count + known.added - added, began
        known.late = time.monotonic() - began > READ_WITHIN
