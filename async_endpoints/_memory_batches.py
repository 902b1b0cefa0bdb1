"""`MemoryBatches`: the `BatchStore` part of `InMemoryJobStore`, and `BatchBook`, the
batches it keeps.

A batch is a `BatchRecord`: its counts per status, its members (the ids of its jobs, which
are counted, and of its continuations, which are not), its continuations until they are
stored, and its place in the listing. The store calls `MemoryBatches._moved` at every
status change of a job, new jobs included, in the same step as the change (nothing awaits
in between), so the counts are exact at every moment. The change that ends the last
unfinished job of a ``Running`` batch finishes it and stores its continuations right
there, once: a later change (a requeued job) finds the batch ``Finished``.

A batch stays while any of its jobs is unfinished, and for the store's retention (on the
monotonic clock, like terminal jobs) once none is; a job requeued meanwhile holds it again
until it ends. Batches leave in the order their retention ends (`BatchBook.expire`, on
each batch call and on `recover`), and nothing of them stays behind: the record, its
entries in the listing indexes and its retention entry go together.

`list_batches` pages through an `OrderedInts` of every batch, newest ``created_at`` first
(ties by id, descending), and through one per tenant for a tenant filter: O(limit + log n)
either way. A cursor's position is ``[created_at µs, id]``.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from ._batch import Batch, BatchPage, BatchStatus, ContinueWhen, NewBatch
from ._errors import DuplicateJobError, QueueFullError, full_batch_message
from ._job import Job, JobStatus, NewJob, check_label
from ._listing import check_limit, decode_cursor, encode_cursor
from ._logs import job_id_extra
from ._memory_follow_ups import check_follow_ups
from ._memory_index import OrderedInts, entry, entry_of, micros, parts
from ._memory_live import LiveJobs
from ._retained import RetainedJobs

logger = logging.getLogger("async_endpoints")

#: Each status's slot in a batch's counts.
SLOTS = {status: slot for slot, status in enumerate(JobStatus)}
_FAILED, _CANCELED = SLOTS[JobStatus.FAILED], SLOTS[JobStatus.CANCELED]
#: What a batch listing's cursor is bound to, before the tenant.
_LISTING = "batches"


class BatchRecord:
    """One batch as the store keeps it (mutable; `snapshot` is what callers get)."""

    __slots__ = (
        "continuation_ids",
        "continue_when",
        "counts",
        "created_at",
        "expiry",
        "finished_at",
        "id",
        "keys",
        "members",
        "pending",
        "place",
        "status",
        "tenant",
        "unfinished",
    )

    def __init__(self, batch: NewBatch, created_at: datetime) -> None:
        self.id = batch.id
        self.tenant = batch.tenant
        self.status = BatchStatus.RUNNING
        self.counts = [0] * len(SLOTS)
        self.unfinished = 0  # Queued, Scheduled and InProgress jobs
        self.created_at = created_at
        self.finished_at: datetime | None = None
        self.continue_when = ContinueWhen(batch.continue_when)
        #: The continuations not stored yet (none once the batch finished or was cancelled).
        self.pending: tuple[NewJob, ...] = tuple(batch.continuations)
        self.continuation_ids = tuple(job.id for job in self.pending)
        #: Every member's key: True for the jobs (counted), False for the continuations.
        self.members: dict[int, bool] = dict.fromkeys((job.id.int for job in self.pending), False)
        #: The members stored so far, in the order they were (the batch's job listing).
        self.keys: list[int] = []
        #: Its value in the listing indexes: ascending values are newest first.
        self.place = -entry(created_at, batch.id.int)
        #: When its retention ends (monotonic); infinity while a job is unfinished.
        self.expiry = math.inf

    def snapshot(self) -> Batch:
        """The batch as it is now."""
        queued, scheduled, running, completed, failed, canceled = self.counts
        return Batch(
            id=self.id,
            tenant=self.tenant,
            status=self.status,
            total=sum(self.counts),
            queued=queued,
            scheduled=scheduled,
            in_progress=running,
            completed=completed,
            failed=failed,
            canceled=canceled,
            created_at=self.created_at,
            finished_at=self.finished_at,
            continuation_ids=self.continuation_ids,
            continue_when=self.continue_when,
        )


class BatchBook:
    """The batches by id, their listing indexes (all, and per tenant) and the order their
    retention ends in."""

    def __init__(self) -> None:
        self.records: dict[int, BatchRecord] = {}
        self.listed = OrderedInts()
        self.tenants: dict[str, OrderedInts] = {}
        #: (expiry, key) in the order retentions end (each is now + the same retention);
        #: an entry whose record has another expiry by now is stale and skipped.
        self.expiries: deque[tuple[float, int]] = deque()
        #: The ids (ints) of the continuations not stored yet: no submission takes one.
        self.reserved: set[int] = set()

    def add(self, record: BatchRecord) -> None:
        """Keep the new ``record``, and reserve its continuations' ids."""
        self.records[record.id.int] = record
        self.reserved.update(job.id.int for job in record.pending)
        self.listed.add(record.place)
        if record.tenant is not None:
            index = self.tenants.get(record.tenant)
            if index is None:
                index = self.tenants[record.tenant] = OrderedInts()
            index.add(record.place)

    def arm(self, record: BatchRecord, expiry: float) -> None:
        """Drop ``record`` at ``expiry`` (monotonic) unless a job of it is unfinished then."""
        record.expiry = expiry
        self.expiries.append((expiry, record.id.int))

    def expire(self, now: float) -> None:
        """Drop the batches whose retention has ended by ``now``."""
        expiries, records = self.expiries, self.records
        while expiries and expiries[0][0] <= now:
            expiry, key = expiries.popleft()
            record = records.get(key)
            if record is not None and record.expiry == expiry:
                self._drop(record)

    def newest_first(self, tenant: str | None, after: int | None) -> Iterator[BatchRecord]:
        """The batches (of ``tenant`` only, when given), newest first, from the one after
        listing value ``after``."""
        index = self.listed if tenant is None else self.tenants.get(tenant)
        if index is None:
            return
        records = self.records
        for value in index.after(after):
            yield records[parts(-value)[1]]

    def _drop(self, record: BatchRecord) -> None:
        del self.records[record.id.int]
        self.listed.remove(record.place)
        if record.tenant is not None:
            index = self.tenants[record.tenant]
            index.remove(record.place)
            if not index:
                del self.tenants[record.tenant]


