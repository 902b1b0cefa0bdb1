"""The app of the multi-process tests: real uvicorn and worker processes on one Redis.

Configured by environment variables: ``REDIS_URL``, ``AE_PREFIX``, ``RUN_WORKERS`` (0/1),
``CLAIM_TIMEOUT``, ``RECOVERY_INTERVAL``, ``MAX_CONCURRENCY``, ``GRACE_PERIOD``,
``MAX_RETRIES``, ``JOB_TIMEOUT``, ``RETRY_BASE_DELAY``, ``RETENTION``, ``SHARDS`` (the
store's ``shards``, when set) and ``STORE_URL``
(the job store's Redis, default ``REDIS_URL``: the fault tests route it through a
breakable proxy while the records below keep going straight to Redis). Every handler
run is recorded in Redis (``runs:<job id>`` counts executions, ``pids:<job id>`` lists
the process ids that ran it, ``starts`` lists ``"<pid> <unix time> <job id>"`` per run),
so tests can check "each job ran exactly once", who ran it and when.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

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
    # A test that finds this process hanging sends SIGUSR2 first: every task's stack.
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, _print_tasks)
    yield
    await records.aclose()


def _print_tasks() -> None:
    for task in asyncio.all_tasks():
        print(f"--- task {task.get_name()}", file=sys.stderr)
        task.print_stack(file=sys.stderr)
    sys.stderr.flush()


app = FastAPI(lifespan=lifespan)
endpoints = AsyncEndpoints(
    app,
    store=RedisJobStore(
        os.environ.get("STORE_URL", REDIS_URL),
        prefix=PREFIX,
        retention=float(os.environ.get("RETENTION", str(7 * 24 * 3600))),
        **({"shards": int(os.environ["SHARDS"])} if "SHARDS" in os.environ else {}),
    ),
    run_workers=os.environ.get("RUN_WORKERS", "1") == "1",
    claim_timeout=float(os.environ.get("CLAIM_TIMEOUT", "30")),
    recovery_interval=float(os.environ.get("RECOVERY_INTERVAL", "5")),
    max_concurrency=int(os.environ.get("MAX_CONCURRENCY", "16")),
    max_queue_size=None,
    retry_base_delay=float(os.environ.get("RETRY_BASE_DELAY", "0.1")),
    shutdown_grace_period=float(os.environ.get("GRACE_PERIOD", "30")),
    max_retries=int(os.environ.get("MAX_RETRIES", "3")),
    job_timeout=float(os.environ.get("JOB_TIMEOUT", "1800")),
    idempotency_ttl=float(os.environ.get("IDEMPOTENCY_TTL", str(24 * 3600))),
)


async def record_run(ctx: AsyncContext[object]) -> None:
    assert records is not None
    async with records.pipeline(transaction=False) as pipe:
        pipe.incr(f"{PREFIX}-test:runs:{ctx.job_id}")
        pipe.rpush(f"{PREFIX}-test:pids:{ctx.job_id}", PID)
        pipe.rpush(f"{PREFIX}-test:starts", f"{PID} {time.time():.3f} {ctx.job_id}")
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


class WorkRequest(BaseModel):
    seconds: float = 0.0


def attempt_result(ctx: AsyncContext[object]) -> dict[str, int]:
    """Who produced a result: tests check that a job keeps the result of its last attempt."""
    return {"pid": PID, "attempt": ctx.retry_count}


@endpoints.map_async_post("/work", name="Work")
async def work(ctx: AsyncContext[WorkRequest]) -> dict[str, int]:
    """Sleeps on every attempt; the result names the process and the attempt."""
    await record_run(ctx)
    await asyncio.sleep(ctx.request.seconds)
    return attempt_result(ctx)


@endpoints.map_async_post("/block", name="Block")
async def block(ctx: AsyncContext[SlowRequest]) -> dict[str, int]:
    """Blocks the whole event loop (``time.sleep``) on its first attempt only."""
    await record_run(ctx)
    if ctx.retry_count == 0:
        time.sleep(ctx.request.seconds)  # noqa: ASYNC251 - blocking the loop is the point
    return attempt_result(ctx)


@endpoints.map_async_post("/stubborn", name="Stubborn")
async def stubborn(ctx: AsyncContext[SlowRequest]) -> dict[str, int]:
    """On its first attempt, runs ``seconds`` swallowing every cancellation; then records
    ``ended:<job id>`` (its pid), so a test can tell it kept going."""
    await record_run(ctx)
    if ctx.retry_count == 0:
        loop = asyncio.get_running_loop()
        end = loop.time() + ctx.request.seconds
        while loop.time() < end:
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                continue
        assert records is not None
        await records.rpush(f"{PREFIX}-test:ended:{ctx.job_id}", PID)
    return attempt_result(ctx)


class ExitRequest(BaseModel):
    kind: Literal["SystemExit", "KeyboardInterrupt"]
    attempts: int = 1


@endpoints.map_async_post("/exit", name="Exit")
async def exit_(ctx: AsyncContext[ExitRequest]) -> dict[str, int]:
    """Raises ``SystemExit`` or ``KeyboardInterrupt`` on its first ``attempts`` attempts."""
    await record_run(ctx)
    if ctx.retry_count < ctx.request.attempts:
        raise SystemExit(3) if ctx.request.kind == "SystemExit" else KeyboardInterrupt
    return attempt_result(ctx)


endpoints.map_job_details("/jobs/{job_id}")
