"""One job attempt: run the claimed job's handler, then settle the outcome in the store."""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import StoreUnavailableError
from ._handlers import Handler
from ._job import Job, JobError
from ._retry import RetryPolicy
from ._store import Claim, JobStore

logger = logging.getLogger("async_endpoints")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt produced: a JSON result, or the error that failed it."""

    result: Any = None
    error: JobError | None = None


@dataclass(frozen=True, slots=True)
class AttemptRunner:
    """Runs attempts of claimed jobs against the registered handlers and settles them."""

    store: JobStore
    handlers: Mapping[str, Handler]
    retry_policy: RetryPolicy
    job_timeout: float
    include_tracebacks: bool = False
    #: How long to keep retrying a settlement while the store is unreachable (the lease
    #: length: past it the job is recovered elsewhere and this outcome would be refused).
    settle_patience: float = 30.0

    async def run(self, claim: Claim) -> Job | None:
        """Run one attempt of ``claim`` and settle it; None when the claim was lost meanwhile.

        Cancellation (shutdown past the grace period, or a lost lease) propagates without
        settling: the job is left to stale-claim recovery.
        """
        outcome = await self.attempt(claim.job)
        return await asyncio.shield(self._settle_patiently(claim, outcome))

    async def _settle_patiently(self, claim: Claim, outcome: Outcome) -> Job | None:
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.settle_patience
        delay = 0.05
        while True:
            try:
                return await self.settle(claim, outcome)
            except StoreUnavailableError as exc:
                if loop.time() + delay > give_up_at:
                    logger.error("job %s: could not record its outcome: %s", claim.job.id, exc)
                    raise
                logger.warning(
                    "job %s: store unavailable, settling again in %.2fs", claim.job.id, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def attempt(self, job: Job) -> Outcome:
        """Run the handler once, turning every failure into an `Outcome` with an error."""
        handler = self.handlers.get(job.name)
        if handler is None:
            return Outcome(
                error=JobError(f"no handler is registered for {job.name!r}", "UnknownJob")
            )
        try:
            context = handler.context(job)
            async with asyncio.timeout(self.job_timeout):
                value = await handler.function(context)
            return Outcome(result=handler.dump_result(value))
        except TimeoutError as exc:
            if isinstance(exc.__cause__, asyncio.CancelledError):
                message = f"the attempt ran longer than job_timeout ({self.job_timeout:g} s)"
                return Outcome(error=JobError(message, "JobTimeout"))
            return Outcome(error=self._error(exc))
        except Exception as exc:
            return Outcome(error=self._error(exc))

    async def settle(self, claim: Claim, outcome: Outcome) -> Job | None:
        """Record the outcome; a lost claim (token mismatch) is logged and ignored."""
        job = claim.job
        if outcome.error is None:
            settled = await self.store.complete(claim, outcome.result)
        else:
            retry_in = self.retry_policy.retry_in(job.retry_count, job.max_retries)
            settled = await self.store.fail(claim, outcome.error, retry_in=retry_in)
            if settled is not None:
                logger.warning(
                    "job %s (%s) attempt %d failed: %s: %s",
                    job.id,
                    job.name,
                    job.retry_count + 1,
                    outcome.error.type,
                    outcome.error.message,
                )
        if settled is None:
            logger.warning("job %s: claim lost before settling; the outcome was dropped", job.id)
        return settled

    def _error(self, exc: BaseException) -> JobError:
        trace = "".join(traceback.format_exception(exc)) if self.include_tracebacks else None
        message = str(exc) or type(exc).__name__
        return JobError(message, type(exc).__name__, trace)
