"""The app served by uvicorn in the HTTP scenario: our async POST endpoint beside a bare
FastAPI route that answers the same 202 job JSON without storing anything.

    BENCH_STORE=memory|redis BENCH_WORKERS=0|1 uvicorn bench.http_app:app

``BENCH_WORKERS=0`` is an API-only instance (``run_workers=False``): the submit path alone,
jobs stay queued (``max_queue_size=None``, or the queue would fill and refuse). ``1`` runs
the worker pool embedded in the server process, so each job also runs (and settles) there,
with the default ``max_queue_size``: a pool that falls behind shows as refused requests.
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from async_endpoints import AsyncContext, AsyncEndpoints, InMemoryJobStore, JobStore
from async_endpoints_redis import RedisJobStore
from bench._bare import DataRequest, add_bare_route

app = FastAPI()


def _store() -> JobStore:
    if os.environ.get("BENCH_STORE", "memory") == "redis":
        return RedisJobStore(os.environ["BENCH_REDIS_URL"], prefix="bench-http")
    return InMemoryJobStore()


workers = os.environ.get("BENCH_WORKERS", "0") == "1"
endpoints = AsyncEndpoints(
    app,
    store=_store(),
    run_workers=workers,
    max_concurrency=100,
    **({} if workers else {"max_queue_size": None}),
)


@endpoints.map_async_post("/async/process/{tenant}", name="process")
async def process(ctx: AsyncContext[DataRequest]) -> dict[str, int]:
    assert ctx.request is not None
    return {"length": len(ctx.request.data)}


endpoints.map_job_details("/jobs/{job_id}")
add_bare_route(app)
