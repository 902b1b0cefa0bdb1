"""`Deadline`: ``job_timeout`` for a handler awaited inline in its job's task.

A handler does not get a task of its own (that costs event-loop turns per job, and under
HTTP load in the same process a turn is long): the job's task awaits it, and the deadline
acts on that task. At ``job_timeout`` the task is cancelled; if the handler is still running
`CANCEL_WAIT` seconds later (it ignores cancellation), ``on_abandon`` is called so that the
attempt can be concluded without it.

The task's cancellation count (`asyncio.Task.cancelling`) tells the deadline's own request
from one made elsewhere (shutdown, a lost claim), and from a handler that raised
``CancelledError`` by itself, with nobody asking. A handler can raise the count without
any request, though: on Python 3.11 and early 3.12 an ``asyncio.TaskGroup`` whose body
does not await and whose child fails leaves it one higher (a CPython bug, fixed in later
releases); the attempt then checks against the requests it knows of
(`forget_stray_requests`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

#: Seconds a cancelled handler may take to unwind before the attempt gives up on it.
CANCEL_WAIT = 1.0


class Deadline:
    """Cancels the current task ``seconds`` from now, unless `close` is called first
    (which notes a handler that ended past the deadline uncancelled: `overran`)."""

    def __init__(self, seconds: float, on_abandon: Callable[[], None]) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a Deadline needs a running task")
        self.task = task
        #: The task's cancellation count before (a task runs several jobs in a row).
        self._requests = task.cancelling()
        #: The seconds given.
        self.seconds = seconds
        #: The deadline passed and cancelled the task.
        self.expired = False
        #: The handler ended after the deadline without being cancelled: it blocked the
        #: event loop past it, so the timer could not run before the handler's end.
        self.overran = False
        #: The handler ignored that cancellation for `CANCEL_WAIT` s; ``on_abandon`` ran.
        self.abandoned = False
        self._on_abandon = on_abandon
        self._timer: asyncio.TimerHandle | None = task.get_loop().call_later(seconds, self._expire)

    def _expire(self) -> None:
        self.expired = True
        self.task.cancel()
        self._timer = self.task.get_loop().call_later(CANCEL_WAIT, self._abandon)

    def _abandon(self) -> None:
        self._timer = None
        self.abandoned = True
        self._on_abandon()

    def close(self) -> None:
        """The handler has ended: stop the clock, and forget the deadline's own
        cancellation request (it was delivered and handled)."""
        if self._timer is not None:
            if not self.expired and self.task.get_loop().time() >= self._timer.when():
                self.overran = True
            self._timer.cancel()
            self._timer = None
        self._on_abandon = _nothing  # it may refer to this deadline: no cycle left for the GC
        if self.expired and not self.abandoned:
            self.task.uncancel()

    @property
    def cancelled_elsewhere(self) -> bool:
        """After `close`: whether someone else asked for the task's cancellation (the
        count rose while the handler ran)."""
        return self.task.cancelling() > self._requests

    def forget_stray_requests(self) -> None:
        """After `close`: bring the task's cancellation count back to what it was before
        the handler, when the rise was no request (see `AttemptRunner.attempt`)."""
        while self.task.cancelling() > self._requests:
            self.task.uncancel()


def _nothing() -> None:
    pass
