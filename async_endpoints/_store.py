"""The store contract: the only seam between the engine and storage, split by capability.

- `JobStore`, the core every store implements: enqueue, get, claim, renew, settle
  (`complete`, `fail`), recover, and the two waits (for work, for a job's end).
  Hand-over to idle workers is an optional behaviour of `JobStore.wait_for_work` (a store
  that does not hand over returns ``[]``).
- `ControlStore`, optional: cancel, requeue, pause and resume queues, and a push of
  cancellations to the process running the job.
- `InspectionStore`, optional: listing with cursor paging, per-queue counts.
- `IdempotentStore`, optional: a submission stored once per idempotency key.
- `BatchStore`, optional: batches of jobs with exact counts and continuations enqueued
  exactly once.
- `ScheduleStore`, optional: cron schedules, each cycle fired once however many processes
  run the scheduler.
- `ProgressStore`, optional: the progress a running job reports, token-checked.
- `EventStore`, optional: a job's status changes and progress pushed to its watchers.

The engine checks the optional ones with ``isinstance`` (they are runtime-checkable) and
says which capability a store lacks when a feature needs it. Every method states its
atomicity and what happens on a missing job, a duplicate id or a lost claim; the contract
suite shipped in `async_endpoints.testing.contract` checks those promises, and the project
runs it against every store (in-memory, Redis, Redis Cluster). Each transition follows the
state machine of `async_endpoints._lifecycle`.

Time belongs to the store: lease deadlines, run-at times and the job's timestamps come from
the store's clock (the Redis server's clock for `RedisJobStore`), so clock skew between
machines never makes a lease expire early. The engine passes durations, never instants.

Stores raise `StoreUnavailableError` when they cannot be reached, and never let a
lower-layer exception (a redis-py one, say) escape.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from ._batch import Batch, BatchPage, NewBatch
from ._job import Job, JobError, JobStatus, NewJob
from ._job_watch import JobListener
from ._listing import JobPage, QueueStats
from ._schedule import Schedule


@dataclass(frozen=True, slots=True)
class Claim:
    """A job claimed by a worker, with the token that proves the claim is still its own.

    Attributes:
        job: The job as claimed (status ``InProgress``, ``started_at`` set).
        token: Random and unique per claim; settling and renewing must present it.
    """

    job: Job
    token: str


@runtime_checkable
class JobStore(Protocol):
    """Persistence for jobs, with claim leases so that a dead worker's job is run again."""

    async def start(self) -> None:
        """Connect and prepare; called once before any other method. Idempotent."""

    async def aclose(self) -> None:
        """Release connections and wake every waiter. Idempotent; stored jobs are kept."""

    async def enqueue(self, new_job: NewJob, *, max_waiting: int | None = None) -> Job:
        """Store ``new_job`` in its queue and wake idle workers; return the stored job.

        ``Queued``, or ``Scheduled`` with ``run_at`` when ``new_job.delay`` > 0 (due after
        that many seconds on the store's monotonic clock). Atomic: either the job is
        stored (and claimable once due), or nothing changed. When
        ``max_waiting`` is given and that many jobs are Queued or Scheduled already, raises
        `QueueFullError`. Another job with the same id raises `DuplicateJobError`; the
        same job again (same id, name, retries and request: an enqueue resent after
        its reply was lost) is idempotent and returns the stored job unchanged.
        """
        ...

    async def get(self, job_id: uuid.UUID) -> Job | None:
        """The job with this id, or None when there is none (never stored or expired)."""
        ...

    async def claim(
        self, limit: int, *, lease: float, queues: Sequence[str] = ("default",)
    ) -> list[Claim]:
        """Claim up to ``limit`` due jobs of ``queues``, each for ``lease`` seconds.

        Strict priority: jobs are taken from the first of ``queues`` that has a due job;
        within a queue the tenants take turns (one job each per turn), oldest first within
        a tenant; paused queues (`ControlStore.pause`) are skipped, checked in the same
        atomic step as the claim. Only the first job of a partition key's lane is
        claimable (see `async_endpoints._lifecycle`); the others are never taken and put
        back.
        Atomic per job: a job is handed to exactly one claimer; it becomes ``InProgress``,
        gets ``started_at`` (first attempt only) and a fresh token. Scheduled jobs whose
        run-at time has come are claimable. Ids that point at a missing or corrupt record
        are dropped and never stall the queue. Returns an empty list when nothing is due.
        """
        ...

    async def renew(self, claims: Sequence[Claim], *, lease: float) -> set[str]:
        """Extend each claim's lease to ``lease`` seconds from now.

        Checked per claim against its token; returns the tokens of the claims that are lost
        (the job was recovered, settled or expired), which are left unchanged. Tokens, not
        job ids, because one process may hold a stale and a fresh claim of the same job.
        """
        ...

    async def complete(self, claim: Claim, result: Any) -> Job | None:
        """Mark the claimed job ``Completed`` with ``result`` (a JSON value).

        Atomic and token-checked: returns the completed job, or None when the claim is lost
        (a newer attempt or a recovery owns the job), in which case nothing changed.
        Waiters of `wait_until_terminal` are woken.
        """
        ...

    async def fail(self, claim: Claim, error: JobError, *, retry_in: float | None) -> Job | None:
        """Record a failed attempt of the claimed job.

        With ``retry_in`` (seconds) and retries left (``retry_count < max_retries``) the job
        becomes ``Queued`` (``retry_in <= 0``) or ``Scheduled`` until then, and
        ``retry_count`` grows by one. Otherwise it becomes ``Failed`` for good. Atomic and
        token-checked: returns the updated job, or None when the claim is lost (nothing
        changed).
        """
        ...

    async def recover(self) -> list[uuid.UUID]:
        """Re-queue every job whose claim lease has expired; return their ids.

        A lost attempt counts as an attempt: with retries left, ``retry_count`` grows by one
        and the job is ``Queued`` again (its error says the claim expired); otherwise it is
        ``Failed``. Atomic per job and safe to run from many processes at once: each expired
        claim is recovered once. Also drops terminal jobs whose retention has passed (a
        store may drop them earlier by itself, but never before).
        """
        ...

    async def wait_for_work(
        self,
        timeout: float,
        *,
        take: int = 0,
        lease: float = 0.0,
        queues: Sequence[str] = ("default",),
    ) -> list[Claim]:
        """Return when work may be claimable, or after ``timeout`` seconds at the latest.

        Returns at once if a job was enqueued since the last `claim` began, and no later
        than when the earliest Scheduled job becomes due. Spurious wake-ups are allowed.

        With ``take`` > 0 a store may hand jobs over directly: up to ``take`` jobs enqueued
        while the caller waits are claimed for it (``lease`` seconds) and returned, and the
        caller must start every one; only jobs of ``queues`` that are not paused are
        handed over. Jobs handed over but not returned (the call was
        cancelled, say) go back to the head of the queue no later than the caller's next
        `claim` or `aclose`, uncounted. Stores that do not hand over return [].
        """
        ...

    async def wait_until_terminal(self, job_id: uuid.UUID, timeout: float) -> Job | None:
        """The job as soon as it is terminal, woken by its settlement, not by polling.

        After ``timeout`` seconds returns the job as it is then (possibly not terminal);
        None when no job has that id.
        """
        ...


