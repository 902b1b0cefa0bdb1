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
from tests.redis.support import user_without
from tests.redis_servers import RedisClusterProcesses, RedisServer

#: How long nobody calls the store (the scenario, not a wait for something to happen).
QUIET = 3.0
#: How long a live process takes to answer a probe, well within the start's wait for it.
ANSWER_LATE = 0.25


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


async def test_a_start_not_allowed_to_send_the_probe_catches_up_alone(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """A user whose ACL grant names the store's channels one by one and leaves out the
    probe channel cannot ask the live processes: its start is not refused, and it catches
    the clock up with the wall-clock time that passed, as with nobody live (the live
    store's reading, ten minutes ahead, is not asked for, so not taken)."""
    tag = "{" + prefix + "}"
    user = f"no-probe-{prefix}"
    await raw_redis.acl_setuser(
        user,
        enabled=True,
        reset_channels=True,  # Redis 6.2 grants every channel to a new user by default
        passwords=["+pw"],
        keys=[f"{tag}*"],
        channels=[f"{tag}:{name}*" for name in ("wake", "done", "cancel", "events", "inbox")],
        commands=["+@all"],
    )
    live = await make_store()
    await live.enqueue(NewJob(uuid.uuid4(), "Echo", 0))
    before = await clock_of(raw_redis, prefix)
    await asyncio.sleep(QUIET)
    ahead = live._connection.elapsed.reading() + 600_000
    live._connection.elapsed.observe(ahead)
    port = raw_redis.connection_pool.connection_kwargs["port"]
    # Its subscription is refused too: a short deadline for that wait.
    await make_store(f"redis://{user}:pw@127.0.0.1:{port}/0", socket_timeout=0.5)
    assert before + QUIET * 1000 <= await clock_of(raw_redis, prefix) < ahead


async def test_a_cluster_start_not_allowed_to_count_listeners_waits_for_an_answer(
    redis_cluster: RedisClusterProcesses, prefix: str
) -> None:
    """On a Cluster, PUBLISH counts the listeners of its own node alone, so a count of 0 is
    checked on every node (PUBSUB NUMSUB); a user not allowed that check waits for an
    answer rather than catch up alone. Here the one listener is on another node (as after
    a failover) and answers a moment later (a busy process) with the live store's reading,
    ten minutes ahead: the start waits for it and the clock takes it."""
    user = f"no-numsub-{prefix}"
    for node in redis_cluster.masters():  # all of PUBSUB: 6.2 cannot take out NUMSUB alone
        await user_without(node, user, "pubsub")
    live = RedisJobStore(redis_cluster.url, prefix=prefix)
    await live.start()
    await live.enqueue(NewJob(uuid.uuid4(), "Echo", 0))
    await live._connection.notifications.aclose()  # its listener moves to another node:
    clock_key = f"{{{prefix}}}:clock"
    owner = redis_cluster.primary_for(clock_key)
    other = next(node for node in redis_cluster.masters() if node.port != owner.port)
    listener = Redis.from_url(other.url).pubsub()
    await listener.subscribe(f"{{{prefix}}}:clock-probe")
    await listener.get_message(timeout=1)
    ahead = 0

    async def answer_probes() -> None:
        while True:
            message = await listener.get_message(ignore_subscribe_messages=True, timeout=1)
            if message is not None:
                await asyncio.sleep(ANSWER_LATE)
                await live._connection.run("clock", lambda scripts: scripts.clock())

    answering = asyncio.create_task(answer_probes())
    starting = RedisJobStore(
        redis_cluster.url.replace("redis://", f"redis://{user}:pw@"), prefix=prefix
    )
    try:
        await asyncio.sleep(QUIET)
        ahead = live._connection.elapsed.reading() + 600_000
        live._connection.elapsed.observe(ahead)
        await starting.start()
        answering.cancel()  # an answer still to come would hide a start that did not wait
        clock = int(await starting._connection.client.get(clock_key))
    finally:
        answering.cancel()
        await listener.aclose()
        await starting.aclose()
        await live.aclose()
    assert clock >= ahead


async def test_a_probe_asks_the_live_stores_of_its_own_database_alone(
    make_store: StoreFactory, redis_server: RedisServer, raw_redis: Redis, prefix: str
) -> None:
    """Pub/sub ignores a server's numbered databases while each holds its own clock: a
    store starting in database 1 asks the live store of database 1 (whose reading, ten
    minutes ahead, the clock then takes), and the live store of the same prefix in
    database 0 is not asked (its clock is left as it was)."""
    database_one_url = f"redis://127.0.0.1:{redis_server.port}/1"
    other = await make_store(database_one_url)
    home = await make_store()
    for store in (other, home):
        await store.enqueue(NewJob(uuid.uuid4(), "Echo", 0))
    before_home = await clock_of(raw_redis, prefix)
    await asyncio.sleep(QUIET)
    ahead = other._connection.elapsed.reading() + 600_000
    other._connection.elapsed.observe(ahead)
    await make_store(database_one_url)
    async with Redis.from_url(database_one_url) as database_one:
        assert await clock_of(database_one, prefix) >= ahead
    assert await clock_of(raw_redis, prefix) == before_home
