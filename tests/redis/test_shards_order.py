"""The claim orders of a sharded store: within one shard exactly those of one store (strict
queue priority, oldest first, tenant turns); across shards, a bound: every shard is
visited within N turns of a worker, so a job in any shard waits for at most N turns
(plus its own shard's tenant turns)."""

from __future__ import annotations

import uuid

import pytest

from async_endpoints._job import NewJob
from async_endpoints_redis._shard_layout import ShardLayout
from tests.redis.conftest import StoreFactory

pytestmark = pytest.mark.redis

LEASE = 10.0


def in_shard(layout: ShardLayout, shard: int, **options: object) -> NewJob:
    """A job whose id (so, without a key, its place) is in ``shard``."""
    job_id = uuid.uuid4()
    while layout.of_id(job_id) != shard:
        job_id = uuid.uuid4()
    return NewJob(job_id, "Echo", 0, **options)  # type: ignore[arg-type]


async def test_within_a_shard_priority_then_oldest_first(
    make_store: StoreFactory, prefix: str
) -> None:
    store = await make_store(shards=3)
    layout = ShardLayout(prefix, 3)
    made = [
        await store.enqueue(in_shard(layout, 1, queue=queue))
        for queue in ("low", "default", "high", "default", "high")
    ]
    claimed = []
    while claims := await store.claim(1, lease=LEASE, queues=("high", "default", "low")):
        claimed += [claim.job.id for claim in claims]
    assert claimed == [made[i].id for i in (2, 4, 1, 3, 0)]


async def test_within_a_shard_tenants_take_turns(make_store: StoreFactory, prefix: str) -> None:
    store = await make_store(shards=3)
    layout = ShardLayout(prefix, 3)
    backlog = [await store.enqueue(in_shard(layout, 2, tenant="big")) for _ in range(10)]
    lone = await store.enqueue(in_shard(layout, 2, tenant="small"))
    first_two = []
    for _ in range(2):
        (claim,) = await store.claim(1, lease=LEASE)
        first_two.append(claim.job.id)
    assert first_two == [backlog[0].id, lone.id]


async def test_across_shards_a_job_waits_at_most_one_turn_per_shard(
    make_store: StoreFactory, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two shards hold backlogs; a lone job sits in the third: one worker taking one job
    per claim reaches it within three turns, wherever its turns start (turns of no length
    here: one claim each)."""
    from async_endpoints_redis import _shard_waits

    monkeypatch.setattr(_shard_waits, "_TURN_FOR", 0.0)
    store = await make_store(shards=3)
    layout = ShardLayout(prefix, 3)
    for shard in (0, 1):
        for _ in range(20):
            await store.enqueue(in_shard(layout, shard))
    lone = await store.enqueue(in_shard(layout, 2))
    taken = []
    for _ in range(3):
        (claim,) = await store.claim(1, lease=LEASE)
        taken.append(claim.job.id)
    assert lone.id in taken
