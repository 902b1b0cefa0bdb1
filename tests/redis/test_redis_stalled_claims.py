"""A claim sent while Redis stalls, carried out when the stall ends, on a real server.

The store measures leases on its elapsed-time clock, which moves only when callers advance
it with their readings (see ``async_endpoints_redis/_elapsed.py``). While every client is
paused (``CLIENT PAUSE``) nobody does, so a claim sent early in the stall is granted a lease
from that early reading and is answered when the stall ends with the lease nearly or wholly
over: the first call another process sends afterwards, with a reading of now, finds it
expired and recovers the job. The worker renews such a claim before its handler starts, and
does not start one it finds lost, so the job never runs twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    Claim,
    Job,
    JobStatus,
    StoreUnavailableError,
)
from async_endpoints._job import NewJob
from async_endpoints_redis import RedisJobStore
from tests.redis.support import eventually
from tests.redis.test_redis_hand_over import offers_key
from tests.redis_servers import RedisClusterProcesses, RedisServer

pytestmark = pytest.mark.redis

LEASE = 1.0  # claim_timeout
PAUSE_MS = 2500  # the stall: longer than two leases
REPLY_TIMEOUT = 10.0  # far beyond the stall: calls wait it out rather than fail
#: How long recovery leaves leases whose deadline fell in a quiet spell (QUIET_GRACE_MS in
#: async_endpoints_redis/lua/_lib.lua), plus a little.
QUIET_GRACE = 2.0 + 0.2


def counting_starts(starts: list[int]) -> Callable[[AsyncContext[None]], Awaitable[str]]:
    """A handler named ``work`` that notes each start (its retry count) in ``starts``."""

    async def work(ctx: AsyncContext[None]) -> str:
        starts.append(ctx.retry_count)
        await asyncio.sleep(LEASE / 2)
        return "ran"

    return work


async def recover_often(store: RedisJobStore) -> None:
    """Another process's stale-claim recovery, every 50 ms, with readings of now."""
    while True:
        await store.recover()
        await asyncio.sleep(0.05)


async def test_a_job_claimed_in_a_stall_is_not_run_by_two_workers(
    own_redis_server: RedisServer, prefix: str
) -> None:
    """One worker's claim of the job is sent in the stall; another process recovers
    stale claims every 50 ms. The job runs once and completes."""
    stores = [
        RedisJobStore(own_redis_server.url, prefix=prefix, socket_timeout=REPLY_TIMEOUT)
        for _ in range(2)
    ]
    worker_store, other_store = stores
    for store in stores:
        await store.start()
    engine = AsyncEndpoints(
        store=worker_store,
        max_concurrency=1,
        claim_timeout=LEASE,
        recovery_interval=3600,
        polling_interval=60,
    )
    blocker_started, release_blocker = asyncio.Event(), asyncio.Event()
    starts: list[int] = []
    work = counting_starts(starts)

    async def block(ctx: AsyncContext[None]) -> None:
        blocker_started.set()
        await release_blocker.wait()

    engine.add_handler(block)
    engine.add_handler(work)
    recovering: asyncio.Task[None] | None = None
    try:
        async with engine.running():
            await engine.submit("block")  # holds the pool's one slot
            async with asyncio.timeout(10):
                await blocker_started.wait()
            job = await engine.submit("work")  # waits in the queue behind it
            async with Redis.from_url(own_redis_server.url) as admin:
                await admin.execute_command("CLIENT", "PAUSE", PAUSE_MS, "ALL")
            release_blocker.set()  # the slot frees: the claim of the job is sent now
            recovering = asyncio.create_task(recover_often(other_store))
            done = await engine.wait_for(job.id, timeout=20)
    finally:
        if recovering is not None:
            recovering.cancel()
            await asyncio.gather(recovering, return_exceptions=True)
        for store in stores:
            await store.aclose()
    assert done.status is JobStatus.COMPLETED and done.result == "ran"
    assert len(starts) == 1, f"the handler started {len(starts)} times (retry counts {starts})"


