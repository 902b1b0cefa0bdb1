"""Script calls of a sharded store under load: the submissions (and the completions) of
one event-loop turn, whatever their shards, wait in one queue and go as one script call
per shard; only a lone item, with nothing else under way in any shard, goes at once."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis

from async_endpoints._job import NewJob
from async_endpoints_redis._shard_layout import ShardLayout
from tests.redis.conftest import StoreFactory
from tests.redis.support import without_layout_upkeep

pytestmark = pytest.mark.redis

SHARDS = 3
JOBS = 30  # ten in each shard


def jobs_in_every_shard(prefix: str) -> list[NewJob]:
    """``JOBS`` jobs, their ids' shards taking turns (0, 1, 2, 0, ...)."""
    layout = ShardLayout(prefix, SHARDS)
    jobs = []
    for n in range(JOBS):
        job_id = next(i for i in iter(uuid.uuid4, None) if layout.of_id(i) == n % SHARDS)
        jobs.append(NewJob(job_id, "Echo", 0))
    return jobs


async def script_calls(client: Redis) -> int:
    stats = await client.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval"))


async def test_a_turns_submissions_across_shards_go_as_one_script_call_per_shard(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """Thirty submissions in one turn, ten per shard: the first goes at once (nothing
    was under way), the others wait for the end of the turn and go as one call per
    shard (a shard that was idle does not send its first one alone too)."""
    store = await make_store(shards=SHARDS)
    await store.enqueue(NewJob(uuid.uuid4(), "Echo", 0))  # the script is loaded
    await without_layout_upkeep(store)
    before = await script_calls(raw_redis)
    jobs = await asyncio.gather(*(store.enqueue(job) for job in jobs_in_every_shard(prefix)))
    assert len(jobs) == JOBS
    assert await script_calls(raw_redis) - before <= SHARDS + 1


async def test_a_turns_completions_across_shards_go_as_one_script_call_per_shard(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """Thirty claims of three shards completed in one turn: as many script calls as
    shards, and one more for the completion sent at once."""
    store = await make_store(shards=SHARDS)
    for job in jobs_in_every_shard(prefix):
        await store.enqueue(job)
    claims = await store.claim(JOBS, lease=30)
    assert len(claims) == JOBS
    warm_up, *claims = claims  # the script is loaded
    assert await store.complete(warm_up, "done") is not None
    await without_layout_upkeep(store)
    before = await script_calls(raw_redis)
    done = await asyncio.gather(*(store.complete(claim, "done") for claim in claims))
    assert all(job is not None and job.result == "done" for job in done)
    assert await script_calls(raw_redis) - before <= SHARDS + 1
