"""What `RedisJobStore` promises for queues, pause, cancel, requeue and inspection beyond the
shared contract: the migration of the one-queue layout, pushes and pauses seen by other
instances, offers that respect queues and pause, counters that match a recount after
churn, and listing indexes that stay exact through splits and retention. Each cross-instance
test runs on a single server and on a real Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from redis.asyncio import Redis

from async_endpoints._job import JobError, JobStatus, NewJob
from async_endpoints._lifecycle import InvalidTransitionError
from async_endpoints._listing import QueueStats
from async_endpoints._store import Claim
from async_endpoints_redis import RedisJobStore
from async_endpoints_redis._keys import Keys
from tests.redis.support import eventually
from tests.redis_servers import RedisClusterProcesses, RedisServer

pytestmark = pytest.mark.redis
T = TypeVar("T")
BOOM = JobError("boom", "RuntimeError")
QUEUES = ("high", "default", "low")


def new_job(queue: str = "default", delay: float = 0.0, max_retries: int = 3) -> NewJob:
    return NewJob(uuid.uuid4(), "Job", max_retries, queue=queue, delay=delay)


@dataclass
class Deployment:
    """Stores sharing one prefix on one topology, and a plain client on the node that holds
    the store's slot."""

    make: Callable[..., Awaitable[RedisJobStore]]
    raw: Redis
    keys: Keys


@pytest.fixture(params=["single", "cluster"])
async def deployment(
    request: pytest.FixtureRequest, redis_server: RedisServer, prefix: str
) -> AsyncIterator[Deployment]:
    if request.param == "single":
        url = redis_server.url
        node_url = url
    else:
        cluster: RedisClusterProcesses = request.getfixturevalue("redis_cluster")
        url = cluster.url
        node_url = cluster.primary_for(Keys(prefix).clock).url
    stores: list[RedisJobStore] = []

    async def make(store_class: type[RedisJobStore] = RedisJobStore, **options: Any) -> Any:
        store = store_class(url, prefix=prefix, **options)
        stores.append(store)
        await store.start()
        return store

    raw = Redis.from_url(node_url, decode_responses=True)
    yield Deployment(make, raw, Keys(prefix))
    for store in stores:
        await store.aclose()
    await raw.aclose()


async def recount(raw: Redis, keys: Keys, queues: tuple[str, ...]) -> list[QueueStats]:
    """Queue stats rebuilt from the job hashes themselves (a scan of every job)."""
    found: Counter[tuple[str, str]] = Counter()
    async for key in raw.scan_iter(match=keys.job_prefix + "*", count=1000):
        status, queue = await raw.hmget(key, ["status", "queue"])
        found[(queue or "default", status)] += 1
    paused = await raw.smembers(keys.paused)
    rows = []
    for queue in queues:
        assert found[(queue, "Queued")] == await raw.llen(keys.ready(queue))
        rows.append(
            QueueStats(
                queue,
                queue in paused,
                found[(queue, "Queued")],
                found[(queue, "Scheduled")],
                found[(queue, "InProgress")],
                found[(queue, "Completed")],
                found[(queue, "Failed")],
                found[(queue, "Canceled")],
            )
        )
    return rows


# --- the one-queue layout -----------------------------------------------------------------


async def plant_old_job(raw: Redis, keys: Keys, status: str, created: int) -> str:
    """A job as the one-queue layout stored it (no queue field)."""
    job_id = str(uuid.uuid4())
    fields = {"name": "Job", "status": status, "max_retries": "3", "created_at": str(created)}
    await raw.hset(keys.job_prefix + job_id, mapping=fields)
    return job_id


