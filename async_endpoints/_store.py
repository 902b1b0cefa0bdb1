"""The store contract: the only seam between the engine and storage, split by capability.

- `JobStore`, the core every store implements: enqueue, get, claim, renew, settle
  (`complete`, `fail`), recover, and the two waits (for work, for a job's end).
  Hand-over to idle workers is an optional behaviour of `JobStore.wait_for_work` (a store
  that does not hand over returns ``[]``).
- `ControlStore`, optional: cancel, requeue, pause and resume queues, and a push of
  cancellations to the process running the job.
- `InspectionStore`, optional: listing with cursor paging, per-queue counts.
- The later capabilities (`IdempotentStore`, `BatchStore`, `ScheduleStore`,
  `ProgressStore`, `EventStore`) are in `async_endpoints._store_features`.

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

from ._job import Job, JobError, JobStatus, NewJob
from ._listing import JobPage, QueueStats

#: The error type `JobStore.recover` gives a job whose claim expired (the metrics count a
#: job Failed by recovery by it).
CLAIM_EXPIRED = "ClaimExpired"
#: Its message (the same from every store).
CLAIM_EXPIRED_MESSAGE = (
    "The worker running this attempt stopped renewing its claim (it crashed, hung or lost "
    "its store connection); the attempt was abandoned."
)


@dataclass(frozen=True, slots=True)
class Claim:
    """A job claimed by a worker, with the token that proves the claim is still its own.

    Attributes:
        job: The job as claimed (status ``InProgress``, ``started_at`` set).
        token: Random and unique per claim; settling and renewing must present it.
        due_at: When the job last became due before this claim (store clock): its
            ``run_at`` for a delayed job or a retry after backoff, else when it was last
            queued (created, requeued, retried at once, recovered); None when the store
            does not say. The metrics' pickup time is from it to the claim.
    """

    job: Job
    token: str
    due_at: datetime | None = None


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
        ``max_waiting`` is given and that many jobs are Queued or Scheduled already
        (`InspectionStore.count_waiting`: webhook deliveries are not counted), raises
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
        The claim of a running job that was cancelled is lost too, but a store that keeps
        its partition key for it (see `ControlStore.cancel`) extends that hold.
        """
        ...

    async def complete(self, claim: Claim, result: Any) -> Job | None:
        """Mark the claimed job ``Completed`` with ``result`` (a JSON value).

        Atomic and token-checked: returns the completed job, or None when the claim is lost
        (a newer attempt or a recovery owns the job), in which case nothing changed but
        for a partition key held for the claim's cancelled attempt, which goes to the
        key's next job (see `ControlStore.cancel`). Waiters of `wait_until_terminal` are
        woken.
        """
        ...

    async def fail(self, claim: Claim, error: JobError, *, retry_in: float | None) -> Job | None:
        """Record a failed attempt of the claimed job.

        With ``retry_in`` (seconds) and retries left (``retry_count < max_retries``) the job
        becomes ``Queued`` (``retry_in <= 0``) or ``Scheduled`` until then, and
        ``retry_count`` grows by one. Otherwise it becomes ``Failed`` for good. Atomic and
        token-checked: returns the updated job, or None when the claim is lost (nothing
        changed, but a partition key held for the claim's cancelled attempt goes on, as
        with `complete`). The worker sends one for a cancelled attempt once its handler
        has ended.
        """
        ...

    async def recover(self) -> list[uuid.UUID]:
        """Re-queue every job whose claim lease has expired; return their ids.

        A lost attempt counts as an attempt: with retries left, ``retry_count`` grows by one
        and the job is ``Queued`` again (its error says the claim expired: type
        `CLAIM_EXPIRED`, ``ClaimExpired``); otherwise it is ``Failed`` with that error.
        Atomic per job and safe to run from many processes at once: each expired claim is
        recovered once. A partition key held for a cancelled attempt whose lease expired
        goes to the key's next job (the canceled job is not recovered nor named). Also
        drops terminal jobs whose retention has passed (a store may drop them earlier by
        itself, but never before).
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

        A running job with a partition key keeps the key for its cancelled attempt (its
        handler may run on for a moment, until the listener's cancellation reaches it):
        the key's next job becomes claimable when `complete` or `fail` is called with
        that claim (refused), or once its lease, which `renew` still extends, expires
        (`recover`). A requeue of the job meanwhile joins the lane behind the attempt.

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
        """How many jobs are ``Queued`` or ``Scheduled`` now, webhook deliveries (jobs
        stored with `NewJob.delivers_for`) left out: the count ``max_waiting`` limits, so
        that deliveries to a receiver that is down never refuse submissions.
        `queue_stats` counts the deliveries with the other jobs of their queue."""
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
