"""The app of the embedded scenario: default settings, workers in the uvicorn process.

    [BENCH_MAX_RETAINED=200000] uvicorn bench.embedded_app:app

Our async POST endpoint on the in-memory store with every setting at its default (so
``max_concurrency=16`` and ``max_queue_size=10,000``), a no-op handler that counts its
runs, the bare route, and two routes for the driver:

- ``GET /bench/stats``: jobs the handler ran, jobs waiting and running, the process's
  resident memory and the garbage collector's collection counts;
- ``POST /bench/preload?jobs=N``: stores N finished jobs through the store's own API, as
  N finished POSTs would leave them (same body, headers, route parameters and result).
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
import uuid
from typing import Any

from fastapi import FastAPI

from async_endpoints import AsyncContext, AsyncEndpoints, InMemoryJobStore
from async_endpoints._job import JobRequest, NewJob
from bench._bare import DataRequest, add_bare_route

app = FastAPI()


retained = os.environ.get("BENCH_MAX_RETAINED")
store = InMemoryJobStore() if retained is None else InMemoryJobStore(max_retained=int(retained))
endpoints = AsyncEndpoints(app, store=store)
ran = 0


@endpoints.map_async_post("/async/process/{tenant}", name="process")
async def process(ctx: AsyncContext[DataRequest]) -> dict[str, int]:
    global ran
    ran += 1
    assert ctx.request is not None
    return {"length": len(ctx.request.data)}


endpoints.map_job_details("/jobs/{job_id}")
add_bare_route(app)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:  # a read of procfs never blocks
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class GcPauses:
    """The garbage collector's pauses: how many, how long in all, the longest, per
    generation (from ``gc.callbacks``)."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.longest = [0.0, 0.0, 0.0]
        self._began = 0.0
        gc.callbacks.append(self._note)

    def _note(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        generation, took = info["generation"], time.perf_counter() - self._began
        self.count[generation] += 1
        self.seconds[generation] += took
        self.longest[generation] = max(self.longest[generation], took)

    def reset_longest(self) -> list[float]:
        longest, self.longest = self.longest, [0.0, 0.0, 0.0]
        return longest


pauses = GcPauses()


@app.get("/bench/stats")
async def stats() -> dict[str, Any]:
    return {
        "ran": ran,
        "waiting": await store.count_waiting(),
        "running": endpoints.pool.running,
        "rss_bytes": _rss_bytes(),
        "gc_collections": pauses.count,
        "gc_seconds": pauses.seconds,
        "gc_longest_since_last_read": pauses.reset_longest(),
        "gc_tracked_objects": len(gc.get_objects()) if _count_objects else None,
    }


_count_objects = os.environ.get("BENCH_COUNT_OBJECTS") == "1"


@app.post("/bench/preload")
async def preload(jobs: int, port: int = 8000) -> dict[str, int]:
    """N finished jobs, in batches that leave the server responsive in between."""
    headers = (
        ("host", f"127.0.0.1:{port}"),
        ("content-length", "16"),
        ("content-type", "application/json"),
    )
    request = JobRequest('{"data":"hello"}', headers, "", {"tenant": "acme"})
    done = 0
    while done < jobs:
        batch = min(1_000, jobs - done)
        for _ in range(batch):
            await store.enqueue(NewJob(uuid.uuid4(), "process", 3, request))
        # The in-memory store never suspends, so the pool cannot take these in between.
        for claim in await store.claim(batch, lease=30.0):
            await store.complete(claim, {"length": 5})
        done += batch
        await asyncio.sleep(0)
    return {"stored": done}
