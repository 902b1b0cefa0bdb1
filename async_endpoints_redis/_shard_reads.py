"""`ShardReads`: the reads of a sharded store that span every shard, and what they cost.

- count_waiting: one script per shard, all at once, summed.
- queue_stats: one script per shard, all at once, O(queues) each; counts summed, a queue
  paused when any shard has it paused (pause writes every shard).
- list_jobs: one page from every shard (each as with one shard: O(limit + log n), or the
  visit budget with a filter), all at once, merged in the listing's order; N times one
  shard's Redis work. The cursor holds, per shard, the position right after the last of
  its jobs shown (`merged_page`), so paging visits every job once while nothing changes,
  and (but for Queued jobs, placed by their turn in their shard's claim order) jobs
  added or removed before that position since shift nothing (a job that stays matched is
  neither skipped nor shown twice). Queued jobs: each shard's in its claim order, the
  shards' rounds of the tenants' turns interleaved (round 0 of every shard, then round
  1, ...): claims have no fixed order across shards (workers go from shard to shard), and
  this one keeps a lone tenant's job near the top as claims do. With a ``batch_id``: the
  batch's one shard.
"""

from __future__ import annotations

import asyncio
import heapq
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from async_endpoints._job import DEFAULT_QUEUE, Job, JobStatus
from async_endpoints._listing import (
    JobPage,
    QueueStats,
    check_limit,
    decode_cursor,
    encode_cursor,
    filters_of,
)

from ._shard_base import ShardBase

if TYPE_CHECKING:
    from ._store import RedisJobStore

T = TypeVar("T")
_NEWEST_FIRST = (None, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED)


async def merged_page(
    shard_count: int,
    filters: list[Any],
    inner: list[Any],
    limit: int,
    cursor: str | None,
    page: Callable[[int, int, str | None], Awaitable[tuple[list[T], list[str], str | None]]],
    order: Callable[[T], Any],
    pack: Callable[[list[Any]], list[Any]] = list,
    unpack: Callable[[list[Any]], list[Any]] = list,
) -> tuple[list[T], str | None]:
    """One page of at most ``limit`` items merged from every shard's pages in ``order``
    (ascending), and the cursor of the next.

    ``page(shard, limit, cursor)`` reads one shard's page: its items, for each the cursor
    of the position right after it, and the cursor of its next page (cursors made for the
    filters ``inner``). The cursor's position is, per shard, ``[0, 1 when it has no more,
    *where its next items start]`` (a shard cursor's position, not the cursor, made
    smaller by ``pack`` and read back by ``unpack``: so that 16 shards fit in a cursor's
    length): right after the last of its items shown, so that items added or removed
    before it since change nothing. (Cursors of an earlier version kept where the shard's
    page started and a count of its items shown, in the first place: still read.) A shard whose
    page ran out before the merged page was full, while it has more, ends the page early
    (its next items are unknown): the page may be short, with a cursor.

    Raises:
        ValueError: A cursor not made for this listing.
    """
    check_limit(limit)
    if cursor is None:
        states: list[list[Any]] = [["", 0, 0] for _ in range(shard_count)]
    else:
        compact = decode_cursor(cursor, filters)
        if len(compact) != shard_count or not all(_is_state(state) for state in compact):
            raise ValueError("invalid cursor")
        states = [
            [encode_cursor(inner, unpack(position)) if position else "", skip, done]
            for skip, done, *position in compact
        ]
    reads = [
        page(index, limit + skip, start or None)
        for index, (start, skip, done) in enumerate(states)
        if not done
    ]
    pages = iter(await asyncio.gather(*reads))
    lists: list[list[T]] = []
    afters: list[list[str]] = []
    nexts: list[str | None] = []
    for _, skip, done in states:
        items, after, following = ([], [], None) if done else next(pages)
        lists.append(items[skip:])
        afters.append(after[skip:])
        nexts.append(following)
    out, taken = _merge(lists, nexts, limit, order)
    following_states, more = _following(states, afters, nexts, taken)
    if not more:
        return out, None
    compact = [
        [skip, done, *(pack(decode_cursor(start, inner)) if start else [])]
        for start, skip, done in following_states
    ]
    return out, encode_cursor(filters, compact)


def _merge(
    lists: list[list[T]], nexts: list[str | None], limit: int, order: Callable[[T], Any]
) -> tuple[list[T], list[int]]:
    """Up to ``limit`` items of ``lists`` in ``order``, stopping where a list that has
    more (its next page) runs out; and how many were taken from each list."""
    taken = [0] * len(lists)
    heads = [(order(items[0]), index) for index, items in enumerate(lists) if items]
    if any(not items and nexts[index] for index, items in enumerate(lists)):
        heads = []  # a shard's next items are unknown (its page was all shown): read on
    heapq.heapify(heads)
    out: list[T] = []
    while heads and len(out) < limit:
        _, index = heapq.heappop(heads)
        out.append(lists[index][taken[index]])
        taken[index] += 1
        if taken[index] < len(lists[index]):
            heapq.heappush(heads, (order(lists[index][taken[index]]), index))
        elif nexts[index] is not None:
            break  # this shard's next items are unknown: they may come first
    return out, taken


def _following(
    states: list[list[Any]], afters: list[list[str]], nexts: list[str | None], taken: list[int]
) -> tuple[list[list[Any]], bool]:
    """Each shard's state after this page (``afters``: per shard, the cursor right after
    each of its items read); and whether any shard has more."""
    following: list[list[Any]] = []
    more = False
    for index, (start, skip, done) in enumerate(states):
        shown = taken[index]
        if done:
            following.append([start, skip, 1])
        elif shown == 0 and afters[index]:
            following.append([start, skip, 0])  # none shown: read again from there
            more = True
        elif shown < len(afters[index]):
            following.append([afters[index][shown - 1], 0, 0])
            more = True
        elif nexts[index] is not None:
            following.append([nexts[index], 0, 0])
            more = True
        else:
            following.append(["", 0, 1])
    return following, more