@runtime_checkable
class ControlStore(Protocol):
    """Optional: steering stored jobs. Each method is atomic."""

    async def cancel(self, job_id: uuid.UUID) -> Job | None:
        """Cancel the job: ``Queued`` or ``Scheduled`` jobs become ``Canceled`` and never
        run; an ``InProgress`` job becomes ``Canceled`` at once, its claim is dropped (its
        handler's result is refused, it is not retried) and its id is pushed to the
        cancel listeners of every process using the store (`add_cancel_listener`); a
        terminal job is returned unchanged. None when no job has this id.

        Idempotent: cancelling twice, or from two processes at once, ends with one
        ``Canceled`` job and no error.
        """
        ...

    async def try_cancel(self, job_id: uuid.UUID) -> tuple[Job | None, bool]:
        """`cancel`, also telling whether this very call cancelled the job (False when it
        was terminal already, cancelled by another call meanwhile included, or unknown):
        of concurrent calls for one job, exactly one answers True."""
        ...

    async def requeue(self, job_id: uuid.UUID) -> Job | None:
        """Make a ``Failed`` or ``Canceled`` job ``Queued`` again (at the tail of its
        queue) with ``retry_count`` 0, its error kept until it next runs. None when no job
        has this id.

        Raises:
            InvalidTransitionError: the job is neither Failed nor Canceled (a `ValueError`).
        """
        ...

    async def pause(self, queues: Iterable[str]) -> None:
        """Pause ``queues``: no job of theirs is claimed or handed over until resumed
        (running ones finish; submissions are still stored). Stored, so every process
        obeys at its next claim."""
        ...

    async def resume(self, queues: Iterable[str]) -> None:
        """Resume ``queues`` and wake idle workers."""
        ...

    async def paused_queues(self) -> frozenset[str]:
        """The queues paused now."""
        ...

    def add_cancel_listener(self, listener: Callable[[uuid.UUID], None]) -> None:
        """Call ``listener(job_id)`` in this process (on its event loop) whenever a running
        job is cancelled, by any process; pushed, not polled. A listener that misses one
        (a dropped connection) still learns it at its next renewal: the claim is lost."""
        ...


