"""A task cancelled while a store call is under way is cancelled: the call never returns
as if nothing happened.

On Python 3.11 redis-py sends every command under ``asyncio.wait_for``, which returns the
result and drops a cancellation that arrives just as the send completes (CPython fixed
``wait_for`` in 3.12). Dropped, a shutdown's cancel left the worker pool's dispatcher in
its next idle wait: stopping an idle pool took ``claim_timeout`` (30 s) about one time in
four. The store raises the dropped cancellation itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable

import pytest

from async_endpoints_redis import RedisJobStore
from tests.redis.conftest import StoreFactory
from tests.redis_servers import RedisClusterProcesses, RedisServer

pytestmark = pytest.mark.redis

TRIALS = 600


async def returned_despite_a_cancel(
    call: Callable[[], Awaitable[object]], spread: float = 0.0012, trials: int = TRIALS
) -> int:
    """How many of ``trials`` tasks running ``call`` returned normally although they were
    cancelled while it ran (each cancelled after 0 to ``spread`` seconds, spread evenly,
    so that the cancellations fall on every moment of the call: before, during and after
    the send)."""
    returned = 0
    for trial in range(trials):

        async def cancelled_call() -> int:
            await call()
            current = asyncio.current_task()
            assert current is not None
            return current.cancelling()

        task = asyncio.create_task(cancelled_call())
        await asyncio.sleep(spread * trial / trials)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            returned += await task > 0
    return returned


async def test_a_cancelled_store_call_on_a_server_raises_cancelled_error(
    store: RedisJobStore,
) -> None:
    """Not one of the cancelled get calls returns as if it had not been cancelled."""
    assert await returned_despite_a_cancel(lambda: store.get(uuid.uuid4())) == 0


async def test_a_cancelled_store_call_on_a_cluster_raises_cancelled_error(
    redis_cluster: RedisClusterProcesses, make_store: StoreFactory
) -> None:
    """The same through a Redis Cluster client."""
    store = await make_store(redis_cluster.url)
    assert await returned_despite_a_cancel(lambda: store.get(uuid.uuid4())) == 0


async def test_a_store_cancelled_during_its_first_call_raises_cancelled_error(
    redis_server: RedisServer, prefix: str
) -> None:
    """A fresh store each time, its first call (which connects and starts it) cancelled
    after 0 to 6 ms: the start sends commands the same way, and no call returns."""

    async def first_call() -> None:
        store = RedisJobStore(redis_server.url, prefix=prefix)
        try:
            await store.get(uuid.uuid4())
        finally:
            await asyncio.shield(store.aclose())

    assert await returned_despite_a_cancel(first_call, spread=0.006, trials=200) == 0
