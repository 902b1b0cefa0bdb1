"""Batches on Redis (issue 12), ours alone, on the shared Redis.

Submission: 10,000 jobs stored by one `submit_batch` (one script per 2,000 jobs, the
last of which stores them all) against the same 10,000 jobs submitted one `submit` at a
time (each awaited: a client with a list of jobs and no batch API), and, for reference,
10,000 `submit` calls made at once (`asyncio.gather`, which the store coalesces into a
script call per event-loop turn). Each kind runs ``repeats`` times, interleaved, on a
flushed Redis; the figures are the median wall times and the ratio singles / batch (goal
>= 5x).

Continuation latency: on an otherwise idle Redis, one process with a worker pool runs
batches of one job and one continuation, one batch at a time; the time from the moment
the job's handler returns (the worker then settles it: that script stores the
continuation) to the moment the continuation's handler starts, p50 over the samples
(goal <= 5 ms).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from async_endpoints import AsyncContext, AsyncEndpoints, JobSpec
from async_endpoints_redis import RedisJobStore

from ._driver import log
from ._queues import Plan
from ._redis import Server
from ._report import Target
from ._stats import latency_ms, median

JOBS = 10_000
SAMPLES = 200  # continuation latencies per repeat


def run(server: Server, plan: Plan) -> dict[str, Any]:
    """Submission times (s) per kind and the continuation latency (ms)."""
    server.flush()
    jobs = JOBS if plan.repeats > 1 else 2_000
    found = asyncio.run(_submissions(server, max(1, plan.repeats), jobs))
    server.flush()
    samples = SAMPLES if plan.repeats > 1 else 50
    found["continuation"] = asyncio.run(_continuations(server, samples * max(1, plan.repeats)))
    server.flush()
    lines, _ = summary(found)
    for line in lines:
        log(f"batches: {line}")
    return found


def _engine(store: RedisJobStore) -> AsyncEndpoints:
    engine = AsyncEndpoints(store=store, max_queue_size=None)

    async def noop(ctx: AsyncContext[None]) -> None:
        pass

    engine.add_handler(noop)
    return engine


async def _submissions(server: Server, repeats: int, jobs: int) -> dict[str, Any]:
    times: dict[str, list[float]] = {"batch": [], "singles": [], "gathered": []}
    for _ in range(repeats):
        for kind in times:
            server.flush()
            store = RedisJobStore(server.url, prefix="bench-batches")
            engine = _engine(store)
            await store.start()
            began = time.perf_counter()
            if kind == "batch":
                batch = await engine.submit_batch([JobSpec("noop")] * jobs)
                assert batch.total == jobs
            elif kind == "singles":
                for _ in range(jobs):
                    await engine.submit("noop")
            else:
                await asyncio.gather(*(engine.submit("noop") for _ in range(jobs)))
            times[kind].append(time.perf_counter() - began)
            await store.aclose()
    return {
        "jobs": jobs,
        **{f"{kind}_s": median(values) for kind, values in times.items()},
        "raw_s": times,
    }


async def _continuations(server: Server, samples: int) -> dict[str, float]:
    store = RedisJobStore(server.url, prefix="bench-batches-latency")
    engine = AsyncEndpoints(store=store, max_queue_size=None, max_retries=0)
    ended: dict[str, float] = {}
    latencies: list[float] = []
    started = asyncio.Event()

    async def part(ctx: AsyncContext[None]) -> None:
        ended[str(ctx.batch_id)] = time.perf_counter()

    async def then(ctx: AsyncContext[None]) -> None:
        latencies.append(time.perf_counter() - ended[str(ctx.batch_id)])
        started.set()

    engine.add_handler(part)
    engine.add_handler(then)
    async with engine.running():
        for _ in range(samples + 5):
            started.clear()
            await engine.submit_batch([JobSpec("part")], continue_with=[JobSpec("then")])
            await asyncio.wait_for(started.wait(), 10)
    await store.aclose()
    return latency_ms(latencies[5:])  # the first few warm the scripts and connections


def summary(found: dict[str, Any]) -> tuple[list[str], list[Target]]:
    """The lines that show the batch figures, and its two targets judged on them."""
    if not found or "batch_s" not in found:
        return [], []
    batch, singles, gathered = found["batch_s"], found["singles_s"], found["gathered_s"]
    ratio = singles / batch
    latency = found["continuation"]["p50"]
    lines = [
        f"{found['jobs']:,} jobs: submit_batch {batch * 1e3:.0f} ms, one submit at a time "
        f"{singles * 1e3:.0f} ms ({ratio:.1f}x), all submits at once (gather) "
        f"{gathered * 1e3:.0f} ms ({gathered / batch:.1f}x)",
        f"last job settled -> continuation started: p50 {latency:.2f} ms, p95 "
        f"{found['continuation']['p95']:.2f} ms",
    ]
    goals = [
        Target("submit_batch >= 5x single submissions", f"{ratio:.1f}x", ratio >= 5),
        Target("continuation started p50 <= 5 ms", f"{latency:.2f} ms", latency <= 5),
    ]
    return lines, goals
