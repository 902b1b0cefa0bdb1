"""Cron schedules after Redis lost its data: the schedules a process declared with ``cron``
are stored again within seconds and fire again (schedules upserted at run time are gone,
as the README says); a schedule removed at run time is not brought back, since nothing
was lost. On a standalone server restarted without persistence, and on a sharded store on
a Redis Cluster whose keys were deleted."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import pytest
from redis.asyncio import Redis, RedisCluster

from async_endpoints import AsyncContext, AsyncEndpoints, Schedule
from async_endpoints._job import JobRequest, NewJob
from async_endpoints_redis import RedisJobStore
from tests.call_counts import CallCount
from tests.redis.support import eventually
from tests.redis_servers import RedisClusterProcesses, RedisServer

pytestmark = pytest.mark.redis

Lose = Callable[[], Awaitable[None]]


class CronApp:
    """Endpoints declaring an every-second schedule ``EverySecond``, and its runs."""

    def __init__(self, store: RedisJobStore) -> None:
        self.endpoints = AsyncEndpoints(store=store, polling_interval=0.1)
        self.runs: list[float] = []

        @self.endpoints.cron("* * * * * *", name="EverySecond", unique=False)
        async def every_second(ctx: AsyncContext[None]) -> None:
            self.runs.append(time.monotonic())

        @self.endpoints.add_handler
        async def purge(ctx: AsyncContext[None]) -> None:
            pass

    async def ids(self) -> list[str]:
        return [schedule.id for schedule in await self.endpoints.list_schedules()]

    async def ran_since(self, moment: float) -> bool:
        return any(run > moment for run in self.runs)


@pytest.fixture(params=["restarted server", "cluster keys deleted"])
async def app_and_loss(
    request: pytest.FixtureRequest, own_redis_server: RedisServer, prefix: str
) -> AsyncIterator[tuple[CronApp, Lose]]:
    """The app on a store, and how that store loses every key: a standalone server
    without persistence restarted, or a sharded store's keys deleted on a Cluster."""
    if request.param == "restarted server":
        store = RedisJobStore(own_redis_server.url, prefix=prefix, socket_timeout=1.0)

        async def lose() -> None:
            own_redis_server.stop()
            own_redis_server.start()

        yield CronApp(store), lose
        return
    cluster: RedisClusterProcesses = request.getfixturevalue("redis_cluster")
    store = RedisJobStore(cluster.url, prefix=prefix, shards=3)
    raw = RedisCluster.from_url(cluster.url, decode_responses=True)

    async def delete_keys() -> None:
        for key in [key async for key in raw.scan_iter(match=f"*{prefix}*")]:
            await raw.delete(key)

    try:
        yield CronApp(store), delete_keys
    finally:
        await raw.aclose()


async def test_declared_schedules_are_stored_again_after_redis_lost_them(
    app_and_loss: tuple[CronApp, Lose], caplog: pytest.LogCaptureFixture
) -> None:
    """After the loss the declared schedule is listed and firing again within seconds; the
    schedule upserted at run time is gone; a warning says what happened."""
    app, lose = app_and_loss
    caplog.set_level(logging.WARNING, logger="async_endpoints")
    async with app.endpoints.running(workers=True):
        await app.endpoints.upsert_schedule("purge-nightly", "purge", "0 3 * * *")
        await eventually(lambda: app.ran_since(0), timeout=15)
        await lose()
        lost_at = time.monotonic()
        assert await eventually(app.ids, timeout=15) == ["EverySecond"]
        await eventually(lambda: app.ran_since(lost_at), timeout=15)
    warnings = [r.getMessage() for r in caplog.records if "lost its cron" in r.getMessage()]
    assert warnings, "no warning about the lost schedules"
    assert "1 declared schedule(s) stored again" in warnings[0]


