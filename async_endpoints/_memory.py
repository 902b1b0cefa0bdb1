"""`InMemoryJobStore`: the reference `JobStore`, and the embedded default for one process.

Everything happens on the event loop without awaiting inside a state change, so each
method is atomic by construction. Jobs are lost when the process exits; use
`async_endpoints_redis.RedisJobStore` for durability across processes.

Durations (leases, retry delays, retention) are measured on the monotonic clock, so a
step of the wall clock never re-runs a live handler, never stretches a delay and never
drops a job early; the wall clock only stamps the job's times (see `_clocks`).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import secrets
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from ._clocks import Clock, clock_parts
from ._errors import DuplicateJobError, QueueFullError
from ._job import Job, JobError, JobStatus, NewJob, is_same_submission
from ._retained import RetainedJobs
from ._store import Claim
from ._waiters import TerminalWaiters

CLAIM_EXPIRED = JobError(
    "The worker running this attempt stopped renewing its claim (it crashed, hung or lost "
    "its store connection); the attempt was abandoned.",
    "ClaimExpired",
)


class InMemoryJobStore:
    """A `JobStore` kept in this process's memory.

    Args:
        retention: Seconds a terminal job stays readable before it is dropped
            (default one day).
        max_retained: At most this many terminal jobs are kept; beyond it the oldest
            terminal jobs are dropped first (waiting and running jobs never are).
        clock: Inject a `async_endpoints.testing.ManualClock` to drive leases, retries,
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
        self._jobs: dict[uuid.UUID, Job] = {}  # Queued, Scheduled and InProgress jobs
        self._ready: deque[uuid.UUID] = deque()
        self._scheduled: list[tuple[float, int, uuid.UUID]] = []  # (due, monotonic)
        self._leases: dict[uuid.UUID, tuple[str, float]] = {}  # (token, until, monotonic)
        self._terminal_waiters = TerminalWaiters()
        self._seq = itertools.count()
        self._work = asyncio.Event()

    async def start(self) -> None:
        """Bind the wake-up event to the running loop (a store may outlive a test's loop)."""
        self._work = asyncio.Event()
        if self._ready or self._scheduled:
            self._work.set()

    async def aclose(self) -> None:
        """Wake every waiter; the jobs stay in memory."""
        self._work.set()
        self._terminal_waiters.wake_all()

    def _moment(self) -> datetime:
        return datetime.fromtimestamp(self._wall(), UTC)

    async def enqueue(self, new_job: NewJob, *, max_waiting: int | None = None) -> Job:
        """Store a new Queued job; see `JobStore.enqueue`."""
        existing = self._jobs.get(new_job.id)
        if existing is not None and is_same_submission(existing, new_job):
            return existing
        finished = self._finished.get(new_job.id) if existing is None else None
        if finished is not None and self._finished.is_same_submission(new_job.id, new_job):
            return finished
        if existing is not None or finished is not None:
            raise DuplicateJobError(f"a job with id {new_job.id} exists already")
        if max_waiting is not None and self._count_waiting() >= max_waiting:
            raise QueueFullError(f"{max_waiting} jobs are waiting already")
        job = new_job.stored(self._moment())
        self._jobs[job.id] = job
        self._ready.append(job.id)
        self._work.set()
        return job

    async def get(self, job_id: uuid.UUID) -> Job | None:
        """The job, or None; see `JobStore.get`."""
        self._finished.expire(self._monotonic())
        return self._jobs.get(job_id) or self._finished.get(job_id)

    async def claim(self, limit: int, *, lease: float) -> list[Claim]:
        """Claim up to ``limit`` due jobs; see `JobStore.claim`."""
        self._work.clear()
        now, moment = self._monotonic(), self._moment()
        self._promote_due(now)
        claims: list[Claim] = []
        while self._ready and len(claims) < limit:
            job = self._jobs.get(self._ready.popleft())
            if job is None or job.status is not JobStatus.QUEUED:
                continue
            job = job.replace(
                status=JobStatus.IN_PROGRESS,
                started_at=job.started_at or moment,
                last_updated_at=moment,
                run_at=None,
            )
            token = secrets.token_hex(16)
            self._jobs[job.id] = job
            self._leases[job.id] = (token, now + lease)
            claims.append(Claim(job, token))
        return claims

    async def renew(self, claims: Sequence[Claim], *, lease: float) -> set[str]:
        """Extend leases; see `JobStore.renew`."""
        until = self._monotonic() + lease
        lost: set[str] = set()
        for claim in claims:
            held = self._leases.get(claim.job.id)
            if held is None or held[0] != claim.token:
                lost.add(claim.token)
            else:
                self._leases[claim.job.id] = (claim.token, until)
        return lost

    async def complete(self, claim: Claim, result: Any) -> Job | None:
        """Settle as Completed; see `JobStore.complete`."""
        if not self._release(claim):
            return None
        moment = self._moment()
        job = self._jobs[claim.job.id].replace(
            status=JobStatus.COMPLETED,
            completed_at=moment,
            last_updated_at=moment,
            result=result,
            error=None,
        )
        return self._finish(job)

    async def fail(self, claim: Claim, error: JobError, *, retry_in: float | None) -> Job | None:
        """Record a failed attempt; see `JobStore.fail`."""
        if not self._release(claim):
            return None
        return self._retry_or_fail(self._jobs[claim.job.id], error, retry_in)

    async def recover(self) -> list[uuid.UUID]:
        """Re-queue expired claims and drop expired terminal jobs; see `JobStore.recover`."""
        now = self._monotonic()
        self._finished.expire(now)
        expired = [job_id for job_id, (_, until) in self._leases.items() if until <= now]
        for job_id in expired:
            del self._leases[job_id]
            self._retry_or_fail(self._jobs[job_id], CLAIM_EXPIRED, 0.0)
        return expired

    async def count_waiting(self) -> int:
        """Queued plus Scheduled jobs; see `JobStore.count_waiting`."""
        return self._count_waiting()

    async def wait_for_work(
        self, timeout: float, *, take: int = 0, lease: float = 0.0
    ) -> list[Claim]:
        """Wait for a submission or the next due retry; see `JobStore.wait_for_work`.

        Never hands jobs over (a claim here costs no round trip): always returns [].
        """
        if self._scheduled:
            timeout = max(0.0, min(timeout, self._scheduled[0][0] - self._monotonic()))
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

    def _count_waiting(self) -> int:
        return len(self._ready) + len(self._scheduled)

    def _promote_due(self, now: float) -> None:
        while self._scheduled and self._scheduled[0][0] <= now:
            _, _, job_id = heapq.heappop(self._scheduled)
            job = self._jobs.get(job_id)
            if job is not None and job.status is JobStatus.SCHEDULED:
                self._jobs[job_id] = job.replace(status=JobStatus.QUEUED)
                self._ready.append(job_id)

    def _release(self, claim: Claim) -> bool:
        held = self._leases.get(claim.job.id)
        if held is None or held[0] != claim.token:
            return False
        del self._leases[claim.job.id]
        return True

    def _retry_or_fail(self, job: Job, error: JobError, retry_in: float | None) -> Job:
        wall = self._wall()
        moment = datetime.fromtimestamp(wall, UTC)
        if retry_in is None or job.retry_count >= job.max_retries:
            failed = job.replace(
                status=JobStatus.FAILED, completed_at=moment, last_updated_at=moment, error=error
            )
            return self._finish(failed)
        job = job.replace(retry_count=job.retry_count + 1, last_updated_at=moment, error=error)
        if retry_in <= 0:
            job = job.replace(status=JobStatus.QUEUED, run_at=None)
            self._ready.append(job.id)
        else:
            # Due on the monotonic clock; the wall-clock run_at is only what the job shows.
            run_at = datetime.fromtimestamp(wall + retry_in, UTC)
            job = job.replace(status=JobStatus.SCHEDULED, run_at=run_at)
            due = self._monotonic() + retry_in
            heapq.heappush(self._scheduled, (due, next(self._seq), job.id))
        self._jobs[job.id] = job
        self._work.set()
        return job

    def _finish(self, job: Job) -> Job:
        del self._jobs[job.id]
        now = self._monotonic()
        self._finished.expire(now)
        kept = self._finished.add(job, now)
        self._terminal_waiters.wake(job.id)
        return kept
