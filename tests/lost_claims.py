"""A running attempt whose claim is taken back as if its worker had hung: the lease lapses
on a manual clock, recovery re-queues the job, and the pool's next renewal finds the claim
lost and cancels the handler; the next attempt returns "second attempt"."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from async_endpoints import AsyncContext, AsyncEndpoints, InMemoryJobStore, Job
from async_endpoints.testing import ManualClock

#: Real seconds: the pool renews every third of it, so a loaded machine does not fence
#: the attempt before the renewal finds its claim lost.
LEASE = 0.9


@asynccontextmanager
async def a_lost_claim() -> AsyncIterator[tuple[AsyncEndpoints, Job]]:
    """The running engine (handler "Hangs") and the job whose first attempt's claim was
    just recovered from under it; the engine stops when the block ends."""
    clock = ManualClock()
    store = InMemoryJobStore(clock=clock)
    endpoints = AsyncEndpoints(store=store, claim_timeout=LEASE, recovery_interval=60)
    started = asyncio.Event()

    async def hangs(ctx: AsyncContext[None]) -> str:
        if ctx.retry_count == 0:  # the attempt whose claim is lost; the next one ends
            started.set()
            await asyncio.Event().wait()
        return "second attempt"

    endpoints.add_handler(hangs, name="Hangs")
    async with endpoints.running():
        job = await endpoints.submit("Hangs")
        async with asyncio.timeout(5):
            await started.wait()
        clock.advance(LEASE + 0.1)  # the lease lapses as if this worker had hung
        assert await store.recover() == [job.id]
        yield endpoints, job
