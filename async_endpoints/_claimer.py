"""`Claimer`: a pool's calls to `JobStore.claim`, and what they tell about the store.

Whether a claim call gave the event loop a turn tells a store whose claims cost a round trip
(Redis: the dispatcher's batched claims save many) from one whose claims are free (the
in-memory store: a job task may take its next job itself, one at a time). A callback
scheduled before the call runs only if the call waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ._store import Claim, JobStore


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
        """Up to ``limit`` due jobs, claimed (see `JobStore.claim`)."""
        waited = asyncio.Event()
        marker = asyncio.get_running_loop().call_soon(waited.set)
        self.under_way = True
        try:
            return await self.store.claim(limit, lease=self.lease, queues=self.queues)
        finally:
            self.under_way = False
            marker.cancel()
            self.waits = waited.is_set()
