"""Background cadences of a pool: stale-claim recovery and lease renewal."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Sequence

from ._errors import StoreUnavailableError
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


async def renew_forever(
    store: JobStore,
    claims: Callable[[], Sequence[Claim]],
    lease: float,
    on_lost: Callable[[set[str]], Collection[str]],
) -> None:
    """Every third of ``lease``, extend the leases of ``claims()`` in one store call.

    Claims the store reports lost (recovered elsewhere) are passed to ``on_lost``, which
    cancels their handlers (their outcome could no longer be recorded) and returns those
    it cancelled. Only these are reported: a claim whose job was settled while the renewal
    was under way is reported lost by the store too, but nothing was lost.
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
        cancelled = on_lost(set(lost)) if lost else ()
        if cancelled:
            logger.warning("lost the claim of %d running job(s); cancelling them", len(cancelled))
