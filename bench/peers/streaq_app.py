"""streaQ: the benchmark's job and how it is produced.

Worker process (streaQ's CLI, as its docs prescribe)::

    streaq run streaq_app:worker

Defaults except ``concurrency=100``. streaQ reads a Redis stream (XREADGROUP, blocking)
and ``Task.result`` waits on pub/sub. The lifespan only lowers streaQ's logger to WARNING
(its CLI logs every task at INFO), as every library here runs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import _probe
from streaq import Worker

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


@asynccontextmanager
async def quiet_logs() -> AsyncIterator[None]:
    logging.getLogger("streaq").setLevel(logging.WARNING)
    yield


worker = Worker(
    redis_url=URL,
    concurrency=int(os.environ.get("BENCH_CONCURRENCY", "100")),
    lifespan=quiet_logs,
)


@worker.task()
async def noop(i: int) -> float:
    return _probe.hit(i)


class Producer:
    async def start(self) -> None:
        await worker.__aenter__()

    async def stop(self) -> None:
        await worker.__aexit__(None, None, None)

    async def enqueue(self, i: int) -> Any:
        return await noop.enqueue(i)

    async def result(self, handle: Any, timeout: float) -> Any:
        outcome = await handle.result(timeout=timeout)
        return outcome.result

    async def enqueue_bulk(self, start: int, count: int) -> None:
        """streaQ's own bulk API (one pipeline per call)."""
        chunk = 5000
        for offset in range(start, start + count, chunk):
            stop = min(offset + chunk, start + count)
            await worker.enqueue_many([noop.enqueue(i) for i in range(offset, stop)])
