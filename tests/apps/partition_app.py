"""The app of the partition-key and tenant tests across processes, on one real Redis.

Configured like `tests.apps.redis_app`, by environment variables: ``REDIS_URL``,
``AE_PREFIX``, ``RUN_WORKERS`` (0/1), ``CLAIM_TIMEOUT``, ``RECOVERY_INTERVAL``,
``MAX_CONCURRENCY``, ``MAX_RETRIES`` and ``STORE_URL`` (the job store's Redis, default
``REDIS_URL``: a fault test routes it through a breakable proxy while the records below
keep going straight to Redis).

``POST /keyed`` (JSON ``{"key", "tenant", "seconds", "retry_seconds", "unwind"}``) queues
a job whose partition key and tenant are the body's (a function of the request, as an app
would take them); its handler sleeps ``seconds`` (``retry_seconds``, when given, on every
attempt after the first), cleans up for ``unwind`` seconds (an await) when cancelled, and
records its attempt in Redis:

- ``runs:<job id>``, ``pids:<job id>`` and ``starts`` (``"<pid> <unix time> <job id>"``) as
  `tests.apps.redis_app` keeps them, so `tests.faults.harness` reads them alike;
- ``begun``: ``"<pid> <monotonic time> <job id> <attempt> <key> <tenant>"`` when the
  handler starts, ``ended``: the same when it ends, however it ends (returned, raised or
  cancelled: a process killed with SIGKILL records no end). The time is
  ``time.monotonic()``: CLOCK_MONOTONIC, one clock for every process of the machine.
  ``-`` stands for no key or no tenant.

``GET /admin/stats`` answers `AsyncEndpoints.queue_stats` keyed by queue; ``GET
/jobs/{job_id}`` is `map_job_details` and ``POST /jobs/{job_id}/cancel`` `map_job_cancel`.
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


def attempt(ctx: AsyncContext[Any]) -> str:
    """``"<pid> <monotonic time> <job id> <attempt> <key> <tenant>"``."""
    labels = f"{ctx.partition_key or '-'} {ctx.tenant or '-'}"
    return f"{PID} {time.monotonic():.6f} {ctx.job_id} {ctx.retry_count} {labels}"


class Keyed(BaseModel):
    key: str | None = None
    tenant: str | None = None
    seconds: float = 0.0
    retry_seconds: float | None = None
    unwind: float = 0.0


@endpoints.map_async_post(
    "/keyed",
    name="Keyed",
    partition_key=lambda request, body: body.key,
    tenant=lambda request, body: body.tenant,
)
async def keyed(ctx: AsyncContext[Keyed]) -> dict[str, int]:
    """Records its start, sleeps, records its end (also when cancelled or failing)."""
    assert ctx.request is not None and records is not None
    later = ctx.request.retry_seconds
    try:
        # Inside the try: a handler cancelled before it has read the answer (frozen with
        # the answer on its way, then fenced at once when thawed) still records its end.
        async with records.pipeline(transaction=False) as pipe:
            pipe.incr(key(f"runs:{ctx.job_id}"))
            pipe.rpush(key(f"pids:{ctx.job_id}"), PID)
            pipe.rpush(key("starts"), f"{PID} {time.time():.6f} {ctx.job_id}")
            pipe.rpush(key("begun"), attempt(ctx))
            await pipe.execute()
        await asyncio.sleep(ctx.request.seconds if ctx.retry_count == 0 or later is None else later)
    except asyncio.CancelledError:
        await asyncio.sleep(ctx.request.unwind)  # still running, though Canceled already
        raise
    finally:
        await asyncio.shield(records.rpush(key("ended"), attempt(ctx)))
    return {"pid": PID, "attempt": ctx.retry_count}


@app.get("/admin/stats")
async def stats() -> dict[str, dict[str, Any]]:
    return {found.name: dataclasses.asdict(found) for found in await endpoints.queue_stats()}


endpoints.map_job_details("/jobs/{job_id}")
endpoints.map_job_cancel("/jobs/{job_id}/cancel")
