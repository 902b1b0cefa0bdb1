"""Redis-store figures: idle-worker pickup latency and Redis commands per job.

    .venv/bin/python -m bench.redis_latency [--samples 500] [--jobs 2000]

Starts its own redis-server on a free loopback port (the binary as the tests find it).
Pickup: one job at a time to an idle pool in a separate worker process... is not needed
to see the store's push path, so producer and pool share this process but talk only
through Redis (the wake-up arrives over pub/sub like it would from another machine).
Commands per job come from ``INFO commandstats`` deltas over a batch of no-op jobs.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import redis.asyncio as redis

from async_endpoints import AsyncContext, AsyncEndpoints
from async_endpoints_redis import RedisJobStore
from bench.inprocess import percentiles
from tests.redis_servers import start_server


async def pickup(url: str, samples: int) -> tuple[list[float], list[float]]:
    producer = AsyncEndpoints(store=RedisJobStore(url, prefix="bench"), run_workers=False)
    worker = AsyncEndpoints(store=RedisJobStore(url, prefix="bench"), max_queue_size=None)
    started_at: list[float] = []

    async def noop(ctx: AsyncContext[None]) -> None:
        started_at.append(time.perf_counter())

    for engine in (producer, worker):
        engine.add_handler(noop)
    pickups: list[float] = []
    results: list[float] = []
    async with producer.running(), worker.running():
        await asyncio.sleep(0.2)
        for _ in range(samples):
            began = time.perf_counter()
            job = await producer.submit("noop")
            await producer.wait_for(job.id, timeout=5)
            results.append(time.perf_counter() - began)
            pickups.append(started_at[-1] - began)
    return pickups, results


async def commands_per_job(url: str, jobs: int) -> dict[str, float]:
    engine = AsyncEndpoints(
        store=RedisJobStore(url, prefix="bench-rt"), max_queue_size=None, max_concurrency=100
    )
    done = asyncio.Event()
    count = 0

    async def noop(ctx: AsyncContext[None]) -> None:
        nonlocal count
        count += 1
        if count == jobs:
            done.set()

    engine.add_handler(noop)
    client = redis.Redis.from_url(url)
    async with engine.running(workers=False):
        before = await client.info("commandstats")
        for _ in range(jobs):
            await engine.submit("noop")
        middle = await client.info("commandstats")
        async with engine.pool:
            await done.wait()
            await asyncio.sleep(0.2)  # let the last settlements land
        after = await client.info("commandstats")
    await client.aclose()
    return {
        "enqueue": delta(before, middle),
        "claim+run+settle": delta(middle, after),
    }


def delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """Calls per command between two ``INFO commandstats`` readings (nonzero only)."""
    changed = {
        name.removeprefix("cmdstat_"): stats["calls"] - before.get(name, {"calls": 0})["calls"]
        for name, stats in after.items()
    }
    return {name: calls for name, calls in changed.items() if calls and name != "info"}


# Every state change is one script call; commandstats also counts the commands a script
# runs, and connection set-up (hello, ping), which are not round trips of the job.
ROUND_TRIP_COMMANDS = {"evalsha", "eval"}
CONNECTION_COMMANDS = {"hello", "ping", "client|setinfo", "subscribe"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=2000)
    args = parser.parse_args()
    server = start_server()
    try:
        pickups, results = asyncio.run(pickup(server.url, args.samples))
        print(f"pickup (submit -> handler start): {percentiles(pickups)}")
        print(f"result (submit -> wait_for):      {percentiles(results)}")
        counts = asyncio.run(commands_per_job(server.url, args.jobs))
        for phase, commands in counts.items():
            trips = sum(n for name, n in commands.items() if name in ROUND_TRIP_COMMANDS)
            skipped = ROUND_TRIP_COMMANDS | CONNECTION_COMMANDS
            inside = sum(n for name, n in commands.items() if name not in skipped)
            print(
                f"{phase}: {trips / args.jobs:.2f} round trips/job, "
                f"{inside / args.jobs:.2f} commands inside scripts/job  {commands}"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
