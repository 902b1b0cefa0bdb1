"""An app on the Redis store starts while Redis is down, answers 503, then recovers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import FastAPI

from async_endpoints import AsyncContext, AsyncEndpoints
from async_endpoints_redis import RedisJobStore
from tests.redis_servers import RedisServer


async def test_the_app_starts_without_redis_answers_503_and_recovers_by_itself(
    own_redis_server: RedisServer, http_client_for: Any
) -> None:
    """Redis down at boot: the lifespan still starts; 503 + Retry-After, then 202 and runs."""
    own_redis_server.stop()
    app = FastAPI()
    endpoints = AsyncEndpoints(app, store=RedisJobStore(own_redis_server.url), polling_interval=1)

    @endpoints.map_async_post("/ping")
    async def ping(ctx: AsyncContext[None]) -> str:
        return "pong"

    async with http_client_for(app) as client:
        began = time.monotonic()
        refused = await client.post("/ping")
        assert refused.status_code == 503 and "retry-after" in refused.headers
        assert time.monotonic() - began < 10
        own_redis_server.start()
        deadline = time.monotonic() + 20
        while (accepted := await client.post("/ping")).status_code != 202:
            assert time.monotonic() < deadline, accepted.text
            await asyncio.sleep(0.1)
        done = await endpoints.wait_for(accepted.json()["id"], timeout=20)
    assert done.result == "pong"
