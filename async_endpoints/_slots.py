"""`Slots`: the jobs a worker pool has claimed, one task each, holding a slot while its
handler runs.

A job's task awaits its handler inline and then records the outcome (`AttemptRunner.run`);
its slot is freed the moment the handler returns, not after the bookkeeping. A job that
waits on nothing therefore holds its slot for one event-loop turn.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from ._deadline import CANCEL_WAIT
from ._job import Job
from ._store import Claim
from ._worker import AttemptRunner

logger = logging.getLogger("async_endpoints")

JobTask = asyncio.Task[Job | None]


class Slots:
    """The pool's claimed jobs: their handlers running, or their outcomes being recorded."""

    def __init__(self, attempts: AttemptRunner) -> None:
        self.attempts = attempts
        self._running: dict[str, tuple[Claim, JobTask]] = {}  # by claim token
        self._settling: dict[str, Claim] = {}  # handler done, outcome being recorded
        self._tasks: set[JobTask] = set()  # every job task not yet ended
        #: Set whenever a handler ends (or is abandoned).
        self.freed = asyncio.Event()
        #: Set when no handler runs any more.
        self.idle = asyncio.Event()

    def __len__(self) -> int:
        """How many handlers are running (slots in use)."""
        return len(self._running)

    def start(self, claim: Claim) -> JobTask:
        """Run ``claim``'s job in a task of its own; it holds a slot until its handler ends."""
        ended = functools.partial(self._handler_ended, claim.token)
        task = asyncio.create_task(
            self.attempts.run(claim, ended), name=f"async-endpoints-job-{claim.job.id}"
        )
        self._running[claim.token] = (claim, task)
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._finished, claim))
        return task

    def _handler_ended(self, token: str) -> None:
        entry = self._running.pop(token, None)
        if entry is None:
            return
        self._settling[token] = entry[0]  # renewed until its outcome is recorded
        self.freed.set()
        if not self._running:
            self.idle.set()

    def _finished(self, claim: Claim, task: JobTask) -> None:
        self._handler_ended(claim.token)  # when cancelled (or failed) inside its handler
        self._settling.pop(claim.token, None)
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("job %s: settling failed", claim.job.id, exc_info=task.exception())

    def claims(self) -> list[Claim]:
        """The claims to renew: running handlers and outcomes being recorded."""
        return [claim for claim, _ in self._running.values()] + list(self._settling.values())

    def handlers(self) -> list[JobTask]:
        """The tasks whose handler is running."""
        return [task for _, task in self._running.values()]

    def cancel_lost(self, tokens: set[str]) -> set[str]:
        """Cancel the handlers of lost claims; return the tokens of those still running.

        A claim whose handler has ended is not lost: its outcome was recorded, or is being
        recorded (and the store tells whether it landed).
        """
        cancelled = {token for token in tokens if token in self._running}
        for token in cancelled:
            self._running[token][1].cancel()
        return cancelled

    async def cancel_running(self) -> None:
        """Cancel the running handlers; abandon those still running `CANCEL_WAIT` seconds
        later (they ignore cancellation; recovery re-runs their jobs)."""
        tasks = self.handlers()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CANCEL_WAIT)
        for claim, task in list(self._running.values()):
            self.attempts.abandon(task, claim.job)
            self._handler_ended(claim.token)

    def recording(self) -> set[asyncio.Future[Job | None]]:
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
