"""The app of the batch tests across processes, on one real Redis (no HTTP).

Configured by environment variables: ``REDIS_URL``, ``AE_PREFIX``, ``CLAIM_TIMEOUT``,
``RECOVERY_INTERVAL``, ``MAX_CONCURRENCY`` and ``MAX_RETRIES``. Two handlers, which the
tests submit as a batch (``part``) and its continuation (``join``):

- ``part`` (body ``{"n", "seconds"}``) sleeps ``seconds`` and records its attempt in Redis:
  ``<prefix>-test:runs:<job id>`` counts its starts, ``<prefix>-test:pids`` lists
  ``"<pid> <job id>"`` per start;
- ``join`` records ``"<pid> <job id> <batch id>"`` in ``<prefix>-test:joins`` each time it
  runs.
"""

from __future__ import annotations

import asyncio
import os

import redis.asyncio as redis
from pydantic import BaseModel

from async_endpoints import AsyncContext, AsyncEndpoints
from async_endpoints_redis import RedisJobStore

REDIS_URL = os.environ["REDIS_URL"]
PREFIX = os.environ.get("AE_PREFIX", "e2e")
PID = os.getpid()
_records: redis.Redis | None = None

endpoints = AsyncEndpoints(
    store=RedisJobStore(REDIS_URL, prefix=PREFIX),
    claim_timeout=float(os.environ.get("CLAIM_TIMEOUT", "30")),
    recovery_interval=float(os.environ.get("RECOVERY_INTERVAL", "5")),
    max_concurrency=int(os.environ.get("MAX_CONCURRENCY", "16")),
    max_queue_size=None,
    retry_base_delay=0.1,
    max_retries=int(os.environ.get("MAX_RETRIES", "3")),
)


def records() -> redis.Redis:
    """This process's client of the run records."""
    global _records
    if _records is None:
        _records = redis.Redis.from_url(REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
    return _records


def key(name: str) -> str:
    return f"{PREFIX}-test:{name}"


class Part(BaseModel):
    n: int
    seconds: float = 0.0


async def part(ctx: AsyncContext[Part]) -> int:
    """Records its start, then sleeps."""
    async with records().pipeline(transaction=False) as pipe:
        pipe.incr(key(f"runs:{ctx.job_id}"))
        pipe.rpush(key("pids"), f"{PID} {ctx.job_id}")
        await pipe.execute()
    await asyncio.sleep(ctx.request.seconds)
    return ctx.request.n


async def join(ctx: AsyncContext[None]) -> str:
    """Records that the continuation ran."""
    await records().rpush(key("joins"), f"{PID} {ctx.job_id} {ctx.batch_id}")
    return "joined"


endpoints.add_handler(part)
endpoints.add_handler(join)
