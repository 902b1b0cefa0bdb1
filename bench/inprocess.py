"""In-process figures on the in-memory store: pickup latency and drain rate.

    .venv/bin/python -m bench.inprocess [--samples 2000] [--jobs 20000]

Pickup latency is submit -> handler start for an idle pool (one job at a time); result
latency is submit -> `wait_for` returning. Figures only, no assertions: speed goals are
judged on ratios in bench/, never in the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from async_endpoints import AsyncContext, AsyncEndpoints


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3  # noqa: E731
    return f"p50 {pick(0.50):.3f} ms  p95 {pick(0.95):.3f} ms  p99 {pick(0.99):.3f} ms"


async def pickup(samples: int) -> tuple[list[float], list[float]]:
    engine = AsyncEndpoints(max_queue_size=None)
    started_at: list[float] = []

    async def noop(ctx: AsyncContext[None]) -> None:
        started_at.append(time.perf_counter())

    engine.add_handler(noop)
    pickups: list[float] = []
    results: list[float] = []
    async with engine.running():
        await asyncio.sleep(0.05)
        for _ in range(samples):
            began = time.perf_counter()
            job = await engine.submit("noop")
            await engine.wait_for(job.id, timeout=5)
            results.append(time.perf_counter() - began)
            pickups.append(started_at[-1] - began)
    return pickups, results


async def drain_rate(jobs: int) -> float:
    engine = AsyncEndpoints(max_queue_size=None, max_concurrency=100)
    done = asyncio.Event()
    count = 0

    async def noop(ctx: AsyncContext[None]) -> None:
        nonlocal count
        count += 1
        if count == jobs:
            done.set()

    engine.add_handler(noop)
    await engine.store.start()
    for _ in range(jobs):
        await engine.submit("noop")
    began = time.perf_counter()
    async with engine.pool:
        await done.wait()
    return jobs / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=20000)
    args = parser.parse_args()
    pickups, results = asyncio.run(pickup(args.samples))
    print(f"pickup (submit -> handler start): {percentiles(pickups)}")
    print(f"result (submit -> wait_for):      {percentiles(results)}")
    rates = [asyncio.run(drain_rate(args.jobs)) for _ in range(3)]
    median = statistics.median(rates)
    print(f"drain {args.jobs} no-op jobs, concurrency 100: median {median:,.0f} jobs/s")


if __name__ == "__main__":
    main()
