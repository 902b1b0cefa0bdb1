"""The store contract harness: one `kit` fixture per store implementation.

Each kit gives a fresh, empty store and a way to let its clock move: a `ManualClock` for
the in-memory store, real time for stores whose clock is a server's. Store packages add
their own kits by extending `KIT_FACTORIES` in their conftest.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from async_endpoints import InMemoryJobStore, JobStore
from async_endpoints.testing import ManualClock

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


KIT_FIXTURES = ["memory_kit"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kit" in metafunc.fixturenames:
        metafunc.parametrize("kit", KIT_FIXTURES, indirect=True)


@pytest.fixture
def kit(request: pytest.FixtureRequest) -> StoreKit:
    fixture: StoreKit = request.getfixturevalue(request.param)
    return fixture
