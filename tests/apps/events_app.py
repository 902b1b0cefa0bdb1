"""The app of the multi-process event tests: an API process streams job events while a
worker process runs the jobs, on one Redis.

Configured by ``REDIS_URL``, ``AE_PREFIX`` and ``RUN_WORKERS`` (0/1). The "Steps" handler
reports progress 1, waits until the test pushes to ``<prefix>-test:go:<job id>``, reports
2 and 3, and returns its process id.
"""

from __future__ import annotations

import os

import redis.asyncio as redis
from fastapi import FastAPI

from async_endpoints import AsyncContext, AsyncEndpoints
from async_endpoints_redis import RedisJobStore

REDIS_URL = os.environ["REDIS_URL"]
PREFIX = os.environ.get("AE_PREFIX", "e2e")

app = FastAPI()
endpoints = AsyncEndpoints(
    app,
    store=RedisJobStore(REDIS_URL, prefix=PREFIX),
    run_workers=os.environ.get("RUN_WORKERS", "1") == "1",
)


@endpoints.map_async_post("/steps", name="Steps")
async def steps(ctx: AsyncContext[None]) -> int:
    await ctx.report_progress(1)
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        for _ in range(60):
            if await client.blpop([f"{PREFIX}-test:go:{ctx.job_id}"], timeout=1):
                break
    finally:
        await client.aclose()
    await ctx.report_progress(2)
    await ctx.report_progress(3)
    return os.getpid()


endpoints.map_job_details()
endpoints.map_job_events()
