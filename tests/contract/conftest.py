"""The store contract harness: one `kit` fixture per store implementation.

Each kit gives a fresh, empty store and a way to let its clock move: a `ManualClock` for
the in-memory store, real time for stores whose clock is a server's (a real redis-server
and a real 3-master Redis Cluster, started by the fixtures in tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from async_endpoints import InMemoryJobStore, JobStore
from async_endpoints.testing import ManualClock
from async_endpoints_redis import RedisJobStore
from tests.redis_servers import RedisClusterProcesses, RedisServer

RETENTION = 1.0


@dataclass
class StoreKit:
    """A store under test and the means to move its clock forward."""

    store: JobStore
    advance: Callable[[float], Awaitable[None]]
    #: Short enough for tests, long enough for a claim + settle round trip on a busy machine.
    lease: float


@pytest.fixture
async def memory_kit() -> AsyncIterator[StoreKit]:
    clock = ManualClock()
    store = InMemoryJobStore(retention=RETENTION, clock=clock)

    async def advance(seconds: float) -> None:
        clock.advance(seconds)
        await asyncio.sleep(0)

    await store.start()
    yield StoreKit(store, advance, lease=10.0)
    await store.aclose()


async def redis_kit_on(url: str) -> StoreKit:
    store = RedisJobStore(url, prefix=f"contract-{uuid.uuid4().hex[:8]}", retention=RETENTION)
    await store.start()
    # The server's clock is real time; a one-second lease keeps the waits short.
    return StoreKit(store, asyncio.sleep, lease=1.0)


@pytest.fixture
async def redis_kit(redis_server: RedisServer) -> AsyncIterator[StoreKit]:
    kit = await redis_kit_on(redis_server.url)
    yield kit
    await kit.store.aclose()


@pytest.fixture
async def cluster_kit(redis_cluster: RedisClusterProcesses) -> AsyncIterator[StoreKit]:
    kit = await redis_kit_on(redis_cluster.url)
    yield kit
    await kit.store.aclose()


KIT_FIXTURES = ["memory_kit", "redis_kit", "cluster_kit"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kit" in metafunc.fixturenames:
        metafunc.parametrize("kit", KIT_FIXTURES, indirect=True)


@pytest.fixture
def kit(request: pytest.FixtureRequest) -> StoreKit:
    fixture: StoreKit = request.getfixturevalue(request.param)
    return fixture
