"""SAQ: the benchmark's job and how it is produced.

Worker process (SAQ's CLI, as its docs prescribe)::

    saq saq_app.settings --quiet

Defaults except ``concurrency=100``. SAQ's worker blocks on its queue (BLMOVE) and
``Job.refresh(until_complete=...)`` waits on pub/sub. ``--quiet`` leaves logging
unconfigured (WARNING), which drops SAQ's per-job INFO lines like every library here.
"""

from __future__ import annotations

import os
import time
from typing import Any

import _probe
from saq import Job, Queue

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


async def noop(ctx: dict[str, Any], *, i: int) -> float:
    return _probe.hit(i)


settings = {
    "queue": Queue.from_url(URL),
    "functions": [noop],
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
