"""``async_endpoints_job_pickup_seconds`` measures due -> started, per attempt: for a
delayed job and for a retry after backoff, from when it became due (its ``run_at``), not
from its creation. On the in-memory store (a manual clock) and on a real Redis server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest

from async_endpoints import AsyncContext, AsyncEndpoints, InMemoryJobStore, Job
from async_endpoints._events import EventKind, LifecycleEvent
from async_endpoints.testing import ManualClock
from async_endpoints_redis import RedisJobStore


def engine_on(store: Any, retry_base_delay: float) -> AsyncEndpoints:
    endpoints = AsyncEndpoints(
        store=store, max_retries=1, retry_base_delay=retry_base_delay, retry_jitter=0
    )

    async def ok(ctx: AsyncContext[None]) -> str:
        return "ok"

    async def flaky(ctx: AsyncContext[None]) -> str:
        if ctx.retry_count == 0:
            raise RuntimeError("first attempt fails")
        return "ok"

    endpoints.add_handler(ok, name="Ok")
    endpoints.add_handler(flaky, name="Flaky")
    endpoints.enable_metrics()
    return endpoints


class Claims:
    """When each attempt was claimed (the STARTED events' jobs, store clock)."""

    def __init__(self, endpoints: AsyncEndpoints) -> None:
        self.at: list[datetime] = []
        endpoints.events.subscribe(self.note)

    def note(self, event: LifecycleEvent) -> None:
        if event.kind is EventKind.STARTED:
            self.at.append(event.job.last_updated_at)


def pickups(endpoints: AsyncEndpoints, name: str) -> tuple[int, float]:
    """(count, sum) of the pickup histogram of ``name``."""
    endpoints.metrics.flush()  # the events noted, counted
    histogram = endpoints.metrics.pickup.get(name)
    return (0, 0.0) if histogram is None else (sum(histogram.counts), histogram.total)


def seconds(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()


@pytest.fixture
async def memory() -> AsyncIterator[tuple[AsyncEndpoints, ManualClock]]:
    clock = ManualClock()
    endpoints = engine_on(InMemoryJobStore(clock=clock), retry_base_delay=30)
    async with endpoints.running(workers=False):
        yield endpoints, clock


async def test_memory_a_delayed_job_counts_from_its_run_at(
    memory: tuple[AsyncEndpoints, ManualClock],
) -> None:
    """Delayed 60 s, claimed 5 s after it became due: picked up in 5 s, not 65."""
    endpoints, clock = memory
    job = await endpoints.submit("Ok", delay=60)
    clock.advance(65)
    claims = Claims(endpoints)
    await endpoints.drain()
    (claimed_at,) = claims.at
    assert job.run_at is not None
    assert seconds(claimed_at, job.created_at) == pytest.approx(65)
    assert pickups(endpoints, "Ok") == (1, pytest.approx(5))


async def test_memory_a_retry_counts_from_the_end_of_its_backoff(
    memory: tuple[AsyncEndpoints, ManualClock],
) -> None:
    """First attempt at once (0 s); it fails, the retry is due 30 s later and claimed 2 s
    after that: the second pickup is 2 s (not 32 from the failure, nor 32 from creation)."""
    endpoints, clock = memory
    await endpoints.submit("Flaky")
    await endpoints.drain()
    assert pickups(endpoints, "Flaky") == (1, pytest.approx(0))
    clock.advance(32)
    await endpoints.drain()
    assert pickups(endpoints, "Flaky") == (2, pytest.approx(2))


@pytest.mark.redis
async def test_redis_delayed_job_and_retry_count_from_when_they_became_due(
    redis_server: Any, prefix: str
) -> None:
    """On Redis (its server clock, real time): a job delayed 1 s and drained 0.4 s after it
    became due; a retry due 1 s after its failure, drained 0.4 s after that. Each pickup is
    claim - run_at, well under claim - created (or claim - failure)."""
    endpoints = engine_on(RedisJobStore(redis_server.url, prefix=prefix), retry_base_delay=1)
    async with endpoints.running(workers=False):
        claims = Claims(endpoints)
        delayed = await endpoints.submit("Ok", delay=1)
        assert delayed.run_at is not None
        await drain_once_past(endpoints, delayed.run_at, 0.4)
        (claimed_at,) = claims.at
        expected = seconds(claimed_at, delayed.run_at)
        assert expected >= 0.4
        assert seconds(claimed_at, delayed.created_at) >= expected + 0.9
        assert pickups(endpoints, "Ok") == (1, pytest.approx(expected, abs=0.002))

        flaky = await endpoints.submit("Flaky")
        await endpoints.drain()
        retrying = await endpoints.get_job(flaky.id)
        assert isinstance(retrying, Job) and retrying.run_at is not None
        first = pickups(endpoints, "Flaky")[1]
        await drain_once_past(endpoints, retrying.run_at, 0.4)
        retry_claimed_at = claims.at[-1]
        expected = seconds(retry_claimed_at, retrying.run_at)
        assert expected >= 0.4
        assert seconds(retry_claimed_at, retrying.last_updated_at) >= expected + 0.9
        count, total = pickups(endpoints, "Flaky")
        assert count == 2
        assert total - first == pytest.approx(expected, abs=0.002)


async def drain_once_past(endpoints: AsyncEndpoints, run_at: datetime, extra: float) -> None:
    """Drain once ``extra`` seconds have passed since ``run_at`` (wall clock: the Redis
    server's runs on this host)."""
    await asyncio.sleep(max(0.0, run_at.timestamp() + extra - time.time()))
    assert await endpoints.drain() == 1
