"""The kits of the project's stores for the shipped contract suite: a fresh, empty store
each, with the means to let its clock move.

The in-memory store runs on a `ManualClock`; the Redis stores on the server's clock, real
time (a real redis-server and a real 3-master Redis Cluster, started by the fixtures in
tests/conftest.py), each with a peer: a second client on the same key prefix, as another
process has.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from async_endpoints import InMemoryJobStore
from async_endpoints.testing import ManualClock, StoreKit
from async_endpoints_redis import RedisJobStore
from tests.redis_servers import RedisClusterProcesses, RedisServer

RETENTION = 1.0


@pytest.fixture
async def memory_kit() -> AsyncIterator[StoreKit]:
    clock = ManualClock()
    store = InMemoryJobStore(retention=RETENTION, clock=clock)

    async def advance(seconds: float) -> None:
        clock.advance(seconds)
        await asyncio.sleep(0)

    await store.start()
    yield StoreKit(store, advance, lease=10.0, retention=RETENTION)
    await store.aclose()


async def redis_kit_on(url: str) -> AsyncIterator[StoreKit]:
    prefix = f"contract-{uuid.uuid4().hex[:8]}"
    store = RedisJobStore(url, prefix=prefix, retention=RETENTION)
    peer = RedisJobStore(url, prefix=prefix, retention=RETENTION)
    await store.start()
    await peer.start()
    # The server's clock is real time; a one-second lease keeps the waits short.
    yield StoreKit(store, asyncio.sleep, lease=1.0, retention=RETENTION, peer=peer)
    await peer.aclose()
    await store.aclose()


@pytest.fixture
async def redis_kit(redis_server: RedisServer) -> AsyncIterator[StoreKit]:
    async for kit in redis_kit_on(redis_server.url):
        yield kit


@pytest.fixture
async def valkey_kit(valkey_node: RedisServer) -> AsyncIterator[StoreKit]:
    async for kit in redis_kit_on(valkey_node.url):
        yield kit


@pytest.fixture
async def cluster_kit(redis_cluster: RedisClusterProcesses) -> AsyncIterator[StoreKit]:
    async for kit in redis_kit_on(redis_cluster.url):
        yield kit
