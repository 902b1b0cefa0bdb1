"""Background cadences of a pool: stale-claim recovery and lease renewal."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Collection, Sequence

from ._errors import StoreUnavailableError
from ._job import JobStatus
from ._store import Claim, JobStore

logger = logging.getLogger("async_endpoints")


async def recover_forever(store: JobStore, interval: float) -> None:
    """Every ``interval`` seconds, re-queue the jobs whose claim lease expired.

    Runs in every pool; the store makes concurrent recoveries safe.
    """
    while True:
        try:
            recovered = await store.recover()
        except StoreUnavailableError as exc:
            logger.warning("stale-claim recovery skipped, store unavailable: %s", exc)
        except Exception:
            logger.exception("stale-claim recovery failed")
        else:
            if recovered:
                logger.warning("re-queued %d job(s) whose worker stopped renewing", len(recovered))
        await asyncio.sleep(interval)


async def _canceled_jobs(store: JobStore, claims: Sequence[Claim]) -> set[uuid.UUID]:
    """The ids of the jobs of ``claims`` that are ``Canceled`` now (none when the store
    cannot tell: they are then treated as lost)."""
    ids = {claim.job.id for claim in claims}
    try:
        jobs = await asyncio.gather(*(store.get(job_id) for job_id in ids))
    except Exception as exc:
        logger.warning("could not look up jobs whose claim was lost: %s", exc)
        return set()
    return {job.id for job in jobs if job is not None and job.status is JobStatus.CANCELED}


async def renew_forever(
    store: JobStore,
    claims: Callable[[], Sequence[Claim]],
    lease: float,
    on_lost: Callable[[set[str]], Collection[str]],
    on_cancelled: Callable[[uuid.UUID], None] = lambda job_id: None,
) -> None:
    """Every third of ``lease``, extend the leases of ``claims()`` in one store call.

    Claims the store reports lost are looked up: those whose job is ``Canceled`` are passed
    to ``on_cancelled`` (the job's id), as a missed cancel push would have been; the rest
    (recovered elsewhere) to ``on_lost``, which cancels their handlers (their outcome
    could no longer be recorded) and returns those it cancelled. Only these are reported:
    a claim whose job was settled while the renewal was under way is reported lost by the
    store too, but nothing was lost.
    """
    while True:
        await asyncio.sleep(lease / 3)
        held = claims()
        if not held:
            continue
        try:
            lost = await store.renew(held, lease=lease)
        except StoreUnavailableError as exc:
            logger.warning("lease renewal skipped, store unavailable: %s", exc)
            continue
        except Exception:
            logger.exception("lease renewal failed")
            continue
        if not lost:
            continue
        for job_id in await _canceled_jobs(store, [c for c in held if c.token in lost]):
            on_cancelled(job_id)
        cancelled = on_lost(set(lost))
        if cancelled:
            logger.warning("lost the claim of %d running job(s); cancelling them", len(cancelled))
