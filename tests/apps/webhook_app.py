"""The app of the multi-process webhook tests: API and worker processes on one Redis,
delivering to a receiver the test serves on 127.0.0.1.

Configured by ``REDIS_URL``, ``AE_PREFIX``, ``RUN_WORKERS`` (0/1), ``CLAIM_TIMEOUT``,
``RECOVERY_INTERVAL``, ``WEBHOOK_HOSTS`` (comma-separated allow-list), ``WEBHOOK_RETRIES``
and ``WEBHOOK_BASE_DELAY``. ``POST /ping`` takes ``{"hook": url}`` and returns the pid of
the process that ran it.
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from pydantic import BaseModel

from async_endpoints import AsyncContext, AsyncEndpoints
from async_endpoints_redis import RedisJobStore
from tests.webhook_receiver import SECRET

app = FastAPI()
endpoints = AsyncEndpoints(
    app,
    store=RedisJobStore(os.environ["REDIS_URL"], prefix=os.environ.get("AE_PREFIX", "e2e")),
    run_workers=os.environ.get("RUN_WORKERS", "1") == "1",
    claim_timeout=float(os.environ.get("CLAIM_TIMEOUT", "30")),
    recovery_interval=float(os.environ.get("RECOVERY_INTERVAL", "5")),
    webhook_secret=SECRET,
    webhook_allowed_hosts=os.environ["WEBHOOK_HOSTS"].split(","),
    webhook_retries=int(os.environ.get("WEBHOOK_RETRIES", "5")),
    webhook_retry_base_delay=float(os.environ.get("WEBHOOK_BASE_DELAY", "0.05")),
)


class Ping(BaseModel):
    hook: str


async def hook_of(request: object, body: Ping) -> str:
    return body.hook


@endpoints.map_async_post("/ping", name="Ping", webhook_url=hook_of)
async def ping(ctx: AsyncContext[Ping]) -> int:
    return os.getpid()


endpoints.map_job_details()
