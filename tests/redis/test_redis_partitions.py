"""What `RedisJobStore` promises for partition keys and tenants beyond the store contract:
the keys it keeps for them (one hash slot, none left behind), the next job of a key made
claimable by the script that settles the previous one, hand-over behind a busy key, the
turns of tenants, the Queued listing, and the migration of stores of the previous layout.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from async_endpoints._job import JobError, JobStatus, NewJob
from async_endpoints_redis import RedisJobStore
from async_endpoints_redis._base import Offer
from async_endpoints_redis._scripts import _source
from async_endpoints_redis._shard_reshard import is_empty
from tests.redis.support import drain, eventually

pytestmark = pytest.mark.redis
StoreFactory = Callable[..., Awaitable[RedisJobStore]]


def new_job(partition_key: str | None = None, tenant: str | None = None, **options: Any) -> NewJob:
    return NewJob(
        id=uuid.uuid4(),
        name="Job",
        max_retries=3,
        partition_key=partition_key,
        tenant=tenant,
        **options,
    )


def tag(prefix: str) -> str:
    return "{" + prefix + "}"


async def keys_for_labels(raw_redis: Redis, prefix: str) -> list[str]:
    """The store's keys of lanes, tenant LISTs and tenant turns that exist now."""
    found = []
    for kind in ("lanes", "lane:*", "tq:*", "turns:*", "tenants:*"):
        found += [key async for key in raw_redis.scan_iter(match=f"{tag(prefix)}:{kind}")]
    return sorted(found)


async def test_keys_and_tenants_live_under_the_hash_tag_and_leave_nothing_behind(
    store: RedisJobStore, raw_redis: Redis, prefix: str
) -> None:
    """While jobs of a key and a tenant wait, their lane, tenant LIST and turns exist under
    ``{prefix}:``; once every job has ended (completed, failed, cancelled) none is left."""
    jobs = [
        await store.enqueue(new_job("account-1", "acme")),
        await store.enqueue(new_job("account-1", "acme")),
        await store.enqueue(new_job("account-2")),
        await store.enqueue(new_job(tenant="globex")),
        await store.enqueue(new_job(tenant="globex")),
        await store.enqueue(new_job("account-1", "acme", delay=60)),
        await store.enqueue(new_job()),
    ]
    during = await keys_for_labels(raw_redis, prefix)
    assert {key.split(":")[1] for key in during} == {"lanes", "lane", "tq", "turns", "tenants"}
    every_key = [key async for key in raw_redis.scan_iter(match=f"*{prefix}*")]
    assert all(key.startswith(tag(prefix) + ":") for key in every_key)

    assert await store.cancel(jobs[5].id) is not None, "a delayed job behind its key"
    assert await store.cancel(jobs[4].id) is not None, "a tenant's second ready job"
    [first, *rest] = await store.claim(10, lease=30)
    await store.fail(first, JobError("boom", "ValueError"), retry_in=None)
    for claim in rest:
        await store.complete(claim, None)
    await drain(store, batch=10)

    assert await keys_for_labels(raw_redis, prefix) == []
    assert await store.count_waiting() == 0
    for job in jobs:
        stored = await store.get(job.id)
        assert stored is not None and stored.status.is_terminal


async def test_the_next_job_of_a_key_is_ready_when_the_settling_call_returns(
    store: RedisJobStore, raw_redis: Redis, prefix: str
) -> None:
    """Completing the key's first job pushes the second into the ready order in the same
    script: it is in its queue's LIST as soon as `complete` returns, and claimable."""
    first = await store.enqueue(new_job("k"))
    second = await store.enqueue(new_job("k"))
    ready = f"{tag(prefix)}:queue:default"
    assert await raw_redis.lrange(ready, 0, -1) == [str(first.id)]
    [claim] = await store.claim(5, lease=30)
    assert await store.claim(5, lease=30) == [], "the key is held by the running job"
    await store.complete(claim, None)
    assert await raw_redis.lrange(ready, 0, -1) == [str(second.id)]
    [following] = await store.claim(5, lease=30)
    assert following.job.id == second.id


