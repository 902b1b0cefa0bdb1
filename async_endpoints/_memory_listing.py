"""`MemoryInspection`: the `InspectionStore` part of `InMemoryJobStore`. Listing its jobs
one page at a time from the indexes it keeps, and counting them per queue from counts kept
at every transition.

Each listing walks one ordered structure from the cursor's position (found by bisection or
by index), so a page costs O(limit + log n) for a status alone:

- ``Queued``: the queues in the priority order given, then any other queue by name; within
  a queue its claim order: the claimable jobs in the tenants' turns (`TenantTurns`, read
  in place: the first job of every tenant, then the second ones, and so on; O(tenants +
  limit) a page), then the jobs waiting behind their partition key by when each was
  queued (`_memory_live.queued_moment`), then by id: the queue's Queued index with the
  claimable jobs skipped, read only when the queue holds such a job. The positions, and
  how a page resumes in the turns as claims move them, are `_memory_claim_order`'s.
- ``Scheduled``: by due time on the store's monotonic clock, then by id; position
  ``[due, id]``. This is the order of ``run_at`` unless the wall clock stepped between two
  schedulings (``run_at`` is only what the job shows; the due time is what counts).
- ``InProgress``: by ``started_at``, then by id; position ``[started_at µs, id]``.
- ``Completed``, ``Failed``, ``Canceled``: the retained log of that status, newest
  finished first; position ``[index]``. This is newest ``completed_at`` first unless the
  wall clock stepped back between two finishes (jobs leave retention in the same order).
- no status: every job in the order it was stored, newest first; position ``[seq]``. This
  is newest ``created_at`` first unless the wall clock stepped back between two
  submissions.

A ``queue``, ``tenant`` or ``batch_id`` filter skips the other jobs' entries without
decoding them (the logs of created and finished jobs keep each one's queue and tenant, a
batch the ids of its members; the walk of the jobs behind their key skips the claimable
ones alike); after `VISIT_BUDGET` skipped entries a page ends short,
with a cursor that continues the walk. A batch's jobs without a status are its members in
the order they were stored, newest first (position ``[index]`` among them): O(limit)
whatever else is stored. Positions are
validated (`ValueError` otherwise); a position that no longer names a job (it left
meanwhile) still marks a place in the order.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Container, Sequence
from typing import Any

from ._job import DEFAULT_QUEUE, Job, JobStatus
from ._listing import JobPage, QueueStats, check_limit, decode_cursor, encode_cursor, filters_of
from ._memory_batches import BatchBook
from ._memory_claim_order import followed, queued
from ._memory_index import CreationLog, due_entry, parts
from ._memory_live import LiveJobs
from ._memory_positions import Walk, count, entry, is_number, job_key, one
from ._memory_ready import ReadyJobs
from ._retained import RetainedJobs

#: Entries of other queues or tenants a page may skip before it ends short.
VISIT_BUDGET = 10_000


class MemoryInspection:
    """Listing and counts, read from the structures `InMemoryJobStore` keeps (declared here
    for the type checker)."""

    _live: LiveJobs
    _ready: ReadyJobs
    _jobs: dict[int, Job]
    _finished: RetainedJobs
    _created: CreationLog
    _paused: set[str]
    _batch_book: BatchBook
    _monotonic: Callable[[], float]

    async def count_waiting(self) -> int:
        """Queued plus Scheduled jobs (those waiting behind their partition key too),
        webhook deliveries left out, in O(1); see `InspectionStore.count_waiting`."""
        return self._live.waiting

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
        """One page of a listing; see `InspectionStore.list_jobs`, and this module for the
        orders and costs."""
        self._finished.expire(self._monotonic())
        status = _checked(limit, status, queue, tenant, batch_id)
        filters = filters_of(status, queue, tenant, batch_id)
        position = None if cursor is None else decode_cursor(cursor, filters)
        members: Container[int] | None = None
        if batch_id is not None:
            record = self._batch_book.records.get(batch_id.int)
            if record is None:
                return JobPage([], None)
            members = record.members
            if status is None:
                walk = _batch(self, record.keys, queue, position)
                return _collect(walk, tenant, None, limit, filters)
        if status is None:
            walk = _created(self, queue, tenant, position)
        elif status is JobStatus.QUEUED:
            walk = queued(self, queue, tenant, position, queues)
            return _collect(walk, tenant, members, limit, filters, followed)
        elif status is JobStatus.SCHEDULED:
            walk = _scheduled(self, queue, position)
        elif status is JobStatus.IN_PROGRESS:
            walk = _running(self, queue, position)
        else:
            walk = _finished(self, status, queue, tenant, members, position)
        return _collect(walk, tenant, members, limit, filters)

    async def queue_stats(self, queues: Sequence[str]) -> list[QueueStats]:
        """Counts per queue, in O(len(queues)); see `InspectionStore.queue_stats`."""
        self._finished.expire(self._monotonic())
        stats = []
        for name in queues:
            queued, scheduled, running = self._live.counts.get(name) or (0, 0, 0)
            done, failed, canceled = self._finished.counts(name)
            paused = name in self._paused
            stats.append(
                QueueStats(name, paused, queued, scheduled, running, done, failed, canceled)
            )
        return stats


def _checked(
    limit: int,
    status: JobStatus | None,
    queue: str | None,
    tenant: str | None,
    batch_id: uuid.UUID | None,
) -> JobStatus | None:
    """``status`` as a `JobStatus`, once every filter has been checked (else `ValueError`)."""
    check_limit(limit)
    if queue is not None and not isinstance(queue, str):
        raise ValueError("queue must be a queue name")
    if tenant is not None and not isinstance(tenant, str):
        raise ValueError("tenant must be a tenant name")
    if batch_id is not None and not isinstance(batch_id, uuid.UUID):
        raise ValueError("batch_id must be a UUID")
    return None if status is None else JobStatus(status)


def _collect(
    walk: Walk,
    tenant: str | None,
    members: Container[int] | None,
    limit: int,
    filters: list[Any],
    follow: Callable[[list[Any], list[Any]], list[Any]] | None = None,
) -> JobPage:
    """A page of ``walk``'s jobs that match; its cursor is the position of its last job
    (``follow(last, following)`` when given: ``following`` the position of the job that
    would have come next)."""
    jobs: list[Job] = []
    last: list[Any] = []
    skipped = 0
    for position, job in walk:
        if (
            job is None
            or (tenant is not None and job.tenant != tenant)
            or (members is not None and job.id.int not in members)
        ):
            skipped += 1
            if skipped >= VISIT_BUDGET:
                return JobPage(jobs, encode_cursor(filters, position))
        elif len(jobs) == limit:
            resume = last if follow is None else follow(last, position)
            return JobPage(jobs, encode_cursor(filters, resume))
        else:
            jobs.append(job)
            last = position
    return JobPage(jobs, None)


def _created(
    store: MemoryInspection, queue: str | None, tenant: str | None, position: list[Any] | None
) -> Walk:
    before = None if position is None else count(one(position))
    jobs, finished = store._jobs, store._finished
    for seq, key, job_queue, job_tenant in store._created.newest_first(before):
        job = None
        if queue in (None, job_queue) and tenant in (None, job_tenant):
            job = jobs.get(key) or finished.get_key(key)
        yield [seq], job


def _batch(
    store: MemoryInspection, keys: list[int], queue: str | None, position: list[Any] | None
) -> Walk:
    """A batch's members (``keys``, in the order they were stored), newest first."""
    end = len(keys)
    if position is not None:
        end = count(one(position))
        if end > len(keys):
            raise ValueError("invalid cursor")
    jobs, finished = store._jobs, store._finished
    for index in range(end - 1, -1, -1):
        key = keys[index]
        job = jobs.get(key) or finished.get_key(key)
        yield [index], job if job is not None and queue in (None, job.queue) else None


