"""Pointers of a sharded store: written for a job placed away from its id's shard, kept
while the job (or, for a follow-up, its parent) lives, deleted by the recovery pass that
checks them once the job is gone."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis

from async_endpoints._job import NewJob
from async_endpoints_redis._shard_layout import ShardLayout
from tests.redis.conftest import StoreFactory

pytestmark = pytest.mark.redis


def keyed_elsewhere(layout: ShardLayout) -> NewJob:
    """A job whose partition key's shard is not its id's."""
    job_id = uuid.uuid4()
    key = next(f"k{n}" for n in range(100) if layout.of_key(f"k{n}") != layout.of_id(job_id))
    return NewJob(job_id, "Echo", 0, partition_key=key)


def pointer_keys(layout: ShardLayout, job_id: uuid.UUID) -> tuple[str, str]:
    tag = "{" + layout.prefixes[layout.of_id(job_id)] + "}"
    return f"{tag}:at", f"{tag}:at-check"


async def make_due(raw_redis: Redis, layout: ShardLayout, job_id: uuid.UUID) -> None:
    """Bring the pointer's next check forward to now."""
    _, checks = pointer_keys(layout, job_id)
    assert await raw_redis.zadd(checks, {str(job_id): 0}, xx=True, ch=True) == 1


async def test_a_pointer_lives_as_long_as_its_job(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    store = await make_store(shards=3, retention=0.5)
    layout = ShardLayout(prefix, 3)
    job = keyed_elsewhere(layout)
    await store.enqueue(job)
    pointers, _ = pointer_keys(layout, job.id)
    assert (
        await raw_redis.hget(pointers, str(job.id))
        == layout.prefixes[layout.of_key(job.partition_key or "")]
    )
    await make_due(raw_redis, layout, job.id)
    await store.recover()  # the job lives: the pointer stays
    assert await raw_redis.hexists(pointers, str(job.id))
    (claim,) = await store.claim(1, lease=5)
    await store.complete(claim, None)
    await asyncio.sleep(0.7)  # its retention passes
    await store.recover()  # deletes the job
    assert await store.get(job.id) is None
    _, checks = pointer_keys(layout, job.id)
    if await raw_redis.zscore(checks, str(job.id)) is not None:  # not checked since
        await make_due(raw_redis, layout, job.id)
        await store.recover()
    assert not await raw_redis.hexists(pointers, str(job.id))  # gone with its job
    assert await raw_redis.zscore(checks, str(job.id)) is None


async def test_a_follow_ups_pointer_stays_while_its_parent_lives(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """The follow-up is stored only when its parent ends: its pointer must outlive the
    checks made meanwhile, and lead to it once stored."""
    store = await make_store(shards=3)
    layout = ShardLayout(prefix, 3)
    parent_id = uuid.uuid4()
    follow_id = uuid.uuid4()
    while layout.of_id(follow_id) == layout.of_id(parent_id):
        follow_id = uuid.uuid4()
    follow_up = NewJob(follow_id, "Deliver", 0, delivers_for=parent_id)
    await store.enqueue(NewJob(parent_id, "Echo", 0, follow_up=follow_up))
    await make_due(raw_redis, layout, follow_id)
    await store.recover()
    pointers, _ = pointer_keys(layout, follow_id)
    assert await raw_redis.hexists(pointers, str(follow_id))
    (claim,) = await store.claim(1, lease=5)
    await store.complete(claim, None)
    stored = await store.get(follow_id)
    assert stored is not None and stored.name == "Deliver"