class MemoryBatches:
    """Batches kept in memory; see `async_endpoints.BatchStore` (the structures are the
    store's, declared here for the type checker)."""

    retention: float
    _batch_book: BatchBook
    _jobs: dict[int, Job]
    _live: LiveJobs
    _finished: RetainedJobs
    _monotonic: Callable[[], float]

    if TYPE_CHECKING:

        def _moment(self) -> datetime: ...

        def _store(
            self, new_job: NewJob, moment: datetime | None = None, *, cancel: bool = False
        ) -> Job: ...

        def _cancel_live(self, job: Job) -> Job: ...

    async def create_batch(self, batch: NewBatch, *, max_waiting: int | None = None) -> Batch:
        """Store ``batch`` and its jobs, all or none; see `BatchStore.create_batch`.

        Raises:
            ValueError: a job's delay is not a finite number (nothing stored).
        """
        book = self._batch_book
        book.expire(self._monotonic())
        if batch.id.int in book.records:
            raise DuplicateJobError(f"a batch with id {batch.id} exists already")
        self._check_new([*batch.jobs, *batch.continuations], max_waiting, len(batch.jobs))
        record = BatchRecord(batch, self._moment())
        book.add(record)
        self._store_members(record, batch.jobs, record.created_at)
        return record.snapshot()

    async def append_to_batch(
        self, batch_id: uuid.UUID, jobs: Sequence[NewJob], *, max_waiting: int | None = None
    ) -> Batch | None:
        """Add ``jobs`` to the running batch, all or none; see `BatchStore.append_to_batch`."""
        self._batch_book.expire(self._monotonic())
        record = self._batch_book.records.get(batch_id.int)
        if record is None:
            return None
        if record.status is not BatchStatus.RUNNING:
            raise ValueError(f"batch {batch_id} is {record.status.value}: it takes no more jobs")
        for job in jobs:
            if job.batch_id != batch_id:
                raise ValueError(f"job {job.id} does not name batch {batch_id}")
        self._check_new(jobs, max_waiting, len(jobs), reserved=record.members)
        self._store_members(record, jobs, self._moment())
        return record.snapshot()

    async def get_batch(self, batch_id: uuid.UUID) -> Batch | None:
        """The batch, or None; see `BatchStore.get_batch`."""
        self._batch_book.expire(self._monotonic())
        record = self._batch_book.records.get(batch_id.int)
        return None if record is None else record.snapshot()

    async def pending_continuation(self, job_id: uuid.UUID) -> bool:
        """Whether ``job_id`` is a batch's continuation not stored yet; see
        `BatchStore.pending_continuation`."""
        return job_id.int in self._batch_book.reserved

    async def list_batches(
        self, *, tenant: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> BatchPage:
        """One page of batches, newest first, in O(limit + log n) (with a tenant too); see
        `BatchStore.list_batches`."""
        check_limit(limit)
        check_label(tenant, "tenant")
        filters = [_LISTING, tenant]
        after = None if cursor is None else _place(decode_cursor(cursor, filters))
        self._batch_book.expire(self._monotonic())
        batches: list[Batch] = []
        for record in self._batch_book.newest_first(tenant, after):
            if len(batches) == limit:
                last = batches[-1]
                position = [micros(last.created_at), last.id.hex]
                return BatchPage(batches, encode_cursor(filters, position))
            batches.append(record.snapshot())
        return BatchPage(batches, None)

    async def cancel_batch(self, batch_id: uuid.UUID) -> Batch | None:
        """Cancel the batch, its unfinished jobs (running ones announced to the cancel
        listeners) and its continuations; see `BatchStore.cancel_batch`."""
        book = self._batch_book
        book.expire(self._monotonic())
        record = book.records.get(batch_id.int)
        if record is None:
            return None
        if record.status is BatchStatus.RUNNING:
            record.status = BatchStatus.CANCELED
            record.finished_at = self._moment()
            targets = [key for key, counted in record.members.items() if counted]
        else:  # its continuations not yet run: waiting, never started
            targets = [job_id.int for job_id in record.continuation_ids]
            targets = [key for key in targets if _not_yet_run(self._jobs.get(key))]
        jobs = self._jobs
        for key in targets:
            job = jobs.get(key)
            if job is not None:
                self._cancel_live(job)  # its change reaches `_moved`
        if record.pending:
            self._store_continuations(record, cancel=True)
        return record.snapshot()

    # Hooks of the store

    def _moved(self, was: JobStatus | None, job: Job) -> None:
        """Count the change of ``job`` (of a batch, or not) from status ``was`` (None: just
        stored) in its batch; the end of the last unfinished job of a running batch
        finishes it and stores its continuations. Called by the store in the step that
        made the change."""
        batch_id = job.batch_id
        if batch_id is None:
            return
        record = self._batch_book.records.get(batch_id.int)
        if record is None or not record.members.get(job.id.int):
            return  # not a batch's, or a continuation (not counted)
        status, counts = job.status, record.counts
        was_unfinished = was is not None and not was.is_terminal
        if was is not None:
            counts[SLOTS[was]] -= 1
        counts[SLOTS[status]] += 1
        if status.is_terminal == was_unfinished:  # the number of unfinished jobs changed
            if was_unfinished:
                self._one_ended(record)
            else:
                record.unfinished += 1
                record.expiry = math.inf  # a requeued job holds a finished batch again

    def _one_ended(self, record: BatchRecord) -> None:
        record.unfinished -= 1
        if record.unfinished:
            return
        if record.status is BatchStatus.RUNNING:
            record.status = BatchStatus.FINISHED
            record.finished_at = self._moment()
            failed = record.counts[_FAILED] + record.counts[_CANCELED]
            must_not_run = record.continue_when is ContinueWhen.ALL_COMPLETED and failed > 0
            self._store_continuations(record, cancel=must_not_run)
        self._batch_book.arm(record, self._monotonic() + self.retention)

    # Filing

    def _check_new(
        self,
        jobs: Sequence[NewJob],
        max_waiting: int | None,
        waiting: int,
        *,
        reserved: dict[int, bool] | None = None,
    ) -> None:
        """Raise unless every one of ``jobs`` can be stored: ids unused (by a stored job,
        another of ``jobs`` or a ``reserved`` continuation), finite delays, and room for
        ``waiting`` more waiting jobs."""
        keys = {job.id.int for job in jobs}
        if len(keys) < len(jobs):
            raise DuplicateJobError("a job id appears twice in the batch")
        stored, finished, taken = self._jobs, self._finished, self._batch_book.reserved
        for job in jobs:
            key = job.id.int
            if (
                key in stored
                or key in finished
                or key in taken
                or (reserved is not None and key in reserved)
            ):
                raise DuplicateJobError(f"a job with id {job.id} exists already")
            if job.delay and not math.isfinite(job.delay):
                raise ValueError(f"delay must be a finite number of seconds, not {job.delay!r}")
            check_follow_ups(job)
        if max_waiting is not None and self._live.waiting + waiting > max_waiting:
            raise QueueFullError(full_batch_message(max_waiting))

    def _store_members(self, record: BatchRecord, jobs: Sequence[NewJob], moment: datetime) -> None:
        members, keys = record.members, record.keys
        for new_job in jobs:
            key = new_job.id.int
            members[key] = True
            keys.append(key)
            self._store(new_job, moment)  # counted by `_moved`

    def _store_continuations(self, record: BatchRecord, *, cancel: bool) -> None:
        pending, record.pending, moment = record.pending, (), self._moment()
        for new_job in pending:
            key = new_job.id.int
            self._batch_book.reserved.discard(key)
            if key in self._jobs or key in self._finished:  # taken since: never overwrite
                logger.warning(
                    "batch %s: continuation id %s is taken",
                    record.id,
                    new_job.id,
                    extra=job_id_extra(new_job.id, new_job.name),
                )
                continue
            record.keys.append(key)
            self._store(new_job, moment, cancel=cancel)


def _place(position: list[object]) -> int:
    """The listing value after which a ``[µs, id]`` position continues."""
    if len(position) != 2:
        raise ValueError("invalid cursor")
    at, text = position
    if not isinstance(at, int) or isinstance(at, bool) or not isinstance(text, str):
        raise ValueError("invalid cursor")
    try:
        key = uuid.UUID(hex=text).int
    except ValueError:
        raise ValueError("invalid cursor") from None
    return -entry_of(at, key)


def _not_yet_run(job: Job | None) -> bool:
    """Whether a stored continuation has not run yet: waiting, and never started (one
    running, or waiting for a retry, is left to go on by `cancel_batch`)."""
    waiting = (JobStatus.QUEUED, JobStatus.SCHEDULED)
    return job is not None and job.status in waiting and job.started_at is None