async def test_a_scheduled_job_behind_its_key_runs_when_first_and_due(
    store: RedisJobStore, raw_redis: Redis, prefix: str
) -> None:
    """A due Scheduled job behind a running one stays Scheduled; the settlement of the one
    ahead promotes it in the same step. One not yet due waits for its time."""
    first = await store.enqueue(new_job("k"))
    due = await store.enqueue(new_job("k", delay=0.05))
    [claim] = await store.claim(5, lease=30)

    async def promoted_or_dropped() -> bool:
        assert await store.claim(5, lease=30) == []
        return await raw_redis.zscore(f"{tag(prefix)}:scheduled", str(due.id)) is None

    await eventually(promoted_or_dropped)
    assert (await store.get(due.id)).status is JobStatus.SCHEDULED  # type: ignore[union-attr]
    await store.complete(claim, None)
    [next_claim] = await store.claim(5, lease=30)
    assert next_claim.job.id == due.id
    assert first.id != due.id


@pytest.mark.usefixtures("steady_offers")
async def test_hand_over_to_an_idle_worker_respects_the_lane(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """The key's first job goes to the idle worker; the second waits Queued behind it (not
    handed over, not ready) until the first completes."""
    worker, api = await make_store(), await make_store()

    async def connected() -> bool:
        return worker._notifications.connected  # the store's own wiring

    await eventually(connected)
    assert await worker.claim(4, lease=30) == []
    waiting = asyncio.create_task(worker.wait_for_work(30, take=4, lease=30))

    async def offered() -> bool:
        return bool(await raw_redis.hexists(f"{tag(prefix)}:offers", worker._inbox))

    await eventually(offered)
    first = await api.enqueue(new_job("k"))
    second = await api.enqueue(new_job("k"))
    async with asyncio.timeout(2):
        [claim] = await waiting
    assert claim.job.id == first.id
    assert await raw_redis.hget(f"{tag(prefix)}:job:{second.id}", "status") == "Queued"
    assert await raw_redis.exists(f"{tag(prefix)}:queue:default") == 0
    await worker.complete(claim, None)
    [following] = await worker.claim(4, lease=30)
    assert following.job.id == second.id


async def test_tenants_take_turns_one_job_each(store: RedisJobStore) -> None:
    """Within a queue a claim takes one job per tenant per turn, tenant-less jobs being one
    tenant; within a tenant oldest first."""
    backlog = [await store.enqueue(new_job(tenant="a")) for _ in range(4)]
    b = await store.enqueue(new_job(tenant="b"))
    plain = await store.enqueue(new_job())
    claims = await store.claim(6, lease=30)
    order = [claim.job.id for claim in claims]
    assert order[:3] == [backlog[0].id, b.id, plain.id]
    assert order[3:] == [job.id for job in backlog[1:]]


async def test_list_jobs_queued_in_claim_order_with_waiting_jobs_and_a_tenant_filter(
    store: RedisJobStore,
) -> None:
    """Queued jobs are listed in the order claims take them: the claimable ones in the
    tenants' turns (the jobs without a tenant as one tenant), then those waiting behind
    their key, oldest first; the tenant filter keeps one tenant's jobs across pages."""
    jobs = []
    for i in range(7):
        jobs.append(await store.enqueue(new_job("k" if i % 2 else None, "t" if i % 3 else None)))
        await asyncio.sleep(0.002)  # distinct created_at
    page = await store.list_jobs(status=JobStatus.QUEUED, limit=50)
    assert [job.id for job in page.jobs] == [jobs[i].id for i in (0, 1, 6, 2, 4, 3, 5)]
    assert page.next_cursor is None

    ids, cursor = [], None
    while True:
        page = await store.list_jobs(status=JobStatus.QUEUED, tenant="t", limit=2, cursor=cursor)
        ids += [job.id for job in page.jobs]
        if (cursor := page.next_cursor) is None:
            break
    assert ids == [job.id for i, job in enumerate(jobs) if i % 3]
    everything = await store.list_jobs(tenant="t", limit=50)
    assert {job.id for job in everything.jobs} == set(ids)
    with pytest.raises(ValueError):
        await store.list_jobs(status=JobStatus.QUEUED, limit=2, cursor=cursor or "x")


async def as_layout_2(raw_redis: Redis, prefix: str) -> None:
    """Make the store's data what the previous version left: the LIST and the job hashes,
    no Queued counter, no Queued index, layout 2."""
    await raw_redis.hdel(f"{tag(prefix)}:counts", "default:Queued")
    for key in [key async for key in raw_redis.scan_iter(match=f"{tag(prefix)}:ix:Q:*")]:
        await raw_redis.delete(key)
    await raw_redis.set(f"{tag(prefix)}:layout", "2")


async def test_a_store_of_the_previous_layout_gets_queued_counts_and_listing(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """Layout 2 counted Queued jobs by their LIST's length and had no Queued index: a
    store started on it counts them once and lists them in order."""
    store = await make_store()
    jobs = []
    for _ in range(3):
        jobs.append(await store.enqueue(new_job()))
        await asyncio.sleep(0.002)  # distinct created_at
    await store.aclose()
    await as_layout_2(raw_redis, prefix)

    upgraded = await make_store()
    assert await upgraded.count_waiting() == 3
    assert await raw_redis.get(f"{tag(prefix)}:layout") == "3"
    assert await raw_redis.exists(f"{tag(prefix)}:migrating") == 0
    page = await upgraded.list_jobs(status=JobStatus.QUEUED)
    assert [job.id for job in page.jobs] == [job.id for job in jobs]
    [stats] = await upgraded.queue_stats(["default"])
    assert stats.queued == 3
    await drain(upgraded, batch=10)
    assert await upgraded.count_waiting() == 0
    assert (await upgraded.list_jobs(status=JobStatus.QUEUED)).jobs == []


async def test_a_job_the_upgrade_indexes_again_is_listed_once_where_it_became_due(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """The Queued index is rebuilt from the queue's LIST (a store of layout 2): a job
    retried at once since it was created is indexed at its retry, as the store had it,
    not at its creation: listed once, after the job that was waiting before its retry."""
    store = await make_store()
    retried = await store.enqueue(new_job())
    await asyncio.sleep(0.002)
    waiting = await store.enqueue(new_job())
    (claim,) = await store.claim(1, lease=30)
    assert claim.job.id == retried.id
    await asyncio.sleep(0.002)
    await store.fail(claim, JobError("boom", "RuntimeError"), retry_in=0)
    before = await store.list_jobs(status=JobStatus.QUEUED)
    assert [job.id for job in before.jobs] == [waiting.id, retried.id]
    await store.aclose()
    await as_layout_2(raw_redis, prefix)

    upgraded = await make_store()
    after = await upgraded.list_jobs(status=JobStatus.QUEUED)
    assert [job.id for job in after.jobs] == [waiting.id, retried.id]
    assert await upgraded.count_waiting() == 2


async def test_an_entry_an_older_version_left_at_a_jobs_creation_is_not_listed(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """During a rolling upgrade an older version indexes a Queued job at its created_at
    (it knew no queued_at): an entry that is not the job's current one is skipped, so a
    job retried since its creation is listed once, where it became due."""
    store = await make_store()
    retried = await store.enqueue(new_job())
    await asyncio.sleep(0.002)
    (claim,) = await store.claim(1, lease=30)
    waiting = await store.enqueue(new_job())
    await asyncio.sleep(0.002)
    await store.fail(claim, JobError("boom", "RuntimeError"), retry_in=0)
    created_at = int(await raw_redis.hget(f"{tag(prefix)}:job:{retried.id}", "created_at"))
    await older_version_indexes(raw_redis, prefix, retried.id, created_at)
    page = await store.list_jobs(status=JobStatus.QUEUED)
    assert [job.id for job in page.jobs] == [waiting.id, retried.id]
    assert await store.count_waiting() == 2


async def older_version_indexes(
    raw_redis: Redis, prefix: str, job_id: uuid.UUID, moment: int
) -> None:
    """Add the Queued index entry an older version would have written for the job (of the
    default queue) at ``moment``, through the store's own index code."""
    source = "".join(_source(name) for name in ("_lib", "_index", "_ready", "_bookkeeping"))
    source += "index_add_entry(queued_index('default'), queued_entry(ARGV[1], ARGV[2]))\n"
    source += "index_flush()\nreturn 1\n"
    keys = [f"{tag(prefix)}:clock", f"{tag(prefix)}:"]
    await raw_redis.eval(source, len(keys), *keys, 0, 0, 0, moment, str(job_id))


async def test_jobs_an_older_version_queued_without_a_number_are_listed_and_unlisted(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """A job queued by a version before the Queued entries' sequence numbers (its entry
    has none, its hash no q: a rolling upgrade) is listed once, in time order beside
    the numbered ones, and its claim or its cancel takes its entry out."""
    store = await make_store()
    older = [await store.enqueue(new_job()) for _ in range(2)]
    await asyncio.sleep(0.002)
    newer = await store.enqueue(new_job())
    for job in older:
        await as_queued_by_an_older_version(raw_redis, prefix, job.id)
    page = await store.list_jobs(status=JobStatus.QUEUED)
    assert [job.id for job in page.jobs][2:] == [newer.id]
    assert {job.id for job in page.jobs[:2]} == {job.id for job in older}
    (claim,) = await store.claim(1, lease=30)
    assert await store.cancel(older[1].id if claim.job.id == older[0].id else older[0].id)
    assert await queued_entries(raw_redis, prefix) == 1  # the newer job's alone
    page = await store.list_jobs(status=JobStatus.QUEUED)
    assert [job.id for job in page.jobs] == [newer.id]


async def test_entries_left_behind_never_fill_a_queued_page_and_are_taken_out(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """Entries an older process left behind (it claimed jobs a newer one queued, and
    removed an entry of its own form, which was not there) sit before every live job in
    the Queued index: the ready jobs are listed from the ready order, which never holds
    them, and the walk of the jobs waiting behind their key takes them out as it meets
    them; the first page holds the live jobs."""
    store = await make_store()
    left = [await store.enqueue(new_job()) for _ in range(5)]
    for job in left:  # claimed elsewhere, their entries left in the index
        await raw_redis.lrem(f"{tag(prefix)}:queue:default", 0, str(job.id))
        await raw_redis.hset(f"{tag(prefix)}:job:{job.id}", "status", "InProgress")
    await asyncio.sleep(0.002)
    live = [await store.enqueue(new_job("k")) for _ in range(2)]
    live.append(await store.enqueue(new_job()))
    assert await queued_entries(raw_redis, prefix) == 8
    page = await store.list_jobs(status=JobStatus.QUEUED, limit=3)
    assert [job.id for job in page.jobs] == [live[i].id for i in (0, 2, 1)]
    assert await queued_entries(raw_redis, prefix) == 3


async def test_a_migration_indexing_queued_jobs_again_lists_each_once(
    store: RedisJobStore, raw_redis: Redis, prefix: str
) -> None:
    """A store migrating from layout 2 indexes the jobs of a queue's LIST, some of which
    this version queued (and indexed) already: it writes their own entries again, with
    their sequence numbers, so each job is listed once."""
    made = [await store.enqueue(new_job()) for _ in range(3)]
    await raw_redis.hset(f"{tag(prefix)}:migrating", "default", 0)
    await store.recover()
    assert await raw_redis.exists(f"{tag(prefix)}:migrating") == 0
    page = await store.list_jobs(status=JobStatus.QUEUED)
    assert [job.id for job in page.jobs] == [job.id for job in made]
    assert await queued_entries(raw_redis, prefix) == 3


async def as_queued_by_an_older_version(raw_redis: Redis, prefix: str, job_id: uuid.UUID) -> None:
    """Make the Queued job's index entry the one an older version wrote (at its
    created_at, no sequence number) and drop its q, through the store's index code."""
    source = "".join(_source(name) for name in ("_lib", "_index", "_ready", "_bookkeeping"))
    source += """
local key = job_key(ARGV[2])
local at = redis.call('HMGET', key, 'created_at', 'q')
index_remove_entry(queued_index('default'), queued_entry(at[1], ARGV[2], at[2]))
index_add_entry(queued_index('default'), queued_entry(at[1], ARGV[2]))
redis.call('HDEL', key, 'q')
index_flush()
return 1
"""
    keys = [f"{tag(prefix)}:clock", f"{tag(prefix)}:"]
    await raw_redis.eval(source, len(keys), *keys, 0, 0, 0, 0, str(job_id))


async def queued_entries(raw_redis: Redis, prefix: str) -> int:
    """How many entries the default queue's Queued index holds, in all its chunks."""
    pattern = f"{tag(prefix)}:ix:Q:7:default:*"
    chunks = [key async for key in raw_redis.scan_iter(match=pattern) if not key.endswith(":n")]
    return sum([await raw_redis.zcard(chunk) for chunk in chunks])


async def test_keys_and_tenants_on_a_redis_cluster(redis_cluster: Any, prefix: str) -> None:
    """On a 3-master cluster every script touching lanes and turns stays in one slot: keyed
    jobs run one at a time in order, tenants take turns, listing filters by tenant."""
    store = RedisJobStore(redis_cluster.url, prefix=prefix, cluster=True)
    try:
        await store.start()
        keyed = []
        for _ in range(3):
            keyed.append(await store.enqueue(new_job("k", "t")))
            await asyncio.sleep(0.002)  # distinct created_at
        other = await store.enqueue(new_job(tenant="u"))
        claims = await store.claim(10, lease=30)
        assert [claim.job.id for claim in claims] == [keyed[0].id, other.id]
        page = await store.list_jobs(status=JobStatus.QUEUED, tenant="t")
        assert [job.id for job in page.jobs] == [job.id for job in keyed[1:]]
        for claim in claims:
            await store.complete(claim, None)
        assert await drain(store, batch=10) == [job.id for job in keyed[1:]]
        assert await store.count_waiting() == 0
    finally:
        await store.aclose()


async def test_cancelling_a_tenants_next_job_passes_its_turn_to_the_following_one(
    store: RedisJobStore, raw_redis: Redis, prefix: str
) -> None:
    """The turns hold each tenant's oldest ready job: cancelling it puts the tenant's next
    job in its place (same turn); cancelling a tenant's only job ends its turns and its
    field; cancelling one from the middle of its LIST keeps the rest in order."""
    t1, t2, t3, t4 = [await store.enqueue(new_job(tenant="t")) for _ in range(4)]
    u = await store.enqueue(new_job(tenant="u"))
    v = await store.enqueue(new_job(tenant="v"))
    await store.cancel(t1.id)
    await store.cancel(t3.id)
    await store.cancel(v.id)
    assert await raw_redis.hget(f"{tag(prefix)}:tenants:default", "v") is None
    claims = await store.claim(10, lease=30)
    assert [claim.job.id for claim in claims] == [t2.id, u.id, t4.id]
    assert await keys_for_labels(raw_redis, prefix) == []


async def test_due_scheduled_jobs_of_tenants_take_turns_in_the_claim_that_promotes_them(
    store: RedisJobStore, raw_redis: Redis, prefix: str
) -> None:
    """Jobs promoted by a claim join their tenant's turns in the same script, and that
    claim already takes them in turns."""
    jobs = []
    for tenant in ("a", "a", "a", None, "b"):
        jobs.append(await store.enqueue(new_job(tenant=tenant, delay=0.05)))
        await asyncio.sleep(0.002)  # distinct due times: promoted in this order
    a, plain, b = jobs[:3], jobs[3], jobs[4]

    async def all_due() -> bool:
        # The store's elapsed-time clock (ms), through its own connection.
        clock = await store._run("clock", lambda scripts: scripts.clock())
        due = await raw_redis.zrange(f"{tag(prefix)}:scheduled", 0, -1, withscores=True)
        return all(score <= clock for _, score in due)

    await eventually(all_due)
    claims = await store.claim(10, lease=30)
    assert [claim.job.id for claim in claims] == [a[0].id, plain.id, b.id, a[1].id, a[2].id]


@pytest.mark.usefixtures("steady_offers")
async def test_a_job_handed_back_takes_its_tenants_place_in_the_turns(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """A job handed to an idle worker that never started it goes back first in its
    tenant's order, ahead of the tenant's later job that took its turn meanwhile."""
    worker, api = await make_store(), await make_store()

    async def connected() -> bool:
        return worker._notifications.connected  # the store's own wiring

    await eventually(connected)
    assert await worker.claim(4, lease=30) == []
    waiting = asyncio.create_task(worker.wait_for_work(30, take=2, lease=30))

    async def offered() -> bool:
        return bool(await raw_redis.hexists(f"{tag(prefix)}:offers", worker._inbox))

    await eventually(offered)
    await api.enqueue(new_job(tenant="t"))
    async with asyncio.timeout(2):
        [started] = await waiting
    # The offer's second slot takes the next job, which the worker never starts.
    handed = await api.enqueue(new_job(tenant="t"))
    assert await raw_redis.hget(f"{tag(prefix)}:job:{handed.id}", "status") == "InProgress"
    later = [await api.enqueue(new_job(tenant="t")) for _ in range(2)]
    other = await api.enqueue(new_job(tenant="u"))
    claims = await worker.claim(10, lease=30)
    assert [claim.job.id for claim in claims] == [handed.id, other.id, *(j.id for j in later)]
    assert started.job.id not in {claim.job.id for claim in claims}


@pytest.mark.parametrize("where", ["a late claim reply", "the offer"])
async def test_a_cancelled_claim_dropped_before_it_ran_lets_its_key_go_at_once(
    make_store: StoreFactory, raw_redis: Redis, prefix: str, where: str
) -> None:
    """A claim whose cancel message came first (the message and the claim's reply travel
    on two connections) is dropped by the store, never run: the store reports it ended,
    so the key's next job is claimable within moments, not a lease (60 s) later, and
    nothing is held for the key afterwards."""
    store, peer = await make_store(), await make_store()
    first = await peer.enqueue(new_job("k"))
    second = await peer.enqueue(new_job("k"))
    (claim,) = await store.claim(1, lease=60)
    if where == "the offer":  # handed to this store's offer, not yet returned by its wait
        store._offer = Offer(base="test", handed=[claim])
    await peer.cancel(first.id)

    async def cancel_heard() -> bool:
        return claim.token in store._cancelled_claims._seen

    await eventually(cancel_heard)
    if where == "a late claim reply":  # the reply's arrival after the message, replayed
        assert store._cancelled_claims.live([claim]) == ([], [claim])
        store._let_go_soon([claim])  # what `claim` does with the claims it drops
    else:
        assert store._offer is not None and store._offer.handed == []

    async def next_job_claimed() -> list[uuid.UUID]:
        return [c.job.id for c in await store.claim(1, lease=60)]

    assert await eventually(next_job_claimed) == [second.id]
    assert await raw_redis.exists(f"{tag(prefix)}:held", f"{tag(prefix)}:held_by") == 0
    assert (await peer.get(first.id)).status is JobStatus.CANCELED  # type: ignore[union-attr]


async def test_one_recovery_pass_lets_go_of_every_expired_held_key_and_drops_orphans(
    make_store: StoreFactory, raw_redis: Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys held for cancelled attempts whose lease ran out are let go by one `recover`,
    however many batches they take; a held entry without its attempt's record (never left
    by the store itself) is dropped rather than read again at every pass."""
    monkeypatch.setattr("async_endpoints_redis._recover._RECOVER_BATCH", 1)
    store = await make_store()
    keys = ["k1", "k2", "k3"]
    firsts = [await store.enqueue(new_job(key)) for key in keys]
    seconds = [await store.enqueue(new_job(key)) for key in keys]
    claims = await store.claim(10, lease=0.2)
    assert {c.job.id for c in claims} == {job.id for job in firsts}
    for job in firsts:
        await store.cancel(job.id)
    await raw_redis.zadd(f"{tag(prefix)}:held", {"orphan": 0})
    assert await store.claim(10, lease=30) == []
    await asyncio.sleep(0.3)  # the held leases run out (the server's elapsed clock)
    await store.recover()
    assert {c.job.id for c in await store.claim(10, lease=30)} == {job.id for job in seconds}
    assert await raw_redis.exists(f"{tag(prefix)}:held", f"{tag(prefix)}:held_by") == 0


async def test_a_shard_that_still_holds_a_key_is_not_empty(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """A layout's shard whose only content is a key held for a cancelled attempt (its job
    purged already) is not retired as empty: its lane would be left behind."""
    await make_store()
    assert await is_empty(raw_redis, prefix)
    await raw_redis.zadd(f"{tag(prefix)}:held", {"some-id": 0})
    assert not await is_empty(raw_redis, prefix)
