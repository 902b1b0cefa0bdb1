"""async-endpoints on Redis: the benchmark's job and how it is produced.

Worker process (the library's own CLI)::

    python -m async_endpoints worker ours_app:endpoints --log-level WARNING

The same module is the producer's side: an API-only `AsyncEndpoints` (``run_workers`` is
False here; the CLI runs the pool whatever it says) submitting with `submit` and taking
results with `wait_for`. ``max_queue_size=None``: the benchmark queues up to 1,000,000
jobs, past the default 10,000 limit.

``BENCH_QUEUES`` (``high,default,low``, say) sets the ``queues`` setting; the producer then
spreads its jobs over them in turn, so every queue holds jobs (the ``queues`` scenario).
``BENCH_KEYS`` and ``BENCH_TENANTS`` give the producer's job ``i`` a partition key / a
tenant (the ``partitions`` scenario): ``unique`` (one per job), or a number N of them
(``i % N``); ``BENCH_TENANT`` names one tenant for every job. With ``BENCH_EVENTS`` set,
the no-op handler also notes ``start`` and ``end`` (after yielding once to the loop) in
that file, followed by ``:<tenant>`` for a job with a tenant, so the driver can check that
the jobs of one key never overlapped, and count whose jobs started when.
``BENCH_SHARDS`` (3, say) sets the store's ``shards`` (the ``shards`` scenario, on a
Redis Cluster).
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
KEYS = os.environ.get("BENCH_KEYS", "")
TENANTS = os.environ.get("BENCH_TENANTS", "")
TENANT = os.environ.get("BENCH_TENANT", "")
TRACE = bool(os.environ.get("BENCH_EVENTS"))
SHARDS = os.environ.get("BENCH_SHARDS", "")


class Item(BaseModel):
    i: int


endpoints = AsyncEndpoints(
    # shards only when asked (older commits lack it)
    store=RedisJobStore(URL, prefix="bench", **({"shards": int(SHARDS)} if SHARDS else {})),
    max_concurrency=int(os.environ.get("BENCH_CONCURRENCY", "100")),
    max_queue_size=None,
    run_workers=False,
    **({"queues": QUEUES} if QUEUES else {}),  # only set when asked (older commits lack it)
)


async def noop(ctx: AsyncContext[Item]) -> float:
    assert ctx.request is not None
    started = _probe.hit(ctx.request.i)
    if TRACE:
        tenant = "" if ctx.tenant is None else f":{ctx.tenant}"
        _probe.event(f"start{tenant}", ctx.request.i)
        await asyncio.sleep(0)  # another job of the key would start now, if one could
        _probe.event(f"end{tenant}", ctx.request.i)
    return started


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


def label(spread: str, prefix: str, i: int) -> str | None:
    """Job ``i``'s key or tenant: None, one of its own (``unique``), or one of N."""
    if not spread:
        return None
    return f"{prefix}{i}" if spread == "unique" else f"{prefix}{i % int(spread)}"


def labels(i: int) -> dict[str, str]:
    """Job ``i``'s partition key and tenant, as keywords (none when not asked for: the
    commits before issue 11 lack them)."""
    found = {"partition_key": label(KEYS, "k", i), "tenant": TENANT or label(TENANTS, "t", i)}
    return {name: value for name, value in found.items() if value is not None}


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
            job = await endpoints.submit("noop", {"i": i}, **labels(i))
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
                NewJob(uuid.uuid4(), "noop", 3, JobRequest(body=f'{{"i":{i}}}'), **labels(i))
                for i in range(offset, min(offset + chunk, start + count))
            ]
            await asyncio.gather(*(store.enqueue(job) for job in jobs))
