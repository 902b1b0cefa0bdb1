"""One job attempt: run the claimed job's handler, then settle the outcome in the store.

The handler is awaited in the job's own task, so a short job runs and is settled within one
event-loop turn; the attempt still ends on time whatever the handler does (see `Deadline`).
``SystemExit``, ``KeyboardInterrupt`` and any other `BaseException` but a cancellation
(``GeneratorExit``, an app's own) raised by a handler fail the attempt like any other
exception: asyncio would otherwise let them escape the task (stopping the whole loop, or
leaving the job running until its claim expired).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.exceptions import HTTPException

from ._deadline import CANCEL_WAIT as CANCEL_WAIT
from ._deadline import Deadline
from ._error_describer import ErrorDescriber
from ._errors import NonRetryableError, ResultError
from ._events import AttemptOutcome, LifecycleEvents, settled_outcome
from ._handlers import Handler
from ._job import Job, JobError
from ._logs import forget_current_job, job_extra, name_current_job
from ._progress import ProgressReporter
from ._retry import RetryPolicy
from ._settle import Outcome as Outcome
from ._settle import Settling
from ._store import Claim, JobStore
from ._tasks import consume
from ._tracing import NO_SPAN, AttemptSpan, start_run_span, tracer

logger = logging.getLogger("async_endpoints")


def _nothing() -> None:
    pass


class _HandlerExit(Exception):
    """Carries a `BaseException` that is not an `Exception` (``SystemExit``,
    ``KeyboardInterrupt``, ``GeneratorExit``...) a handler raised, as a failure."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(original)
        self.original = original


