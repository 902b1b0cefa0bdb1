"""The app of the cron schedule tests across processes, on one real Redis (no HTTP).

Configured by environment variables: ``REDIS_URL``, ``AE_PREFIX``, ``CLAIM_TIMEOUT`` and
``RECOVERY_INTERVAL``. Its one schedule, ``EverySecond`` (``* * * * * *``, not unique, so
a cycle never waits for the previous job), runs a handler that does nothing: the tests
count the jobs the cycles enqueued, by their ``created_at`` second.
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
async def every_second(ctx: AsyncContext[None]) -> None:
    """Nothing: the job itself is what the tests count."""
