"""A rolling reshard seen by a process that runs no recovery (an API-only instance): it
learns of the shards another shard count added within a second of using the store, and a
pause it makes reaches them too (every shard keeps shard 0's pauses)."""

from __future__ import annotations

import uuid

import pytest

from async_endpoints._job import NewJob
from async_endpoints_redis._shard_store import ShardedRedisJobStore
from tests.redis.conftest import StoreFactory
from tests.redis.support import eventually

pytestmark = pytest.mark.redis


def new_job(**options: object) -> NewJob:
    return NewJob(uuid.uuid4(), "Echo", 0, **options)  # type: ignore[arg-type]


async def test_a_process_running_no_recovery_finds_the_jobs_of_a_newer_shard_count(
    make_store: StoreFactory,
) -> None:
    """A store of 2 shards, started first and only asked (no recover pass), finds every
    job a store of 6 shards stored after it started, at once (a lookup that finds
    nothing reads the record of counts before it answers None), and counts them within
    seconds."""
    older = await make_store(shards=2)
    newer = await make_store(shards=6)
    jobs = [await newer.enqueue(new_job()) for _ in range(30)]
    found = [await older.get(job.id) for job in jobs]
    assert all(job is not None for job in found)

    async def all_counted() -> bool:
        return await older.count_waiting() == 30

    await eventually(all_counted, timeout=10)


async def test_a_pause_reaches_the_shards_of_a_count_its_maker_did_not_know(
    make_store: StoreFactory,
) -> None:
    """A store of 2 shards, started before a store of 6 shards and not yet aware of it,
    pauses "low": the newer store's own shards, which the pause did not write, are paused
    within seconds of the stores' use, and none of the "low" jobs stored in them is
    claimed; resumed by the older store, all of them are claimed within seconds."""
    older = await make_store(shards=2)
    newer = await make_store(shards=6)
    assert isinstance(older, ShardedRedisJobStore) and isinstance(newer, ShardedRedisJobStore)
    assert len(older._shards) == 2  # it has not heard of the newer count yet
    await older.pause(["low"])

    async def every_shard_paused() -> bool:
        await newer.count_waiting()  # the store in use keeps its layouts current
        found = [await shard.paused_queues() for shard in newer._shards]
        return all("low" in paused for paused in found)

    await eventually(every_shard_paused, timeout=10)
    for _ in range(30):
        await newer.enqueue(new_job(queue="low"))
    assert await newer.claim(30, lease=30, queues=["low"]) == []
    await older.resume(["low"])  # the older store's own shards; the upkeep resumes the rest
    claimed: list[object] = []

    async def all_claimed() -> bool:
        claimed.extend(await newer.claim(30, lease=30, queues=["low"]))
        return len(claimed) == 30

    await eventually(all_claimed, timeout=10)
