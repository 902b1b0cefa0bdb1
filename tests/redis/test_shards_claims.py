"""Claims and waits of a sharded store: shards taken in turn (none starves), every job
claimed once by concurrent workers, an idle worker woken (or handed a job) by any shard."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from async_endpoints._job import NewJob
from async_endpoints_redis import _shard_waits
from async_endpoints_redis._shard_layout import ShardLayout
from tests.redis.conftest import StoreFactory

pytestmark = pytest.mark.redis


def new_job(**options: object) -> NewJob:
    return NewJob(uuid.uuid4(), "Echo", 0, **options)  # type: ignore[arg-type]


async def test_no_shard_starves_a_busy_worker(
    make_store: StoreFactory, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every shard has a backlog far larger than a claim: three turns in a row take from
    three different shards (turns of no length here: one claim each)."""
    monkeypatch.setattr(_shard_waits, "_TURN_FOR", 0.0)
    store = await make_store(shards=3)
    layout = ShardLayout(prefix, 3)
    for _ in range(150):
        await store.enqueue(new_job())
    shards_taken = []
    for _ in range(3):
        claims = await store.claim(10, lease=10)
        assert len(claims) == 10
        shards_taken.append({layout.of_id(claim.job.id) for claim in claims})
    assert all(len(taken) == 1 for taken in shards_taken)  # one trip each
    assert set().union(*shards_taken) == {0, 1, 2}


async def test_a_claim_fills_its_limit_from_the_next_shards(make_store: StoreFactory) -> None:
    store = await make_store(shards=3)
    made = {(await store.enqueue(new_job())).id for _ in range(9)}
    claims = await store.claim(100, lease=10)
    assert {claim.job.id for claim in claims} == made


async def test_concurrent_workers_claim_every_job_once(make_store: StoreFactory) -> None:
    stores = [await make_store(shards=3) for _ in range(3)]
    made = {(await stores[0].enqueue(new_job())).id for _ in range(300)}
    taken: list[uuid.UUID] = []

    async def work(store: object) -> None:
        while claims := await store.claim(7, lease=10):  # type: ignore[attr-defined]
            for claim in claims:
                taken.append(claim.job.id)
                await store.complete(claim, None)  # type: ignore[attr-defined]

    await asyncio.gather(*(work(store) for store in stores))
    assert sorted(taken) == sorted(made)


async def test_an_idle_worker_is_handed_a_job_submitted_to_any_shard(
    make_store: StoreFactory, prefix: str
) -> None:
    worker = await make_store(shards=3)
    submitter = await make_store(shards=3)
    layout = ShardLayout(prefix, 3)
    for shard in range(3):
        assert await worker.claim(5, lease=10) == []
        job = new_job()
        while layout.of_id(job.id) != shard:
            job = new_job()
        waiting = asyncio.create_task(worker.wait_for_work(5, take=2, lease=10))
        await asyncio.sleep(0.2)  # the offers stand
        await submitter.enqueue(job)
        async with asyncio.timeout(2):
            handed = await waiting
        claims = handed or await worker.claim(5, lease=10)
        assert [claim.job.id for claim in claims] == [job.id]
        await worker.complete(claims[0], None)


async def test_a_waiting_worker_wakes_for_work_on_any_shard(
    make_store: StoreFactory, prefix: str
) -> None:
    worker = await make_store(shards=3)
    submitter = await make_store(shards=3)
    layout = ShardLayout(prefix, 3)
    for shard in range(3):
        assert await worker.claim(5, lease=10) == []
        job = new_job()
        while layout.of_id(job.id) != shard:
            job = new_job()
        waiting = asyncio.create_task(worker.wait_for_work(30))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        await submitter.enqueue(job)
        async with asyncio.timeout(2):
            await waiting
        (claim,) = await worker.claim(5, lease=10)
        assert claim.job.id == job.id
        await worker.complete(claim, None)


async def test_a_keys_jobs_run_in_order_one_at_a_time(make_store: StoreFactory) -> None:
    store = await make_store(shards=3)
    jobs = [await store.enqueue(new_job(partition_key="acct-1")) for _ in range(5)]
    for _ in range(20):
        await store.enqueue(new_job())
    order = []
    while claims := await store.claim(50, lease=10):
        keyed = [claim for claim in claims if claim.job.partition_key]
        assert len(keyed) <= 1  # one at a time
        for claim in claims:
            if claim.job.partition_key:
                order.append(claim.job.id)
            await store.complete(claim, None)
    assert order == [job.id for job in jobs]


async def test_a_workers_claims_keep_to_one_shard_for_its_turn_then_move_on(
    make_store: StoreFactory, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within a turn a busy worker's claims come from one shard (its completions then
    share script calls); the shard running dry ends the turn at once."""
    monkeypatch.setattr(_shard_waits, "_TURN_FOR", 60.0)
    store = await make_store(shards=3)
    layout = ShardLayout(prefix, 3)
    for _ in range(90):
        await store.enqueue(new_job())
    first = await store.claim(5, lease=10)
    shard = layout.of_id(first[0].job.id)
    in_turn = first + await store.claim(5, lease=10) + await store.claim(5, lease=10)
    assert {layout.of_id(claim.job.id) for claim in in_turn} == {shard}
    rest = await store.claim(100, lease=10)  # drains the turn's shard, then the others
    assert len(in_turn) + len(rest) == 90
    after = await store.claim(5, lease=10)
    assert after == []  # nothing left anywhere
