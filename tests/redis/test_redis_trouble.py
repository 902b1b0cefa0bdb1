"""When a Redis store counts as having met trouble reaching Redis (`_trouble`), which
makes its stale-claim recovery gentle after a quiet spell (``lua/_lib.lua``,
``CLOCK_QUIET``): a call that failed, or that was held up half a second or more however
it ended; on a real server stalled with ``CLIENT PAUSE``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from async_endpoints import StoreUnavailableError
from async_endpoints_redis import RedisJobStore
from tests.redis_servers import RedisServer

pytestmark = pytest.mark.redis


@contextlib.asynccontextmanager
async def started(url: str, prefix: str, timeout: float) -> AsyncIterator[RedisJobStore]:
    store = RedisJobStore(url, prefix=prefix, socket_timeout=timeout)
    await store.start()
    try:
        yield store
    finally:
        await store.aclose()


async def pause(url: str, ms: int) -> None:
    async with Redis.from_url(url) as admin:
        await admin.execute_command("CLIENT", "PAUSE", ms, "ALL")


async def test_prompt_answers_are_no_trouble(own_redis_server: RedisServer, prefix: str) -> None:
    async with started(own_redis_server.url, prefix, timeout=10) as store:
        for _ in range(3):
            await store.recover()
        assert not store._connection.trouble.recent


async def test_an_answer_held_up_in_a_stall_is_trouble(
    own_redis_server: RedisServer, prefix: str
) -> None:
    async with started(own_redis_server.url, prefix, timeout=10) as store:
        await pause(own_redis_server.url, 800)
        assert await store.recover() == []  # answered when the stall ends
        assert store._connection.trouble.recent


async def test_a_call_that_gives_up_in_a_stall_is_trouble(
    own_redis_server: RedisServer, prefix: str
) -> None:
    async with started(own_redis_server.url, prefix, timeout=0.3) as store:
        await pause(own_redis_server.url, 1500)
        with pytest.raises(StoreUnavailableError):
            await store.recover()
        assert store._connection.trouble.recent


async def test_a_call_cancelled_while_held_up_in_a_stall_is_trouble(
    own_redis_server: RedisServer, prefix: str
) -> None:
    async with started(own_redis_server.url, prefix, timeout=10) as store:
        await pause(own_redis_server.url, 1500)
        call = asyncio.ensure_future(store.recover())
        await asyncio.sleep(0.7)
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await call
        assert call.cancelled()
        assert store._connection.trouble.recent


async def test_the_shards_of_a_sharded_store_share_their_trouble(
    own_redis_server: RedisServer, prefix: str
) -> None:
    """A stall met through one shard's call makes every shard's recovery gentle."""
    store = RedisJobStore(own_redis_server.url, prefix=prefix, shards=3)
    await store.start()
    try:
        shards = store._shards
        assert len({id(shard._connection.trouble) for shard in shards}) == 1
        shards[0]._connection.trouble.met()
        assert all(shard._connection.trouble.recent for shard in shards)
    finally:
        await store.aclose()
