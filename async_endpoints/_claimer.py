"""`Claimer`: a pool's calls to `JobStore.claim`, and what they tell about the store.

Whether a claim call gave the event loop a turn tells a store whose claims cost a round trip
(Redis: the dispatcher's batched claims save many) from one whose claims are free (the
in-memory store: a job task may take its next job itself, one at a time). A callback
scheduled before the call runs only if the call waits.

A claim's lease runs from when the store granted it, which this process cannot see; it can
see when it asked. An answer that took longer than a third of a lease (a store that stalled,
a reply held up on the way) may bring a lease that is nearly over, or over: the store may
already have handed the job to another worker, which would then run it beside this one.
Such claims are renewed before their handlers start, and those the store reports lost
(recovered or cancelled meanwhile) are not run. A prompt answer needs no renewal: the
pool's lease renewal (`renew_forever`) reaches it within a third of a lease.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from ._errors import PartialRenewalError
from ._logs import job_extra
from ._store import Claim, JobStore

logger = logging.getLogger("async_endpoints")

#: The part of a lease a claim's answer may take before its leases are renewed at once.
SLOW_CLAIM = 1 / 3


class Claimer:
    """Claims jobs of ``queues`` (highest priority first) from ``store`` with leases of
    ``lease`` seconds."""

    def __init__(self, store: JobStore, lease: float, queues: Sequence[str]) -> None:
        self.store = store
        self.lease = lease
        self.queues = tuple(queues)
        #: The last claim call waited (a round trip, say); True until one has been made.
        self.waits = True
        #: A claim call is under way (shutdown lets it finish: see `WorkerPool.stop`).
        self.under_way = False

    async def claim(self, limit: int) -> list[Claim]:
        """Up to ``limit`` due jobs, claimed (see `JobStore.claim`), each with a lease
        that has at least two thirds of ``lease`` left when returned."""
        loop = asyncio.get_running_loop()
        waited = asyncio.Event()
        marker = loop.call_soon(waited.set)
        self.under_way = True
        asked = loop.time()
        try:
            claims = await self.store.claim(limit, lease=self.lease, queues=self.queues)
            took = loop.time() - asked
            if claims and took > self.lease * SLOW_CLAIM:
                claims = await self._renewed(claims, took)
            return claims
        finally:
            self.under_way = False
            marker.cancel()
            self.waits = waited.is_set()

    async def _renewed(self, claims: list[Claim], took: float) -> list[Claim]:
        """Those of ``claims`` (answered after ``took`` seconds) whose leases the store
        renewed. The others are not run: a claim reported lost was recovered or cancelled
        meanwhile, and one whose renewal failed may have been; recovery takes it back
        when its lease runs out."""
        try:
            lost = await self.store.renew(claims, lease=self.lease)
        except PartialRenewalError as exc:
            lost = exc.lost | exc.unknown
        except Exception as exc:
            unrenewed = (
                "%d claimed job(s) not started: the claim took %.1f s, longer than a third"
                " of claim_timeout, and renewing their leases failed (%s); recovery takes"
                " them back when their leases run out"
            )
            logger.warning(unrenewed, len(claims), took, exc)
            return []
        for claim in claims:
            if claim.token in lost:
                job = claim.job
                message = (
                    "job %s: not started: its claim took %.1f s, longer than a third of"
                    " claim_timeout, and was lost meanwhile (recovered or cancelled)"
                )
                logger.warning(message, job.id, took, extra=job_extra(job))
        return [claim for claim in claims if claim.token not in lost]