def _scheduled(store: MemoryInspection, queue: str | None, position: list[Any] | None) -> Walk:
    after = None
    if position is not None:
        if len(position) != 2 or not is_number(position[0]):
            raise ValueError("invalid cursor")
        after = due_entry(float(position[0]), job_key(position[1]))
    jobs, due = store._jobs, store._live.due
    for value in store._live.scheduled.after(after):
        job = jobs[parts(value)[1]]
        yield [due[job.id.int], job.id.hex], job if queue in (None, job.queue) else None


def _running(store: MemoryInspection, queue: str | None, position: list[Any] | None) -> Walk:
    after = None if position is None else entry(position)
    jobs = store._jobs
    for value in store._live.running.after(after):
        at, key = parts(value)
        job = jobs[key]
        yield [at, job.id.hex], job if queue in (None, job.queue) else None


def _finished(
    store: MemoryInspection,
    status: JobStatus,
    queue: str | None,
    tenant: str | None,
    members: Container[int] | None,
    position: list[Any] | None,
) -> Walk:
    finished = store._finished
    before = None
    if position is not None:
        before = finished.check_position(status, one(position))
    for index, key, job_queue, job_tenant in finished.newest_first(status, before):
        job = None
        if (
            queue in (None, job_queue)
            and tenant in (None, job_tenant)
            and (members is None or key in members)
        ):
            job = finished.get_key(key)
        yield [index], job
