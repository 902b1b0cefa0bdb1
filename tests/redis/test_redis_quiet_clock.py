"""The elapsed-time clock after a spell in which no process called the store (every worker
stopped for a deploy, the API instances idle): a process that starts then reads the time
that passed, so leases, delays and retention it grants are not that far in the past."""

from __future__ import annotations

import asyncio
import uuid

from redis.asyncio import Redis

from async_endpoints import JobStatus
from async_endpoints._job import NewJob
from async_endpoints_redis import RedisJobStore
from async_endpoints_redis._shard_layout import shard_prefixes
from tests.redis.conftest import StoreFactory
from tests.redis_servers import RedisClusterProcesses

#: How long nobody calls the store (the scenario, not a wait for something to happen).
QUIET = 3.0


async def clock_of(raw_redis: Redis, prefix: str) -> int:
    """The store's elapsed-time clock (ms) as stored."""
    (key,) = [key async for key in raw_redis.scan_iter(match=f"*{prefix}*:clock")]
    return int(await raw_redis.get(key))


async def test_a_store_started_after_a_quiet_spell_reads_the_time_that_passed(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """The clock stood still while nobody called; the first reading of a process that
    starts then catches up with the time that passed."""
    first = await make_store()
    await first.enqueue(NewJob(uuid.uuid4(), "Echo", 0))
    before = await clock_of(raw_redis, prefix)
    await asyncio.sleep(QUIET)
    await make_store()
    assert await clock_of(raw_redis, prefix) >= before + QUIET * 1000


async def test_a_job_claimed_after_a_quiet_spell_keeps_its_lease_when_an_instance_calls(
    make_store: StoreFactory,
) -> None:
    """An API instance stays up but idle while no worker runs; a worker starts and claims a
    job with a 2 s lease; the API instance then submits (its reading is the real time). The
    lease holds: recovery takes nothing back from the live worker."""
    api = await make_store()
    job = await api.enqueue(NewJob(uuid.uuid4(), "Echo", 0))
    await asyncio.sleep(QUIET)
    worker = await make_store()
    (claim,) = await worker.claim(1, lease=2.0)
    assert claim.job.id == job.id
    await api.enqueue(NewJob(uuid.uuid4(), "Echo", 0))
    assert await api.recover() == []
    still = await api.get(job.id)
    assert still is not None and still.status is JobStatus.IN_PROGRESS


async def test_a_delay_granted_after_a_quiet_spell_is_not_cut_short(
    make_store: StoreFactory,
) -> None:
    """A job delayed 2 s by a worker started after a quiet spell is not claimable as soon as
    an instance that stayed up calls: its due time is on the real time, not the stale one."""
    api = await make_store()
    await api.enqueue(NewJob(uuid.uuid4(), "Echo", 0))
    await asyncio.sleep(QUIET)
    worker = await make_store()
    await worker.enqueue(NewJob(uuid.uuid4(), "Late", 0, delay=2.0))
    await api.enqueue(NewJob(uuid.uuid4(), "Echo", 0))
    claimed = await api.claim(10, lease=30)
    assert sorted(claim.job.name for claim in claimed) == ["Echo", "Echo"]


async def test_a_store_started_after_a_quiet_spell_first_asks_the_live_processes(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """A wall-clock step looks like a quiet spell, so a store starting after one first asks
    the live processes for their readings (a message on the probe channel); a live store
    answers by setting the clock with its own reading, which the starting store then takes
    rather than the server's wall clock (here the live reading is ten minutes ahead, so the
    two differ)."""
    live = await make_store()
    await live.enqueue(NewJob(uuid.uuid4(), "Echo", 0))
    probes = raw_redis.pubsub()
    await probes.subscribe(f"{{{prefix}}}:clock-probe")
    await probes.get_message(timeout=1)  # the subscription's confirmation
    before = await clock_of(raw_redis, prefix)
    await asyncio.sleep(QUIET)
    ahead = live._connection.elapsed.reading() + 600_000
    live._connection.elapsed.observe(ahead)
    await make_store()
    message = await probes.get_message(ignore_subscribe_messages=True, timeout=5)
    await probes.aclose()
    assert message is not None and message["type"] == "message"
    assert await clock_of(raw_redis, prefix) >= ahead > before + 600_000


async def test_a_store_started_while_the_clock_is_being_set_asks_nobody(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """A clock set within the last second needs no probe: nobody is asked."""
    await make_store()
    probes = raw_redis.pubsub()
    await probes.subscribe(f"{{{prefix}}}:clock-probe")
    await probes.get_message(timeout=1)
    await make_store()
    message = await probes.get_message(ignore_subscribe_messages=True, timeout=0.5)
    await probes.aclose()
    assert message is None


async def test_a_probe_nobody_answers_leaves_the_start_to_catch_up_alone(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """A subscriber that never answers (a process frozen with its connection open) does not
    stop the start: after waiting for an answer, it catches the clock up with the time that
    passed, as with nobody live."""
    first = await make_store()
    await first.enqueue(NewJob(uuid.uuid4(), "Echo", 0))
    await first.aclose()
    silent = raw_redis.pubsub()
    await silent.subscribe(f"{{{prefix}}}:clock-probe")
    await silent.get_message(timeout=1)
    before = await clock_of(raw_redis, prefix)
    await asyncio.sleep(QUIET)
    await make_store()
    await silent.aclose()
    assert await clock_of(raw_redis, prefix) >= before + QUIET * 1000


async def test_every_shard_on_a_cluster_asks_the_live_processes_before_catching_up(
    redis_cluster: RedisClusterProcesses, prefix: str
) -> None:
    """On a real Redis Cluster, with three shards on three masters: each shard of a store
    starting after a quiet spell takes the reading a live store answers with (ten minutes
    ahead here, so it shows), not its master's wall clock."""
    live = RedisJobStore(redis_cluster.url, prefix=prefix, shards=3)
    starting = RedisJobStore(redis_cluster.url, prefix=prefix, shards=3)
    try:
        await live.start()
        for index in range(3):
            await live.enqueue(NewJob(uuid.uuid4(), "Echo", 0, partition_key=f"k{index}"))
        await asyncio.sleep(QUIET)
        connections = [shard._connection for shard in live._shards]
        ahead = [c.elapsed.reading() + 600_000 for c in connections]
        for connection, reading in zip(connections, ahead, strict=True):
            connection.elapsed.observe(reading)
        await starting.start()
        client = starting._shards[0]._connection.client
        clocks = [
            int(await client.get(f"{{{shard}}}:clock")) for shard in shard_prefixes(prefix, 3)
        ]
    finally:
        for store in (live, starting):
            await store.aclose()
    assert all(clock >= reading for clock, reading in zip(clocks, ahead, strict=True))