def _is_state(state: Any) -> bool:
    return (
        isinstance(state, list)
        and len(state) >= 2
        and type(state[0]) is int
        and state[0] >= 0
        and state[1] in (0, 1)
        and type(state[1]) is int
    )


def job_order(status: JobStatus | None) -> Callable[[Job], Any]:
    """The listing order of `async_endpoints._listing` as an ascending sort key, for every
    status but Queued (whose order, the claim order, only a job's place in its shard's
    claim order tells: see `queued_order`)."""

    def moment(value: datetime | None) -> float:
        return 0.0 if value is None else value.timestamp()

    if status is JobStatus.SCHEDULED:
        return lambda job: (moment(job.run_at), job.id.hex)
    if status is JobStatus.IN_PROGRESS:
        return lambda job: (moment(job.started_at), job.id.hex)
    if status in _NEWEST_FIRST[1:]:
        return lambda job: (-moment(job.completed_at), _reverse(job.id.hex))
    return lambda job: (-moment(job.created_at), _reverse(job.id.hex))


def queued_order(names: list[str], inner: list[Any]) -> Callable[[Job, str], Any]:
    """The Queued listing order as an ascending sort key of a job and the cursor right
    after it (made for the filters ``inner``), which names the job's place in its
    shard's claim order (the job itself does not show it): its queue (``names`` in their
    order, then the others by name), then among the ready jobs the round of the tenants'
    turns and the place in it (a round of every shard before the next; then by id), then
    among the jobs waiting behind their key the index entry (by when each was queued,
    then by id)."""

    def key(job: Job, after: str) -> Any:
        where, section, *place = decode_cursor(after, inner)
        rank = names.index(where) if where in names else len(names)
        if section == 0:
            return (rank, where, 0, place[0], place[1], job.id.hex)
        return (rank, where, 1, *place)

    return key


def _by_job(status: JobStatus | None) -> Callable[[Job, str], Any]:
    """`job_order` as a key of a job and the cursor right after it, which it leaves."""
    order = job_order(status)
    return lambda job, _after: order(job)


def _reverse(text: str) -> str:
    return text.translate(_FLIP)


_FLIP = str.maketrans("0123456789abcdef", "fedcba9876543210")


class ShardReads(ShardBase):
    """Counting and listing over every shard; see `async_endpoints.InspectionStore`."""

    async def count_waiting(self) -> int:
        """How many jobs are Queued or Scheduled now, in every queue of every shard."""
        shards = await self._ready_shards()
        return sum(await asyncio.gather(*(shard.count_waiting() for shard in shards)))

    async def queue_stats(self, queues: Sequence[str]) -> list[QueueStats]:
        """Counts per queue, summed over the shards (see the module docstring)."""
        shards = await self._ready_shards()
        per_shard = await asyncio.gather(*(shard.queue_stats(queues) for shard in shards))
        totals = []
        for rows in zip(*per_shard, strict=True):
            first = rows[0]
            totals.append(
                QueueStats(
                    first.name,
                    any(row.paused for row in rows),
                    *(sum(getattr(row, name) for row in rows) for name in _COUNTS),
                )
            )
        return totals

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        queue: str | None = None,
        tenant: str | None = None,
        batch_id: uuid.UUID | None = None,
        limit: int = 50,
        cursor: str | None = None,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
    ) -> JobPage:
        """One page of the matching jobs from every shard, merged (see the module
        docstring); with a ``batch_id`` from the batch's shard."""
        shards = await self._ready_shards()
        if batch_id is not None:
            shard = await self._batch_shard(batch_id)
            return await shard.list_jobs(
                status=status, queue=queue, tenant=tenant, batch_id=batch_id,
                limit=limit, cursor=cursor, queues=queues,
            )  # fmt: skip

        inner = filters_of(status, queue, tenant)
        filters = ["shards", len(shards), *inner, *queues]
        names = list(queues)
        key = queued_order(names, inner) if status is JobStatus.QUEUED else _by_job(status)

        async def page(
            index: int, size: int, at: str | None
        ) -> tuple[list[tuple[Any, Job]], list[str], str | None]:
            one, after = await shards[index]._list_jobs_with_positions(
                status=status, queue=queue, tenant=tenant, limit=min(size, 1000),
                cursor=at, queues=queues,
            )  # fmt: skip
            keyed = [(key(job, place), job) for job, place in zip(one.jobs, after, strict=True)]
            return keyed, after, one.next_cursor

        def pack(position: list[Any]) -> list[Any]:  # a queue's name as its index
            if status is JobStatus.QUEUED and position and position[0] in names:
                return [names.index(position[0]), *position[1:]]
            return position

        def unpack(position: list[Any]) -> list[Any]:
            if status is JobStatus.QUEUED and position and type(position[0]) is int:
                if not 0 <= position[0] < len(names):
                    raise ValueError("invalid cursor")
                return [names[position[0]], *position[1:]]
            return position

        items, following = await merged_page(
            len(shards), filters, inner, limit, cursor, page, lambda item: item[0], pack, unpack
        )
        return JobPage([job for _, job in items], following)

    if TYPE_CHECKING:

        async def _batch_shard(self, batch_id: uuid.UUID) -> RedisJobStore: ...


_COUNTS = ("queued", "scheduled", "in_progress", "completed", "failed", "canceled")
