"""The server of the events scenario (``bench/_events.py``): one uvicorn process with its
worker pool, on the in-memory store (or on Redis at ``BENCH_REDIS_URL``, when set).

``POST /steps`` submits a job that sleeps 0.2 s; ``GET /jobs/{job_id}/events`` streams it;
``POST /bench/pause`` and ``/bench/resume`` hold and release the default queue.
"""

from __future__ import annotations

import asyncio
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from async_endpoints import AsyncContext, AsyncEndpoints, InMemoryJobStore, JobStore


def _store() -> JobStore:
    url = os.environ.get("BENCH_REDIS_URL")
    if not url:
        return InMemoryJobStore()
    from async_endpoints_redis import RedisJobStore

    return RedisJobStore(url, prefix="bench-events")


app = Starlette()
endpoints = AsyncEndpoints(app, store=_store(), run_workers=True)


@endpoints.map_async_post("/steps", name="steps")
async def steps(ctx: AsyncContext) -> None:
    await asyncio.sleep(0.2)


endpoints.map_job_events()


async def pause(request: Request) -> Response:
    await endpoints.pause()
    return Response(status_code=204)


async def resume(request: Request) -> Response:
    await endpoints.resume()
    return Response(status_code=204)


app.router.add_route("/bench/pause", pause, methods=["POST"])
app.router.add_route("/bench/resume", resume, methods=["POST"])
