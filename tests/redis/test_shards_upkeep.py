"""The layout upkeep's failure paths: old shards that cannot start are closed and tried
again, an app's own client short of connections is told of it, and a store closed during
an upkeep leaves nothing subscribed."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from async_endpoints import StoreUnavailableError
from async_endpoints._job import NewJob
from async_endpoints_redis import RedisJobStore
from async_endpoints_redis._client import CallGate
from async_endpoints_redis._keys import Keys
from async_endpoints_redis._shard_layout import ShardLayout
from async_endpoints_redis._shard_store import ShardedRedisJobStore
from tests import redis_servers
from tests.redis.conftest import StoreFactory
from tests.redis.support import eventually

pytestmark = pytest.mark.redis


def new_job() -> NewJob:
    return NewJob(uuid.uuid4(), "Echo", 0)


def only_in(prefix: str, count: int, other: int) -> list[str]:
    """The shard prefixes of the layout of ``count`` shards that the layout of ``other``
    shards lacks (those a store of ``other`` shards adds as old shards)."""
    theirs = set(ShardLayout(prefix, other).prefixes)
    return [one for one in ShardLayout(prefix, count).prefixes if one not in theirs]


async def subscribers(raw_redis: Redis, prefixes: list[str]) -> int:
    """How many connections listen to the wake-ups of these shards, all stores together."""
    channels = [Keys(one).key_prefix + "wake" for one in prefixes]
    replies = await raw_redis.pubsub_numsub(*channels)
    return sum(int(count) for _, count in replies)


class StartTrap:
    """`RedisJobStore.start` made to fail, or to hang, for the shard of one prefix."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, prefix: str, mode: str) -> None:
        self.prefix, self.mode = prefix, mode
        self.armed = True
        self.reached = asyncio.Event()
        original = RedisJobStore.start

        async def start(store: RedisJobStore) -> None:
            if self.armed and store._arguments["prefix"] == self.prefix:
                self.reached.set()
                if self.mode == "fail":
                    raise StoreUnavailableError("this shard's start fails for the test")
                await asyncio.Event().wait()  # hangs until cancelled
            await original(store)

        monkeypatch.setattr(RedisJobStore, "start", start)


@pytest.fixture
def two_then_six(prefix: str) -> Iterator[list[str]]:
    """The prefixes a 2-shard store adds when a 6-shard store starts on its prefix."""
    yield only_in(prefix, 6, 2)


async def test_old_shards_whose_start_failed_are_closed_and_started_at_the_next_upkeep(
    make_store: StoreFactory,
    raw_redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    two_then_six: list[str],
) -> None:
    """When one of an old layout's shards cannot start, the upkeep fails with that error,
    the shards of that layout that did start are closed (none stays subscribed), the
    pool's call gate admits as many calls as before (the turns taken for their
    subscriptions are given back) and the store serves what it served before; the next
    upkeep starts them all, and the jobs stored there are found."""
    older = await make_store(shards=2)
    newer = await make_store(shards=6)
    assert isinstance(older, ShardedRedisJobStore)
    jobs = [await newer.enqueue(new_job()) for _ in range(12)]
    trap = StartTrap(monkeypatch, two_then_six[-1], "fail")
    assert await subscribers(raw_redis, two_then_six) == len(two_then_six)  # the newer's
    gate = older._shards[0]._connection._gate
    assert isinstance(gate, CallGate)
    admitted = gate.capacity

    with pytest.raises(StoreUnavailableError, match="fails for the test"):
        await older._layout_upkeep()
    assert len(older._shards) == 2
    assert await subscribers(raw_redis, two_then_six) == len(two_then_six)
    assert older._shards[0]._connection._gate is gate
    assert gate.capacity == admitted and gate._value == admitted  # type: ignore[attr-defined]

    trap.armed = False
    await older._layout_upkeep()
    assert len(older._shards) == 6
    assert await subscribers(raw_redis, two_then_six) == 2 * len(two_then_six)
    assert all([await older.get(job.id) for job in jobs])


