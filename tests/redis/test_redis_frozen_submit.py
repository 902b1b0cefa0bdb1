"""A submission whose enqueue Redis received but did not answer in time (the server was
frozen) answers 503; once Redis resumes, it carries the enqueue out and stores nothing
(tests/redis/test_redis_late_submissions.py), but a reply already on its way back when the
caller gave up can still have stored it. Either way a retry with the same Idempotency-Key
never makes a second job of it."""

from __future__ import annotations

import signal

import httpx
import pytest
from fastapi import FastAPI

from async_endpoints import AsyncContext, AsyncEndpoints
from async_endpoints_redis import RedisJobStore
from tests.redis_servers import RedisServer

pytestmark = pytest.mark.redis


async def test_a_retry_with_the_same_key_after_a_frozen_redis_503_leaves_one_job(
    own_redis_server: RedisServer, prefix: str
) -> None:
    """Redis frozen while a POST with an Idempotency-Key waits for its enqueue: 503 with
    Retry-After. Resumed, the retry with that key answers 202, and the store holds one
    job for it, whether the enqueue that timed out ran or not."""
    store = RedisJobStore(
        own_redis_server.url, prefix=prefix, socket_timeout=0.3, socket_connect_timeout=0.3
    )
    app = FastAPI()
    endpoints = AsyncEndpoints(app, store=store, run_workers=False)

    @endpoints.map_async_post("/orders")
    async def order(ctx: AsyncContext[None]) -> None:
        return None

    process = own_redis_server.process
    assert process is not None
    transport = httpx.ASGITransport(app=app)
    async with (
        endpoints.running(workers=False),
        httpx.AsyncClient(transport=transport, base_url="http://app") as client,
    ):
        assert (await client.post("/orders")).status_code == 202  # connections are warm
        process.send_signal(signal.SIGSTOP)
        try:
            frozen = await client.post("/orders", headers={"Idempotency-Key": "k"})
        finally:
            process.send_signal(signal.SIGCONT)
        assert frozen.status_code == 503 and "retry-after" in frozen.headers
        retried = await client.post("/orders", headers={"Idempotency-Key": "k"})
        again = await client.post("/orders", headers={"Idempotency-Key": "k"})
        assert retried.status_code == again.status_code == 202
        assert retried.json()["id"] == again.json()["id"]
        [stats] = await endpoints.queue_stats()
        assert stats.queued == 2  # the warm-up's and the key's, once