@dataclass(frozen=True, slots=True)
class AttemptRunner(Settling):
    """Runs attempts of claimed jobs against the registered handlers and settles them
    (`Settling`)."""

    store: JobStore
    handlers: Mapping[str, Handler]
    retry_policy: RetryPolicy
    job_timeout: float
    include_tracebacks: bool = False
    #: What a failure's error says (the app's ``error_message``, secrets masked).
    errors: ErrorDescriber = field(default_factory=ErrorDescriber)
    #: How long to keep retrying a settlement while the store is unreachable (the lease
    #: length: past it the job is recovered elsewhere and this outcome would be refused).
    settle_patience: float = 30.0
    #: Settlements of abandoned attempts, each in a task of its own; shutdown waits for them.
    settling: set[asyncio.Future[Job | None]] = field(default_factory=set, compare=False)
    #: The claims whose handler was abandoned at ``job_timeout`` and whose JobTimeout is
    #: being recorded (in `settling`): a stopping pool does not give them back.
    timing_out: set[str] = field(default_factory=set, compare=False)
    #: Handlers that ignored cancellation and still run, kept referenced until they end.
    abandoned: set[asyncio.Task[Any]] = field(default_factory=set, compare=False)
    #: Where ``started`` and ``finished`` events go.
    events: LifecycleEvents = field(default_factory=LifecycleEvents, compare=False)
    #: Tokens of claims whose job was cancelled (by `AsyncEndpoints.cancel`, in any
    #: process) while this process ran it: their refused outcome is no lost claim.
    canceled: set[str] = field(default_factory=set, compare=False)
    #: Tokens of claims whose handler this process cancelled because the claim was lost,
    #: or at shutdown past the grace period (`Slots`).
    interrupted: set[str] = field(default_factory=set, compare=False)
    #: The progress of each attempt running, by its claim's token (flushed at settling).
    progress: dict[str, ProgressReporter] = field(default_factory=dict, compare=False)
    #: The app's lifespan state (what its lifespan yielded), given to each attempt's
    #: context as ``ctx.state``; filled in place when the lifespan starts.
    state: dict[str, Any] = field(default_factory=dict, compare=False)

    async def run(self, claim: Claim, handler_ended: Callable[[], None] = _nothing) -> Job | None:
        """Run one attempt of ``claim`` in the calling task, then settle it.

        ``handler_ended`` is called as soon as the handler is done with (it returned,
        failed or was abandoned), before the outcome is recorded. Returns the settled job;
        None when the claim was lost meanwhile, or when the handler was abandoned at
        ``job_timeout`` (its JobTimeout is then settled from another task). Cancellation
        while the handler runs (shutdown past the grace period, a lost lease) propagates
        without settling: the pool gives the job back (a shutdown), or it is left to
        stale-claim recovery (or was cancelled). The
        caller must not cancel the settlement that follows (the pool cancels only running
        handlers). Emits ``started`` now and ``finished`` when the attempt is over. The
        job is the current job of its log records, and the attempt has its span (see
        `async_endpoints._logs` and `async_endpoints._tracing`).
        """
        made = tracer()
        span = NO_SPAN if made is None else start_run_span(made, claim.job)
        named = name_current_job(claim.job)
        try:
            return await self._run(claim, handler_ended, span)
        finally:
            forget_current_job(named)
            span.end()

    async def _run(
        self, claim: Claim, handler_ended: Callable[[], None], span: AttemptSpan
    ) -> Job | None:
        began = asyncio.get_running_loop().time()
        if self.events.listeners:
            self.events.started(claim.job, claim.due_at)
        try:
            outcome = await self.attempt(claim, handler_ended, began, span)
        except asyncio.CancelledError:
            canceled = claim.token in self.canceled
            span.interrupted(canceled=canceled)
            self._finished(claim, None, began)
            if canceled:
                self._report_end(claim)
            raise
        if outcome is None:  # abandoned: its span ended and its outcome was settled then
            return None
        if outcome.error is not None:
            span.failed(outcome.error)
        return await self._settle_patiently(claim, outcome, began)

    def _finished(self, claim: Claim, settled: Job | None, began: float) -> None:
        """The attempt of ``claim`` is over (``settled`` is its recorded job, None when its
        outcome was not recorded): the one place ``finished`` is emitted."""
        canceled = claim.token in self.canceled
        self.canceled.discard(claim.token)
        self.interrupted.discard(claim.token)
        reporter = self.progress.pop(claim.token, None)
        if reporter is not None:
            reporter.close()
        if not self.events.listeners:
            return
        if settled is not None:
            outcome = settled_outcome(settled)
        else:
            outcome = AttemptOutcome.CANCELED if canceled else AttemptOutcome.LOST
        duration = asyncio.get_running_loop().time() - began
        job = claim.job if settled is None else settled
        self.events.finished(job, outcome, duration)

    def never_ran(self, claim: Claim) -> None:
        """The task of ``claim`` was cancelled before its attempt began: if that was its
        job's cancellation, the store is told, as for a handler that ended (a shutdown's
        cancellation leaves the claim to the pool, which gives it back)."""
        if claim.token in self.canceled:
            self.canceled.discard(claim.token)
            self._report_end(claim)

    def lost_unstarted(self, claim: Claim) -> None:
        """``claim`` was lost before its attempt began (its job recovered, or cancelled,
        while the claim's answer was on its way: see `Claimer`): a partition key the store
        keeps for a cancelled attempt is let go now, as for a handler that ended."""
        self._report_end(claim)

    async def attempt(
        self,
        claim: Claim,
        handler_ended: Callable[[], None] = _nothing,
        began: float = 0.0,
        span: AttemptSpan = NO_SPAN,
    ) -> Outcome | None:
        """Run the handler once in this task; every failure becomes an `Outcome` with an error.

        None when the handler ignored its cancellation at ``job_timeout`` and was abandoned.
        A cancellation this process asked for (the job cancelled, its claim lost, the pool
        stopped past its grace period) is re-raised, even when the handler swallowed it.
        """
        job = claim.job
        handler = self.handlers.get(job.name)
        if handler is None:
            handler_ended()
            unknown = JobError(f"no handler is registered for {job.name!r}", "UnknownJob")
            return Outcome(error=unknown)
        reporter = self.progress[claim.token] = ProgressReporter(self.store, claim)
        try:
            context = handler.context(job, reporter.report, self.state)
        except Exception as exc:
            handler_ended()
            return Outcome(error=self._error(exc))
        timeout = self.job_timeout if handler.job_timeout is None else handler.job_timeout
        deadline = Deadline(
            timeout,
            lambda: self._abandon_at_timeout(claim, deadline, handler_ended, began, span),
        )
        ended = await _await_handler(handler.function, context, deadline)
        if deadline.abandoned:
            return None
        handler_ended()
        if deadline.cancelled_elsewhere and not self._asked(claim):
            # The library alone cancels a job's task (a cancel, a lost claim, a shutdown);
            # a count raised without its asking is no request: a task group left it (a
            # CPython bug of Python 3.11 and early 3.12). The handler's own outcome stands.
            deadline.forget_stray_requests()
        if deadline.cancelled_elsewhere or deadline.expired or deadline.overran:
            consume(ended)
            if deadline.cancelled_elsewhere:
                raise asyncio.CancelledError
            timed_out = _timeout_error(timeout)
            return Outcome(error=timed_out)
        return self._outcome(ended, handler.dump_result)

    def _asked(self, claim: Claim) -> bool:
        """Whether this process cancelled the attempt of ``claim``: its job was
        cancelled, its claim lost, or the pool stopped past its grace period."""
        return claim.token in self.canceled or claim.token in self.interrupted

    def _abandon_at_timeout(
        self,
        claim: Claim,
        deadline: Deadline,
        handler_ended: Callable[[], None],
        began: float,
        span: AttemptSpan,
    ) -> None:
        """The handler ignored its cancellation at ``job_timeout``: give up on it, record
        the JobTimeout from a task of its own, and end the attempt's span with it."""
        self.abandon(deadline.task, claim.job)
        handler_ended()
        error = _timeout_error(deadline.seconds)
        settling = asyncio.ensure_future(self._settle_patiently(claim, Outcome(error=error), began))
        self.settling.add(settling)
        self.timing_out.add(claim.token)
        settling.add_done_callback(self.settling.discard)
        settling.add_done_callback(lambda _: self.timing_out.discard(claim.token))
        settling.add_done_callback(consume)
        span.abandoned(error)  # after: a tracing failure must not keep the job from settling

    def _outcome(self, task: asyncio.Future[Any], dump: Callable[[Any], Any]) -> Outcome:
        try:
            return Outcome(result=dump(task.result()))
        except asyncio.CancelledError:
            # The handler cancelled itself (or let an inner cancellation out); the attempt
            # was not cancelled, so this is the handler's failure.
            error = JobError("the handler was cancelled", "CancelledError")
            return Outcome(error=error)
        except _HandlerExit as exc:
            return Outcome(error=self._error(exc.original))
        except (ResultError, NonRetryableError) as exc:
            return Outcome(error=self._error(exc), retry=False)
        except HTTPException as exc:
            _hint_http_exception(exc)
            return Outcome(error=self._error(exc))
        except Exception as exc:
            return Outcome(error=self._error(exc))

    def abandon(self, task: asyncio.Task[Any], job: Job) -> None:
        """Give up on a handler that ignores cancellation: log it, keep its task referenced
        until it ends, and cancel it again every `CANCEL_WAIT` seconds."""
        if task.done() or task in self.abandoned:
            return
        logger.error(
            "job %s (%s): the handler ignores cancellation; abandoning it (it may still run)",
            job.id,
            job.name,
            extra=job_extra(job),
        )
        self.abandoned.add(task)
        task.add_done_callback(self._forget)
        task.get_loop().call_later(CANCEL_WAIT, _cancel_again, task)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self.abandoned.discard(task)
        consume(task)

    def _error(self, exc: BaseException) -> JobError:
        return self.errors.describe(exc, with_traceback=self.include_tracebacks)


