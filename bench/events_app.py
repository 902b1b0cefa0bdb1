"""The server of the events scenario (``bench/_events.py``): one uvicorn process with its
worker pool, on the in-memory store (or on Redis at ``BENCH_REDIS_URL``, when set).

``POST /steps`` submits a job that sleeps 0.2 s; ``GET /jobs/{job_id}/events`` streams it;
``POST /bench/pause`` and ``/bench/resume`` hold and release the default queue;
``GET /bench/fanout`` tells, for each change handed out to its streams, how long the pass
took on the wall clock and in this thread's CPU time (what it costs with a core of its
own: on a busy machine the wall time also counts the time the process waited for one).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from async_endpoints import AsyncContext, AsyncEndpoints, InMemoryJobStore, JobStore
from async_endpoints._job_watch import JobNotice

passes: list[dict[str, Any]] = []


def _time_the_fanout() -> None:
    """Note each pass of the fan-out (none with a library before it: a baseline run)."""
    try:
        from async_endpoints._event_fanout import EventFanout
    except ImportError:
        return
    hand_out = EventFanout._hand_out

    def timed(self: EventFanout, notice: JobNotice, streams: list[Any]) -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        hand_out(self, notice, streams)
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
        status = "progress" if notice.job is None else notice.job.status.value
        passes.append({"status": status, "streams": len(streams), "wall": wall, "cpu": cpu})

    EventFanout._hand_out = timed  # type: ignore[method-assign]


_time_the_fanout()


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


async def fanout(request: Request) -> Response:
    return JSONResponse(passes)


app.router.add_route("/bench/pause", pause, methods=["POST"])
app.router.add_route("/bench/fanout", fanout, methods=["GET"])
app.router.add_route("/bench/resume", resume, methods=["POST"])
