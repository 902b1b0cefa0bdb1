"""The app of the multi-process tests: real uvicorn and worker processes on one Redis.

Configured by environment variables: ``REDIS_URL``, ``AE_PREFIX``, ``RUN_WORKERS`` (0/1),
``CLAIM_TIMEOUT``, ``RECOVERY_INTERVAL``, ``MAX_CONCURRENCY``. Every handler run is
recorded in Redis (``runs:<job id>`` counts executions, ``pids:<job id>`` lists the
process ids that ran it), so tests can check "each job ran exactly once" and who ran it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as redis
from fastapi import FastAPI
from pydantic import BaseModel

from async_endpoints import AsyncContext, AsyncEndpoints
from async_endpoints_redis import RedisJobStore

REDIS_URL = os.environ["REDIS_URL"]
PREFIX = os.environ.get("AE_PREFIX", "e2e")
PID = os.getpid()
records: redis.Redis | None = None


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    global records
    records = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    yield
    await records.aclose()


app = FastAPI(lifespan=lifespan)
endpoints = AsyncEndpoints(
    app,
    store=RedisJobStore(REDIS_URL, prefix=PREFIX),
    run_workers=os.environ.get("RUN_WORKERS", "1") == "1",
    claim_timeout=float(os.environ.get("CLAIM_TIMEOUT", "30")),
    recovery_interval=float(os.environ.get("RECOVERY_INTERVAL", "5")),
    max_concurrency=int(os.environ.get("MAX_CONCURRENCY", "16")),
    max_queue_size=None,
    retry_base_delay=0.1,
    shutdown_grace_period=float(os.environ.get("GRACE_PERIOD", "30")),
)


async def record_run(ctx: AsyncContext[object]) -> None:
    assert records is not None
    async with records.pipeline(transaction=False) as pipe:
        pipe.incr(f"{PREFIX}-test:runs:{ctx.job_id}")
        pipe.rpush(f"{PREFIX}-test:pids:{ctx.job_id}", PID)
        await pipe.execute()


@endpoints.map_async_post("/count", name="Count")
async def count(ctx: AsyncContext[None]) -> int:
    await record_run(ctx)
    return PID


class SlowRequest(BaseModel):
    seconds: float


@endpoints.map_async_post("/slow", name="Slow")
async def slow(ctx: AsyncContext[SlowRequest]) -> int:
    """Sleeps on its first attempt only, so a recovered retry finishes at once."""
    await record_run(ctx)
    if ctx.retry_count == 0:
        await asyncio.sleep(ctx.request.seconds)
    return PID


endpoints.map_job_details("/jobs/{job_id}")
