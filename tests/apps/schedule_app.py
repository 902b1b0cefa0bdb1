"""The app of the cron schedule tests across processes, on one real Redis (no HTTP).

Configured by environment variables: ``REDIS_URL``, ``AE_PREFIX``, ``CLAIM_TIMEOUT`` and
``RECOVERY_INTERVAL``. Its one schedule, ``EverySecond`` (``* * * * * *``, not unique, so
a cycle never waits for the previous job), runs a handler that returns the due time of its
cycle (the ``x-schedule-due`` header): the tests count the jobs by the cycle each ran for.
"""

from __future__ import annotations

import os

from async_endpoints import AsyncContext, AsyncEndpoints
from async_endpoints_redis import RedisJobStore

REDIS_URL = os.environ["REDIS_URL"]
PREFIX = os.environ.get("AE_PREFIX", "e2e")

endpoints = AsyncEndpoints(
    store=RedisJobStore(REDIS_URL, prefix=PREFIX),
    claim_timeout=float(os.environ.get("CLAIM_TIMEOUT", "30")),
    recovery_interval=float(os.environ.get("RECOVERY_INTERVAL", "5")),
)


@endpoints.cron("* * * * * *", name="EverySecond", unique=False)
async def every_second(ctx: AsyncContext[None]) -> str:
    """The due time of the cycle it runs for: a Completed job keeps its result, not its
    captured headers."""
    return ctx.headers["x-schedule-due"]
