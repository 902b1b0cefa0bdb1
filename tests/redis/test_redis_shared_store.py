"""One store object shared by several AsyncEndpoints of a process stays open until the
last of them stops: the first to stop does not close it under the others."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from starlette.applications import Starlette

from async_endpoints import AsyncContext, AsyncEndpoints, InMemoryJobStore, JobStatus, JobStore
from async_endpoints_redis import RedisJobStore
from tests.redis_servers import RedisServer


async def ok(ctx: AsyncContext[None]) -> str:
    return "ok"


def two_on(store: JobStore) -> tuple[AsyncEndpoints, AsyncEndpoints]:
    pair = AsyncEndpoints(Starlette(), store=store), AsyncEndpoints(Starlette(), store=store)
    for endpoints in pair:
        endpoints.add_handler(ok, name="Ok")
    return pair


@pytest.mark.parametrize("kind", ["redis", "memory"])
async def test_the_store_stays_open_for_the_others_when_one_stops(
    redis_server: RedisServer, prefix: str, kind: str
) -> None:
    make: Callable[[], JobStore] = (
        (lambda: RedisJobStore(redis_server.url, prefix=prefix))
        if kind == "redis"
        else InMemoryJobStore
    )
    store = make()
    first, second = two_on(store)
    async with second.running():
        async with first.running():
            both = await second.submit("Ok")
            assert (await second.wait_for(both.id, timeout=10)).status is JobStatus.COMPLETED
        after = await second.submit("Ok")  # the first stopped: the store is still open
        assert (await second.wait_for(after.id, timeout=10)).result == "ok"
    if isinstance(store, RedisJobStore):  # the last one out closed it
        assert store._connection.closed
