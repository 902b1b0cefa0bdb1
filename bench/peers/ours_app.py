"""async-endpoints on Redis: the benchmark's job and how it is produced.

Worker process (the library's own CLI)::

    python -m async_endpoints worker ours_app:endpoints --log-level WARNING

The same module is the producer's side: an API-only `AsyncEndpoints` (``run_workers`` is
False here; the CLI runs the pool whatever it says) submitting with `submit` and taking
results with `wait_for`. ``max_queue_size=None``: the benchmark queues up to 1,000,000
jobs, past the default 10,000 limit.

``BENCH_QUEUES`` (``high,default,low``, say) sets the ``queues`` setting; the producer then
spreads its jobs over them in turn, so every queue holds jobs (the ``queues`` scenario).
The ``hold`` handler waits until cancelled (the ``cancel`` scenario).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from typing import Any

import _probe
from pydantic import BaseModel

from async_endpoints import AsyncContext, AsyncEndpoints, JobRequest, NewJob
from async_endpoints_redis import RedisJobStore

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUES = tuple(name for name in os.environ.get("BENCH_QUEUES", "").split(",") if name)


class Item(BaseModel):
    i: int


endpoints = AsyncEndpoints(
    store=RedisJobStore(URL, prefix="bench"),
    max_concurrency=int(os.environ.get("BENCH_CONCURRENCY", "100")),
    max_queue_size=None,
    run_workers=False,
    **({"queues": QUEUES} if QUEUES else {}),  # only set when asked (older commits lack it)
)


async def noop(ctx: AsyncContext[Item]) -> float:
    assert ctx.request is not None
    return _probe.hit(ctx.request.i)


endpoints.add_handler(noop)


async def hold(ctx: AsyncContext[Item]) -> None:
    """Runs until cancelled; notes when it began and when it saw its CancelledError."""
    assert ctx.request is not None
    _probe.event("start", ctx.request.i)
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        _probe.event("cancel", ctx.request.i)
        raise


endpoints.add_handler(hold)


class Producer:
    """Submits jobs and waits for results through the public API."""

    def __init__(self) -> None:
        self._queues = itertools.cycle(QUEUES) if QUEUES else None

    async def start(self) -> None:
        await endpoints.store.start()

    async def stop(self) -> None:
        await endpoints.store.aclose()

    async def enqueue(self, i: int) -> uuid.UUID:
        if self._queues is not None:
            job = await endpoints.submit("noop", {"i": i}, queue=next(self._queues))
        else:
            job = await endpoints.submit("noop", {"i": i})
        return job.id

    async def enqueue_hold(self, i: int) -> uuid.UUID:
        job = await endpoints.submit("hold", {"i": i})
        return job.id

    async def cancel(self, handle: uuid.UUID) -> None:
        """``endpoints.cancel``: the job becomes Canceled in Redis and its id is pushed to
        the worker process running it."""
        job = await endpoints.cancel(handle)
        assert job is not None and job.status == "Canceled", job

    async def result(self, handle: uuid.UUID, timeout: float) -> Any:
        job = await endpoints.wait_for(handle, timeout=timeout)
        return job.result

    async def enqueue_bulk(self, start: int, count: int) -> None:
        """Queue jobs fast for the backlog scenario: 1,000 `RedisJobStore.enqueue` calls in
        one event-loop turn, which the store sends as one script call, because one round
        trip per job would take minutes for 1M."""
        store = endpoints.store
        chunk = 1000
        for offset in range(start, start + count, chunk):
            jobs = [
                NewJob(uuid.uuid4(), "noop", 3, JobRequest(body=f'{{"i":{i}}}'))
                for i in range(offset, min(offset + chunk, start + count))
            ]
            await asyncio.gather(*(store.enqueue(job) for job in jobs))