async def test_the_one_queue_layout_is_moved_into_the_default_queue_at_start(
    deployment: Deployment,
) -> None:
    """Ids in the older ``{p}:queue`` LIST are in the default queue once a store starts, in
    their order and ahead of what it held; Scheduled and InProgress jobs of that layout are
    counted; no job is stranded."""
    raw, keys = deployment.raw, deployment.keys
    old = [await plant_old_job(raw, keys, "Queued", 1_700_000_000_000 + i) for i in range(5)]
    await raw.rpush(keys.legacy_queue, *old)
    delayed = await plant_old_job(raw, keys, "Scheduled", 1_700_000_000_000)
    await raw.hset(keys.job_prefix + delayed, "run_at", "1800000000000")
    await raw.zadd(keys.scheduled, {delayed: 10**15})
    running = await plant_old_job(raw, keys, "InProgress", 1_700_000_000_000)
    await raw.hset(keys.job_prefix + running, "started_at", "1700000000500")
    await raw.zadd(keys.active, {running: 10**15})

    store = await deployment.make()
    assert await raw.exists(keys.legacy_queue) == 0
    assert await raw.lrange(keys.ready("default"), 0, -1) == old
    [stats] = await store.queue_stats(["default"])
    assert (stats.queued, stats.scheduled, stats.in_progress) == (5, 1, 1)
    for status, expected in ((JobStatus.SCHEDULED, [delayed]), (JobStatus.IN_PROGRESS, [running])):
        page = await store.list_jobs(status=status)
        assert [str(job.id) for job in page.jobs] == expected
    assert {str(job.id) for job in (await store.list_jobs()).jobs} == {delayed, running}

    # An older process still pushing to the old LIST during a rolling upgrade: the next
    # recovery pass moves its ids ahead of the newer ones.
    newer = await store.enqueue(new_job())
    late = await plant_old_job(raw, keys, "Queued", 1_700_000_000_000)
    await raw.rpush(keys.legacy_queue, late)
    await store.recover()
    claims = await store.claim(10, lease=30)
    assert [str(c.job.id) for c in claims] == [late, *old, str(newer.id)]
    assert await raw.exists(keys.legacy_queue) == 0


# --- cancel ---------------------------------------------------------------------------------


async def test_a_cancel_is_pushed_to_the_listeners_of_another_instance(
    deployment: Deployment,
) -> None:
    """Cancelling a running job in one process reaches the cancel listener of the process
    that runs it, pushed over pub/sub; that worker's claim is lost."""
    worker, api = await deployment.make(), await deployment.make()
    heard: asyncio.Queue[uuid.UUID] = asyncio.Queue()
    worker.add_cancel_listener(heard.put_nowait)
    job = await api.enqueue(new_job())
    [claim] = await worker.claim(1, lease=30)

    canceled = await api.cancel(job.id)
    assert canceled is not None and canceled.status is JobStatus.CANCELED
    async with asyncio.timeout(2):
        assert await heard.get() == job.id
    assert await worker.renew([claim], lease=30) == {claim.token}
    assert await worker.complete(claim, "late") is None
    assert (await api.get(job.id)).status is JobStatus.CANCELED  # type: ignore[union-attr]
    assert heard.empty(), "one push per cancel"

    again = await api.cancel(job.id)
    assert again == canceled, "a terminal job is returned unchanged"