@runtime_checkable
class InspectionStore(Protocol):
    """Optional: reading what is stored, at a cost that does not grow with the jobs kept."""

    async def count_waiting(self) -> int:
        """How many jobs are ``Queued`` or ``Scheduled`` now."""
        ...

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        queue: str | None = None,
        tenant: str | None = None,
        batch_id: uuid.UUID | None = None,
        limit: int = 50,
        cursor: str | None = None,
        queues: Sequence[str] = ("default",),
    ) -> JobPage:
        """One page of the jobs that match, in the order `async_endpoints._listing`
        gives for ``status``; ``next_cursor`` continues it (None on the last page).
        ``queues`` is the priority order of the queues (the order of ``Queued`` jobs).
        ``tenant`` keeps the jobs of that tenant only, ``batch_id`` those of that batch
        (its continuations included).

        Costs O(limit + log n) for a status alone; a ``queue`` or ``tenant`` filter may visit more
        jobs than it returns, and may then return a short page with a cursor. Paging
        visits every matching job once while nothing changes.

        Raises:
            ValueError: ``limit`` out of range, or a ``cursor`` that this store did not
                make for this same listing (tampered, or made for other filters).
        """
        ...

    async def queue_stats(self, queues: Sequence[str]) -> list[QueueStats]:
        """Counts per queue, in the order given; O(number of queues), whatever the number
        of jobs (terminal counts: jobs still retained)."""
        ...


@runtime_checkable
class ScheduleStore(Protocol):
    """Optional: cron schedules, shared by every process on the store.

    The store keeps the definitions and, per schedule, when its next cycle is due; the
    engine evaluates the cron expressions. Every process that runs workers runs the
    scheduler, and `fire_schedule` is a compare-and-set on the due time, so each cycle
    enqueues at most one job however many processes see it due (no leader to elect).
    Due times are wall-clock instants (cron is wall-clock time), compared with the
    store's clock.
    """

    async def upsert_schedule(self, schedule: Schedule) -> Schedule:
        """Store ``schedule`` (its ``next_run_at`` set by the engine); return it as stored.

        When a schedule with this id exists with the same expression and time zone
        (`Schedule.same_timing`), its ``next_run_at`` is kept, so that every process
        declaring it at start neither skips nor repeats a cycle; its ``last_job_id`` is
        always kept (a redefined unique schedule still waits for its running job); the
        rest (handler, body, queue, tenant, unique) is replaced. Atomic.
        """
        ...

    async def remove_schedule(self, schedule_id: str) -> bool:
        """Delete the schedule; False when there was none. Its jobs are left alone."""
        ...

    async def list_schedules(self) -> list[Schedule]:
        """Every schedule, by id."""
        ...

    async def schedule_time(self) -> datetime:
        """The store's wall clock now (aware, UTC): the clock `due_schedules` reads, from
        which the engine computes each fired schedule's next due time (so that cycles
        missed while no process ran are caught up with one job, whatever the host's
        clock says)."""
        ...

    async def due_schedules(self, limit: int) -> list[Schedule]:
        """Up to ``limit`` schedules whose ``next_run_at`` has come (by the store's clock),
        soonest first; O(log n + the number returned), whatever the number of schedules."""
        ...

    async def fire_schedule(
        self, schedule: Schedule, next_run_at: datetime, new_job: NewJob
    ) -> Job | None:
        """Fire the cycle of ``schedule`` that is due at ``schedule.next_run_at``.

        Atomic compare-and-set: when the stored schedule still has that ``next_run_at``
        (no process fired this cycle yet), its ``next_run_at`` becomes ``next_run_at`` (an
        aware `datetime`) and ``new_job`` is enqueued (as `JobStore.enqueue` would, with no
        waiting limit) and becomes ``last_job_id``, unless the schedule is ``unique`` and
        its last job is neither terminal nor gone: then the cycle is skipped (the due time
        still advances). Returns the enqueued job; None when the cycle was skipped, fired
        already, or the schedule was removed or redefined meanwhile.
        """
        ...


