"""`Claimer`: a pool's calls to `JobStore.claim`, and what they tell about the store.

Whether a claim call gave the event loop a turn tells a store whose claims cost a round trip
(Redis: the dispatcher's batched claims save many) from one whose claims are free (the
in-memory store: a job task may take its next job itself, one at a time). A callback
scheduled before the call runs only if the call waits.

A claim's lease runs from when the store granted it, which this process cannot see; it can
see when it asked, which is no later. An answer that took longer than a third of a lease
(a store that stalled, a reply held up on the way) may bring a lease that is nearly over,
or over: the store may already have handed the job to another worker, which would then run
it beside this one. Such claims are renewed before their handlers start, and those the
store reports lost (recovered or cancelled meanwhile) are not run. When that renewal
fails, they run under the pool's self-fencing, their leases counted from when the claim
was sent (`leased_from`): their handlers are cancelled when that lease runs out unrenewed,
no later than the store may hand them to another worker. A prompt answer needs no
renewal: the pool's lease renewal (`renew_forever`) reaches it within a third of a lease.
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
        #: How many jobs the store gave the last call, those not returned included (a
        #: call given fewer than it asked for found its queues dry).
        self.taken = 0
        #: The loop time the leases of the last call's claims count from at the latest:
        #: when the claim, or the renewal of a slow one, was sent.
        self.leased_from = 0.0
        #: Claims of the last call found lost before they started (recovered or cancelled
        #: meanwhile): not returned, for the pool to report (`AttemptRunner.lost_unstarted`).
        self.dropped: list[Claim] = []

    async def claim(self, limit: int) -> list[Claim]:
        """Up to ``limit`` due jobs, claimed (see `JobStore.claim`); see the module
        docstring for a slow answer."""
        loop = asyncio.get_running_loop()
        waited = asyncio.Event()
        marker = loop.call_soon(waited.set)
        self.under_way = True
        self.dropped = []
        asked = loop.time()
        try:
            claims = await self.store.claim(limit, lease=self.lease, queues=self.queues)
            self.taken, self.leased_from = len(claims), asked
            took = loop.time() - asked
            if claims and took > self.lease * SLOW_CLAIM:
                claims = await self._renewed(claims, took)
            return claims
        finally:
            self.under_way = False
            marker.cancel()
            self.waits = waited.is_set()

    async def _renewed(self, claims: list[Claim], took: float) -> list[Claim]:
        """``claims`` (answered after ``took`` seconds) but those the store reports lost,
        their leases renewed. When the renewal fails they are all returned, their leases
        counting from the claim's sending; a part of a store that could not be reached
        leaves its claims so too (`PartialRenewalError`), the others renewed."""
        sent = asyncio.get_running_loop().time()
        try:
            lost = await self.store.renew(claims, lease=self.lease)
        except PartialRenewalError as exc:
            lost = exc.lost  # the unknown ones run on as below, counted from the claim
        except Exception as exc:
            message = (
                "the leases of %d job(s) claimed in a call that took %.1f s (over a third"
                " of claim_timeout) could not be renewed (%s): they run, their handlers"
                " cancelled when those leases run out unrenewed"
            )
            logger.warning(message, len(claims), took, exc)
            return claims
        else:
            self.leased_from = sent
        self.dropped = [claim for claim in claims if claim.token in lost]
        for claim in self.dropped:
            job = claim.job
            message = (
                "job %s: not started: its claim took %.1f s, longer than a third of"
                " claim_timeout, and was lost meanwhile (recovered or cancelled)"
            )
            logger.warning(message, job.id, took, extra=job_extra(job))
        return [claim for claim in claims if claim.token not in lost]