class HeldClaimReplies(RedisJobStore):
    """A store whose claim replies arrive late: held until the test releases them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reply_held = asyncio.Event()
        self.release = asyncio.Event()

    async def _run(self, operation: str, call: Callable[[Any], Awaitable[T]]) -> T:
        result = await super()._run(operation, call)
        if operation == "claim" and result[0]:  # type: ignore[index]
            self.reply_held.set()
            await self.release.wait()
        return result


async def test_a_claim_whose_cancel_arrives_before_its_reply_is_not_returned(
    deployment: Deployment,
) -> None:
    """The cancel message and the claim's reply travel on two connections: when the
    cancel overtakes the reply, the cancelled claim is dropped, never run."""
    worker: HeldClaimReplies = await deployment.make(HeldClaimReplies)
    api = await deployment.make()
    heard: asyncio.Queue[uuid.UUID] = asyncio.Queue()
    worker.add_cancel_listener(heard.put_nowait)
    job = await api.enqueue(new_job())
    claiming = asyncio.create_task(worker.claim(1, lease=30))
    async with asyncio.timeout(5):
        await worker.reply_held.wait()
    await api.cancel(job.id)
    async with asyncio.timeout(2):
        assert await heard.get() == job.id  # heard while the claim's reply was held
    worker.release.set()
    assert await claiming == []
    assert (await api.get(job.id)).status is JobStatus.CANCELED  # type: ignore[union-attr]


async def test_concurrent_cancels_from_two_instances_leave_one_canceled_job(
    deployment: Deployment,
) -> None:
    """Two processes cancel the same running job at once: both answer, one cancellation."""
    first, second = await deployment.make(), await deployment.make()
    heard: list[uuid.UUID] = []
    first.add_cancel_listener(heard.append)
    job = await first.enqueue(new_job())
    await first.claim(1, lease=30)
    answers = await asyncio.gather(first.cancel(job.id), second.cancel(job.id))
    assert {answer.status for answer in answers if answer} == {JobStatus.CANCELED}
    await eventually(lambda: asyncio.sleep(0, heard))
    [stats] = await first.queue_stats(["default"])
    assert (stats.in_progress, stats.canceled) == (0, 1)
    assert heard == [job.id]


@pytest.mark.usefixtures("steady_offers")
async def test_a_job_handed_to_an_idle_worker_and_cancelled_before_it_starts_stays_canceled(
    deployment: Deployment,
) -> None:
    """A job handed over to an offer, cancelled before the worker starts it, is neither
    returned to the worker nor put back in the queue when the offer ends."""
    worker, api = await deployment.make(), await deployment.make()
    assert await worker.claim(2, lease=30) == []
    waiting = await standing_offer(deployment, worker, ("default",), take=2)
    first = await api.enqueue(new_job())
    async with asyncio.timeout(2):
        [started] = await waiting
    # The offer still has a slot: the next job is handed over too, and not started yet.
    second = await api.enqueue(new_job())
    assert await deployment.raw.hget(deployment.keys.job(second.id), "status") == "InProgress"
    canceled = await api.cancel(second.id)
    assert canceled is not None and canceled.status is JobStatus.CANCELED

    assert await worker.claim(5, lease=30) == [], "ending the offer puts nothing back"
    assert (await api.get(second.id)).status is JobStatus.CANCELED  # type: ignore[union-attr]
    assert await worker.complete(started, None) is not None
    [stats] = await api.queue_stats(["default"])
    assert stats == QueueStats("default", completed=1, canceled=1)
    assert first.id == started.job.id


# --- pause and queues -------------------------------------------------------------------------


async def test_a_pause_by_one_instance_holds_back_another_instances_claims(
    deployment: Deployment,
) -> None:
    """Paused through one store, a queue's jobs are skipped by the claims of another (the
    script reads the pause); resumed, they are claimed again."""
    api, worker = await deployment.make(), await deployment.make()
    await api.pause(["high"])
    held = await api.enqueue(new_job("high"))
    other = await api.enqueue(new_job("low"))
    assert await worker.paused_queues() == frozenset({"high"})
    claims = await worker.claim(5, lease=30, queues=QUEUES)
    assert [claim.job.id for claim in claims] == [other.id]
    assert await worker.wait_for_work(0.05, queues=("high",)) == []

    await api.resume(["high"])
    claims = await worker.claim(5, lease=30, queues=QUEUES)
    assert [claim.job.id for claim in claims] == [held.id]
    assert await worker.paused_queues() == frozenset()


async def standing_offer(
    deployment: Deployment, worker: RedisJobStore, queues: tuple[str, ...], take: int = 3
) -> asyncio.Task[list[Claim]]:
    """A `wait_for_work` of ``worker`` offering ``take`` slots, whose offer stands in Redis.
    A wait that returns at once with nothing (a wake-up still on its way from earlier work,
    or the store's subscription going live only now: the contract allows such spurious
    returns) is answered as a worker answers it, by a claim, which must find nothing, and
    then made again: until the next claim, every wait returns at once."""
    raw, keys = deployment.raw, deployment.keys
    async with asyncio.timeout(5):
        while True:
            waiting = asyncio.create_task(
                worker.wait_for_work(30, take=take, lease=30, queues=queues)
            )
            while not waiting.done():
                if await raw.hexists(keys.offers, worker._inbox) and not waiting.done():
                    return waiting
                await asyncio.sleep(0.02)
            assert await waiting == []
            assert await worker.claim(take, lease=30, queues=queues) == []


@pytest.mark.usefixtures("steady_offers")
async def test_offers_hand_over_only_jobs_of_their_queues_that_are_not_paused(
    deployment: Deployment,
) -> None:
    """An idle worker serving ("high",) is handed a "high" job, not a "low" one, and
    nothing of a paused queue: those wait in their queues."""
    worker, api = await deployment.make(), await deployment.make()
    raw, keys = deployment.raw, deployment.keys
    assert await worker.claim(1, lease=30, queues=("high",)) == []
    waiting = await standing_offer(deployment, worker, ("high",))

    low = await api.enqueue(new_job("low"))
    assert await raw.hget(keys.job(low.id), "status") == "Queued"
    await api.pause(["high"])
    paused = await api.enqueue(new_job("high"))
    assert await raw.hget(keys.job(paused.id), "status") == "Queued"
    await api.resume(["high"])
    # The resume woke the waiter, and a job of "high" is queued now: no offer is made
    # again until it is claimed.
    assert await asyncio.wait_for(waiting, 2) == []
    claims = await worker.claim(3, lease=30, queues=("high",))
    assert [claim.job.id for claim in claims] == [paused.id]

    waiting = await standing_offer(deployment, worker, ("high",))
    handed = await api.enqueue(new_job("high"))
    async with asyncio.timeout(2):
        [claim] = await waiting
    assert claim.job.id == handed.id and claim.job.queue == "high"
    assert await raw.lrange(keys.ready("low"), 0, -1) == [str(low.id)]


async def test_a_delayed_job_is_promoted_into_its_own_queue(deployment: Deployment) -> None:
    """Scheduled jobs share one ZSET; once due, each is Queued in its own queue."""
    store = await deployment.make()
    job = await store.enqueue(new_job("low", delay=0.2))
    assert job.status is JobStatus.SCHEDULED and job.run_at is not None
    assert await store.get(job.id) == job
    assert await store.claim(1, lease=30, queues=("low",)) == []

    async def promoted() -> bool:
        # A claim of another queue promotes the due job into its own queue, not "default".
        assert await store.claim(1, lease=30, queues=("default",)) == []
        low = await deployment.raw.lrange(deployment.keys.ready("low"), 0, -1)
        return bool(low == [str(job.id)])

    await eventually(promoted)
    [claim] = await store.claim(1, lease=30, queues=("low",))
    assert claim.job.id == job.id and claim.job.run_at is None


# --- counters ----------------------------------------------------------------------------------


async def churn_round(
    rng: random.Random,
    store: RedisJobStore,
    other: RedisJobStore,
    ids: list[uuid.UUID],
    lease: float,
) -> None:
    """One round of churn: claims settled every way (or left to expire), cancels and
    requeues of random jobs, a recovery pass."""
    queues = ("a", "b", "c")
    for claim in await store.claim(15, lease=lease, queues=queues):
        match rng.randrange(5):
            case 0:
                await store.complete(claim, None)
            case 1:
                await store.fail(claim, BOOM, retry_in=rng.choice([0.0, 0.05, None]))
            case 2:
                await other.cancel(claim.job.id)
            case _:
                pass  # left running: expires (short leases) or stays InProgress
    for job_id in rng.sample(ids, 8):
        await other.cancel(job_id)
    for job_id in rng.sample(ids, 8):
        with contextlib.suppress(InvalidTransitionError):
            await store.requeue(job_id)
    await asyncio.sleep(0.06)
    await store.recover()


async def test_counters_match_a_recount_after_churn_with_recoveries_and_cancels(
    deployment: Deployment,
) -> None:
    """After enqueues (some delayed), claims, completions, retried and final failures,
    expired leases recovered, cancels in every status, requeues, hand-overs and the
    retention purge, queue_stats equals a recount of the job hashes."""
    rng = random.Random(7)
    queues = ("a", "b", "c")
    store = await deployment.make(retention=1.0)
    other = await deployment.make(retention=1.0)
    ids: list[uuid.UUID] = []
    for _ in range(120):
        delay = rng.choice([0.0, 0.0, 0.0, 0.05, 60.0])
        job = await rng.choice([store, other]).enqueue(new_job(rng.choice(queues), delay))
        ids.append(job.id)
    await other.pause(["c"])
    for round_ in range(6):
        await churn_round(rng, store, other, ids, lease=0.05 if round_ % 2 else 30)
        assert await store.queue_stats(queues) == await recount(
            deployment.raw, deployment.keys, queues
        )
    await other.resume(["c"])
    while await store.claim(100, lease=30, queues=queues):
        pass  # nothing queued: the next wait leaves an offer
    waiting = asyncio.create_task(store.wait_for_work(5, take=2, lease=30, queues=queues))

    async def offered() -> bool:
        return waiting.done() or bool(
            await deployment.raw.hexists(deployment.keys.offers, store._inbox)
        )

    await eventually(offered)
    handed = await other.enqueue(new_job("a"))
    claims: list[Claim] = await waiting
    assert [claim.job.id for claim in claims] in ([handed.id], [])
    assert await store.queue_stats(queues) == await recount(deployment.raw, deployment.keys, queues)

    async def purged() -> bool:
        await store.recover()  # deletes terminal jobs once their retention has passed
        after = await store.queue_stats(queues)
        return all(row.completed == row.failed == row.canceled == 0 for row in after)

    await eventually(purged)
    assert await store.queue_stats(queues) == await recount(deployment.raw, deployment.keys, queues)


# --- listing indexes ---------------------------------------------------------------------------


async def test_listing_stays_exact_across_index_chunks_and_empties_with_the_retention(
    deployment: Deployment,
) -> None:
    """Hundreds of jobs, many created in the same millisecond (one script call), page in
    (created_at, id) order newest first across the index's chunks; completed ones page
    newest completion first; once purged, the indexes hold nothing."""
    store = await deployment.make(retention=1.0)
    jobs = []
    for _ in range(3):
        jobs += await asyncio.gather(*(store.enqueue(new_job()) for _ in range(150)))
    expected = sorted(jobs, key=lambda job: (job.created_at, str(job.id)), reverse=True)
    listed: list[uuid.UUID] = []
    cursor = None
    while True:
        page = await store.list_jobs(limit=37, cursor=cursor)
        listed += [job.id for job in page.jobs]
        if (cursor := page.next_cursor) is None:
            break
    assert listed == [job.id for job in expected]

    claims = await store.claim(450, lease=30)
    for claim in claims:
        await store.complete(claim, None)
    completed = await store.list_jobs(status=JobStatus.COMPLETED, limit=1000)
    times = [(job.completed_at, str(job.id)) for job in completed.jobs]
    assert len(times) == 450 and times == sorted(times, reverse=True)

    async def purged() -> bool:
        await store.recover()  # deletes terminal jobs once their retention has passed
        return not (await store.list_jobs(limit=1000)).jobs

    await eventually(purged)
    index_keys = [
        key async for key in deployment.raw.scan_iter(match=f"{deployment.keys.tag}:ix:*")
    ]
    assert all(key.endswith(":n") for key in index_keys), "no chunk and no directory left"


async def test_a_cursor_position_this_store_never_made_is_a_value_error(
    deployment: Deployment,
) -> None:
    """Positions are checked before Redis sees them: never a Redis error."""
    from async_endpoints._listing import encode_cursor, filters_of

    store = await deployment.make()
    await store.enqueue(new_job())
    bad_positions: list[tuple[JobStatus | None, list[Any]]] = [
        (None, ["9" * 14 + ":not-an-id"]),
        (None, ["(" + "0" * 13 + ":" + str(uuid.uuid4())]),
        (JobStatus.FAILED, [1, 2]),
        (JobStatus.QUEUED, ["nowhere", 0]),
        (JobStatus.QUEUED, ["default", -1]),
        (JobStatus.QUEUED, ["default", True]),
        (JobStatus.QUEUED, ["default", 10**30]),
    ]
    for status, position in bad_positions:
        cursor = encode_cursor(filters_of(status, None), position)
        with pytest.raises(ValueError):
            await store.list_jobs(status=status, cursor=cursor)


async def test_requeue_of_a_job_that_is_not_failed_or_canceled_is_refused(
    deployment: Deployment,
) -> None:
    """InvalidTransitionError (a ValueError), nothing changed; unknown ids: None."""
    store = await deployment.make()
    job = await store.enqueue(new_job())
    with pytest.raises(InvalidTransitionError):
        await store.requeue(job.id)
    assert await store.requeue(uuid.uuid4()) is None
    assert await store.cancel(uuid.uuid4()) is None
    assert await store.get(job.id) == job


async def listed_ids(store: RedisJobStore, status: JobStatus, limit: int) -> list[uuid.UUID]:
    """Every job of ``status``, page after page."""
    ids: list[uuid.UUID] = []
    cursor = None
    while True:
        page = await store.list_jobs(status=status, limit=limit, cursor=cursor)
        ids += [job.id for job in page.jobs]
        if (cursor := page.next_cursor) is None:
            return ids


async def test_an_index_fed_out_of_order_splits_its_chunks_and_stays_sorted(
    deployment: Deployment,
) -> None:
    """Scheduled jobs enter their index in any run_at order (many at the same time, too):
    full chunks split, every chunk keeps within its floors and its size, pages stay in
    (run_at, id) order, and cancels take entries out and drop emptied chunks."""
    rng = random.Random(11)
    store = await deployment.make()
    jobs = []
    for _ in range(8):
        delays = [rng.choice([3600.0, 7200.0]) + rng.randrange(50) for _ in range(90)]
        jobs += await asyncio.gather(*(store.enqueue(new_job(delay=d)) for d in delays))

    def order(kept: list[Any]) -> list[uuid.UUID]:
        return [job.id for job in sorted(kept, key=lambda job: (job.run_at, str(job.id)))]

    assert await listed_ids(store, JobStatus.SCHEDULED, 41) == order(jobs)
    canceled = set(rng.sample(range(len(jobs)), 500))
    for index in canceled:
        await store.cancel(jobs[index].id)
    kept = [job for index, job in enumerate(jobs) if index not in canceled]
    assert await listed_ids(store, JobStatus.SCHEDULED, 29) == order(kept)

    raw, tag = deployment.raw, deployment.keys.tag
    directory = await raw.zrange(f"{tag}:ix:Scheduled", 0, -1)
    floors = [member.split(" ")[0] for member in directory] + ["~"]
    total = 0
    for n, member in enumerate(directory):
        entries = await raw.zrange(f"{tag}:ix:Scheduled:{member.split(' ')[1]}", 0, -1)
        assert 0 < len(entries) <= 100
        assert all(floors[n] <= entry < floors[n + 1] for entry in entries)
        total += len(entries)
    assert total == len(kept)
