"""SAQ: the benchmark's job and how it is produced.

Worker process (SAQ's CLI, as its docs prescribe)::

    saq saq_app.settings --quiet

Defaults except ``concurrency=100``. SAQ's worker blocks on its queue (BLMOVE) and
``Job.refresh(until_complete=...)`` waits on pub/sub. ``--quiet`` leaves logging
unconfigured (WARNING), which drops SAQ's per-job INFO lines like every library here.

Cancel: ``Job.abort`` marks the job ``aborting`` in Redis; the worker's ``abort`` timer
(every ``timers["abort"]`` = 1 s by default) reads the state of its running jobs that have
run at least that long and cancels the task of each aborting one. The ``hold`` handler
waits until cancelled, with no job timeout (SAQ's default is 10 s).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import _probe
from saq import Job, Queue

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


async def noop(ctx: dict[str, Any], *, i: int) -> float:
    return _probe.hit(i)


async def hold(ctx: dict[str, Any], *, i: int) -> None:
    """Runs until cancelled; notes when it began and when it saw its CancelledError."""
    _probe.event("start", i)
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        _probe.event("cancel", i)
        raise


settings = {
    "queue": Queue.from_url(URL),
    "functions": [noop, hold],
    "concurrency": int(os.environ.get("BENCH_CONCURRENCY", "100")),
}


class Producer:
    queue: Queue

    async def start(self) -> None:
        self.queue = Queue.from_url(URL)
        await self.queue.connect()

    async def stop(self) -> None:
        await self.queue.disconnect()

    async def enqueue(self, i: int) -> Job:
        job = await self.queue.enqueue("noop", i=i)
        assert job is not None
        return job

    async def enqueue_hold(self, i: int) -> Job:
        job = await self.queue.enqueue("hold", i=i, timeout=0)  # 0: no timeout
        assert job is not None
        return job

    async def cancel(self, handle: Job) -> None:
        """SAQ's own abort (``Job.abort``), as its docs show."""
        await handle.abort("canceled by the benchmark")

    async def result(self, handle: Job, timeout: float) -> Any:
        # refresh() reads the job, then subscribes: a completion in between is missed and
        # the wait runs into its timeout, so wait in steps of one second.
        deadline = time.monotonic() + timeout
        while True:
            try:
                await handle.refresh(until_complete=1.0)
            except TimeoutError:
                await handle.refresh()
            if handle.completed or time.monotonic() > deadline:
                return handle.result
