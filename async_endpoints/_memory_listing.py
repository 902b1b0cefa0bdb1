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
  how a page resumes in the turns as claims move them, are `_Resume`'s.
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

import math
import uuid
from collections.abc import Callable, Container, Iterator, Sequence
from itertools import islice
from typing import Any, NamedTuple

from ._job import DEFAULT_QUEUE, Job, JobStatus
from ._listing import JobPage, QueueStats, check_limit, decode_cursor, encode_cursor, filters_of
from ._memory_batches import BatchBook
from ._memory_index import CreationLog, due_entry, entry_of, parts, queued_entry_of, queued_parts
from ._memory_live import QUEUED, LiveJobs
from ._memory_ready import ReadyJobs, TenantTurns
from ._retained import RetainedJobs

#: Entries of other queues or tenants a page may skip before it ends short.
VISIT_BUDGET = 10_000

_Walk = Iterator[tuple[list[Any], Job | None]]  # (position, the job or None to skip)


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
            walk = _queued(self, queue, tenant, position, queues)
            return _collect(walk, tenant, members, limit, filters, _followed)
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
    walk: _Walk,
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
) -> _Walk:
    before = None if position is None else _count(_one(position))
    jobs, finished = store._jobs, store._finished
    for seq, key, job_queue, job_tenant in store._created.newest_first(before):
        job = None
        if queue in (None, job_queue) and tenant in (None, job_tenant):
            job = jobs.get(key) or finished.get_key(key)
        yield [seq], job


def _batch(
    store: MemoryInspection, keys: list[int], queue: str | None, position: list[Any] | None
) -> _Walk:
    """A batch's members (``keys``, in the order they were stored), newest first."""
    end = len(keys)
    if position is not None:
        end = _count(_one(position))
        if end > len(keys):
            raise ValueError("invalid cursor")
    jobs, finished = store._jobs, store._finished
    for index in range(end - 1, -1, -1):
        key = keys[index]
        job = jobs.get(key) or finished.get_key(key)
        yield [index], job if job is not None and queue in (None, job.queue) else None


def _queued(
    store: MemoryInspection,
    queue: str | None,
    tenant: str | None,
    position: list[Any] | None,
    queues: Sequence[str],
) -> _Walk:
    """Queue after queue in priority order, each in its claim order: its claimable jobs in
    the tenants' turns, then its jobs waiting behind their partition key, by when each was
    queued (see `_Resume` for the positions)."""
    if queue is not None:
        names = [queue]
    else:
        names = list(dict.fromkeys(queues))
        names += sorted(set(store._live.queued) - set(names))
    start, resume = 0, None
    if position is not None:
        if not position or position[0] not in names:
            raise ValueError("invalid cursor")
        start, resume = names.index(position[0]), _Resume.of(position)
    for index in range(start, len(names)):
        name = names[index]
        here = resume if index == start else None
        if here is None or here.behind is None:
            yield from _in_turns(store, name, tenant, here)
        yield from _behind_keys(store, name, None if here is None else here.behind)


class _Resume(NamedTuple):
    """Where a Queued page resumes its queue, read from a position:

    - ``[queue, 0, round, place, id, µs, seq]``: after that job of the turns (its id and
      the moment and number it was queued at: a job retried or requeued since is another);
    - ``[queue, 0, round, place, id, µs, seq, next round, next place]``: at the job of the
      turns that came next (its id, queued moment and number, round and place); a page
      that ended before a job of the same turns holds it rather than its last job's, so
      that claims between two pages skip nothing (see `_start`);
    - ``[queue, 1, µs, seq, id]``: after that index entry among the jobs waiting behind
      their partition key (``behind``).
    """

    round: int = 0
    place: int = 0
    key: int = 0
    entry: int = 0
    next: tuple[int, int] | None = None  # the round and place of the job that came next
    behind: int | None = None

    @classmethod
    def of(cls, position: list[Any]) -> _Resume:
        """The position's fields, checked (`ValueError` otherwise)."""
        section = position[1] if len(position) > 1 else None
        if len(position) in (7, 9) and _is_integer(section) and section == 0:
            round_, place, text, at, seq, *following = position[2:]
            counts = (round_, place, at, seq, *following)
            if all(_is_integer(value) and value >= 0 for value in counts):
                key = _job_key(text)
                next_at = (following[0], following[1]) if following else None
                return cls(round_, place, key, queued_entry_of(at, seq, key), next_at)
        elif len(position) == 5 and _is_integer(section) and section == 1:
            _, _, at, seq, text = position
            if _is_integer(at) and _is_integer(seq):
                return cls(behind=queued_entry_of(at, seq, _job_key(text)))
        raise ValueError("invalid cursor")


def _followed(last: list[Any], following: list[Any]) -> list[Any]:
    """The position a page that ended with ``last``, before ``following``, resumes at: the
    job that came next when both are of the same queue's turns (see `_Resume`)."""
    if last[:2] == [following[0], 0] and following[1] == 0 and len(following) == 7:
        return [*last[:4], *following[4:7], following[2], following[3]]
    return last


