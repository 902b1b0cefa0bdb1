"""Settling an attempt: recording its outcome in the store, and why a refusal came.

`Outcome` is what one attempt produced. `Settling` (a part of `AttemptRunner`) records it:
a result completes the job, an error fails it (retried after the retry policy's delay while
retries are left and the error allows it), the progress still waiting to be written goes
first, and a store that cannot be reached is tried again for up to ``settle_patience``
seconds. A refused outcome (the claim lost, the job cancelled elsewhere, or an earlier try
that went unanswered but landed) is explained by one read of the job. The end of a
cancelled attempt is reported too (`Settling._report_end`), so that a partition key its
job holds goes to the key's next job at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._errors import JobStoreError, ResultRefusedError, StoreUnavailableError
from ._handlers import Handler
from ._job import Job, JobError, JobStatus
from ._logs import job_extra, one_line
from ._progress import ProgressReporter
from ._retry import RetryPolicy
from ._store import Claim, JobStore

logger = logging.getLogger("async_endpoints")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt produced: a JSON result, or the error that failed it."""

    result: Any = None
    error: JobError | None = None
    #: False when running the handler again cannot help (its result cannot be kept).
    retry: bool = True


class Settling:
    """How `AttemptRunner` records outcomes (its fields are declared there)."""

    __slots__ = ()

    store: JobStore
    handlers: Mapping[str, Handler]
    retry_policy: RetryPolicy
    settle_patience: float
    settling: set[asyncio.Future[Job | None]]
    canceled: set[str]
    progress: dict[str, ProgressReporter]

    if TYPE_CHECKING:

        def _finished(self, claim: Claim, settled: Job | None, began: float) -> None: ...

    def _report_end(self, claim: Claim) -> None:
        """The handler of the cancelled ``claim`` has ended (or never started): tell the
        store, from a task of its own (this one is being cancelled), so that a partition
        key the attempt kept goes to the key's next job now rather than when the lease
        runs out. The store refuses the outcome, as it refuses every outcome of a
        cancelled job. Nothing is held for a job without a key: nothing is sent."""
        if claim.job.partition_key is None:
            return
        reporting = asyncio.ensure_future(self._tell_ended(claim))
        self.settling.add(reporting)
        reporting.add_done_callback(self.settling.discard)

    async def _tell_ended(self, claim: Claim) -> Job | None:
        """A refused `fail` of ``claim``, sent unless the job reads ``InProgress``: a
        cancel heard by job id may be an old one, of an earlier claim of a job requeued
        and claimed again since, and this claim may then be the job's own. In any other
        status no claim of the job is valid, so the `fail` is refused whatever happens
        next (and a job requeued behind its held key cannot be claimed before it). Tried
        a few times while the store is unreachable; the lease running out lets the key go
        otherwise."""
        delay = 0.05
        for attempt in range(_REPORT_TRIES):
            try:
                job = await self.store.get(claim.job.id)
                if job is not None and job.status is JobStatus.IN_PROGRESS:
                    return None
                return await self.store.fail(claim, _ENDED_WHEN_CANCELLED, retry_in=None)
            except StoreUnavailableError:
                if attempt + 1 < _REPORT_TRIES:
                    await asyncio.sleep(delay)
                    delay *= 4
            except Exception as exc:  # a closed store (shutdown), say: the lease decides
                logger.debug(
                    "job %s: end of its cancelled attempt not reported: %r", claim.job.id, exc
                )
                return None
        logger.warning(
            "job %s: could not report the end of its cancelled attempt; its partition key "
            "(if any) goes on when the lease runs out",
            claim.job.id,
            extra=job_extra(claim.job),
        )
        return None

    async def _settle_patiently(self, claim: Claim, outcome: Outcome, began: float) -> Job | None:
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.settle_patience
        delay = 0.05
        unanswered = False
        while True:
            try:
                settled = await self.settle(claim, outcome, after_unanswered=unanswered)
            except StoreUnavailableError as exc:
                unanswered = True
                if loop.time() + delay > give_up_at:
                    logger.error("job %s: could not record its outcome: %s", claim.job.id, exc)
                    self._finished(claim, None, began)
                    raise
                logger.warning(
                    "job %s: store unavailable, settling again in %.2fs", claim.job.id, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            except BaseException:
                self._finished(claim, None, began)
                raise
            else:
                self._finished(claim, settled, began)
                return settled

    async def settle(
        self, claim: Claim, outcome: Outcome, *, after_unanswered: bool = False
    ) -> Job | None:
        """Record the outcome (after the progress still waiting to be written); a lost
        claim (token mismatch) is logged and ignored. ``after_unanswered``: an earlier try
        went unanswered (the store raised `StoreUnavailableError`, as the Redis store does
        when redis-py's own resend was refused), and may have recorded it (`_refused`)."""
        job = claim.job
        reporter = self.progress.get(claim.token)
        if reporter is not None:
            await reporter.flush()
            if reporter.wrote:  # the job as the store holds it now, for the settled job
                claim = Claim(claim.job.replace(progress=reporter.last), claim.token, claim.due_at)
        if outcome.error is None:
            try:
                settled = await self.store.complete(claim, outcome.result)
            except ResultRefusedError as exc:
                # Refused for good (too large for the store, say): no retry could land it.
                error = JobError(f"the store refused the result: {exc}", exc.error_type)
                logger.warning("job %s (%s): %s", job.id, job.name, error.message)
                settled = await self.store.fail(claim, error, retry_in=None)
        else:
            retry_in = None
            if outcome.retry:
                handler = self.handlers.get(job.name)
                base = None if handler is None else handler.retry_base_delay
                retry_in = self.retry_policy.retry_in(job.retry_count, job.max_retries, base)
            settled = await self.store.fail(claim, outcome.error, retry_in=retry_in)
            if settled is None:  # refused: perhaps recorded by an earlier, unanswered try
                settled = await self._after_refusal(claim, outcome, after_unanswered)
            if settled is not None:
                logger.warning(
                    "job %s (%s) attempt %d failed: %s: %s (%s)",
                    job.id,
                    job.name,
                    job.retry_count + 1,
                    outcome.error.type,
                    one_line(outcome.error.message),  # no lone surrogate: `unicode_text`
                    _fate(settled, retry_in, outcome.retry),
                )
            return settled
        if settled is None:
            return await self._after_refusal(claim, outcome, after_unanswered)
        return settled

    async def _after_refusal(
        self, claim: Claim, outcome: Outcome, after_unanswered: bool
    ) -> Job | None:
        """The store refused the outcome of ``claim``: say why (`_refused`); the job when
        an earlier try recorded the outcome after all."""
        job = claim.job
        if claim.token not in self.canceled:
            earlier = await self._refused(claim, outcome, after_unanswered)
            if earlier is not None:
                logger.info(
                    "job %s: its outcome was recorded by an earlier try, whose answer was lost",
                    job.id,
                )
                return earlier
        if claim.token in self.canceled:
            logger.info("job %s (%s) was cancelled; its outcome was discarded", job.id, job.name)
        else:
            logger.warning("job %s: claim lost before settling; the outcome was dropped", job.id)
        return None

    async def _refused(self, claim: Claim, outcome: Outcome, after_unanswered: bool) -> Job | None:
        """The store refused the attempt's outcome and no cancel was heard here; one read
        of the job, on this rare path only, tells why.

        ``Canceled`` (a cancel made elsewhere whose push has not come yet) with this
        attempt's retry count: the attempt counts as cancelled, not lost. A job recovered
        since (its lost attempt counted by the recovery) and cancelled after has a higher
        retry count: this attempt stays lost. After a try that went unanswered (the store
        carried it out, the answer never came), the job as that try left it (`_landed`)
        is returned as settled. Only then: another attempt's outcome (the job cancelled,
        requeued and run again elsewhere) can look the same."""
        try:
            job = await self.store.get(claim.job.id)
        except JobStoreError:
            return None  # counted lost: recovery, or the cancel, tells the rest
        if job is None:
            return None
        if job.status is JobStatus.CANCELED and job.retry_count == claim.job.retry_count:
            self.canceled.add(claim.token)
        elif after_unanswered and _landed(job, claim.job, outcome):
            return job
        return None


def _landed(job: Job, attempted: Job, outcome: Outcome) -> bool:
    """Whether ``job`` (as the store holds it now) is what recording ``outcome`` of the
    attempt at ``attempted`` made of it: Completed with this attempt's retry count and
    result, or failed with its error, Failed with this attempt's retry count or retried with
    the next one (a lost claim's recovery records another error, ``ClaimExpired``)."""
    if outcome.error is None:
        return (
            job.status is JobStatus.COMPLETED
            and job.retry_count == attempted.retry_count
            and job.result == outcome.result
        )
    if job.error != outcome.error:
        return False
    if job.status is JobStatus.FAILED:
        return job.retry_count == attempted.retry_count
    return job.retry_count == attempted.retry_count + 1


#: What the refused report of a cancelled attempt's end says (the store keeps nothing).
_ENDED_WHEN_CANCELLED = JobError("the job was cancelled while it ran", "Canceled")
_REPORT_TRIES = 3


def _fate(settled: Job, retry_in: float | None, retryable: bool) -> str:
    """What a failed attempt's log line says comes next for its job."""
    if settled.status is JobStatus.FAILED:
        return "no retries left: Failed" if retryable else "not retried: Failed"
    if retry_in is None or retry_in <= 0:
        return "retrying now"
    return f"retrying in {retry_in:.3g} s"
