"""The app of the job-control multi-process tests: cancel, pause and queues across processes.

Configured like `tests.apps.redis_app`, by environment variables: ``REDIS_URL``,
``AE_PREFIX``, ``RUN_WORKERS`` (0/1), ``CLAIM_TIMEOUT``, ``RECOVERY_INTERVAL``,
``MAX_CONCURRENCY``, ``MAX_RETRIES`` and ``STORE_URL`` (the job store's Redis, default
``REDIS_URL``: a fault test routes it through a breakable proxy while the records below
keep going straight to Redis). Its queues are ``high``, ``default`` and ``low``
(highest first); ``/high``, ``/default`` and ``/low`` each queue a short job there.

Every handler run is recorded in Redis: ``runs:<job id>`` counts executions,
``pids:<job id>`` lists the processes that ran it, ``starts`` lists
``"<pid> <unix time> <job id> <queue>"`` per run. A ``/hold`` job runs until cancelled
and records ``cancelled:<job id>`` = ``"<pid> <unix time>"`` the moment its handler sees
the `asyncio.CancelledError`, and ``returned:<job id>`` if it ever ends otherwise.

Besides the job routes, ``POST /admin/pause`` and ``POST /admin/resume`` (JSON
``{"queue": name or null}``) call `AsyncEndpoints.pause` / `resume` in this instance,
``GET /admin/stats`` answers `AsyncEndpoints.queue_stats` keyed by queue, and
``POST /jobs/{job_id}/cancel`` is `map_job_cancel`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as redis
from fastapi import FastAPI
from pydantic import BaseModel

from async_endpoints import AsyncContext, AsyncEndpoints
from async_endpoints_redis import RedisJobStore

REDIS_URL = os.environ["REDIS_URL"]
PREFIX = os.environ.get("AE_PREFIX", "e2e")
PID = os.getpid()
QUEUES = ("high", "default", "low")
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
    store=RedisJobStore(os.environ.get("STORE_URL", REDIS_URL), prefix=PREFIX),
    queues=QUEUES,
    run_workers=os.environ.get("RUN_WORKERS", "1") == "1",
    claim_timeout=float(os.environ.get("CLAIM_TIMEOUT", "30")),
    recovery_interval=float(os.environ.get("RECOVERY_INTERVAL", "5")),
    max_concurrency=int(os.environ.get("MAX_CONCURRENCY", "16")),
    max_queue_size=None,
    retry_base_delay=0.1,
    max_retries=int(os.environ.get("MAX_RETRIES", "3")),
)


def key(name: str) -> str:
    return f"{PREFIX}-test:{name}"


async def record_run(ctx: AsyncContext[object], queue: str) -> None:
    assert records is not None
    async with records.pipeline(transaction=False) as pipe:
        pipe.incr(key(f"runs:{ctx.job_id}"))
        pipe.rpush(key(f"pids:{ctx.job_id}"), PID)
        pipe.rpush(key("starts"), f"{PID} {time.time():.6f} {ctx.job_id} {queue}")
        await pipe.execute()


class HoldRequest(BaseModel):
    seconds: float = 3600.0


@endpoints.map_async_post("/hold", name="Hold", queue="default")
async def hold(ctx: AsyncContext[HoldRequest]) -> int:
    """Runs ``seconds`` (an hour by default) unless cancelled; records when it saw the
    cancellation, or that it returned."""
    assert ctx.request is not None and records is not None
    await record_run(ctx, "default")
    try:
        await asyncio.sleep(ctx.request.seconds)
    except asyncio.CancelledError:
        seen = f"{PID} {time.time():.6f}"
        await asyncio.shield(records.set(key(f"cancelled:{ctx.job_id}"), seen))
        raise
    await records.set(key(f"returned:{ctx.job_id}"), PID)
    return PID


class SlowRequest(BaseModel):
    seconds: float


@endpoints.map_async_post("/slow", name="Slow", queue="default")
async def slow(ctx: AsyncContext[SlowRequest]) -> int:
    """Sleeps on its first attempt only, so a recovered retry finishes at once."""
    assert ctx.request is not None
    await record_run(ctx, "default")
    if ctx.retry_count == 0:
        await asyncio.sleep(ctx.request.seconds)
    return PID


class ShortRequest(BaseModel):
    seconds: float = 0.0


def short_job(queue: str) -> None:
    """``POST /<queue>``: a job of that queue that sleeps ``seconds`` and returns the pid."""

    async def run(ctx: AsyncContext[ShortRequest]) -> int:
        assert ctx.request is not None
        await record_run(ctx, queue)
        await asyncio.sleep(ctx.request.seconds)
        return PID

    endpoints.map_async_post(f"/{queue}", name=f"Short-{queue}", queue=queue)(run)


for _queue in QUEUES:
    short_job(_queue)


class QueueChoice(BaseModel):
    queue: str | None = None


@app.post("/admin/pause")
async def pause(choice: QueueChoice) -> dict[str, str | None]:
    await endpoints.pause(choice.queue)
    return {"paused": choice.queue}


@app.post("/admin/resume")
async def resume(choice: QueueChoice) -> dict[str, str | None]:
    await endpoints.resume(choice.queue)
    return {"resumed": choice.queue}


@app.get("/admin/stats")
async def stats() -> dict[str, dict[str, Any]]:
    return {found.name: dataclasses.asdict(found) for found in await endpoints.queue_stats()}


endpoints.map_job_details("/jobs/{job_id}")
endpoints.map_job_cancel("/jobs/{job_id}/cancel")
