"""Listing entries whose job is gone (its key expired by the Redis TTL backstop before a
recovery pass deleted it with its entries) are taken out by the listing that meets them,
and never fill a page with nothing."""

from __future__ import annotations

import uuid

import pytest
from redis.asyncio import Redis

from async_endpoints._job import JobStatus, NewJob
from async_endpoints_redis import RedisJobStore


def tag(prefix: str) -> str:
    return "{" + prefix + "}"


async def entries(raw_redis: Redis, prefix: str, index: str) -> int:
    """How many entries the listing index ``index`` holds, in all its chunks."""
    pattern = f"{tag(prefix)}:ix:{index}:*"
    chunks = [key async for key in raw_redis.scan_iter(match=pattern) if not key.endswith(":n")]
    return sum([await raw_redis.zcard(chunk) for chunk in chunks])


@pytest.mark.parametrize(
    ("status", "index"), [(JobStatus.COMPLETED, "Completed"), (None, "created")]
)
async def test_entries_of_jobs_gone_are_taken_out_and_the_page_holds_the_live_ones(
    store: RedisJobStore, raw_redis: Redis, prefix: str, status: JobStatus | None, index: str
) -> None:
    for _ in range(8):
        await store.enqueue(NewJob(uuid.uuid4(), "Job", 3))
    for claim in await store.claim(8, lease=30):
        await store.complete(claim, "done")
    # The six listed first (newest first; two stored or completed in one millisecond are
    # listed by id, so the order is read, not assumed from the calls' order).
    listed = (await store.list_jobs(status=status, limit=8)).jobs
    gone, kept = listed[:6], listed[6:]
    for job in gone:
        await raw_redis.delete(f"{tag(prefix)}:job:{job.id}")
    assert await entries(raw_redis, prefix, index) == 8
    page = await store.list_jobs(status=status, limit=2)
    assert {job.id for job in page.jobs} == {job.id for job in kept}
    assert await entries(raw_redis, prefix, index) == 2
