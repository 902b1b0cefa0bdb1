"""Fixtures for the Redis-specific tests: stores with a fresh prefix each.

The servers themselves (``redis_server``, ``own_redis_server``, ``redis_cluster``) and the
``prefix`` fixture live in tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from async_endpoints_redis import RedisJobStore
from tests import redis_servers

StoreFactory = Callable[..., Awaitable[RedisJobStore]]


@pytest.fixture
async def make_store(
    redis_server: redis_servers.RedisServer, prefix: str
) -> AsyncIterator[StoreFactory]:
    """Build started stores (each with its own client) on the shared server and prefix."""
    stores: list[RedisJobStore] = []

    async def make(url: str | None = None, **options: Any) -> RedisJobStore:
        options.setdefault("prefix", prefix)
        if "client" not in options:
            options["url"] = url or redis_server.url
        store = RedisJobStore(**options)
        stores.append(store)
        await store.start()
        return store

    yield make
    for store in stores:
        await store.aclose()


@pytest.fixture
async def store(make_store: StoreFactory) -> RedisJobStore:
    """A started store on the shared server."""
    return await make_store()


@pytest.fixture
async def raw_redis(redis_server: redis_servers.RedisServer) -> AsyncIterator[Redis]:
    """A plain client on the shared server, for looking at and tampering with keys."""
    client = Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def steady_offers(monkeypatch: pytest.MonkeyPatch) -> None:
    """An idle worker's offer stands for the whole test instead of being renewed every
    second: a test that offers, then submits, expects the job handed over, which a renewal
    falling between the two (a stall of about a second on a loaded machine) would not do
    (the offer ends locally, the job handed meanwhile goes back to its queue)."""
    from async_endpoints_redis import _waits

    monkeypatch.setattr(_waits, "_OFFER_RENEW", 30.0)
    monkeypatch.setattr(_waits, "_OFFER_TTL", 60.0)