async def test_a_job_handed_over_in_a_stall_is_not_run_by_two_workers(
    own_redis_server: RedisServer, prefix: str, steady_offers: None
) -> None:
    """An idle worker's offer stands; the job is submitted in the stall, so the enqueue
    that hands it over is carried out when the stall ends, with a lease from the
    submitter's early reading. Another process recovers stale claims every 50 ms. The
    job runs once and completes."""
    stores = [
        RedisJobStore(own_redis_server.url, prefix=prefix, socket_timeout=REPLY_TIMEOUT)
        for _ in range(3)
    ]
    worker_store, api_store, other_store = stores
    for store in stores:
        await store.start()
    engine = AsyncEndpoints(
        store=worker_store, claim_timeout=LEASE, recovery_interval=3600, polling_interval=60
    )
    api = AsyncEndpoints(store=api_store)  # submits only: it runs no workers
    starts: list[int] = []
    work = counting_starts(starts)

    engine.add_handler(work)
    api.add_handler(work)
    tasks: list[asyncio.Task[object]] = []
    try:
        async with engine.running():
            client = worker_store._connection.client
            await eventually(lambda: client.hexists(offers_key(prefix), worker_store._inbox))
            async with Redis.from_url(own_redis_server.url) as admin:
                await admin.execute_command("CLIENT", "PAUSE", PAUSE_MS, "ALL")
            tasks.append(asyncio.create_task(api.submit("work")))
            tasks.append(asyncio.create_task(recover_often(other_store)))
            job = await tasks[0]
            done = await engine.wait_for(job.id, timeout=20)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for store in stores:
            await store.aclose()
    assert done.status is JobStatus.COMPLETED and done.result == "ran"
    assert len(starts) == 1, f"the handler started {len(starts)} times (retry counts {starts})"


@contextlib.asynccontextmanager
async def two_stores(
    url: str, prefix: str, shards: int = 1, timeout: float = REPLY_TIMEOUT
) -> AsyncIterator[list[RedisJobStore]]:
    """A worker's store and another process's, started, on one server and prefix, whose
    calls give up after ``timeout``."""
    stores = [
        RedisJobStore(url, prefix=prefix, socket_timeout=timeout, shards=shards) for _ in range(2)
    ]
    try:
        for store in stores:
            await store.start()
        yield stores
    finally:
        for store in stores:
            await store.aclose()


async def submitted(store: RedisJobStore) -> uuid.UUID:
    """The id of a new job named ``work`` in ``store``."""
    engine = AsyncEndpoints(store=store)  # submits only: no workers run here
    engine.add_handler(counting_starts([]))
    return (await engine.submit("work")).id


async def one_on_each_shard(store: RedisJobStore, shards: int) -> set[uuid.UUID]:
    """Ids of jobs submitted until each shard of ``store`` has one: whichever shard a
    claim asks first then holds a job."""
    job_ids: set[uuid.UUID] = set()
    homes: set[int] = set()
    while len(homes) < shards:
        job_id = await submitted(store)
        job_ids.add(job_id)
        homes.add(store._layout.of_id(job_id) if shards > 1 else 0)
        assert len(job_ids) < 100, "the ids do not spread over the shards"
    return job_ids


async def completed_unrecovered(
    worker_store: RedisJobStore, other_store: RedisJobStore, claims: list[Claim], lease: float
) -> Job | None:
    """Another process's recovery leaves the claim alone; it renews and completes."""
    assert await other_store.recover() == []
    assert await worker_store.renew(claims, lease=lease) == set()
    return await worker_store.complete(claims[0], "ran")


async def claimed_in_a_stall_and_completed(
    worker_store: RedisJobStore, other_store: RedisJobStore, shards: int, servers: list[str]
) -> Job | None:
    """A job on each shard; every server stalls 3 s; the worker's claim (2 s lease),
    sent early in the stall, is carried out at its end; then `completed_unrecovered`."""
    lease, pause_ms = 2.0, 3000
    job_ids = await one_on_each_shard(worker_store, shards)
    for url in servers:
        async with Redis.from_url(url) as admin:
            await admin.execute_command("CLIENT", "PAUSE", pause_ms, "ALL")
    claims = await worker_store.claim(1, lease=lease)  # answered when the stall ends
    assert len(claims) == 1 and claims[0].job.id in job_ids
    return await completed_unrecovered(worker_store, other_store, claims, lease)


