"""Submitting and checking a batch of `tests.apps.batch_app` jobs from the test process:
an engine that knows the app's handlers (it runs no worker), the batch's jobs read back
page by page, and the app's run records."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import redis.asyncio as redis
from pydantic import BaseModel

from async_endpoints import AsyncContext, AsyncEndpoints, Batch, JobSpec, JobStatus
from async_endpoints_redis import RedisJobStore

APP = "tests.apps.batch_app"


class Part(BaseModel):
    n: int
    seconds: float = 0.0


async def part(ctx: AsyncContext[Part]) -> int:
    raise AssertionError("the test process runs no job")


async def join(ctx: AsyncContext[None]) -> str:
    raise AssertionError("the test process runs no job")


@asynccontextmanager
async def submitter(url: str, prefix: str) -> AsyncIterator[tuple[AsyncEndpoints, RedisJobStore]]:
    """An engine on the app's store with the app's handler names, running no worker, and
    its store."""
    store = RedisJobStore(url, prefix=prefix)
    engine = AsyncEndpoints(store=store, max_queue_size=None)
    engine.add_handler(part)
    engine.add_handler(join)
    try:
        yield engine, store
    finally:
        await store.aclose()


async def submit(engine: AsyncEndpoints, jobs: int, seconds: float) -> Batch:
    """A batch of ``jobs`` ``part`` jobs of ``seconds`` each, continued by one ``join``."""
    specs = [JobSpec("part", {"n": n, "seconds": seconds}) for n in range(jobs)]
    return await engine.submit_batch(specs, continue_with=[JobSpec("join")])


async def statuses(store: RedisJobStore, batch: Batch) -> Counter[JobStatus]:
    """The statuses of the batch's jobs (not its continuations), read job by job."""
    found: Counter[JobStatus] = Counter()
    cursor = None
    continuations = set(batch.continuation_ids)
    while True:
        page = await store.list_jobs(batch_id=batch.id, limit=500, cursor=cursor)
        found.update(job.status for job in page.jobs if job.id not in continuations)
        cursor = page.next_cursor
        if cursor is None:
            return found


def counts_of(batch: Batch) -> Counter[JobStatus]:
    """The batch's own counts, as a Counter like `statuses`."""
    counted = Counter(
        {
            JobStatus.QUEUED: batch.queued,
            JobStatus.SCHEDULED: batch.scheduled,
            JobStatus.IN_PROGRESS: batch.in_progress,
            JobStatus.COMPLETED: batch.completed,
            JobStatus.FAILED: batch.failed,
            JobStatus.CANCELED: batch.canceled,
        }
    )
    return +counted


async def joins(records: redis.Redis, prefix: str) -> list[str]:
    """Every run of the continuation: ``"<pid> <job id> <batch id>"``."""
    return cast(list[str], await records.lrange(f"{prefix}-test:joins", 0, -1))


async def parts_run(records: redis.Redis, prefix: str) -> list[str]:
    """Every start of a ``part`` job: ``"<pid> <job id>"``."""
    return cast(list[str], await records.lrange(f"{prefix}-test:pids", 0, -1))