def _in_turns(
    store: MemoryInspection, name: str, tenant: str | None, here: _Resume | None
) -> _Walk:
    """The claimable jobs of queue ``name`` in the order claims take them: the first job
    of every tenant in turn order, then the second of those that have two, and so on (of
    ``tenant`` alone when given); from where ``here`` says (`_start`). The rest of the
    first round is read in place; a page going on into the next rounds goes through the
    turns once."""
    turns = store._ready.queues.get(name)
    if turns is None:
        return
    jobs, entries = store._jobs, store._live.queued_entries
    first_round, last_place = (-1, -1) if here is None else _start(store, name, turns, here)
    round_ = max(first_round, 0)
    start = last_place + 1 if round_ == first_round else 0
    for place, owner in enumerate(islice(turns.turns, start, None), start):
        waiting = turns.claimable(owner, jobs)
        if (tenant is None or owner == tenant) and len(waiting) > round_:
            job = waiting[round_]
            at, seq, _ = queued_parts(entries[job.id.int])
            yield [name, 0, round_, place, job.id.hex, at, seq], job
    left = [
        (place, waiting)
        for place, owner in enumerate(turns.turns)
        if (tenant is None or owner == tenant)
        and len(waiting := turns.claimable(owner, jobs)) > round_ + 1
    ]
    while left:
        round_ += 1
        for place, waiting in left:
            job = waiting[round_]
            at, seq, _ = queued_parts(entries[job.id.int])
            yield [name, 0, round_, place, job.id.hex, at, seq], job
        left = [group for group in left if len(group[1]) > round_ + 1]


def _start(
    store: MemoryInspection, name: str, turns: TenantTurns, here: _Resume
) -> tuple[int, int]:
    """The round and place in ``turns`` (of queue ``name``) to list on after. With the job
    that came next: at it, where it is now (claims move the jobs up); if it was
    cancelled, at its old place (the jobs behind it moved up into it); if it was claimed
    (or is another job now), from the start, since claims take the jobs before it first.
    With the last job looked at alone (a page cut short by a filter, or one that ended
    with the turns): after it, where it is now, else the same way."""
    if here.next is None:
        now = _now_at(store, name, turns, here.key, here.entry, here.round)
        if now is not None:
            return now
        at = here.round, here.place
    else:
        now = _now_at(store, name, turns, here.key, here.entry, here.next[0])
        if now is not None:
            return now[0], now[1] - 1
        at = here.next
    ended = store._finished.get_key(here.key)
    if ended is not None and ended.status is JobStatus.CANCELED:
        return at[0], at[1] - 1
    return -1, -1


def _now_at(
    store: MemoryInspection, name: str, turns: TenantTurns, key: int, entry: int, was: int
) -> tuple[int, int] | None:
    """The round and place in ``turns`` (of queue ``name``) of the job ``key`` queued as
    ``entry`` (which was at round ``was``), or None when it is not claimable there now,
    or was queued again since. Claims only move a tenant's jobs up: O(its tenant's place)
    when it has not moved, else O(its round) more."""
    job = store._jobs.get(key)
    if job is None or job.queue != name or store._live.queued_entries.get(key) != entry:
        return None
    for place, owner in enumerate(turns.turns):
        if owner == job.tenant:
            waiting = turns.claimable(owner, store._jobs)
            if was < len(waiting) and waiting[was] is job:
                return was, place
            for round_, queued in enumerate(waiting):
                if queued is job:
                    return round_, place
            return None
    return None


def _behind_keys(store: MemoryInspection, name: str, after: int | None) -> _Walk:
    """The Queued jobs of queue ``name`` waiting behind their partition key, by when each
    was queued, from after the index entry ``after``: its index with the claimable jobs
    skipped (none is read when no job of the queue waits behind a key)."""
    index = store._live.queued.get(name)
    if index is None:
        return
    turns = store._ready.queues.get(name)
    if store._live.counts[name][QUEUED] <= (0 if turns is None else len(turns)):
        return
    jobs, ready = store._jobs, store._ready
    for value in index.after(after):
        at, seq, key = queued_parts(value)
        job = jobs[key]
        yield [name, 1, at, seq, job.id.hex], None if ready.is_claimable(job) else job


def _scheduled(store: MemoryInspection, queue: str | None, position: list[Any] | None) -> _Walk:
    after = None
    if position is not None:
        if len(position) != 2 or not _is_number(position[0]):
            raise ValueError("invalid cursor")
        after = due_entry(float(position[0]), _job_key(position[1]))
    jobs, due = store._jobs, store._live.due
    for value in store._live.scheduled.after(after):
        job = jobs[parts(value)[1]]
        yield [due[job.id.int], job.id.hex], job if queue in (None, job.queue) else None


def _running(store: MemoryInspection, queue: str | None, position: list[Any] | None) -> _Walk:
    after = None if position is None else _entry(position)
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
) -> _Walk:
    finished = store._finished
    before = None
    if position is not None:
        before = finished.check_position(status, _one(position))
    for index, key, job_queue, job_tenant in finished.newest_first(status, before):
        job = None
        if (
            queue in (None, job_queue)
            and tenant in (None, job_tenant)
            and (members is None or key in members)
        ):
            job = finished.get_key(key)
        yield [index], job


def _entry(position: list[Any]) -> int:
    """The index entry a ``[µs, id]`` position names."""
    if len(position) != 2 or not _is_integer(position[0]):
        raise ValueError("invalid cursor")
    return entry_of(position[0], _job_key(position[1]))


def _job_key(text: Any) -> int:
    if not isinstance(text, str):
        raise ValueError("invalid cursor")
    try:
        return uuid.UUID(hex=text).int
    except ValueError:
        raise ValueError("invalid cursor") from None


def _one(position: list[Any]) -> Any:
    if len(position) != 1:
        raise ValueError("invalid cursor")
    return position[0]


def _count(value: Any) -> int:
    if not _is_integer(value) or value < 0:
        raise ValueError("invalid cursor")
    return int(value)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