@pytest.mark.parametrize("shards", [1, 3], ids=["one-tag", "sharded"])
async def test_a_claim_carried_out_after_a_stall_gets_its_whole_lease_from_then(
    own_redis_server: RedisServer, prefix: str, shards: int
) -> None:
    """The claim is sent early in a stall and carried out when it ends, with the reading
    it was sent with. Another process's recovery right afterwards, with a reading of now,
    finds its lease running (not over since the stall), so no attempt is counted against a
    job whose worker had no chance to start it; the claim renews and completes."""
    async with two_stores(own_redis_server.url, prefix, shards) as stores:
        done = await claimed_in_a_stall_and_completed(*stores, shards, [own_redis_server.url])
    assert done is not None and done.status is JobStatus.COMPLETED
    assert done.retry_count == 0


async def test_a_claim_resent_after_its_reply_was_lost_leases_its_jobs_from_the_resend(
    own_redis_server: RedisServer, prefix: str
) -> None:
    """The first send of a claim is carried out but its reply never reaches the worker
    (the connection broke); the worker resends it most of a lease later and gets the same
    jobs back. Their lease counts from the resend, as the worker counts it: a recovery
    pass a while after the resend (but longer than a lease after the first send) leaves
    them running."""
    lease = 6.0
    async with two_stores(own_redis_server.url, prefix) as (worker_store, other_store):
        connection = worker_store._connection
        real_run = connection.run
        lost_replies = ["claim"]

        async def losing_the_first_claim_reply(operation: str, call: Any) -> Any:
            reply = await real_run(operation, call)
            if operation in lost_replies:
                lost_replies.remove(operation)
                raise StoreUnavailableError("Redis is unavailable (claim): connection lost")
            return reply

        connection.run = losing_the_first_claim_reply  # type: ignore[method-assign]
        job_id = await submitted(other_store)
        with pytest.raises(StoreUnavailableError):
            await worker_store.claim(1, lease=lease)
        await asyncio.sleep(lease * 0.5)  # the worker backs off, the first lease runs on
        claims = await worker_store.claim(1, lease=lease)  # the resend
        assert [claim.job.id for claim in claims] == [job_id]
        await asyncio.sleep(lease * 0.7)  # past the first send's lease, within the resend's
        done = await completed_unrecovered(worker_store, other_store, claims, lease)
    assert done is not None and done.status is JobStatus.COMPLETED
    assert done.retry_count == 0


async def test_a_lease_running_when_a_stall_began_gets_the_stall_on_top(
    own_redis_server: RedisServer, prefix: str
) -> None:
    """Two jobs are claimed with leases of 1 s, then Redis stalls for 3 s; another
    process's recovery is sent 1.5 s into the stall (past both leases by its reading).
    The worker could renew neither through the stall, so recovery gives them the stall's
    length on top: the one whose handler ended in the stall is settled afterwards, not run
    again; the other, never settled (its worker died), is recovered once lease and stall
    have both passed, not before."""
    lease, pause_ms = 1.0, 3000
    async with two_stores(own_redis_server.url, prefix) as (worker_store, other_store):
        ended_id, dead_id = await submitted(worker_store), await submitted(worker_store)
        claims = await worker_store.claim(2, lease=lease)
        claimed_at = asyncio.get_running_loop().time()
        by_id = {claim.job.id: claim for claim in claims}
        assert set(by_id) == {ended_id, dead_id}
        async with Redis.from_url(own_redis_server.url) as admin:
            await admin.execute_command("CLIENT", "PAUSE", pause_ms, "ALL")
        await asyncio.sleep(lease * 1.5)
        assert await other_store.recover() == []  # carried out when the stall ends
        done = await worker_store.complete(by_id[ended_id], "ran")
        assert done is not None and done.status is JobStatus.COMPLETED

        async def dead_one_recovered() -> bool:
            return await other_store.recover() == [dead_id]

        await eventually(dead_one_recovered, timeout=10)
        recovered_after = asyncio.get_running_loop().time() - claimed_at
    assert done.retry_count == 0
    assert recovered_after >= lease + pause_ms / 1000 - 0.2


