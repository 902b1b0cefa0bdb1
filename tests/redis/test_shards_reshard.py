"""Resharding under load: a store restarted with another shard count, while jobs are
submitted and run, loses and strands none (the old shards are drained, see
`async_endpoints_redis._shard_reshard`), and finds every old job by its id."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from async_endpoints import Claim, Idempotency, NewBatch
from async_endpoints._idempotency import by_request_id
from async_endpoints._job import NewJob
from async_endpoints_redis import RedisJobStore
from async_endpoints_redis._shard_store import ShardedRedisJobStore
from tests.redis.conftest import StoreFactory

pytestmark = pytest.mark.redis

LEASE = 10.0


def new_job(**options: object) -> NewJob:
    return NewJob(uuid.uuid4(), "Echo", 0, **options)  # type: ignore[arg-type]


async def submit(store: RedisJobStore, count: int, done: list[uuid.UUID]) -> None:
    """``count`` jobs, a third of them keyed (three keys), the rest spread."""
    for n in range(count):
        key = f"key-{n % 3}" if n % 3 == 0 else None
        done.append((await store.enqueue(new_job(partition_key=key))).id)
        if n % 10 == 0:
            await asyncio.sleep(0)


async def drain(store: RedisJobStore, ran: list[uuid.UUID], stop: asyncio.Event) -> None:
    """Claim and complete until ``stop`` is set and nothing is left."""
    while True:
        claims = await store.claim(20, lease=LEASE)
        for claim in claims:
            ran.append(claim.job.id)
            assert await store.complete(claim, None) is not None
        if not claims:
            if stop.is_set():
                return
            await store.wait_for_work(0.05)


async def reshard(make_store: StoreFactory, before: int, after: int) -> None:
    """Jobs stored with ``before`` shards; a store with ``after`` shards starts while the
    old one still submits and runs jobs; then the old one stops and the new one alone
    runs what is left. Every job runs exactly once and is found by its id throughout."""
    old = await make_store(shards=before)
    submitted: list[uuid.UUID] = []
    ran: list[uuid.UUID] = []
    await submit(old, 150, submitted)
    new = await make_store(shards=after)
    assert isinstance(new, ShardedRedisJobStore)  # serves the old shards too
    stop_old, stop_new = asyncio.Event(), asyncio.Event()
    workers = [
        asyncio.create_task(drain(old, ran, stop_old)),
        asyncio.create_task(drain(new, ran, stop_new)),
    ]
    await asyncio.gather(submit(old, 100, submitted), submit(new, 100, submitted))
    stop_old.set()
    await workers[0]
    await old.aclose()
    await submit(new, 50, submitted)
    stop_new.set()
    await workers[1]
    assert sorted(ran) == sorted(submitted)  # each once: nothing lost, nothing twice
    assert await new.count_waiting() == 0
    for job_id in submitted[::7]:  # old and new jobs alike, found with no fan-out
        job = await new.get(job_id)
        assert job is not None and job.status.is_terminal


async def test_one_shard_to_three_under_load(make_store: StoreFactory) -> None:
    await reshard(make_store, 1, 3)


async def test_three_shards_to_one_under_load(make_store: StoreFactory) -> None:
    await reshard(make_store, 3, 1)


async def test_three_shards_to_two_under_load(make_store: StoreFactory) -> None:
    await reshard(make_store, 3, 2)


async def test_a_plain_store_stays_plain_when_no_other_count_was_recorded(
    make_store: StoreFactory,
) -> None:
    store = await make_store()
    assert type(store) is RedisJobStore


@pytest.mark.parametrize(("before", "after"), [(3, 2), (1, 3)])
async def test_a_keys_order_holds_across_a_resharding(
    make_store: StoreFactory, prefix: str, before: int, after: int
) -> None:
    """The key's lane is in an old shard: new jobs of the key join it there."""
    from async_endpoints_redis._shard_layout import ShardLayout

    old = await make_store(shards=before)
    new_layout = ShardLayout(prefix, after)
    old_layout = ShardLayout(prefix, before)
    key = next(
        f"k{n}"
        for n in range(200)
        if old_layout.prefixes[old_layout.of_key(f"k{n}")]
        != new_layout.prefixes[new_layout.of_key(f"k{n}")]
    )
    first = await old.enqueue(new_job(partition_key=key))
    (running,) = await old.claim(1, lease=LEASE)
    new = await make_store(shards=after)
    second = await new.enqueue(new_job(partition_key=key))
    assert await new.claim(10, lease=LEASE) == []  # behind the running first job
    await old.complete(running, None)
    (claim,) = await new.claim(10, lease=LEASE)
    assert (running.job.id, claim.job.id) == (first.id, second.id)


async def running_in_an_old_lane(
    make_store: StoreFactory, prefix: str, before: int, after: int
) -> tuple[RedisJobStore, RedisJobStore, str, Claim]:
    """A store of ``before`` shards running the first job of a key whose lane moves with
    ``after`` shards; that store, one of ``after`` shards on the same prefix, the key and
    the running claim."""
    from async_endpoints_redis._shard_layout import ShardLayout

    old = await make_store(shards=before)
    new_layout, old_layout = ShardLayout(prefix, after), ShardLayout(prefix, before)
    key = next(
        f"k{n}"
        for n in range(200)
        if old_layout.prefixes[old_layout.of_key(f"k{n}")]
        != new_layout.prefixes[new_layout.of_key(f"k{n}")]
    )
    await old.enqueue(new_job(partition_key=key))
    (running,) = await old.claim(1, lease=LEASE)
    return old, await make_store(shards=after), key, running