#: Whether `_hint_http_exception` has said its piece in this process.
_HINTED: list[bool] = []


def _hint_http_exception(exc: HTTPException) -> None:
    """Say once per process what a handler's `HTTPException` (a FastAPI habit, ``raise
    HTTPException(404)``) does in a job: it answers no client; it fails the attempt like
    any exception, retried per the retry settings (API.md), so a client error that no
    retry can mend is better raised as `NonRetryableError`."""
    if not _HINTED:
        _HINTED.append(True)
        logger.warning(
            "a job handler raised HTTPException(%d): in a job it answers no client and is "
            "retried like any failure; raise NonRetryableError to fail the job at once",
            exc.status_code,
        )


def _timeout_error(timeout: float) -> JobError:
    return JobError(f"the attempt ran longer than job_timeout ({timeout:g} s)", "JobTimeout")


async def _await_handler(
    function: Callable[[Any], Awaitable[Any]], context: Any, deadline: Deadline
) -> asyncio.Future[Any]:
    """The handler's return value or exception, as a finished future (`_outcome` reads it)."""
    ended: asyncio.Future[Any] = deadline.task.get_loop().create_future()
    try:
        ended.set_result(await _call(function, context))
    except asyncio.CancelledError:
        ended.cancel()
    except Exception as exc:
        ended.set_exception(exc)
    finally:
        deadline.close()
    return ended


async def _call(function: Callable[[Any], Awaitable[Any]], context: Any) -> Any:
    try:
        return await function(context)
    except (Exception, asyncio.CancelledError):
        raise
    except BaseException as exc:
        raise _HandlerExit(exc) from exc


def _cancel_again(task: asyncio.Task[Any]) -> None:
    if not task.done():
        task.cancel()
        task.get_loop().call_later(CANCEL_WAIT, _cancel_again, task)
