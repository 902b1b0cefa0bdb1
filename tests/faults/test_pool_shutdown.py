"""Shutdown racing the dispatcher: a claim under way when the pool stops (in-process)."""

from __future__ import annotations

import asyncio
from typing import Any

from async_endpoints import AsyncContext, AsyncEndpoints, InMemoryJobStore, JobStatus


class SlowClaimStore(InMemoryJobStore):
    """An in-memory store whose claims take a while, as a round trip to Redis does."""

    def __init__(self) -> None:
        super().__init__()
        self.claim_under_way = asyncio.Event()

    async def claim(self, limit: int, **options: Any) -> list[Any]:
        claims = await super().claim(limit, **options)
        if claims:
            self.claim_under_way.set()
            await asyncio.sleep(0.2)  # the reply still on its way back
        return claims


async def test_jobs_claimed_while_the_pool_stops_are_run_not_stranded() -> None:
    """A claim under way at shutdown hands its jobs over: they run, no attempt is lost."""
    store = SlowClaimStore()
    engine = AsyncEndpoints(store=store, polling_interval=60, claim_timeout=30)

    async def noop(ctx: AsyncContext[None]) -> str:
        return "ran"

    engine.add_handler(noop)
    async with engine.running():
        job = await engine.submit("noop")
        async with asyncio.timeout(5):
            await store.claim_under_way.wait()
    done = await store.get(job.id)
    assert done is not None
    assert (done.status, done.result, done.retry_count) == (JobStatus.COMPLETED, "ran", 0)
