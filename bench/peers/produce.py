"""The producer side of one scenario, run in the library's own environment.

    python produce.py LIBRARY enqueue --jobs N [--concurrency C] [--start K]
    python produce.py LIBRARY bulk --jobs N [--start K]
    python produce.py LIBRARY pickup --samples S --budget SECONDS

``LIBRARY`` names a module ``<library>_app`` beside this file that has a ``Producer``.
Prints one JSON object on stdout: ``{"seconds": ...}`` for enqueue and bulk (the time to
queue jobs ``K .. K+N-1``, connection set-up excluded), ``{"pickup": [...], "result":
[...]}`` for pickup (seconds from the submit call to the handler's start, and to the
result in the caller's hands), one job at a time to an idle worker, until ``S`` samples or
``SECONDS`` have passed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import time
from typing import Any

_WARMUP = 5  # pickup samples dropped first (connections, script loads, first claims)
_PAUSE = 0.005  # between pickup samples, so the worker is idle again


async def enqueue(producer: Any, start: int, jobs: int, concurrency: int) -> dict[str, Any]:
    async def submitter(first: int) -> None:
        for i in range(first, start + jobs, concurrency):
            await producer.enqueue(i)

    began = time.monotonic()
    async with asyncio.TaskGroup() as group:
        for offset in range(min(concurrency, jobs)):
            group.create_task(submitter(start + offset))
    return {"seconds": time.monotonic() - began}


async def bulk(producer: Any, start: int, jobs: int) -> dict[str, Any]:
    began = time.monotonic()
    await producer.enqueue_bulk(start, jobs)
    return {"seconds": time.monotonic() - began}


async def pickup(producer: Any, samples: int, budget: float) -> dict[str, Any]:
    pickups: list[float] = []
    results: list[float] = []
    # The first job also waits for the worker process to come up.
    await producer.result(await producer.enqueue(-1), 60.0)
    deadline = time.monotonic() + budget
    for n in range(samples + _WARMUP):
        await asyncio.sleep(_PAUSE)
        began = time.monotonic()
        handle = await producer.enqueue(n)
        started_at = float(await producer.result(handle, 30.0))
        done = time.monotonic()
        if n >= _WARMUP:
            pickups.append(started_at - began)
            results.append(done - began)
        if done > deadline and len(pickups) >= 3:
            break
    return {"pickup": pickups, "result": results}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("library")
    parser.add_argument("mode", choices=["enqueue", "bulk", "pickup"])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--budget", type=float, default=10.0)
    args = parser.parse_args()
    producer = importlib.import_module(f"{args.library}_app").Producer()
    await producer.start()
    try:
        if args.mode == "enqueue":
            outcome = await enqueue(producer, args.start, args.jobs, args.concurrency)
        elif args.mode == "bulk":
            outcome = await bulk(producer, args.start, args.jobs)
        else:
            outcome = await pickup(producer, args.samples, args.budget)
    finally:
        await producer.stop()
    print(json.dumps(outcome))


if __name__ == "__main__":
    asyncio.run(main())
