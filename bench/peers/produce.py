"""The producer side of one scenario, run in the library's own environment.

    python produce.py LIBRARY enqueue --jobs N [--concurrency C] [--start K]
    python produce.py LIBRARY bulk --jobs N [--start K]
    python produce.py LIBRARY pickup --samples S --budget SECONDS
    python produce.py LIBRARY cancel --samples S --budget SECONDS [--pool P] [--settle T]
    python produce.py LIBRARY trickle --samples S [--start K] [--spacing SECONDS]

``LIBRARY`` names a module ``<library>_app`` beside this file that has a ``Producer``.
Prints one JSON object on stdout: ``{"seconds": ...}`` for enqueue (and ``cpu_seconds``,
the producer's CPU time meanwhile) and bulk (the time to
queue jobs ``K .. K+N-1``, connection set-up excluded), ``{"pickup": [...], "result":
[...]}`` for pickup (seconds from the submit call to the handler's start, and to the
result in the caller's hands), one job at a time to an idle worker, until ``S`` samples or
``SECONDS`` have passed; ``{"cancel": [...], "call": [...]}`` for cancel (seconds from the
cancel call to the running handler seeing its CancelledError, in the worker process, and
the cancel call's own duration); ``{"submitted": [...]}`` for trickle (``S`` jobs
``K .. K+S-1``, one at a time, a submission every ``SECONDS`` without waiting for the jobs:
when each submit call began, on CLOCK_MONOTONIC; the worker's handler notes their starts).

Cancel keeps ``P`` ``hold`` jobs running in the worker; each is cancelled once it has run
``T`` seconds (SAQ's worker only looks at jobs that have run its abort interval, 1 s), one
call at a time, a random pause of 0-100 ms apart (so cancels land anywhere in a poller's
cycle rather than locked to it), without waiting for the handler before the next call (a
poller's cancels overlap; ours, a few ms each, rarely do); a cancelled job is replaced.
The handler's notes come from the file ``BENCH_EVENTS`` (see ``_probe.event``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import random
import time
from typing import Any

_WARMUP = 5  # pickup samples dropped first (connections, script loads, first claims)
_PAUSE = 0.005  # between pickup samples, so the worker is idle again
_CANCEL_SPACING = 0.05  # mean seconds between two cancels (uniform from 0 to twice that)


async def enqueue(producer: Any, start: int, jobs: int, concurrency: int) -> dict[str, Any]:
    async def submitter(first: int) -> None:
        for i in range(first, start + jobs, concurrency):
            await producer.enqueue(i)

    began, cpu_began = time.monotonic(), time.process_time()
    async with asyncio.TaskGroup() as group:
        for offset in range(min(concurrency, jobs)):
            group.create_task(submitter(start + offset))
    return {"seconds": time.monotonic() - began, "cpu_seconds": time.process_time() - cpu_began}


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


async def trickle(producer: Any, start: int, samples: int, spacing: float) -> dict[str, Any]:
    submitted: list[float] = []
    for n in range(start, start + samples):
        began = time.monotonic()
        await producer.enqueue(n)
        submitted.append(began)
        await asyncio.sleep(max(0.0, began + spacing - time.monotonic()))
    return {"submitted": submitted}


class Events:
    """The ``start``/``cancel`` notes the worker's handlers append to ``BENCH_EVENTS``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = 0
        self.pending = b""
        self.started: dict[int, float] = {}
        self.cancelled: dict[int, float] = {}

    def read(self) -> None:
        try:
            with open(self.path, "rb") as file:
                file.seek(self.offset)
                data = file.read()
        except FileNotFoundError:
            return
        self.offset += len(data)
        *lines, self.pending = (self.pending + data).split(b"\n")
        for line in lines:
            kind, i, at = line.decode().split()
            (self.started if kind == "start" else self.cancelled)[int(i)] = float(at)

    async def wait(self, found: dict[int, float], i: int, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while i not in found:
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.002)
            self.read()
        return found[i]


async def cancel(
    producer: Any, samples: int, budget: float, pool: int, settle: float
) -> dict[str, Any]:
    events = Events(os.environ["BENCH_EVENTS"])
    handles: dict[int, Any] = {}
    began: dict[int, float] = {}
    calls: list[float] = []
    numbers = iter(range(1_000_000_000))

    async def refill() -> None:
        while len(handles) < pool:
            i = next(numbers)
            handles[i] = await producer.enqueue_hold(i)

    await refill()
    stalled = time.monotonic() + 60  # the worker process coming up, the first jobs settling
    deadline = float("inf")  # set once the warm-up samples are taken
    n = 0
    while n < samples + _WARMUP:
        events.read()
        now = time.monotonic()
        ready = [i for i in handles if now - events.started.get(i, now) >= settle]
        if not ready:
            assert now < stalled, "no hold job has run long enough in 60 s"
            await asyncio.sleep(0.005)
            continue
        stalled = now + 60
        if n == _WARMUP:
            deadline = now + budget
        i = min(ready)
        await asyncio.sleep(random.uniform(0, 2 * _CANCEL_SPACING))
        start = time.monotonic()
        await producer.cancel(handles.pop(i))
        if n >= _WARMUP:
            began[i] = start
            calls.append(time.monotonic() - start)
        n += 1
        await refill()
        if n > _WARMUP and time.monotonic() > deadline:
            break
    for handle in handles.values():  # leave nothing running
        await producer.cancel(handle)
    # The handlers' own notes, for every cancel timed (a poller may still be on its way).
    waited = time.monotonic() + 10.0
    while time.monotonic() < waited and began.keys() - events.cancelled.keys():
        await asyncio.sleep(0.01)
        events.read()
    latencies = [events.cancelled[i] - at for i, at in began.items() if i in events.cancelled]
    return {"cancel": latencies, "call": calls, "missed": len(began) - len(latencies)}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("library")
    parser.add_argument("mode", choices=["enqueue", "bulk", "pickup", "cancel", "trickle"])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--budget", type=float, default=10.0)
    parser.add_argument("--pool", type=int, default=32)
    parser.add_argument("--settle", type=float, default=1.05)
    parser.add_argument("--spacing", type=float, default=0.02)
    args = parser.parse_args()
    producer = importlib.import_module(f"{args.library}_app").Producer()
    await producer.start()
    try:
        if args.mode == "enqueue":
            outcome = await enqueue(producer, args.start, args.jobs, args.concurrency)
        elif args.mode == "bulk":
            outcome = await bulk(producer, args.start, args.jobs)
        elif args.mode == "trickle":
            outcome = await trickle(producer, args.start, args.samples, args.spacing)
        elif args.mode == "cancel":
            outcome = await cancel(producer, args.samples, args.budget, args.pool, args.settle)
        else:
            outcome = await pickup(producer, args.samples, args.budget)
    finally:
        await producer.stop()
    print(json.dumps(outcome))


if __name__ == "__main__":
    asyncio.run(main())
