"""Listing the jobs of an `InMemoryJobStore`, one page at a time, from the indexes it keeps.

Each listing walks one ordered structure from the cursor's position (found by bisection or
by index), so a page costs O(limit + log n) for a status alone:

- ``Queued``: the queues' ready lists, in the priority order given, then any other queue
  by name; position ``[queue, seq]``.
- ``Scheduled``: the schedule, by due time on the store's monotonic clock; position
  ``[due, seq]``. This is the order of ``run_at`` unless the wall clock stepped between
  two schedulings (``run_at`` is only what the job shows; the due time is what counts).
- ``InProgress``: the running jobs sorted by ``(started_at, id)``; position
  ``[started_at, id]``. O(r log r) for r running jobs, bounded by the workers'
  concurrency, not by the jobs kept.
- ``Completed``, ``Failed``, ``Canceled``: the retained log of that status, newest
  finished first; position ``[index]``. This is newest ``completed_at`` first unless the
  wall clock stepped back between two finishes (jobs leave retention in the same order).
- no status: every job in the order it was stored, newest first; position ``[seq]``. This
  is newest ``created_at`` first unless the wall clock stepped back between two
  submissions.

A ``queue`` filter skips the other queues' entries without decoding them; after
`VISIT_BUDGET` skipped entries a page ends short, with a cursor that continues the walk.
Positions are validated (`ValueError` otherwise); a position that no longer names a job
(it left meanwhile) still marks a place in the order.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ._job import Job, JobStatus
from ._listing import JobPage, check_limit, decode_cursor, encode_cursor, filters_of

if TYPE_CHECKING:
    from ._memory import InMemoryJobStore

#: Entries of other queues (or stale ones) a page may skip before it ends short.
VISIT_BUDGET = 10_000

_Walk = Iterator[tuple[list[Any], Job | None]]  # (position, the job or None to skip)


def page(
    store: InMemoryJobStore,
    status: JobStatus | None,
    queue: str | None,
    limit: int,
    cursor: str | None,
    queues: Sequence[str],
) -> JobPage:
    """One page of ``store``'s jobs; see `InspectionStore.list_jobs`."""
    check_limit(limit)
    if status is not None:
        status = JobStatus(status)
    if queue is not None and not isinstance(queue, str):
        raise ValueError("queue must be a queue name")
    filters = filters_of(status, queue)
    position = None if cursor is None else decode_cursor(cursor, filters)
    if status is None:
        walk = _created(store, queue, position)
    elif status is JobStatus.QUEUED:
        walk = _queued(store, queue, position, queues)
    elif status is JobStatus.SCHEDULED:
        walk = _scheduled(store, queue, position)
    elif status is JobStatus.IN_PROGRESS:
        walk = _running(store, queue, position)
    else:
        walk = _finished(store, status, queue, position)
    return _collect(walk, limit, filters)


def _collect(walk: _Walk, limit: int, filters: list[Any]) -> JobPage:
    jobs: list[Job] = []
    last: list[Any] = []
    skipped = 0
    for position, job in walk:
        if job is None:
            skipped += 1
            if skipped >= VISIT_BUDGET:
                return JobPage(jobs, encode_cursor(filters, position))
        elif len(jobs) == limit:
            return JobPage(jobs, encode_cursor(filters, last))
        else:
            jobs.append(job)
            last = position
    return JobPage(jobs, None)


def _created(store: InMemoryJobStore, queue: str | None, position: list[Any] | None) -> _Walk:
    before = None if position is None else _count(_one(position))
    jobs, finished = store._jobs, store._finished
    for seq, key, job_queue in store._created.newest_first(before):
        job = None
        if queue is None or job_queue == queue:
            job = jobs.get(key) or finished.get_key(key)
        yield [seq], job


def _queued(
    store: InMemoryJobStore, queue: str | None, position: list[Any] | None, queues: Sequence[str]
) -> _Walk:
    if queue is not None:
        names = [queue]
    else:
        names = list(dict.fromkeys(queues))
        names += sorted(set(store._ready) - set(names))
    start, after = 0, None
    if position is not None:
        if len(position) != 2 or position[0] not in names:
            raise ValueError("invalid cursor")
        start, after = names.index(position[0]), _count(position[1])
    jobs = store._jobs
    for index in range(start, len(names)):
        ready = store._ready.get(names[index])
        if ready is None:
            continue
        for seq, job in ready.after(after if index == start else None):
            yield [names[index], seq], job if jobs.get(job.id.int) is job else None


def _scheduled(store: InMemoryJobStore, queue: str | None, position: list[Any] | None) -> _Walk:
    due, seq = None, 0
    if position is not None:
        if len(position) != 2 or not _is_number(position[0]):
            raise ValueError("invalid cursor")
        due, seq = float(position[0]), _count(position[1])
    jobs = store._jobs
    for at, entry_seq, job in store._schedule.after(due, seq):
        current = jobs.get(job.id.int) is job and (queue is None or job.queue == queue)
        yield [at, entry_seq], job if current else None


def _running(store: InMemoryJobStore, queue: str | None, position: list[Any] | None) -> _Walk:
    after: tuple[float, int] | None = None
    if position is not None:
        if len(position) != 2 or not _is_number(position[0]) or not isinstance(position[1], str):
            raise ValueError("invalid cursor")
        after = (float(position[0]), _job_key(position[1]))
    running = []
    for key in store._leases:
        job = store._jobs[key]
        if queue is None or job.queue == queue:
            assert job.started_at is not None
            order = (job.started_at.timestamp(), key)
            if after is None or order > after:
                running.append((order, job))
    running.sort(key=lambda item: item[0])
    for (started, key), job in running:
        yield [started, uuid.UUID(int=key).hex], job


def _finished(
    store: InMemoryJobStore, status: JobStatus, queue: str | None, position: list[Any] | None
) -> _Walk:
    finished = store._finished
    before = None
    if position is not None:
        before = finished.check_position(status, _one(position))
    for index, key, job_queue in finished.newest_first(status, before):
        job = finished.get_key(key) if queue is None or job_queue == queue else None
        yield [index], job


def _one(position: list[Any]) -> Any:
    if len(position) != 1:
        raise ValueError("invalid cursor")
    return position[0]


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("invalid cursor")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _job_key(text: str) -> int:
    try:
        return uuid.UUID(hex=text).int
    except ValueError:
        raise ValueError("invalid cursor") from None
