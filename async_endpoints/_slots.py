"""`Slots`: the jobs a worker pool has claimed, each holding a slot while its handler runs.

A job's task awaits its handler inline and then records the outcome (`AttemptRunner.run`);
its slot is freed the moment the handler returns, not after the bookkeeping. A job that
waits on nothing therefore holds its slot for less than one event-loop turn, and its task
may go on with the next job at once (``next_claim`` decides when: see `WorkerPool`), each
job in a context of its own as if it had a task of its own.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import types
import uuid
from collections.abc import Awaitable, Callable, Collection, Coroutine, Generator
from typing import Any, TypeVar, cast

from ._cancels import CancelledClaims
from ._deadline import CANCEL_WAIT
from ._job import Job
from ._logs import job_extra
from ._store import Claim
from ._worker import AttemptRunner

logger = logging.getLogger("async_endpoints")

JobTask = asyncio.Task[None]
T = TypeVar("T")


class Slots:
    """The pool's claimed jobs: their handlers running, or their outcomes being recorded."""

    def __init__(
        self,
        attempts: AttemptRunner,
        next_claim: Callable[[float], Awaitable[tuple[Claim, float] | None]],
    ) -> None:
        self.attempts = attempts
        self._next_claim = next_claim
        self._running: dict[str, tuple[Claim, JobTask]] = {}  # by claim token
        self._settling: dict[str, Claim] = {}  # handler done, outcome being recorded
        # The task of each claim whose handler was abandoned (it ignored cancellation).
        self._abandoned: dict[str, JobTask] = {}
        # Per held claim, the loop time its lease counts from at the latest.
        self._leased_from: dict[str, float] = {}
        self._tasks: set[JobTask] = set()  # every job task not yet ended
        #: Cancel pushes that came before their claim started here (its answer, or an
        #: idle worker's hand-over, still on its way): the claim's job does not start.
        self._early_cancels = CancelledClaims()
        #: Set whenever a handler ends (or is abandoned).
        self.freed = asyncio.Event()
        #: Set when no handler runs any more.
        self.idle = asyncio.Event()

    def __len__(self) -> int:
        """How many handlers are running (slots in use)."""
        return len(self._running)

    def start(self, claim: Claim, leased_from: float) -> JobTask | None:
        """Run ``claim``'s job in a task of its own; it holds a slot until its handler ends.
        Its lease counts from ``leased_from`` (loop time) at the latest (`leased_from`).

        A job whose cancel was pushed before its claim arrived gets no task (None): an
        eager task factory would otherwise run its handler up to its first ``await``.
        """
        if self._skipped(claim):
            return None
        task = asyncio.create_task(self._run(claim), name=f"async-endpoints-job-{claim.job.id}")
        self._running[claim.token] = (claim, task)
        self._leased_from[claim.token] = leased_from
        self._tasks.add(task)
        task.add_done_callback(self._ended)
        return task

    def _skipped(self, claim: Claim) -> bool:
        """Whether ``claim``'s job was cancelled on its way here (its push came first):
        then it never starts, and the store is told as for a handler that ended."""
        if not self._early_cancels.named(claim):
            return False
        self.attempts.canceled.add(claim.token)
        self.attempts.never_ran(claim)
        return True

    def _ended(self, task: JobTask) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # logged already; `drain` raises it
            return
        # A task cancelled before its first step never ran `_attempt` (nor its cleanup):
        # its claim is dropped here, and reported when its job was cancelled.
        for token, (claim, owner) in list(self._running.items()):
            if owner is task:
                self._handler_ended(token)
                self._release(token)
                self.attempts.never_ran(claim)

    async def _run(self, claim: Claim) -> None:
        """``claim``'s job, then as many as ``next_claim`` gives, each in its own context."""
        began = asyncio.get_running_loop().time()
        context = contextvars.copy_context()  # as this task started: what each job starts from
        task = cast(JobTask, asyncio.current_task())
        job: Awaitable[Job | None] = self._attempt(claim)
        while True:
            try:
                await job
            except Exception:
                logger.exception(
                    "job %s: settling failed", claim.job.id, extra=job_extra(claim.job)
                )
                raise
            while True:
                taken = await self._next_claim(began)
                if taken is None:
                    return
                claim, leased_from = taken
                if not self._skipped(claim):
                    break
            self._running[claim.token] = (claim, task)
            self._leased_from[claim.token] = leased_from
            job = _in_context(context.copy(), self._attempt(claim))

    async def _attempt(self, claim: Claim) -> Job | None:
        try:
            return await self.attempts.run(
                claim, functools.partial(self._handler_ended, claim.token)
            )
        finally:
            self._handler_ended(claim.token)  # when cancelled (or failed) inside its handler
            self._release(claim.token)

    def _handler_ended(self, token: str) -> None:
        entry = self._running.pop(token, None)
        if entry is None:
            return
        self._settling[token] = entry[0]  # renewed until its outcome is recorded
        if entry[1] in self.attempts.abandoned:
            self._abandoned[token] = entry[1]
        self.freed.set()
        if not self._running:
            self.idle.set()

    def _release(self, token: str) -> None:
        """Forget the claim ``token``: nothing of it is renewed or recorded any more."""
        self._settling.pop(token, None)
        self._leased_from.pop(token, None)
        self._abandoned.pop(token, None)

    def claims(self) -> list[Claim]:
        """The claims to renew: running handlers and outcomes being recorded.

        Not those of abandoned handlers (they ignored cancellation and may run on) once
        nothing of them is left to record: a JobTimeout recorded, a lost claim. Those of a
        cancelled job are (the store keeps its partition key held while they run)."""
        attempts = self.attempts
        for token in [
            token
            for token in self._abandoned
            if token not in attempts.timing_out and token not in attempts.canceled
        ]:
            self._release(token)
        return [claim for claim, _ in self._running.values()] + list(self._settling.values())

    def leased_from(self, token: str) -> float | None:
        """The loop time the lease of the held claim ``token`` counts from at the latest
        (given to `start`), until it is renewed."""
        return self._leased_from.get(token)

    def handlers(self) -> list[JobTask]:
        """The tasks whose handler is running."""
        return [task for _, task in self._running.values()]

    def claims_of(self, tasks: Collection[JobTask]) -> list[Claim]:
        """The claims whose handler runs in one of ``tasks``."""
        return [claim for claim, task in self._running.values() if task in tasks]

    def cancel_lost(self, tokens: set[str]) -> set[str]:
        """Cancel the handlers of lost claims; return the tokens of those cancelled now
        (not those cancelled already, waiting to be abandoned).

        A claim whose handler has ended is not lost: its outcome was recorded, or is being
        recorded (and the store tells whether it landed). Nor is the claim of a job that
        was cancelled (`cancel_job` saw to it).
        """
        canceled, interrupted = self.attempts.canceled, self.attempts.interrupted
        cancelled = {
            token
            for token in tokens
            if token in self._running and token not in canceled and token not in interrupted
        }
        for token in cancelled:
            self.attempts.interrupted.add(token)
            task = self._running[token][1]
            task.cancel()
            # A handler that ignores it would hold its slot until job_timeout: abandoned.
            task.get_loop().call_later(CANCEL_WAIT, self._abandon_cancelled, token, task)
        return cancelled

    def cancel_job(self, job_id: uuid.UUID, token: str | None = None) -> None:
        """The job ``job_id`` was cancelled (pushed by the store): cancel its handler's task
        if it runs here, and abandon a handler still running `CANCEL_WAIT` seconds later.
        With ``token`` (a `ClaimCancelStore`'s push), only the attempt of that claim: a
        push that arrives after the job was requeued and claimed here again leaves the
        newer attempt alone.

        Its outcome will be refused by the store: it is marked cancelled, not lost, also
        when its handler has ended and the outcome is being recorded. An empty ``token``
        (a push that named no claim) is as None.
        """
        token = token or None
        found = False
        for held, (claim, task) in list(self._running.items()):
            if claim.job.id == job_id and token in (None, held):
                self.attempts.canceled.add(held)
                task.cancel()
                task.get_loop().call_later(CANCEL_WAIT, self._abandon_cancelled, held, task)
                found = True
        for held, claim in self._settling.items():
            if claim.job.id == job_id and token in (None, held):
                self.attempts.canceled.add(held)
                found = True
        if not found and token is not None:
            self._early_cancels.add(job_id, token)  # not started here (yet)

    def _abandon_cancelled(self, token: str, task: JobTask) -> None:
        entry = self._running.get(token)
        if entry is not None and entry[1] is task:
            self.attempts.abandon(task, entry[0].job)
            self._handler_ended(token)

    async def cancel_running(self) -> list[Claim]:
        """Cancel the running handlers; abandon those still running `CANCEL_WAIT` seconds
        later (they ignore cancellation; recovery re-runs their jobs). The claims of those
        that ended: their jobs may be given back (`GiveBackStore`), as no handler of them
        runs here any more."""
        running = list(self._running.values())
        for claim, task in running:
            self.attempts.interrupted.add(claim.token)
            task.cancel()
        if running:
            await asyncio.wait([task for _, task in running], timeout=CANCEL_WAIT)
        for claim, task in list(self._running.values()):
            self.attempts.abandon(task, claim.job)
            self._handler_ended(claim.token)
        # Not a claim whose outcome is being recorded (a JobTimeout settled from a task of
        # its own): it settles as it is.
        timing_out = self.attempts.timing_out
        return [
            claim
            for claim, task in running
            if task.done() and claim.token not in self._settling and claim.token not in timing_out
        ]

    def recording(self) -> set[asyncio.Future[Any]]:
        """Outcomes being recorded (in job tasks, and for abandoned handlers)."""
        return (self._tasks - self.attempts.abandoned) | self.attempts.settling

    async def concluded(self, tasks: list[JobTask]) -> None:
        """Until each of ``tasks`` has ended, or been abandoned with its handler."""
        while pending := [t for t in tasks if not t.done() and t not in self.attempts.abandoned]:
            self.freed.clear()  # set at every abandonment (and handler end)
            freed = asyncio.ensure_future(self.freed.wait())
            try:
                await asyncio.wait([*pending, freed], return_when=asyncio.FIRST_COMPLETED)
            finally:
                freed.cancel()


@types.coroutine
def _in_context(
    context: contextvars.Context, coroutine: Coroutine[Any, Any, T]
) -> Generator[Any, Any, T]:
    """Await ``coroutine`` with each of its steps run in ``context``: what a task of its own
    would give it, without the event-loop turn a new task costs before it starts."""
    value: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                if error is None:
                    awaited = context.run(coroutine.send, value)
                else:
                    awaited = context.run(coroutine.throw, error)
            except StopIteration as stop:
                result: T = stop.value
                return result
            try:
                value, error = (yield awaited), None
            except GeneratorExit:
                raise
            except BaseException as exc:  # a cancellation thrown into the task, say
                value, error = None, exc
    finally:
        coroutine.close()
