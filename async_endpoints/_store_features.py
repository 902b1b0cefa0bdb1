"""The optional store capabilities that came after the core contract (see
`async_endpoints._store` for the rules every capability follows):

- `IdempotentStore`: a submission stored once per idempotency key.
- `BatchStore`: batches of jobs with exact counts and continuations enqueued exactly once.
- `ScheduleStore`: cron schedules, each cycle fired once however many processes run the
  scheduler.
- `ProgressStore`: the progress a running job reports, token-checked.
- `EventStore`: a job's status changes and progress pushed to its watchers.
- `FollowUpStore`: a job's follow-up (its webhook delivery) enqueued in the step that ends
  it, and a delivery's transitions kept in its target's ``webhook``.
- `ClaimCancelStore`: cancel pushes that name the claim they dropped.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from ._batch import Batch, BatchPage, NewBatch
from ._job import Job, NewJob
from ._job_watch import JobListener
from ._schedule import Schedule
from ._store import Claim


class ClaimCancelListener(Protocol):
    """What `ClaimCancelStore.add_claim_cancel_listener` takes."""

    def __call__(self, job_id: uuid.UUID, token: str, /) -> None:
        """The running job ``job_id`` was cancelled, dropping the claim ``token``."""
        ...


@runtime_checkable
class ClaimCancelStore(Protocol):
    """Optional, beside `ControlStore`: cancel pushes that name the claim they dropped."""

    def add_claim_cancel_listener(self, listener: ClaimCancelListener) -> None:
        """As `ControlStore.add_cancel_listener`, but ``listener(job_id, token)`` is also
        told the token of the claim the cancel dropped. A push may arrive after the job
        was requeued and claimed again in the listener's process; with the token, the
        engine cancels only the attempt that was cancelled, not the newer one. An empty
        token (a push from a process that named no claim) stands for any claim of the
        job."""
        ...


def ignoring_token(listener: Callable[[uuid.UUID], None]) -> ClaimCancelListener:
    """``listener`` (told a job id) as a `ClaimCancelListener`: what a store that keeps
    one list of claim listeners registers for `ControlStore.add_cancel_listener`."""

    def told(job_id: uuid.UUID, token: str) -> None:
        listener(job_id)

    return told


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
        declaring it at start neither skips nor repeats a cycle; with a new timing, a
        ``next_run_at`` at or before the due time of the cycle the schedule last fired
        (the engine read its clock before another process fired that cycle) becomes the
        new rule's first due time after that cycle, so no cycle fires twice. Its
        ``last_job_id`` is always kept (a redefined unique schedule still waits for its
        running job); the rest (handler, body, queue, tenant, unique) is replaced. Atomic.
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

    async def move_schedule(self, schedule: Schedule, next_run_at: datetime) -> bool:
        """Move the due time of ``schedule`` to ``next_run_at`` without firing a cycle.

        Atomic compare-and-set like `fire_schedule`: only when the stored schedule still
        has ``schedule.next_run_at``. The scheduler re-arms with it a schedule that a
        backward step of the store's wall clock left due far ahead. Returns whether it
        moved (False: fired, moved, redefined or removed meanwhile).
        """
        ...


@runtime_checkable
class ScheduleEpochStore(Protocol):
    """Optional, beside `ScheduleStore`, for a store that can lose its schedules (a Redis
    restarted without persistence, or flushed) while the app's processes run on."""

    async def schedule_epoch(self) -> str:
        """A token naming this lifetime of the stored schedules: the same for as long as
        the store keeps them, a new one once it lost them. A scheduler that declares
        schedules reads it at most once a second and, when it changed, stores its
        declared schedules again."""
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
        only its continuations not yet run are cancelled (``Queued`` or ``Scheduled`` and
        never started; one running, or waiting for a retry, goes on). Never a partial
        state visible as ``Running`` afterwards; on Redis a very large batch may be
        cancelled in several atomic steps, the first of which marks it ``Canceled``.
        """
        ...


@runtime_checkable
class PendingContinuationStore(Protocol):
    """Optional beside `BatchStore`: whether an id is a continuation not stored yet, so
    that `AsyncEndpoints.wait_for` waits for a batch's continuation (its id is known from
    the batch's creation on) instead of taking it for an unknown job."""

    async def pending_continuation(self, job_id: uuid.UUID) -> bool:
        """Whether ``job_id`` is a continuation of a batch that the store has not stored
        yet (the batch still runs): True from the batch's creation until the step that
        stores its continuations."""
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
        within its ttl: then store nothing and return the job it was used for with the
        fingerprint that job was stored with. Otherwise return the new job and None, the
        key remembered for ``idempotency.ttl`` seconds. Atomic: of concurrent calls with
        one key, exactly one stores a job; a repeat costs one round trip.

        Raises:
            IdempotentJobGoneError: the key was used within its ttl, but its job is no
                longer kept (nothing stored: a repeat never runs a second job).
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
class GiveBackStore(Protocol):
    """Optional: a claim given back unfinished, when the worker running it stops (its
    shutdown grace period ran out) and would otherwise leave the job to stale-claim
    recovery, which counts the attempt as lost."""

    async def give_back(self, claim: Claim, *, retry_in: float) -> Job | None:
        """Make the claimed (``InProgress``) job wait again without counting the attempt:
        ``Queued`` when ``retry_in`` is 0, else ``Scheduled``, due in ``retry_in``
        seconds; ``retry_count`` and ``error`` stay as they were, and a partition key
        stays the job's (its next job still waits for it).

        Atomic and token-checked: None when the claim is lost (cancelled, recovered,
        settled), and nothing changes then.
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
        job is read again and told as it is). Unknown jobs may be watched. A store that
        finds a watched job not stored (its data lost: a Redis server restarted without
        persistence, or flushed; or never stored) may tell it once (`JobNotice.gone`), so
        that streams waiting for its end stop waiting; then nothing more, unless the job
        is found again (stored after all: its status is told).
        """
        ...


@runtime_checkable
class FollowUpStore(Protocol):
    """Optional: `NewJob.follow_up` and `NewJob.delivers_for` (webhook deliveries).

    A store with this capability keeps a job's follow-up (not in the job) until the job is
    terminal and enqueues it in the same atomic step that makes the job terminal, whatever
    the route (complete, a failed attempt with no retries left, cancel, a recovery with no
    retries left, a batch's cancel), at most once per job: a follow-up whose id is taken
    then is skipped, and a job requeued after it ended does not enqueue it again. A job
    that ``delivers_for`` another updates that job's ``webhook`` in the same atomic step as
    each of its own transitions (see `NewJob`). Stores without it get no webhooks: the
    engine refuses to configure them (`ConfigurationError`).
    """

    async def follow_up_of(self, job_id: uuid.UUID) -> NewJob | None:
        """The follow-up the job will enqueue when it ends; None once it did (or skipped
        it), for a job without one, and for an unknown job."""
        ...