@runtime_checkable
class BatchStore(Protocol):
    """Optional: batches. Every job of a batch carries ``batch_id``; the store keeps the
    batch's counts per status and changes them in the same atomic step as each job's
    status (any transition of `async_endpoints._lifecycle`, recovery included), so they
    never drift. The step that makes the last unfinished job of a running batch terminal
    also finishes the batch (``Finished``, ``finished_at``) and stores its continuations:
    ``Queued`` (or ``Scheduled`` when delayed, behind their partition key if they have
    one), or ``Canceled`` when the batch continues ``all_completed`` and a job failed or
    was cancelled. So continuations are stored exactly once, whatever dies meanwhile.
    Continuations carry the batch's id but are not counted in it. A requeued job of a
    finished batch changes its counts but never runs the continuations again. A batch is
    kept while it runs, and for the store's retention once finished or cancelled.
    """

    async def create_batch(self, batch: NewBatch, *, max_waiting: int | None = None) -> Batch:
        """Store ``batch`` and each of its jobs as `JobStore.enqueue` would, atomically:
        every job is stored or none is.

        Raises:
            QueueFullError: ``max_waiting`` is given and the waiting jobs plus the batch's
                would exceed it (nothing stored).
            DuplicateJobError: the batch's id or a job's id is taken (nothing stored).
        """
        ...

    async def append_to_batch(
        self, batch_id: uuid.UUID, jobs: Sequence[NewJob], *, max_waiting: int | None = None
    ) -> Batch | None:
        """Add ``jobs`` (each naming ``batch_id``) to a running batch, atomically (all or
        none); None when there is no such batch.

        Raises:
            ValueError: the batch is finished or cancelled (its continuations must not run
                twice), or a job names another batch.
            QueueFullError, DuplicateJobError: as for `create_batch` (nothing stored).
        """
        ...

    async def get_batch(self, batch_id: uuid.UUID) -> Batch | None:
        """The batch, or None when unknown (or no longer retained)."""
        ...

    async def list_batches(
        self, *, tenant: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> BatchPage:
        """One page of batches, newest ``created_at`` first (ties by id), of ``tenant`` only
        when given; O(limit + log n) without a tenant.

        Raises:
            ValueError: ``limit`` out of range or a ``cursor`` not made for this listing.
        """
        ...

    async def cancel_batch(self, batch_id: uuid.UUID) -> Batch | None:
        """Cancel the batch: its status becomes ``Canceled``, every job of it that is not
        terminal is cancelled as `ControlStore.cancel` does (running ones announced to the
        cancel listeners of every process), and its continuations are stored ``Canceled``
        unless they were stored already (then the non-terminal ones are cancelled too).
        Returns the batch after that; None when unknown. A finished or cancelled batch:
        only its continuations that are not terminal are cancelled. Never a partial
        state visible as ``Running`` afterwards; on Redis a very large batch may be
        cancelled in several atomic steps, the first of which marks it ``Canceled``.
        """
        ...


@dataclass(frozen=True, slots=True)
class Idempotency:
    """What makes a submission a repeat of an earlier one.

    Attributes:
        key: The scoped key (the engine hashes the client's key with the endpoint and the
            owner, so one caller's key never reaches another's job).
        fingerprint: What the submission carried (a hash of its body): a repeat with
            another fingerprint is a misuse of the key, for the engine to refuse.
        ttl: Seconds the key is remembered after the first submission.
    """

    key: str
    fingerprint: str
    ttl: float


@runtime_checkable
class IdempotentStore(Protocol):
    """Optional: submissions made once per idempotency key."""

    async def enqueue_once(
        self, new_job: NewJob, idempotency: Idempotency, *, max_waiting: int | None = None
    ) -> tuple[Job, str | None]:
        """Store ``new_job`` as `JobStore.enqueue` does, unless ``idempotency.key`` was used
        within its ttl by a job that is still stored: then store nothing and return that
        job with the fingerprint it was stored with. Otherwise return the new job and
        None, the key remembered for ``idempotency.ttl`` seconds. Atomic: of concurrent
        calls with one key, exactly one stores a job; a repeat costs one round trip.

        Raises:
            QueueFullError, DuplicateJobError, StoreUnavailableError: as for `enqueue`
                (nothing stored, the key not remembered).
        """
        ...


@runtime_checkable
class ProgressStore(Protocol):
    """Optional: the progress a running job's handler reports (``ctx.report_progress``)."""

    async def set_progress(self, claim: Claim, progress: Any) -> bool:
        """Make ``progress`` (a JSON value) the claimed job's ``progress``, and tell the
        job's watchers (`EventStore`).

        Atomic and token-checked: False when the claim is lost (nothing changed). Nothing
        else of the job changes (``last_updated_at`` neither); the value stays through
        retries and once the job is terminal.
        """
        ...


@runtime_checkable
class EventStore(Protocol):
    """Optional: pushed notices of a job's status changes and progress, in every process
    using the store, at the cost of one subscription per process however many jobs and
    watchers there are (`async_endpoints._job_watch`)."""

    async def watch_job(self, job_id: uuid.UUID, listener: JobListener) -> Callable[[], None]:
        """Call ``listener`` (on this process's event loop, quickly: see `JobListener`)
        with a `JobNotice` at every status change of the job, made by any process, and at
        every progress it reports, in the order they happened, until the returned function
        is called (idempotent).

        Live when this returns: a change made afterwards is always told, so a caller that
        watches first and then reads the job misses nothing. A status notice may repeat
        the status already told (after the store's subscription was down, each watched
        job is read again and told as it is). Unknown jobs may be watched (nothing comes).
        """
        ...