@pytest.mark.parametrize("trail", [3.0, 0.3], ids=["behind-the-clock", "a-little-behind"])
async def test_a_caller_whose_reading_trails_after_a_quiet_spell_is_no_stall(
    own_redis_server: RedisServer, prefix: str, trail: float
) -> None:
    """A process that has not read the clock for long (its monotonic clock drifting
    behind the others') calls after a quiet spell: that is no stall (none is recorded),
    and a dead worker's lease gets nothing on top: recovery with a reading of now, by a
    process that met no trouble reaching Redis, takes its job back at once."""
    lease, quiet = 0.5, 1.2
    async with two_stores(own_redis_server.url, prefix) as (worker_store, other_store):
        job_id = await submitted(worker_store)
        assert [claim.job.id for claim in await worker_store.claim(1, lease=lease)] == [job_id]
        await asyncio.sleep(quiet)  # the worker died; nobody calls
        elapsed = other_store._connection.elapsed
        elapsed._seen_ms -= int(trail * 1000)  # its reading now trails by that much
        recovered = await other_store.recover()  # past the deadline itself, or behind it
        recovered += await worker_store.recover()  # a reading of now
        async with Redis.from_url(own_redis_server.url) as admin:
            assert await admin.exists(f"{{{prefix}}}:clock:stall") == 0
    assert recovered == [job_id]


@pytest.mark.parametrize("shards", [1, 3], ids=["one-tag", "sharded"])
async def test_a_stall_first_met_by_a_fresh_call_spares_the_leases_running_through_it(
    own_redis_server: RedisServer, prefix: str, shards: int
) -> None:
    """Two jobs claimed with 1 s leases; Redis stalls 3 s. The worker's settlement of the
    one whose handler ended and another process's recovery are sent in the stall and give
    up before it ends (dropped, never carried out); so the first call after the stall is
    that process's recovery, sent again with a reading of now: to the store the stall is a
    quiet spell, and as the process met trouble reaching Redis it leaves the leases whose
    deadline fell in the spell alone for a while. The settlement, sent again, lands: the
    job completes on its first attempt; the other lease (its worker dead) is recovered by
    a pass the quiet spell's grace later."""
    lease, pause_ms = 1.0, 3000
    async with two_stores(own_redis_server.url, prefix, shards, timeout=0.5) as stores:
        worker_store, other_store = stores
        ended_id, dead_id = await submitted(worker_store), await submitted(worker_store)
        claims = await worker_store.claim(2, lease=lease)
        by_id = {claim.job.id: claim for claim in claims}
        assert set(by_id) == {ended_id, dead_id}
        async with Redis.from_url(own_redis_server.url) as admin:
            await admin.execute_command("CLIENT", "PAUSE", pause_ms, "ALL")
        resumes_at = asyncio.get_running_loop().time() + pause_ms / 1000
        with pytest.raises(StoreUnavailableError):  # the settlement's try gives up
            await worker_store.complete(by_id[ended_id], "ran")
        # The recovery's try gives up too (a sharded store passes over each shard that
        # does not answer, and may not raise).
        with contextlib.suppress(StoreUnavailableError):
            await other_store.recover()
        await asyncio.sleep(resumes_at - asyncio.get_running_loop().time())  # nobody called
        assert await other_store.recover() == []
        if shards == 1:  # spared as a quiet spell's, not by a stall's record
            async with Redis.from_url(own_redis_server.url) as admin:
                assert await admin.exists(f"{{{prefix}}}:clock:quiet") == 1
                assert await admin.exists(f"{{{prefix}}}:clock:stall") == 0
        done = await worker_store.complete(by_id[ended_id], "ran")
        assert done is not None and done.status is JobStatus.COMPLETED
        await asyncio.sleep(QUIET_GRACE)
        recovered = await other_store.recover()
    assert done.retry_count == 0
    assert recovered == [dead_id]