async def test_a_declared_schedule_removed_at_run_time_is_not_brought_back(
    redis_server: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Removing a schedule loses no data: the schedulers' epoch checks go on (three of
    them after the removal) and none stores the schedule again."""
    url = redis_server.url
    app = CronApp(RedisJobStore(url, prefix=prefix))
    other = AsyncEndpoints(store=RedisJobStore(url, prefix=prefix), run_workers=False)
    checks = CallCount(monkeypatch, app.endpoints.store, "schedule_epoch")
    async with app.endpoints.running(workers=True), other.running():
        await eventually(app.ids)
        assert await other.remove_schedule("EverySecond") is True
        removed_at = checks.count

        async def checked_thrice() -> bool:
            return checks.count >= removed_at + 3

        await eventually(checked_thrice, timeout=15)
        assert await app.ids() == []


@pytest.mark.parametrize("where", ["server", "cluster shards=3"])
async def test_the_epoch_changes_only_when_the_keys_are_gone(
    request: pytest.FixtureRequest, prefix: str, where: str
) -> None:
    """The same token for every client of the store while its keys live, whatever the
    schedules do (upserted, fired, removed); a new one once the prefix's keys are gone."""
    if where == "server":
        url, options = request.getfixturevalue("redis_server").url, {}
        raw: Redis | RedisCluster = Redis.from_url(url, decode_responses=True)
    else:
        url, options = request.getfixturevalue("redis_cluster").url, {"shards": 3}
        raw = RedisCluster.from_url(url, decode_responses=True)
    first = RedisJobStore(url, prefix=prefix, **options)
    second = RedisJobStore(url, prefix=prefix, **options)
    try:
        token = await first.schedule_epoch()
        assert token and await second.schedule_epoch() == token
        due = (await first.schedule_time()).replace(microsecond=0)
        await first.upsert_schedule(Schedule("s", "purge", "* * * * *", next_run_at=due))
        (found,) = await second.due_schedules(10)
        await second.fire_schedule(found, due + timedelta(minutes=1), new_purge_job())
        await first.remove_schedule("s")
        assert await second.schedule_epoch() == token
        for key in [key async for key in raw.scan_iter(match=f"*{prefix}*")]:
            await raw.delete(key)
        renewed = await second.schedule_epoch()
        assert renewed != token
        assert await first.schedule_epoch() == renewed
    finally:
        await raw.aclose()
        await first.aclose()
        await second.aclose()


def new_purge_job() -> NewJob:
    return NewJob(uuid.uuid4(), "purge", 0, JobRequest())


class EpochReads(RedisJobStore):
    """A Redis store noting each epoch it read."""

    epochs: list[str]

    async def schedule_epoch(self) -> str:
        epoch = await super().schedule_epoch()
        self.epochs.append(epoch)
        return epoch


async def test_a_pool_without_schedules_reports_that_the_stores_data_was_reset(
    own_redis_server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """No schedule is declared, so no scheduler would notice: the pool's recovery pass
    reads the store's epoch and, once Redis lost its data (flushed here), logs one error
    saying every job, batch and queue pause stored before is gone; nothing is said while
    the data is kept."""
    caplog.set_level(logging.ERROR, logger="async_endpoints")
    store = EpochReads(own_redis_server.url, prefix=prefix)
    store.epochs = []
    endpoints = AsyncEndpoints(store=store, recovery_interval=0.05)

    @endpoints.add_handler
    async def work(ctx: AsyncContext[None]) -> None:
        pass

    def told() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "the store's data was reset" in r.getMessage()]

    async def read_past(count: int) -> bool:
        return len(store.epochs) > count

    client = Redis.from_url(own_redis_server.url)
    try:
        async with endpoints.running():
            job = await endpoints.submit("work")
            await endpoints.wait_for(job.id, timeout=10)
            await eventually(lambda: read_past(3))
            assert told() == [] and len(set(store.epochs)) == 1
            await client.flushall()
            flushed = len(store.epochs)
            await eventually(lambda: read_past(flushed + 3))
            assert await endpoints.store.get(job.id) is None
        assert len(set(store.epochs)) == 2
        (record,) = told()
        assert "batch" in record.getMessage() and "appendonly yes" in record.getMessage()
    finally:
        await client.aclose()
