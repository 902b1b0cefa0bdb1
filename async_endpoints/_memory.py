"""`InMemoryJobStore`: the reference store (`JobStore`, `ControlStore`, `InspectionStore`,
`ScheduleStore`, `BatchStore`, `ProgressStore`, `EventStore`, `FollowUpStore`), and the
embedded default for one process.

Everything happens on the event loop without awaiting inside a state change, so each
method is atomic by construction. Every state change is a function of
`async_endpoints._lifecycle` applied to the job; this module only files the result: in
`_memory_live` (the live jobs, their listing indexes and counts), in `_memory_ready` (what
may be claimed next: partition-key lanes, tenants' turns, the timer) or in `_retained`
(finished jobs), and tells `_moved` (`_memory_batches`) the status the job left, in the
same step, so that its batch counts it there; `_memory_follow_ups` is told of the claims and
ends of jobs in the same step too, while any job has a follow-up or delivers a webhook.
Jobs are lost when the process exits; use `async_endpoints_redis.RedisJobStore` for
durability across processes.

Durations (leases, delays, retry delays, retention) are measured on the monotonic clock, so
a step of the wall clock never re-runs a live handler, never stretches a delay and never
drops a job early; the wall clock only stamps the job's times (see `_clocks`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from secrets import token_hex
from typing import Any

from ._clocks import Clock, clock_parts
from ._errors import DuplicateJobError, QueueFullError, full_queue_message
from ._job import DEFAULT_QUEUE, Job, JobError, JobStatus, NewJob, is_same_submission
from ._job_watch import JobWatchers
from ._lifecycle import (
    RECOVERY_DELAY,
    Transition,
    canceled,
    check,
    claimed,
    completed,
    failed_attempt,
    given_back,
    promoted,
    recovered,
    requeued,
)
from ._logs import job_extra
from ._memory_batches import BatchBook
from ._memory_events import MemoryEvents
from ._memory_follow_ups import MemoryFollowUps, check_follow_ups
from ._memory_idempotency import IdempotencyKeys, MemoryIdempotency
from ._memory_index import CreationLog
from ._memory_listing import MemoryInspection
from ._memory_live import LiveJobs
from ._memory_ready import ReadyJobs
from ._memory_schedules import MemorySchedules, ScheduleBook
from ._retained import RetainedJobs
from ._store import CLAIM_EXPIRED as CLAIM_EXPIRED_TYPE
from ._store import CLAIM_EXPIRED_MESSAGE, Claim
from ._store_features import ClaimCancelListener, ignoring_token
from ._waiters import TerminalWaiters

logger = logging.getLogger("async_endpoints")

CLAIM_EXPIRED = JobError(CLAIM_EXPIRED_MESSAGE, CLAIM_EXPIRED_TYPE)
_DEFAULT_QUEUES = (DEFAULT_QUEUE,)


class InMemoryJobStore(
    MemoryInspection, MemorySchedules, MemoryEvents, MemoryIdempotency, MemoryFollowUps
):
    """A job store kept in this process's memory, with every optional capability.

    Args:
        retention: Seconds a terminal job stays readable before it is dropped
            (default one day).
        max_retained: At most this many terminal jobs are kept; beyond it the oldest
            terminal jobs are dropped first (waiting and running jobs never are).
        clock: Inject a `async_endpoints.testing.ManualClock` to drive leases, delays,
            retention and the job's times in tests. A plain callable (seconds since the
            epoch) serves as both clocks. Default: `time.time` and `time.monotonic`.

    Raises:
        ConfigurationError: ``retention`` is not positive or ``max_retained`` is below 1.
    """

    def __init__(
        self,
        *,
        retention: float = 24 * 3600.0,
        max_retained: int = 100_000,
        clock: Clock | Callable[[], float] | None = None,
    ) -> None:
        self._finished = RetainedJobs(retention, max_retained)  # checks both
        self.retention = retention
        self.max_retained = max_retained
        self._wall, self._monotonic = clock_parts(clock)
        self._deliveries: dict[int, int] = {}
        self._live = LiveJobs(exempt=self._deliveries)  # deliveries wait uncounted
        self._jobs = self._live.jobs  # Queued, Scheduled and InProgress jobs by id.int
        self._ready = ReadyJobs(self._live.due)
        self._leases: dict[int, tuple[str, float]] = {}  # (token, until, monotonic)
        #: Cancelled running jobs with a partition key whose handler may still run: the
        #: attempt keeps the key (token, until, key) until it reports its end or its lease
        #: runs out (see `_let_go`).
        self._held: dict[int, tuple[str, float, str]] = {}
        self._due_at: dict[int, datetime] = {}  # run_at of promoted jobs, until claimed
        self._created = CreationLog()
        self._paused: set[str] = set()
        self._cancel_listeners: list[ClaimCancelListener] = []
        self._terminal_waiters = TerminalWaiters()
        self._seq = itertools.count()
        self._work = asyncio.Event()
        self._schedule_book = ScheduleBook()
        self._batch_book = BatchBook()
        self._job_watchers = JobWatchers()
        self._idempotency_keys = IdempotencyKeys()
        self._follow_ups: dict[int, NewJob] = {}
        self._prune_deliveries_at = 64

    async def start(self) -> None:
        """Bind the wake-up event to the running loop (a store may outlive a test's loop)."""
        self._work = asyncio.Event()
        if self._jobs:
            self._work.set()

    async def aclose(self) -> None:
        """Wake every waiter; the jobs stay in memory."""
        self._work.set()
        self._terminal_waiters.wake_all()

    def _moment(self) -> datetime:
        return datetime.fromtimestamp(self._wall(), UTC)

    async def enqueue(self, new_job: NewJob, *, max_waiting: int | None = None) -> Job:
        """Store a new Queued or Scheduled job; see `JobStore.enqueue`.

        Raises:
            ValueError: ``new_job.delay`` is not a finite number.
        """
        key = new_job.id.int
        existing = self._jobs.get(key)
        if existing is not None and is_same_submission(existing, new_job):
            return existing
        finished = self._finished.get(new_job.id) if existing is None else None
        if finished is not None and self._finished.is_same_submission(new_job.id, new_job):
            return finished
        if existing is not None or finished is not None or key in self._batch_book.reserved:
            raise DuplicateJobError(f"a job with id {new_job.id} exists already")
        if max_waiting is not None and self._live.waiting >= max_waiting:
            raise QueueFullError(full_queue_message(max_waiting))
        delay = new_job.delay
        if delay and not math.isfinite(delay):
            raise ValueError(f"delay must be a finite number of seconds, not {delay!r}")
        check_follow_ups(new_job)
        return self._store(new_job)

    async def get(self, job_id: uuid.UUID) -> Job | None:
        """The job, or None; see `JobStore.get`."""
        self._finished.expire(self._monotonic())
        return self._jobs.get(job_id.int) or self._finished.get(job_id)

    async def claim(
        self, limit: int, *, lease: float, queues: Sequence[str] = _DEFAULT_QUEUES
    ) -> list[Claim]:
        """Claim up to ``limit`` due jobs of ``queues``, first queues first, the tenants of
        a queue in turn; see `JobStore.claim`."""
        self._work.clear()
        now = self._monotonic()
        if self._ready.next_due <= now:
            self._promote_due(now)
        claims: list[Claim] = []
        moment, until = self._moment(), now + lease
        jobs, live, ready, leases = self._jobs, self._live, self._ready, self._leases
        deliveries = self._deliveries
        for name in queues:
            if len(claims) >= limit:
                break
            if name in self._paused:
                continue
            while len(claims) < limit and (job := ready.take(name, jobs)) is not None:
                queued_at, due_at = job.last_updated_at, self._due_at.pop(job.id.int, None)
                job = live.put(claimed(job, moment))
                self._moved(JobStatus.QUEUED, job)
                if deliveries:
                    self._claimed(job)
                token = token_hex(16)
                leases[job.id.int] = (token, until)
                due = queued_at if due_at is None or due_at < queued_at else due_at
                claims.append(Claim(job, token, due))
        return claims

    async def renew(self, claims: Sequence[Claim], *, lease: float) -> set[str]:
        """Extend leases; see `JobStore.renew`."""
        until = self._monotonic() + lease
        lost: set[str] = set()
        for claim in claims:
            key = claim.job.id.int
            held = self._leases.get(key)
            if held is None or held[0] != claim.token:
                lost.add(claim.token)
                kept = self._held.get(key)
                if kept is not None and kept[0] == claim.token:  # cancelled, still running
                    self._held[key] = (claim.token, until, kept[2])
            else:
                self._leases[key] = (claim.token, until)
        return lost

    async def complete(self, claim: Claim, result: Any) -> Job | None:
        """Settle as Completed; see `JobStore.complete`."""
        job = self._release(claim)
        if job is None:
            return None
        return self._finish(completed(job, result, self._moment()))

    async def fail(self, claim: Claim, error: JobError, *, retry_in: float | None) -> Job | None:
        """Record a failed attempt; see `JobStore.fail`."""
        job = self._release(claim)
        if job is None:
            return None
        return self._after_attempt(failed_attempt(job, error, retry_in, self._moment()), retry_in)

    async def give_back(self, claim: Claim, *, retry_in: float) -> Job | None:
        """Let the claimed job wait again, its attempt not counted; see
        `GiveBackStore.give_back`."""
        job = self._release(claim)
        if job is None:
            return None
        return self._after_attempt(given_back(job, retry_in, self._moment()), retry_in)

    async def recover(self) -> list[uuid.UUID]:
        """Re-queue expired claims and drop expired terminal jobs; see `JobStore.recover`."""
        now = self._monotonic()
        self._finished.expire(now)
        self._batch_book.expire(now)
        self._trim_created()
        for key in [key for key, (_, until, _) in self._held.items() if until <= now]:
            self._let_go(key, self._held[key][0])
        expired = [key for key, (_, until) in self._leases.items() if until <= now]
        recovered_ids: list[uuid.UUID] = []
        for key in expired:
            del self._leases[key]
            job = self._jobs[key]
            self._after_attempt(recovered(job, CLAIM_EXPIRED, self._moment()), RECOVERY_DELAY)
            recovered_ids.append(job.id)
        return recovered_ids

    async def wait_for_work(
        self,
        timeout: float,
        *,
        take: int = 0,
        lease: float = 0.0,
        queues: Sequence[str] = _DEFAULT_QUEUES,
    ) -> list[Claim]:
        """Wait for a submission, a resumed queue, a released partition key or the next due
        job; see `JobStore.wait_for_work`.

        Never hands jobs over (a claim here costs no round trip): always returns [].
        """
        due = self._ready.next_due
        if due < math.inf:
            timeout = max(0.0, min(timeout, due - self._monotonic()))
        try:
            async with asyncio.timeout(timeout):
                await self._work.wait()
        except TimeoutError:
            pass
        return []

    async def wait_until_terminal(self, job_id: uuid.UUID, timeout: float) -> Job | None:
        """The job once terminal; see `JobStore.wait_until_terminal`."""
        job = await self.get(job_id)
        if job is None or job.status.is_terminal:
            return job
        await self._terminal_waiters.wait(job_id, timeout)
        return await self.get(job_id)

    # ControlStore

    async def cancel(self, job_id: uuid.UUID) -> Job | None:
        """Cancel a waiting or running job; see `ControlStore.cancel`.

        The cancel listeners are called before this returns (a listener that raises is
        logged and does not stop the others).
        """
        job, _ = await self.try_cancel(job_id)
        return job

    async def try_cancel(self, job_id: uuid.UUID) -> tuple[Job | None, bool]:
        """`cancel`, and whether this call cancelled the job; see `ControlStore.try_cancel`."""
        job = self._jobs.get(job_id.int)
        if job is None:
            return await self.get(job_id), False  # terminal (unchanged) or unknown
        return self._cancel_live(job), True

    async def requeue(self, job_id: uuid.UUID) -> Job | None:
        """Queue a Failed or Canceled job again, last of its partition key's lane; see
        `ControlStore.requeue`."""
        live = self._jobs.get(job_id.int)
        if live is not None:
            check(live, Transition.REQUEUE)  # raises: a live job is never Failed or Canceled
        self._finished.expire(self._monotonic())
        kept = self._finished.get(job_id)
        if kept is None:
            return None
        check(kept, Transition.REQUEUE)
        job = self._finished.take(job_id)
        assert job is not None
        was = job.status
        job = self._live.put(requeued(job, self._moment()))
        self._moved(was, job)
        self._wait(job, join=True)
        self._work.set()
        return job

    async def pause(self, queues: Iterable[str]) -> None:
        """Hold back the jobs of ``queues``; see `ControlStore.pause`."""
        self._paused.update(_names(queues))

    async def resume(self, queues: Iterable[str]) -> None:
        """Release ``queues`` and wake idle workers; see `ControlStore.resume`."""
        self._paused.difference_update(_names(queues))
        self._work.set()

    async def paused_queues(self) -> frozenset[str]:
        """The queues paused now."""
        return frozenset(self._paused)

    def add_cancel_listener(self, listener: Callable[[uuid.UUID], None]) -> None:
        """Call ``listener(job_id)`` whenever a running job is cancelled; see
        `ControlStore.add_cancel_listener`."""
        self._cancel_listeners.append(ignoring_token(listener))

    def add_claim_cancel_listener(self, listener: ClaimCancelListener) -> None:
        """Call ``listener(job_id, token)`` whenever a running job is cancelled, with the
        token of the claim dropped; see `ClaimCancelStore`."""
        self._cancel_listeners.append(listener)

    # Filing jobs

    def _store(
        self, new_job: NewJob, moment: datetime | None = None, *, cancel: bool = False
    ) -> Job:
        """Store the new ``new_job`` (checked already) as `enqueue` does, created at
        ``moment`` (default now: the jobs of one batch share it), or ``Canceled`` at once
        with ``cancel`` (a batch's continuation that must not run)."""
        key, moment = new_job.id.int, moment or self._moment()
        job = new_job.stored(moment)
        seq = next(self._seq)
        self._created.add(key, seq, job.queue, job.tenant)
        if new_job.follow_up is not None or new_job.delivers_for is not None:
            self._keep_parts(new_job)
        if cancel:
            job = self._finished.add(canceled(job, moment), self._monotonic())
            self._moved(None, job)
            if self._follow_ups or self._deliveries:
                self._ended(job)
        else:
            job = self._live.put(job, self._monotonic() + new_job.delay)
            self._moved(None, job)
            self._wait(job, join=True)
            self._work.set()
        if not seq & 63:  # often enough that each pass is short
            self._trim_created()
        return job

    def _trim_created(self) -> None:
        """Forget the creation log's entries of jobs gone (their retention passed, or
        dropped for ``max_retained``); a job held for its webhook stays logged (listed
        again if requeued). Every 64th submission, and at each recovery pass: a log a
        burst filled is let go once its jobs expire, without new submissions."""
        live, kept = self._jobs, self._finished
        self._created.trim(lambda key: key in live or key in kept, len(live) + len(kept))

    def _cancel_live(self, job: Job) -> Job:
        """Cancel the waiting or running ``job``; a running one's listeners are told."""
        key, status, ready = job.id.int, job.status, self._ready
        hold, token = False, ""
        if status is JobStatus.IN_PROGRESS:
            token, until = self._leases.pop(key)  # the handler's result will be refused
            if job.partition_key is not None:  # the attempt keeps the key until it ends
                self._held[key] = (token, until, job.partition_key)
                hold = True
        elif ready.is_claimable(job):
            self._due_at.pop(key, None)
            if status is JobStatus.SCHEDULED:
                ready.untime()
            else:
                ready.drop(job)
        kept = self._finish(canceled(job, self._moment()), hold=hold)
        if status is JobStatus.IN_PROGRESS:
            for listener in list(self._cancel_listeners):
                try:
                    listener(job.id, token)
                except Exception:
                    logger.exception(
                        "a cancel listener failed for job %s", job.id, extra=job_extra(job)
                    )
        return kept

    def _wait(self, job: Job, *, join: bool) -> None:
        """File the waiting ``job`` for claims; ``join``: it joins its partition key's lane
        (it was not in it: new or requeued), else it is first in it already (retried)."""
        if not join or self._ready.join(job):
            self._claimable(job)

    def _claimable(self, job: Job) -> None:
        """File the waiting ``job``, first of its lane (or without one), for claims:
        Queued in its queue's turns; Scheduled on the timer, or promoted if due."""
        ready = self._ready
        if job.status is JobStatus.SCHEDULED:
            key = job.id.int
            if self._live.due[key] > self._monotonic():
                ready.time(key, next(self._seq))
                return
            self._due_at[key] = job.run_at or job.last_updated_at
            job = self._live.put(promoted(job))
            self._moved(JobStatus.SCHEDULED, job)
        ready.push(job)

    def _promote_due(self, now: float) -> None:
        live, ready = self._live, self._ready
        for key in ready.pop_due(now):
            job = live.jobs[key]
            self._due_at[key] = job.run_at or job.last_updated_at
            job = live.put(promoted(job))
            ready.push(job)
            self._moved(JobStatus.SCHEDULED, job)

    def _release(self, claim: Claim) -> Job | None:
        """The claimed job with its lease dropped, or None when the claim is lost (the
        attempt of a cancelled job lets go of its partition key then: it has ended)."""
        key = claim.job.id.int
        held = self._leases.get(key)
        if held is None or held[0] != claim.token:
            if self._held:
                self._let_go(key, claim.token)
            return None
        del self._leases[key]
        return self._jobs[key]

    def _let_go(self, key: int, token: str) -> None:
        """The attempt ``token`` of the cancelled job ``key`` has ended (or its lease ran
        out): the next job of its partition key becomes claimable."""
        held = self._held.get(key)
        if held is None or held[0] != token:
            return
        del self._held[key]
        following = self._ready.release(held[2], key)
        if following is not None:
            self._claimable(self._jobs[following])
            self._work.set()

    def _after_attempt(self, after: Job, retry_in: float | None) -> Job:
        """File ``after``, what a failed or lost attempt made of a running job (Scheduled
        ones due in ``retry_in`` seconds); it keeps its place first in its lane."""
        if after.status.is_terminal:
            return self._finish(after)
        self._live.put(after, self._monotonic() + (retry_in or 0.0))
        self._moved(JobStatus.IN_PROGRESS, after)
        self._wait(after, join=False)
        self._work.set()
        return after

    def _finish(self, job: Job, *, hold: bool = False) -> Job:
        """File the terminal ``job``; the next job of its lane becomes claimable, unless
        ``hold``: its cancelled attempt still runs and keeps the key (`_let_go`)."""
        was = self._live.pop(job.id.int).status
        now = self._monotonic()
        self._finished.expire(now)
        kept = self._finished.add(job, now)
        self._terminal_waiters.wake(job.id)
        if hold:
            self._ready.hold(job)
            following = None
        else:
            following = self._ready.leave(job)
        if following is not None:
            self._claimable(self._jobs[following])
            self._work.set()
        self._moved(was, kept)
        if self._follow_ups or self._deliveries:
            self._ended(kept)
        return kept


def _names(queues: Iterable[str]) -> list[str]:
    if isinstance(queues, str):
        raise TypeError("queues must be an iterable of queue names, not one str")
    return list(queues)
