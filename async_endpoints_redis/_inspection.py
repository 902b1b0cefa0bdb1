"""`RedisInspection`: the `InspectionStore` part of `RedisJobStore`: listing and counts.

Listing reads the indexes the transitions keep (``lua/_index.lua``) in one script call
(``lua/list_jobs.lua``); counts come from the counters the same transitions keep.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from async_endpoints._job import DEFAULT_QUEUE, JobStatus
from async_endpoints._listing import JobPage, QueueStats, check_limit, decode_cursor, filters_of

from ._base import StoreBase
from ._batches import batch_jobs_page
from ._pages import checked_position, page_of, visit_budget


class RedisInspection(StoreBase):
    """Reading what is stored; see `async_endpoints.InspectionStore`."""

    async def count_waiting(self) -> int:
        """How many jobs are Queued or Scheduled now, in every queue, webhook deliveries
        left out (see `async_endpoints.InspectionStore.count_waiting`)."""
        return await self._run("count_waiting", lambda s: s.count_waiting())

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
        """One page of the matching jobs, in the order of `async_endpoints._listing`, in
        one script call (see ``lua/list_jobs.lua`` for the indexes it reads).

        Costs O(limit + log n) for a status alone (Queued jobs, queue after queue in
        priority order, are read in each queue's claim order from its ready order, in
        O(tenants + limit), then, when it holds jobs waiting behind their partition key,
        from its Queued index). With a
        ``queue`` or ``tenant`` the script looks at no more than `visit_budget` entries and
        may return a short page with a cursor.

        With a ``batch_id`` and a status, that status's index in its order, skipping the
        jobs of other batches (within the same budget as a queue or tenant filter); with a
        ``batch_id`` alone, the batch's jobs newest stored first (see `batch_jobs_page`).

        Raises:
            ValueError: ``limit`` out of range, or a cursor this store did not make for
                this listing.
        """
        if batch_id is not None and status is None:
            return await batch_jobs_page(self, batch_id, status, queue, tenant, limit, cursor)
        page, _ = await self._list_jobs_with_positions(
            status=status,
            queue=queue,
            tenant=tenant,
            batch_id=batch_id,
            limit=limit,
            cursor=cursor,
            queues=queues,
            positions=False,
        )
        return page

    async def _list_jobs_with_positions(
        self,
        *,
        status: JobStatus | None = None,
        queue: str | None = None,
        tenant: str | None = None,
        batch_id: uuid.UUID | None = None,
        limit: int = 50,
        cursor: str | None = None,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
        positions: bool = True,
    ) -> tuple[JobPage, list[str]]:
        """`list_jobs` without a batch, and (with ``positions``) for each job of the page
        the cursor of the position right after it (where a sharded store resumes this shard
        when the merged page showed the job, whatever was added or removed before it since).

        Raises:
            ValueError: As `list_jobs`.
        """
        check_limit(limit)
        filters = filters_of(status, queue, tenant, batch_id)
        position = (
            [] if cursor is None else checked_position(decode_cursor(cursor, filters), status)
        )
        wanted = "" if status is None else status.value
        names = list(queues)
        budget = visit_budget(limit, queue, tenant, batch_id is not None)
        batch = "" if batch_id is None else str(batch_id)
        reply = await self._run(
            "list_jobs",
            lambda s: s.list_jobs(
                wanted, queue or "", limit, budget, names, position, tenant or "", batch
            ),
        )
        return page_of(reply, filters, status, positions=positions)

    async def queue_stats(self, queues: Sequence[str]) -> list[QueueStats]:
        """Counts per queue, in the order given, in one script call that costs
        O(number of queues): counters kept by the scripts of every transition (Queued
        jobs waiting behind their partition key included)."""
        names = list(queues)
        rows = await self._run("queue_stats", lambda s: s.queue_stats(names))
        return [
            QueueStats(name, bool(row[0]), *(int(value) for value in row[1:]))
            for name, row in zip(names, rows, strict=True)
        ]
