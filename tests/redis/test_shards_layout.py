"""Where a sharded store keeps what: its hash tags, one master each on an evenly split
cluster; jobs placed by partition key, batch or id; ids found with no fan-out."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from redis.asyncio import Redis

from async_endpoints._batch import NewBatch
from async_endpoints._job import NewJob
from async_endpoints_redis import RedisJobStore
from async_endpoints_redis._shard_layout import SLOTS, ShardLayout, slot_of, slot_ranges
from tests.redis.conftest import StoreFactory
from tests.redis.support import without_layout_upkeep
from tests.redis_servers import RedisClusterProcesses, RedisServer

pytestmark = pytest.mark.redis


def new_job(**options: object) -> NewJob:
    return NewJob(uuid.uuid4(), "Echo", 0, **options)  # type: ignore[arg-type]


def shard_of_key(key: str, layout: ShardLayout) -> int:
    """The shard a Redis key belongs to, by its hash tag."""
    tag = key[1 : key.index("}")]
    return layout.prefixes.index(tag)


def test_shard_zero_keeps_the_stores_own_tag_and_the_others_fall_in_other_ranges() -> None:
    for count in (1, 2, 3, 4, 5, 8):
        layout = ShardLayout("async-endpoints", count)
        assert layout.prefixes[0] == "async-endpoints"
        ranges = slot_ranges(count)
        owners = {
            next(i for i, (lo, hi) in enumerate(ranges) if lo <= slot_of(p) <= hi)
            for p in layout.prefixes
        }
        assert len(owners) == count, count
        assert ranges[0][0] == 0 and ranges[-1][1] == SLOTS - 1


def test_each_shard_lives_on_a_master_of_its_own_in_an_evenly_split_cluster(
    redis_cluster: RedisClusterProcesses,
) -> None:
    layout = ShardLayout(f"t-{uuid.uuid4().hex[:8]}", 3)
    masters = {redis_cluster.primary_for("{" + p + "}:job:x").port for p in layout.prefixes}
    assert len(masters) == 3


@pytest.mark.parametrize("shards", [0, -1, 17, 2.5, "3", True, None])
def test_a_shard_count_that_is_not_a_whole_number_from_1_to_16_is_refused(
    shards: object,
) -> None:
    from async_endpoints import ConfigurationError

    with pytest.raises(ConfigurationError, match="shards"):
        RedisJobStore("redis://127.0.0.1:1", shards=shards)  # type: ignore[arg-type]


async def test_one_shard_writes_nothing_but_todays_keys(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """shards=1 (the default) is today's layout: every key under the one tag, and no
    layout record (the plain store only reads it)."""
    store = await make_store()
    assert type(store) is RedisJobStore
    await store.enqueue(new_job(partition_key="k"))
    (claim,) = await store.claim(1, lease=5)
    await store.complete(claim, 1)
    keys = [key async for key in raw_redis.scan_iter(match=f"*{prefix}*")]
    assert keys and all(key.startswith("{" + prefix + "}:") for key in keys)
    assert "{" + prefix + "}:shards" not in keys


async def test_jobs_without_a_key_spread_evenly_and_a_keys_jobs_share_one_shard(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    store = await make_store(shards=3)
    layout = ShardLayout(prefix, 3)
    plain = [await store.enqueue(new_job()) for _ in range(300)]
    keyed = [await store.enqueue(new_job(partition_key="order-7")) for _ in range(20)]
    homes: dict[uuid.UUID, int] = {}
    async for key in raw_redis.scan_iter(match="*:job:*"):
        if prefix in key:
            homes[uuid.UUID(key.rsplit(":", 1)[1])] = shard_of_key(key, layout)
    spread = Counter(homes[job.id] for job in plain)
    assert set(spread) == {0, 1, 2} and min(spread.values()) >= 60, spread
    assert {homes[job.id] for job in keyed} == {layout.of_key("order-7")}
    assert all(homes[job.id] == layout.of_id(job.id) for job in plain)


async def test_a_batch_lives_in_one_shard_with_its_counts(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    store = await make_store(shards=3)
    layout = ShardLayout(prefix, 3)
    batch_id = uuid.uuid4()
    jobs = [new_job(batch_id=batch_id) for _ in range(30)]
    batch = await store.create_batch(NewBatch(batch_id, jobs))
    assert batch.total == 30
    homes = set()
    async for key in raw_redis.scan_iter(match="*:job:*"):
        if prefix in key:
            homes.add(shard_of_key(key, layout))
    assert homes == {layout.of_id(batch_id)}
    for job in jobs:  # every job found by its id, pointers or not
        found = await store.get(job.id)
        assert found is not None and found.batch_id == batch_id


async def test_a_batch_whose_keys_fall_in_two_shards_is_refused_whole(
    make_store: StoreFactory,
) -> None:
    store = await make_store(shards=3)
    layout = ShardLayout(store._layout.prefix, 3)  # type: ignore[attr-defined]
    keys = iter(f"k{n}" for n in range(100))
    first = next(keys)
    other = next(key for key in keys if layout.of_key(key) != layout.of_key(first))
    batch_id = uuid.uuid4()
    jobs = [new_job(batch_id=batch_id, partition_key=k) for k in (first, other)]
    with pytest.raises(ValueError, match="different shards"):
        await store.create_batch(NewBatch(batch_id, jobs))
    assert await store.get(jobs[0].id) is None and await store.count_waiting() == 0


async def test_a_client_chosen_id_stays_unique_across_shards(make_store: StoreFactory) -> None:
    """An id placed by its key in another shard than its id's: a second job with that id,
    keyed (another shard) or not (the id's shard, where the pointer is), is a
    duplicate."""
    from async_endpoints._errors import DuplicateJobError

    store = await make_store(shards=3)
    layout = ShardLayout(store._layout.prefix, 3)  # type: ignore[attr-defined]
    job_id = uuid.uuid4()
    key = next(f"k{n}" for n in range(100) if layout.of_key(f"k{n}") != layout.of_id(job_id))
    await store.enqueue(NewJob(job_id, "Echo", 0, partition_key=key))
    other = next(f"o{n}" for n in range(100) if layout.of_key(f"o{n}") not in (
        layout.of_key(key), layout.of_id(job_id)))  # fmt: skip
    with pytest.raises(DuplicateJobError):
        await store.enqueue(NewJob(job_id, "Echo", 0, partition_key=other))
    found = await store.get(job_id)
    assert found is not None and found.partition_key == key
    with pytest.raises(DuplicateJobError):  # nor without a key (it would go to its id's shard)
        await store.enqueue(NewJob(job_id, "Echo", 0))
    assert await store.count_waiting() == 1


async def counted_calls(cluster: RedisClusterProcesses) -> dict[int, int]:
    """Per master port: the reads and script calls it served so far."""
    counts = {}
    for master in cluster.masters():
        client = Redis.from_url(master.url)
        stats = await client.info("commandstats")
        await client.aclose()
        counts[master.port] = sum(
            stats.get(f"cmdstat_{name}", {}).get("calls", 0)
            for name in ("hgetall", "hget", "evalsha", "eval")
        )
    return counts


async def test_get_cancel_and_requeue_visit_only_the_jobs_shard(
    redis_cluster: RedisClusterProcesses,
) -> None:
    """No fan-out: a job in its id's shard costs calls on its master alone; a job placed
    by its key elsewhere adds one HGET on its id's master, and nothing on the third."""
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    store = RedisJobStore(redis_cluster.url, prefix=prefix, shards=3)
    try:
        await store.start()
        layout = ShardLayout(prefix, 3)
        ports = [redis_cluster.primary_for("{" + p + "}:x").port for p in layout.prefixes]
        plain = await store.enqueue(new_job())
        job_id = uuid.uuid4()
        key = next(f"k{n}" for n in range(100) if layout.of_key(f"k{n}") != layout.of_id(job_id))
        keyed = await store.enqueue(NewJob(job_id, "Echo", 0, partition_key=key))
        await without_layout_upkeep(store)
        for job, touched in (
            (plain, {ports[layout.of_id(plain.id)]}),
            (keyed, {ports[layout.of_id(job_id)], ports[layout.of_key(key)]}),
        ):
            before = await counted_calls(redis_cluster)
            assert await store.get(job.id) is not None
            assert (await store.cancel(job.id)) is not None
            assert (await store.requeue(job.id)) is not None
            after = await counted_calls(redis_cluster)
            busy = {port for port in after if after[port] != before[port]}
            assert busy == touched, (busy, touched)
    finally:
        await store.aclose()


async def test_a_listing_merges_every_shard_in_order_page_by_page(
    make_store: StoreFactory,
) -> None:
    store = await make_store(shards=3)
    made = [await store.enqueue(new_job()) for _ in range(40)]
    seen: list[uuid.UUID] = []
    cursor = None
    while True:
        page = await store.list_jobs(limit=7, cursor=cursor)
        seen += [job.id for job in page.jobs]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(seen) == sorted(job.id for job in made)  # each once
    created = {job.id: job.created_at for job in made}
    times = [created[job_id] for job_id in seen]
    assert times == sorted(times, reverse=True)  # newest first across the shards


async def test_a_cursor_over_sixteen_shards_stays_within_a_cursors_length(
    make_store: StoreFactory,
) -> None:
    """Queued jobs (the longest positions: their queue's name) in 16 shards, page by
    page, one job each: every shard's state soon holds a position."""
    from async_endpoints import JobStatus

    store = await make_store(shards=16)
    queues = ("x" * 200, "default")
    made = [await store.enqueue(new_job(queue=queues[0])) for n in range(64)]
    seen: list[uuid.UUID] = []
    cursor = None
    while True:
        page = await store.list_jobs(status=JobStatus.QUEUED, limit=1, cursor=cursor, queues=queues)
        seen += [job.id for job in page.jobs]
        cursor = page.next_cursor
        if cursor is None:
            break
        assert len(cursor) <= 2048
    assert sorted(seen) == sorted(job.id for job in made)


async def test_counts_sum_every_shard_and_pause_reaches_every_shard(
    make_store: StoreFactory,
) -> None:
    store = await make_store(shards=3)
    for _ in range(30):
        await store.enqueue(new_job())
    assert await store.count_waiting() == 30
    (stats,) = await store.queue_stats(["default"])
    assert stats.queued == 30
    await store.pause(["default"])
    assert await store.claim(10, lease=5) == []
    assert await store.paused_queues() == frozenset({"default"})
    await store.resume(["default"])
    claimed = 0
    while batch := await store.claim(10, lease=5):
        claimed += len(batch)
    assert claimed == 30


async def test_max_waiting_counts_every_shard(make_store: StoreFactory) -> None:
    from async_endpoints._errors import QueueFullError

    store = await make_store(shards=3)
    for _ in range(5):
        await store.enqueue(new_job(), max_waiting=5)
    with pytest.raises(QueueFullError):
        await store.enqueue(new_job(), max_waiting=5)
    assert await store.count_waiting() == 5


async def test_a_sharded_store_on_one_server_is_complete(
    redis_server: RedisServer, prefix: str
) -> None:
    """One server holds every tag: the same store, the shards just live together."""
    store = RedisJobStore(redis_server.url, prefix=prefix, shards=3)
    try:
        job = await store.enqueue(new_job())
        (claim,) = await store.claim(1, lease=5)
        done = await store.complete(claim, {"ok": True})
        assert done is not None and done.id == job.id
    finally:
        await store.aclose()