def library_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The errors the library logged (not, say, asyncio's report of a client another test
    left unclosed, which the garbage collector may finalize during this one)."""
    return [
        one
        for one in caplog.records
        if one.levelno >= logging.ERROR and one.name.startswith("async_endpoints")
    ]


@pytest.mark.parametrize(("max_connections", "told"), [(7, True), (8, False)])
async def test_a_client_the_app_gave_that_is_short_of_connections_for_old_shards_is_told_once(
    make_store: StoreFactory,
    redis_server: redis_servers.RedisServer,
    caplog: pytest.LogCaptureFixture,
    two_then_six: list[str],
    max_connections: int,
    told: bool,
) -> None:
    """A store on the app's own client does not resize that client's pool: when the old
    shards it now serves need more connections than the pool has (one per shard's
    subscription and two for calls), it logs an error naming how many, once for that
    layout however often it looks, and nothing when the pool has room. Either way the
    upkeep's own calls wait their turn at the pool (redis-py's default pool refuses a
    call beyond its bound) and the old shards' jobs are found."""
    client = Redis.from_url(redis_server.url, max_connections=max_connections)
    try:
        older = await make_store(shards=2, client=client)
        assert isinstance(older, ShardedRedisJobStore)
        newer = await make_store(shards=6)
        jobs = [await newer.enqueue(new_job()) for _ in range(12)]
        with caplog.at_level(logging.ERROR, logger="async_endpoints_redis"):
            await older._layout_upkeep()
            await older._layout_upkeep()
        serving = 2 + len(two_then_six)
        assert len(older._shards) == serving
        said = [one.getMessage() for one in library_errors(caplog)]
        if told:
            assert len(said) == 1
            assert f"serves {serving} shards" in said[0]
            assert f"at least {serving + 2} connections" in said[0]
        else:
            assert said == []
        assert client.connection_pool.max_connections == max_connections
        assert all(await asyncio.gather(*(older.get(job.id) for job in jobs)))
    finally:
        await client.aclose()


async def test_a_store_closed_while_starting_old_shards_leaves_none_subscribed(
    make_store: StoreFactory,
    raw_redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    two_then_six: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Closing a store whose background upkeep is starting an old layout's shards ends
    that upkeep: the shards it had started are closed with the store, nothing is logged
    as an error, and a closed store starts no upkeep again."""
    older = await make_store(shards=2)
    await make_store(shards=6)
    assert isinstance(older, ShardedRedisJobStore)
    trap = StartTrap(monkeypatch, two_then_six[-1], "hang")
    older._next_upkeep = 0.0
    with caplog.at_level(logging.ERROR, logger="async_endpoints_redis"):
        await older.count_waiting()  # a store in use starts its upkeep in the background
        async with asyncio.timeout(10):
            await trap.reached.wait()
        async with asyncio.timeout(10):
            await older.aclose()
    assert library_errors(caplog) == []
    assert await subscribers(raw_redis, two_then_six) == len(two_then_six)  # the newer's
    assert older._shards == []

    older._next_upkeep = 0.0
    older._keep_layouts_current()
    assert older._upkeep_task is None
    await older._layout_upkeep()  # a turn taken after the close does nothing
    assert older._shards == []


async def test_calls_under_way_while_old_shards_start_find_a_connection_in_the_apps_pool(
    make_store: StoreFactory, redis_server: redis_servers.RedisServer, two_then_six: list[str]
) -> None:
    """With the app's own client (redis-py's default pool refuses a connection beyond its
    bound), calls made without pause while the upkeep starts an old layout's shards all
    answer, and so does the upkeep: the pool's gate admits fewer calls before those
    shards open their connections, not after."""
    serving = 2 + len(two_then_six)
    client = Redis.from_url(redis_server.url, max_connections=serving + 2)
    try:
        older = await make_store(shards=2, client=client)
        assert isinstance(older, ShardedRedisJobStore)
        await make_store(shards=6)
        failures: list[BaseException] = []
        answered = [0]
        stop = asyncio.Event()

        async def busy() -> None:
            while not stop.is_set():
                try:
                    await older.count_waiting()
                    answered[0] += 1
                except Exception as exc:
                    failures.append(exc)

        async def answered_more(than: int) -> bool:
            return answered[0] >= than + 40

        callers = [asyncio.create_task(busy()) for _ in range(20)]
        try:
            await eventually(lambda: answered_more(0))  # every caller is under way
            await older._layout_upkeep()
            after = answered[0]
            await eventually(lambda: answered_more(after))
        finally:
            stop.set()
            await asyncio.gather(*callers)
        assert len(older._shards) == serving
        assert failures == []
    finally:
        await client.aclose()