async def test_a_quiet_spell_soon_after_another_leaves_the_first_ones_grace_whole(
    own_redis_server: RedisServer, prefix: str
) -> None:
    """A stall met first by a fresh recovery (a quiet spell) spares a dead worker's lease
    for the grace; a second quiet spell of a second inside that grace does not cut it
    short (the first spell's record stays while its grace lasts); after it, the lease is
    recovered."""
    lease, pause_ms = 0.5, 1200
    async with two_stores(own_redis_server.url, prefix, timeout=0.5) as stores:
        worker_store, other_store = stores
        dead_id = await submitted(worker_store)
        assert [claim.job.id for claim in await worker_store.claim(1, lease=lease)] == [dead_id]
        await pause_all(own_redis_server.url, pause_ms)
        resumes_at = asyncio.get_running_loop().time() + pause_ms / 1000
        with pytest.raises(StoreUnavailableError):  # the recovery's try gives up
            await other_store.recover()
        await asyncio.sleep(resumes_at - asyncio.get_running_loop().time())
        assert await other_store.recover() == []  # the first spell: spared
        met_at = asyncio.get_running_loop().time()
        await asyncio.sleep(1.1)  # nobody calls: a second spell, within the first's grace
        assert asyncio.get_running_loop().time() - met_at < QUIET_GRACE - 0.5
        assert await other_store.recover() == []
        await asyncio.sleep(QUIET_GRACE - (asyncio.get_running_loop().time() - met_at))
        recovered = await other_store.recover()
    assert recovered == [dead_id]


async def pause_all(url: str, ms: int) -> None:
    """Stall the server: every client paused for ``ms``."""
    async with Redis.from_url(url) as admin:
        await admin.execute_command("CLIENT", "PAUSE", ms, "ALL")


async def test_a_call_held_in_a_stall_that_a_fresh_call_met_first_shows_it_was_a_stall(
    own_redis_server: RedisServer, prefix: str
) -> None:
    """As above, a fresh recovery meets the stall first; then a call sent during it (its
    reading inside the stall) is carried out. That shows the quiet spell was a stall: a
    lease running through it gets the stall's length on top, beyond the quiet spell's
    grace (the lease is longer than the grace, so the two differ)."""
    lease, pause_ms = 4.0, 5000
    async with two_stores(own_redis_server.url, prefix, timeout=0.5) as stores:
        worker_store, other_store = stores
        dead_id = await submitted(worker_store)
        assert [claim.job.id for claim in await worker_store.claim(1, lease=lease)] == [dead_id]
        async with Redis.from_url(own_redis_server.url) as admin:
            await admin.execute_command("CLIENT", "PAUSE", pause_ms, "ALL")
            resumes_at = asyncio.get_running_loop().time() + pause_ms / 1000
            with pytest.raises(StoreUnavailableError):  # the recovery's try gives up
                await other_store.recover()
            await asyncio.sleep(resumes_at - asyncio.get_running_loop().time())
            assert await other_store.recover() == []  # fresh: a quiet spell, for now
            assert await admin.exists(f"{{{prefix}}}:clock:stall") == 0
            met_at = asyncio.get_running_loop().time()
            held = worker_store._connection.elapsed
            held._seen_ms -= pause_ms // 2  # as if sent halfway through the stall
            assert await worker_store.recover() == []  # carried out only now
            assert await admin.exists(f"{{{prefix}}}:clock:stall") == 1
        await asyncio.sleep(QUIET_GRACE + 0.3 - (asyncio.get_running_loop().time() - met_at))
        spared = await other_store.recover()  # past the quiet grace, within the stall's

        async def dead_one_recovered() -> bool:
            return await other_store.recover() == [dead_id]

        await eventually(dead_one_recovered, timeout=10)
    assert spared == []


