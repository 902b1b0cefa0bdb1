"""A recovery pass that fails part-way still returns the jobs it recovered: they are
re-queued (or Failed) in Redis either way, and the pool announces each one it is told of
(the lost-attempt and Failed counts of the metrics come from there). A sharded pass takes
every shard's first batch before any shard's backlog."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from async_endpoints import JobStatus, StoreUnavailableError
from async_endpoints._job import NewJob
from async_endpoints_redis import RedisJobStore
from async_endpoints_redis import _recover as plain_store
from async_endpoints_redis._shard_layout import ShardLayout
from tests import redis_servers
from tests.redis.conftest import StoreFactory

pytestmark = pytest.mark.redis

LEASE = 0.05


async def expired_claims(store: RedisJobStore, count: int) -> set[uuid.UUID]:
    """``count`` jobs (no retries) claimed for ``LEASE`` seconds and left to expire;
    their ids."""
    ids = {uuid.uuid4() for _ in range(count)}
    for job_id in ids:
        await store.enqueue(NewJob(job_id, "Echo", 0))
    claimed = await store.claim(count, lease=LEASE)
    assert {claim.job.id for claim in claimed} == ids
    await asyncio.sleep(LEASE * 4)  # the leases run out (the server's clock)
    return ids


async def test_a_batch_failing_after_others_returns_what_was_recovered(
    make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Batches of 2: the second script call fails; the first batch's 2 ids are returned
    (logged, not raised) and the next pass recovers the other 3."""
    monkeypatch.setattr(plain_store, "_RECOVER_BATCH", 2)
    store = await make_store()
    ids = await expired_claims(store, 5)
    run, calls = store._run, []

    async def failing_second(operation: str, call: Any) -> Any:
        if operation == "recover":
            calls.append(operation)
            if len(calls) == 2:
                raise StoreUnavailableError("cut off mid-pass")
        return await run(operation, call)

    monkeypatch.setattr(store, "_run", failing_second)
    first = await store.recover()
    assert len(first) == 2 and set(first) <= ids
    assert "recovery stopped after 2 job(s)" in caplog.text
    for job_id in first:
        job = await store.get(job_id)
        assert job is not None and job.status is JobStatus.FAILED  # no retries left
        assert job.error is not None and job.error.type == "ClaimExpired"
    monkeypatch.setattr(store, "_run", run)
    assert set(await store.recover()) == ids - set(first)


async def test_a_failing_first_batch_still_raises(
    make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing recovered: the store's error is raised, as before (the pool logs it)."""
    store = await make_store()
    await expired_claims(store, 1)

    async def failing(operation: str, call: Any) -> Any:
        raise StoreUnavailableError("cut off")

    monkeypatch.setattr(store, "_run", failing)
    with pytest.raises(StoreUnavailableError):
        await store.recover()


async def test_a_shards_jobs_are_returned_when_its_pointer_upkeep_fails(
    redis_cluster: redis_servers.RedisClusterProcesses,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """shards=3 on a Cluster, every shard's pointer sweep failing (it reads other shards,
    which may be failing over): the expired claims of every shard are still returned."""
    store = RedisJobStore(redis_cluster.url, prefix=prefix, shards=3)
    await store.start()
    try:
        ids = await expired_claims(store, 9)

        async def failing_sweep(*args: Any) -> None:
            raise StoreUnavailableError("a shard is failing over")

        monkeypatch.setattr(store._pointer_book, "sweep", failing_sweep)  # type: ignore[attr-defined]
        assert set(await store.recover()) == ids
        assert "pointer upkeep passed over a shard" in caplog.text
    finally:
        await store.aclose()


def ids_in_shard(layout: ShardLayout, shard: int, count: int) -> list[uuid.UUID]:
    """``count`` fresh job ids that the layout places in ``shard``."""
    ids: list[uuid.UUID] = []
    while len(ids) < count:
        job_id = uuid.uuid4()
        if layout.of_id(job_id) == shard:
            ids.append(job_id)
    return ids


async def test_a_sharded_pass_recovers_every_shards_first_batch_before_any_backlog(
    make_store: StoreFactory, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of 2, shards=3: shard 0 has 5 expired claims, shards 1 and 2 one each. One
    pass recovers all 7, and the other shards' claims come right after shard 0's first
    batch, before its backlog (a backlog in one shard holds up no other's recovery)."""
    monkeypatch.setattr(plain_store, "_RECOVER_BATCH", 2)
    store = await make_store(shards=3)
    layout = ShardLayout(prefix, 3)
    backlog = ids_in_shard(layout, 0, 5)
    others = ids_in_shard(layout, 1, 1) + ids_in_shard(layout, 2, 1)
    for job_id in backlog + others:
        await store.enqueue(NewJob(job_id, "Echo", 0))
    claimed: set[uuid.UUID] = set()
    while len(claimed) < 7:  # a claim visits the shards in turn
        claims = await store.claim(7, lease=LEASE)
        assert claims, "every job is claimable"
        claimed |= {claim.job.id for claim in claims}
    assert claimed == set(backlog + others)
    await asyncio.sleep(LEASE * 4)  # the leases run out (the server's clock)
    recovered = await store.recover()
    assert sorted(recovered) == sorted(backlog + others)  # each once, in one pass
    assert set(recovered[:2]) <= set(backlog)  # shard 0's first batch
    assert set(recovered[2:4]) == set(others)  # then every other shard's first batch
    assert set(recovered[4:]) <= set(backlog)  # then shard 0's backlog
