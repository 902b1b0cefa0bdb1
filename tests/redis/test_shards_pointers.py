"""Pointers of a sharded store: written for a job placed away from its id's shard, kept
while the job (or, for a follow-up, its parent) lives, deleted by the recovery pass that
checks them once the job is gone."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

import async_endpoints_redis
from async_endpoints._errors import JobStoreError
from async_endpoints._job import NewJob
from async_endpoints_redis import RedisJobStore
from async_endpoints_redis._shard_layout import ShardLayout
from async_endpoints_redis._shard_pointers import STEP_ALLOWANCE_MS
from tests.faults.harness import wait_for
from tests.redis.conftest import StoreFactory
from tests.redis_servers import RedisServer

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


async def test_a_submission_whose_store_closes_while_its_pointer_is_written_is_refused_as_closed(
    redis_server: RedisServer, raw_redis: Redis, prefix: str
) -> None:
    """A job placed away from its id's shard whose store is closed while its pointer is
    on its way is refused with `JobStoreError` ("the store is closed"), not an
    IndexError of the router's emptied shard list."""
    client = Redis.from_url(redis_server.url)  # given: the store does not close it
    store = RedisJobStore(client=client, prefix=prefix, shards=3)
    try:
        await store.start()
        await raw_redis.client_pause(5000, all=False)  # writes (the pointer's script) wait
        try:
            submission = asyncio.ensure_future(store.enqueue(keyed_elsewhere(store._layout)))

            async def pointer_write_waits() -> bool:
                clients = await raw_redis.client_list()
                return any(c["cmd"] in ("evalsha", "eval") and "b" in c["flags"] for c in clients)

            await wait_for(pointer_write_waits, 5, "the pointer's script waiting")
            await store.aclose()
        finally:
            await raw_redis.client_unpause()
        with pytest.raises(JobStoreError, match="closed"):
            await submission
    finally:
        await store.aclose()
        await client.aclose()


def test_the_pointers_allowance_for_clock_steps_is_the_scripts_one() -> None:
    """The idempotency pointer outlives its end by the allowance the Lua scripts give
    every record whose end is read on the elapsed-time clock (lua/_bookkeeping.lua)."""
    source = (Path(async_endpoints_redis.__file__).parent / "lua/_bookkeeping.lua").read_text()
    assert f"local STEP_ALLOWANCE_MS = {STEP_ALLOWANCE_MS}\n" in source


async def test_one_recovery_pass_checks_every_pointer_due(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """More pointers fall due in each shard than one check takes (200): a single recovery
    pass checks them all, so the checks keep up with any rate of jobs stored away from
    their id's shard (here each job's own partition key places it elsewhere)."""
    store = await make_store(shards=3, retention=0.3)
    layout = ShardLayout(prefix, 3)
    jobs = []
    for index in range(900):
        job_id = uuid.uuid4()
        key = next(
            f"k{index}-{n}"
            for n in range(100)
            if layout.of_key(f"k{index}-{n}") != layout.of_id(job_id)
        )
        jobs.append(NewJob(job_id, "Echo", 0, partition_key=key))
    await asyncio.gather(*(store.enqueue(job) for job in jobs))
    claims: list[Any] = []
    while len(claims) < len(jobs):
        claims += await store.claim(500, lease=30)
    await asyncio.gather(*(store.complete(claim, None) for claim in claims))
    await asyncio.sleep(0.5)  # their retention passes
    await store.recover()  # deletes the jobs
    for job in jobs:
        await make_due(raw_redis, layout, job.id)
    pointers = ["{" + shard + "}:at" for shard in layout.prefixes]
    assert min([await raw_redis.hlen(key) for key in pointers]) > 200
    await store.recover()
    assert [await raw_redis.hlen(key) for key in pointers] == [0, 0, 0]