async def test_a_store_started_after_a_stall_and_a_quiet_spell_reads_the_time_that_passed(
    own_redis_server: RedisServer, prefix: str
) -> None:
    """The last call before a quiet spell is one carried out as a stall ends (its reading
    seconds old); a process that starts after the spell still catches the clock up with
    the time that passed (lua/clock.lua), so the leases it grants are not in the past."""
    quiet = 3.0
    async with two_stores(own_redis_server.url, prefix) as (worker_store, _):
        await submitted(worker_store)
        async with Redis.from_url(own_redis_server.url) as admin:
            await admin.execute_command("CLIENT", "PAUSE", 1500, "ALL")
            await worker_store.recover()  # carried out when the stall ends
            before = int(await admin.get(f"{{{prefix}}}:clock") or 0)
            await asyncio.sleep(quiet)  # nobody calls
            async with two_stores(own_redis_server.url, prefix):
                after = int(await admin.get(f"{{{prefix}}}:clock") or 0)
    assert before > 0
    assert after >= before + quiet * 1000


async def test_a_claim_carried_out_after_a_cluster_stall_gets_its_whole_lease_from_then(
    redis_cluster: RedisClusterProcesses, prefix: str
) -> None:
    """As on one server, on a real Redis Cluster whose every master stalls: a job sits on
    each shard, so whichever the claim asks first holds one."""
    masters = [master.url for master in redis_cluster.masters()]
    async with two_stores(redis_cluster.url, prefix, 3) as stores:
        done = await claimed_in_a_stall_and_completed(*stores, 3, masters)
    assert done is not None and done.status is JobStatus.COMPLETED
    assert done.retry_count == 0


async def test_a_sharded_renewal_asked_while_the_last_is_held_up_in_a_stall_is_sent_after_it(
    own_redis_server: RedisServer, prefix: str
) -> None:
    """The pool's periodic renewal is held up in a stall; just before the stall ends the
    worker asks for another renewal of the same shard's claim (as it does for a claim
    answered late). It is sent when the first one ends and renews the claim, instead of
    failing at once with "the shard's last renewal is still under way" (which fenced the
    handler)."""
    lease, pause_ms = 4.0, 1500  # a renewal waits a quarter of the lease (1 s) for a shard
    async with two_stores(own_redis_server.url, prefix, 3) as (worker_store, _):
        await one_on_each_shard(worker_store, 3)
        claims = await worker_store.claim(1, lease=lease)
        async with Redis.from_url(own_redis_server.url) as admin:
            await admin.execute_command("CLIENT", "PAUSE", pause_ms, "ALL")
        periodic = asyncio.create_task(worker_store.renew(claims, lease=lease))
        await asyncio.sleep(pause_ms / 1000 - 0.3)  # the stall ends 0.3 s after the next ask
        assert not periodic.done()
        assert await worker_store.renew(claims, lease=lease) == set()
        assert await periodic == set()


async def test_a_submission_carried_out_after_a_stall_hands_nothing_to_an_offer_that_expired_in_it(
    own_redis_server: RedisServer, prefix: str
) -> None:
    """An offer (a listening inbox) due to expire 1 s into a 2.5 s stall; a submission sent
    in the stall is carried out when it ends, with its sender's early reading, by which
    the offer still looks open: it is not handed over (the offer's worker may have given
    it up in the stall, and nobody would start the job: it would wait for its lease and
    be charged an attempt), but queued, for any worker to claim."""
    from tests.redis.test_redis_hand_over import plant_offer

    api = RedisJobStore(own_redis_server.url, prefix=prefix, socket_timeout=REPLY_TIMEOUT)
    await api.start()
    tag = "{" + prefix + "}"
    try:
        async with Redis.from_url(own_redis_server.url, decode_responses=True) as admin:
            listener = admin.pubsub()
            await listener.subscribe(f"{tag}:inbox:gone-worker")
            clock = await api._run("clock", lambda s: s.clock())
            offer = f"gone-base 4 30000 {clock + 1000} " + '["default"]'
            await plant_offer(admin, prefix, "gone-worker", offer)
            async with Redis.from_url(own_redis_server.url) as pauser:
                await pauser.execute_command("CLIENT", "PAUSE", PAUSE_MS, "ALL")
            job = await api.enqueue(NewJob(uuid.uuid4(), "work", 0))
            status = await admin.hget(f"{tag}:job:{job.id}", "status")
            await listener.aclose()
    finally:
        await api.aclose()
    assert status == "Queued"
