"""Cron schedules survive a Redis crash: a durable redis-server (AOF, fsync always)
SIGKILLed and restarted keeps every schedule as it was (due time and last job included),
and the scheduler goes on firing them once it is back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from async_endpoints import AsyncContext, AsyncEndpoints
from async_endpoints_redis import RedisJobStore
from tests.redis_servers import RedisServer

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(120)]


async def wait_until(predicate: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not within the deadline"
        await asyncio.sleep(0.05)


async def test_schedules_survive_a_redis_restart_and_keep_firing(
    redis_server: RedisServer,
) -> None:
    """Two schedules, one of which has fired, read back the same after the restart; the
    one-second schedule fires again afterwards."""
    store = RedisJobStore(redis_server.url, prefix="faults-cron", socket_timeout=1.0)
    endpoints = AsyncEndpoints(store=store, polling_interval=0.2)
    runs: list[float] = []

    @endpoints.cron("* * * * * *", name="EverySecond", unique=False)
    async def every_second(ctx: AsyncContext[None]) -> None:
        runs.append(time.monotonic())

    @endpoints.add_handler
    async def purge(ctx: AsyncContext[dict[str, int]]) -> None:
        pass

    async with endpoints.running(workers=True):
        await endpoints.upsert_schedule(
            "nightly", "purge", "0 3 * * *", body={"days": 30}, timezone="Europe/Berlin"
        )
        await wait_until(lambda: runs, timeout=10)
        before = await endpoints.list_schedules()
        assert [s.id for s in before] == ["EverySecond", "nightly"]
        redis_server.stop()
        stopped = time.monotonic()
        redis_server.start()
        after = await endpoints.list_schedules()
        kept = {s.id: s for s in after}
        assert kept["nightly"] == before[1]
        assert kept["EverySecond"].last_job_id is not None
        assert kept["EverySecond"].next_run_at >= before[0].next_run_at  # type: ignore[operator]
        await wait_until(lambda: runs[-1] > stopped + 1, timeout=15)