@pytest.mark.parametrize(("before", "after"), [(3, 2), (1, 3)])
async def test_an_idempotent_submission_joins_its_keys_old_lane(
    make_store: StoreFactory, prefix: str, before: int, after: int
) -> None:
    """With an idempotency key too, a keyed job goes to its key's lane in the old shard:
    it waits behind the key's running job (it went to the new shard, and ran beside it)."""
    old, new, key, running = await running_in_an_old_lane(make_store, prefix, before, after)
    second, earlier = await new.enqueue_once(
        new_job(partition_key=key), Idempotency("idem-1", "fp", 60)
    )
    assert earlier is None
    assert await new.claim(10, lease=LEASE) == []  # behind the running first job
    await old.complete(running, None)
    (claim,) = await new.claim(10, lease=LEASE)
    assert claim.job.id == second.id


@pytest.mark.parametrize(("before", "after"), [(3, 2), (1, 3)])
async def test_a_batch_joins_its_keys_old_lane(
    make_store: StoreFactory, prefix: str, before: int, after: int
) -> None:
    """A batch whose job has the key goes to the key's lane in the old shard too."""
    old, new, key, running = await running_in_an_old_lane(make_store, prefix, before, after)
    batch_id = uuid.uuid4()
    member = NewJob(uuid.uuid4(), "Echo", 0, partition_key=key, batch_id=batch_id)
    await new.create_batch(NewBatch(batch_id, [member]))
    assert await new.claim(10, lease=LEASE) == []  # behind the running first job
    await old.complete(running, None)
    (claim,) = await new.claim(10, lease=LEASE)
    assert claim.job.id == member.id


async def test_an_emptied_old_layout_is_retired(
    make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the old shards hold nothing and no store said their count lately, a recovery
    pass deletes it from the record: a store started afterwards serves only its own."""
    from async_endpoints_redis import _shard_reshard

    old = await make_store(shards=3)
    job = await old.enqueue(new_job())
    await old.aclose()
    new = await make_store(retention=0.2)  # a plain store: serves the old shards
    assert isinstance(new, ShardedRedisJobStore)
    (claim,) = await new.claim(5, lease=LEASE)
    assert claim.job.id == job.id
    await new.complete(claim, None)
    await asyncio.sleep(0.3)  # its retention passes
    monkeypatch.setattr(_shard_reshard, "_LIVE_FOR", 0.0)
    await new.recover()  # drops the job
    await new.recover()  # finds the old shards empty: retires their count
    later = await make_store()
    assert type(later) is RedisJobStore


@pytest.mark.parametrize(("before", "after"), [(4, 2), (2, 6), (1, 3)])
async def test_an_idempotency_key_used_before_a_reshard_is_still_a_repeat_after_it(
    make_store: StoreFactory, before: int, after: int
) -> None:
    """Keys used with one shard count, repeated through a store of another: each repeat
    answers the job stored the first time (and its fingerprint), and stores nothing."""
    old = await make_store(shards=before)
    firsts = {}
    for n in range(20):
        job, earlier = await old.enqueue_once(new_job(), Idempotency(f"idem-{n}", "fp", 60))
        assert earlier is None
        firsts[n] = job.id
    new = await make_store(shards=after)
    for n in range(20):
        job, earlier = await new.enqueue_once(new_job(), Idempotency(f"idem-{n}", "fp", 60))
        assert (job.id, earlier) == (firsts[n], "fp"), n
    assert await new.count_waiting() == 20


async def test_concurrent_repeats_of_a_key_used_before_a_reshard_meet_in_its_first_job(
    make_store: StoreFactory,
) -> None:
    """Repeats of keys used with 2 shards, sent at the same moment through two stores of
    6 shards and the old store itself, all answer the job stored the first time and
    store nothing (a regression test: each repeat reads the old layout's record before
    it writes this layout's)."""
    old = await make_store(shards=2)
    firsts = {}
    for n in range(20):
        job, _ = await old.enqueue_once(new_job(), Idempotency(f"race-{n}", "fp", 60))
        firsts[n] = job.id
    stores = [old, await make_store(shards=6), await make_store(shards=6)]
    repeats = [
        (n, store.enqueue_once(new_job(), Idempotency(f"race-{n}", "fp", 60)))
        for n in range(20)
        for store in stores
        for _ in range(2)
    ]
    answers = await asyncio.gather(*(call for _, call in repeats))
    for (n, _), (job, earlier) in zip(repeats, answers, strict=True):
        assert (job.id, earlier) == (firsts[n], "fp"), n
    for store in stores:
        assert await store.count_waiting() == 20


@pytest.mark.parametrize(("before", "after"), [(3, 2), (1, 3), (2, 6)])
async def test_a_chosen_id_used_before_a_reshard_is_still_a_repeat_after_it(
    make_store: StoreFactory, before: int, after: int
) -> None:
    """Jobs submitted with client-chosen ids (half of them with a partition key) through
    one shard count, repeated through a store of another: a repeat answers the job stored
    the first time, as does one with other content (with the first's fingerprint: a 409
    over HTTP), and nothing more is stored."""
    old = await make_store(shards=before)
    firsts = []
    for n in range(20):
        job = NewJob(uuid.uuid4(), "Echo", 0, partition_key=f"key-{n % 4}" if n % 2 else None)
        _, earlier = await old.enqueue_once(job, by_request_id(job.id, "fp", 60))
        assert earlier is None
        firsts.append(job)
    new = await make_store(shards=after)
    for job in firsts:
        for fingerprint in ("fp", "other"):
            stored, earlier = await new.enqueue_once(job, by_request_id(job.id, fingerprint, 60))
            assert (stored.id, earlier) == (job.id, "fp")
    assert await new.count_waiting() == 20
