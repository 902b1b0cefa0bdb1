"""Partition keys and tenants in the in-memory store: lanes of one key run one job at a time
in submission order, tenants take turns within a queue, and nothing is left behind once a
key or a tenant has no jobs (the contract suite covers what every store shares)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from async_endpoints import InMemoryJobStore, Job, JobError, JobStatus, NewJob
from async_endpoints._listing import encode_cursor, filters_of
from async_endpoints._store import Claim
from async_endpoints.testing import ManualClock

BOOM = JobError("boom", "RuntimeError")
LEASE = 30.0


def new_job(
    key: str | None = None,
    *,
    tenant: str | None = None,
    queue: str = "default",
    delay: float = 0.0,
    retries: int = 3,
) -> NewJob:
    return NewJob(
        uuid.uuid4(), "Echo", retries, queue=queue, delay=delay, partition_key=key, tenant=tenant
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def store(clock: ManualClock) -> InMemoryJobStore:
    store = InMemoryJobStore(clock=clock)
    await store.start()
    return store


async def submit(store: InMemoryJobStore, *jobs: NewJob) -> list[Job]:
    return [await store.enqueue(job) for job in jobs]


async def claim_ids(
    store: InMemoryJobStore, queues: tuple[str, ...] = ("default",)
) -> list[uuid.UUID]:
    return [claim.job.id for claim in await store.claim(100, lease=LEASE, queues=queues)]


async def claim_one(store: InMemoryJobStore) -> Claim:
    (claim,) = await store.claim(1, lease=LEASE)
    return claim


def assert_nothing_left_for_keys_or_tenants(store: InMemoryJobStore) -> None:
    """No lane, no tenant, no queue's turns, no due time, no timer entry remain."""
    ready = store._ready
    assert (ready.lanes, ready.queues, ready.timer, store._live.due) == ({}, {}, [], {})


# Partition keys


async def test_the_jobs_of_one_key_run_one_at_a_time_in_submission_order(
    store: InMemoryJobStore,
) -> None:
    """Of three jobs with one key, a claim takes the first only; each end frees the next."""
    jobs = await submit(store, *(new_job("account-1") for _ in range(3)))
    for job in jobs:
        (claim,) = await store.claim(10, lease=LEASE)
        assert claim.job.id == job.id
        assert await store.claim(10, lease=LEASE) == []
        await store.complete(claim, None)
    assert_nothing_left_for_keys_or_tenants(store)


async def test_a_busy_key_blocks_neither_another_key_nor_jobs_without_one(
    store: InMemoryJobStore,
) -> None:
    """With a1, a2, b1 and a job without a key, one claim takes a1, b1 and the unkeyed one."""
    a1, _, b1, free = await submit(store, new_job("a"), new_job("a"), new_job("b"), new_job())
    assert await claim_ids(store) == [a1.id, b1.id, free.id]


async def test_a_retry_waiting_for_its_backoff_keeps_the_key(
    store: InMemoryJobStore, clock: ManualClock
) -> None:
    """a1 fails with a 5 s backoff: a2 waits through it, and runs after a1's retry ends."""
    a1, a2 = await submit(store, new_job("a"), new_job("a"))
    await store.fail(await claim_one(store), BOOM, retry_in=5)
    clock.advance(4.9)
    assert await claim_ids(store) == []
    clock.advance(0.1)
    (retry,) = await store.claim(10, lease=LEASE)
    assert (retry.job.id, retry.job.retry_count) == (a1.id, 1)
    await store.complete(retry, None)
    assert await claim_ids(store) == [a2.id]


async def test_a_recovered_job_keeps_the_key_and_runs_again_first(
    store: InMemoryJobStore, clock: ManualClock
) -> None:
    """a1's worker dies (its lease runs out): a1 is queued again, still ahead of a2."""
    a1, a2 = await submit(store, new_job("a"), new_job("a"))
    await claim_one(store)
    clock.advance(LEASE + 1)
    assert await store.recover() == [a1.id]
    assert await claim_ids(store) == [a1.id]
    assert (await store.get(a2.id)).status is JobStatus.QUEUED


async def test_a_job_out_of_retries_releases_the_key(store: InMemoryJobStore) -> None:
    """a1 fails for good (dead): a2 is claimable in the same step."""
    _, a2 = await submit(store, new_job("a", retries=0), new_job("a"))
    failed = await store.fail(await claim_one(store), BOOM, retry_in=1)
    assert failed.status is JobStatus.FAILED
    assert await claim_ids(store) == [a2.id]


async def test_cancelling_a_queued_first_job_releases_the_key_at_once(
    store: InMemoryJobStore,
) -> None:
    """Cancelling a1 while it still waits makes a2 claimable at once."""
    a1, a2 = await submit(store, new_job("a"), new_job("a"))
    await store.cancel(a1.id)
    assert await claim_ids(store) == [a2.id]


@pytest.mark.parametrize("ends", ["fail", "complete", "lease"])
async def test_a_cancelled_running_first_job_keeps_the_key_until_its_attempt_ends(
    store: InMemoryJobStore, clock: ManualClock, ends: str
) -> None:
    """Cancelling a1 while it runs makes it Canceled at once, but a2 waits until a1's
    attempt reports its end (a refused fail or complete) or its lease runs out; then
    nothing of the held attempt is left."""
    a1, a2 = await submit(store, new_job("a"), new_job("a"))
    claim = await claim_one(store)
    canceled = await store.cancel(a1.id)
    assert canceled is not None and canceled.status is JobStatus.CANCELED
    assert await claim_ids(store) == []
    if ends == "fail":
        assert await store.fail(claim, BOOM, retry_in=None) is None
    elif ends == "complete":
        assert await store.complete(claim, None) is None
    else:
        clock.advance(LEASE - 1)
        assert await store.renew([claim], lease=LEASE) == {claim.token}  # lost, key kept
        clock.advance(LEASE - 1)
        await store.recover()
        assert await claim_ids(store) == []
        clock.advance(2)
        assert await store.recover() == []  # a canceled job is not recovered
    (second,) = await store.claim(100, lease=LEASE)
    assert second.job.id == a2.id
    assert (await store.get(a1.id)).status is JobStatus.CANCELED  # type: ignore[union-attr]
    await store.complete(second, None)
    assert store._held == {}
    assert_nothing_left_for_keys_or_tenants(store)


async def test_cancelling_a_later_job_takes_it_out_of_the_lane(store: InMemoryJobStore) -> None:
    """a2 cancelled while a1 runs: when a1 ends, a3 is next."""
    _, a2, a3 = await submit(store, *(new_job("a") for _ in range(3)))
    claim = await claim_one(store)
    await store.cancel(a2.id)
    assert await claim_ids(store) == []
    await store.complete(claim, None)
    assert await claim_ids(store) == [a3.id]


async def test_a_delayed_first_job_holds_the_later_ones(
    store: InMemoryJobStore, clock: ManualClock
) -> None:
    """a1 is due in 10 s: a2, ready now, waits for a1 to run and end."""
    a1, a2 = await submit(store, new_job("a", delay=10), new_job("a"))
    assert await claim_ids(store) == []
    assert (await store.get(a2.id)).status is JobStatus.QUEUED
    clock.advance(10)
    (claim,) = await store.claim(10, lease=LEASE)
    assert claim.job.id == a1.id
    await store.complete(claim, None)
    assert await claim_ids(store) == [a2.id]


async def test_a_later_delayed_job_stays_scheduled_until_first_then_runs_if_due(
    store: InMemoryJobStore, clock: ManualClock
) -> None:
    """a2 (due in 5 s) falls due while a1 runs: it stays Scheduled, and is claimable (and
    Queued) the moment a1 ends; a3 still waits behind it."""
    _, a2, _ = await submit(store, new_job("a"), new_job("a", delay=5), new_job("a"))
    claim = await claim_one(store)
    clock.advance(6)
    assert await claim_ids(store) == []
    assert (await store.get(a2.id)).status is JobStatus.SCHEDULED
    await store.complete(claim, None)
    assert (await store.get(a2.id)).status is JobStatus.QUEUED
    assert await claim_ids(store) == [a2.id]


async def test_a_later_delayed_job_not_yet_due_when_first_waits_for_its_time(
    store: InMemoryJobStore, clock: ManualClock
) -> None:
    """a2 (due in 5 s) becomes first after 1 s: it runs at 5 s, and a3 not before it."""
    _, a2, _ = await submit(store, new_job("a"), new_job("a", delay=5), new_job("a"))
    clock.advance(1)
    await store.complete(await claim_one(store), None)
    assert await claim_ids(store) == []
    clock.advance(4)
    assert await claim_ids(store) == [a2.id]


async def test_a_requeued_job_joins_the_end_of_its_lane(store: InMemoryJobStore) -> None:
    """a1 fails for good while a2 and a3 wait; requeued, it runs after a3."""
    a1, a2, a3 = await submit(store, new_job("a", retries=0), new_job("a"), new_job("a"))
    await store.fail(await claim_one(store), BOOM, retry_in=None)
    await store.requeue(a1.id)
    order = []
    for _ in range(3):
        (claim,) = await store.claim(10, lease=LEASE)
        order.append(claim.job.id)
        await store.complete(claim, None)
    assert order == [a2.id, a3.id, a1.id]


async def test_a_requeued_job_of_a_free_key_is_claimable_at_once(store: InMemoryJobStore) -> None:
    """The key has no other job: the requeued one is first in its lane again."""
    (a1,) = await submit(store, new_job("a"))
    await store.cancel(a1.id)
    await store.requeue(a1.id)
    assert await claim_ids(store) == [a1.id]


async def test_the_jobs_of_one_key_in_two_queues_still_run_in_order(
    store: InMemoryJobStore,
) -> None:
    """A key spans queues: a2 in "high" waits for a1 in "low" despite the priority."""
    a1, a2 = await submit(store, new_job("a", queue="low"), new_job("a", queue="high"))
    claim = (await store.claim(10, lease=LEASE, queues=("high", "low")))[0]
    assert claim.job.id == a1.id
    assert await claim_ids(store, ("high", "low")) == []
    await store.complete(claim, None)
    assert await claim_ids(store, ("high", "low")) == [a2.id]


async def test_an_idle_worker_is_woken_when_a_key_is_released(store: InMemoryJobStore) -> None:
    """Waiting for work after a claim that found a2 blocked, it wakes when a1 ends."""
    await submit(store, new_job("a"), new_job("a"))
    claim = await claim_one(store)
    assert await claim_ids(store) == []
    waiting = asyncio.create_task(store.wait_for_work(60, take=1, lease=LEASE))
    await asyncio.sleep(0)
    assert not waiting.done()
    await store.complete(claim, None)
    async with asyncio.timeout(5):
        assert await waiting == []  # woken; never handed over: the claim takes it
    assert len(await claim_ids(store)) == 1


async def test_a_paused_queue_holds_its_lanes_and_release_still_happens(
    store: InMemoryJobStore,
) -> None:
    """a1 ends while its queue is paused: a2 is next once the queue is resumed."""
    _, a2 = await submit(store, new_job("a"), new_job("a"))
    claim = await claim_one(store)
    await store.pause(["default"])
    await store.complete(claim, None)
    assert await claim_ids(store) == []
    await store.resume(["default"])
    assert await claim_ids(store) == [a2.id]


# Tenants


async def test_a_tenant_with_one_job_is_served_in_the_first_round_behind_a_backlog(
    store: InMemoryJobStore,
) -> None:
    """Tenant A has 1,000 jobs queued before tenant B's one: B's is among the first two
    claims, one job at a time."""
    await submit(store, *(new_job(tenant="A") for _ in range(1000)))
    (b,) = await submit(store, new_job(tenant="B"))
    first_two = [(await claim_one(store)).job.id for _ in range(2)]
    assert b.id in first_two


async def test_tenants_take_turns_one_job_each_oldest_first(store: InMemoryJobStore) -> None:
    """A, B and the jobs without a tenant (one tenant of their own), three jobs each:
    claims go A, B, none, A, B, none...; each tenant's oldest first."""
    jobs = {tenant: [] for tenant in ("A", "B", None)}
    for _ in range(3):
        for tenant, made in jobs.items():
            made += await submit(store, new_job(tenant=tenant))
    expected = [jobs[tenant][turn].id for turn in range(3) for tenant in ("A", "B", None)]
    assert await claim_ids(store) == expected
    assert_nothing_left_for_keys_or_tenants(store)


async def test_tenants_take_turns_within_a_queue_and_queues_keep_strict_priority(
    store: InMemoryJobStore,
) -> None:
    """Two tenants in "high" go before anything of "low", in turns."""
    low = await submit(store, new_job(tenant="A", queue="low"))
    a = await submit(store, *(new_job(tenant="A", queue="high") for _ in range(2)))
    b = await submit(store, new_job(tenant="B", queue="high"))
    ids = await claim_ids(store, ("high", "low"))
    assert ids == [a[0].id, b[0].id, a[1].id, low[0].id]


async def test_a_cancelled_tenants_last_job_removes_the_tenant_from_the_turns(
    store: InMemoryJobStore,
) -> None:
    """B's only job cancelled: A's jobs are all claimed, B leaves nothing behind."""
    a = await submit(store, *(new_job(tenant="A") for _ in range(2)))
    (b,) = await submit(store, new_job(tenant="B"))
    await store.cancel(b.id)
    assert list(store._ready.queues["default"].tenants) == ["A"]
    assert await claim_ids(store) == [job.id for job in a]
    assert_nothing_left_for_keys_or_tenants(store)


async def test_a_cancelled_job_in_the_middle_of_a_tenant_is_skipped(
    store: InMemoryJobStore,
) -> None:
    """A1, A2, A3 with A2 cancelled: claims give A1, A3."""
    a1, a2, a3 = await submit(store, *(new_job(tenant="A") for _ in range(3)))
    await store.cancel(a2.id)
    assert await claim_ids(store) == [a1.id, a3.id]
    assert_nothing_left_for_keys_or_tenants(store)


async def test_keys_and_tenants_compose(store: InMemoryJobStore) -> None:
    """Tenant A's two jobs share a key: in A's turn only the first is claimable, and B's
    jobs are not held back by A's busy key."""
    a1, a2 = await submit(store, new_job("k", tenant="A"), new_job("k", tenant="A"))
    b = await submit(store, *(new_job(tenant="B") for _ in range(2)))
    claim_a1, *rest = await store.claim(10, lease=LEASE)
    assert [claim_a1.job.id] + [c.job.id for c in rest] == [a1.id, b[0].id, b[1].id]
    await store.complete(claim_a1, None)
    assert await claim_ids(store) == [a2.id]


# Counts, listing and leftovers


async def test_counts_include_the_jobs_waiting_behind_their_key(store: InMemoryJobStore) -> None:
    """Three jobs of one key (one delayed) and a running first: the waiting ones count,
    towards queue_stats, count_waiting and max_waiting alike."""
    await submit(store, new_job("a"), new_job("a"), new_job("a", delay=60), new_job("a"))
    await claim_one(store)
    (stats,) = await store.queue_stats(["default"])
    assert (stats.queued, stats.scheduled, stats.in_progress) == (2, 1, 1)
    assert await store.count_waiting() == 3
    with pytest.raises(Exception, match="3 jobs are waiting"):
        await store.enqueue(new_job("a"), max_waiting=3)


async def test_nothing_is_left_behind_once_keys_and_tenants_have_no_jobs(
    store: InMemoryJobStore, clock: ManualClock
) -> None:
    """Jobs of many keys and tenants, delayed, retried, recovered, requeued and cancelled,
    all run to the end: no lane, tenant, turn, due time or timer entry remains."""
    made = []
    for index in range(40):
        key, tenant = f"k{index % 7}", f"t{index % 5}"
        made += await submit(store, new_job(key, tenant=tenant, delay=index % 3))
    for job in made[::9]:
        await store.cancel(job.id)
    await store.requeue(made[0].id)
    for step in range(200):
        clock.advance(1)
        await store.recover()
        for index, claim in enumerate(await store.claim(10, lease=LEASE)):
            if (step + index) % 4 == 0:
                await store.fail(claim, BOOM, retry_in=2)
            elif (step + index) % 4 != 1:  # the others are left to expire and recover
                await store.complete(claim, None)
        if await store.count_waiting() == 0 and not store._leases:
            break
    assert await store.count_waiting() == 0 and not store._leases
    assert_nothing_left_for_keys_or_tenants(store)
    assert store._live.queued.keys() <= {"default"} and not store._live.queued["default"]


async def test_a_cancelled_delayed_job_leaves_no_timer_entry(store: InMemoryJobStore) -> None:
    """Scheduled jobs cancelled before they are due leave nothing on the timer."""
    jobs = await submit(store, *(new_job(delay=3600) for _ in range(3)))
    for job in jobs:
        await store.cancel(job.id)
    assert_nothing_left_for_keys_or_tenants(store)


async def test_queued_jobs_are_listed_by_priority_then_claim_order_lane_waiting_ones_last(
    store: InMemoryJobStore, clock: ManualClock
) -> None:
    """Queues in priority order, each in the order claims take its jobs: the claimable ones
    oldest first, then those waiting behind their key (oldest first)."""
    made = []
    for queue, key in (("low", None), ("high", "a"), ("high", "a"), ("low", "a"), ("high", None)):
        made += await submit(store, new_job(key, queue=queue))
        clock.advance(1)
    page = await store.list_jobs(status=JobStatus.QUEUED, queues=("high", "low"))
    assert [job.id for job in page.jobs] == [made[i].id for i in (1, 4, 2, 0, 3)]


async def test_jobs_created_at_the_same_moment_are_listed_in_the_order_they_came(
    store: InMemoryJobStore,
) -> None:
    """Equal created_at (the manual clock did not move): listed in the order they were
    queued, which is the order claims take them, not by id."""
    made = await submit(store, *(new_job() for _ in range(5)))
    page = await store.list_jobs(status=JobStatus.QUEUED)
    assert [job.id for job in page.jobs] == [job.id for job in made]
    claims = await store.claim(5, lease=LEASE)
    assert [claim.job.id for claim in claims] == [job.id for job in made]


async def test_listing_by_tenant_gives_that_tenants_jobs_page_by_page(
    store: InMemoryJobStore, clock: ManualClock
) -> None:
    """For each status and none: the tenant's jobs only, two per page, each once."""
    ours = []
    for _ in range(6):
        ours += await submit(store, new_job(tenant="ours"))
        await submit(store, new_job(tenant="theirs"), new_job())
        clock.advance(1)
    await store.claim(3, lease=LEASE)  # ours[0], a job of theirs, one without a tenant
    expected = {
        None: [job.id for job in reversed(ours)],
        JobStatus.QUEUED: [job.id for job in ours[1:]],
        JobStatus.IN_PROGRESS: [ours[0].id],
    }
    for status, ids in expected.items():
        seen, cursor = [], None
        while True:
            page = await store.list_jobs(status=status, tenant="ours", limit=2, cursor=cursor)
            seen += [job.id for job in page.jobs]
            if (cursor := page.next_cursor) is None:
                break
        assert seen == ids


async def test_a_tenant_listings_cursor_is_bound_to_that_tenant(store: InMemoryJobStore) -> None:
    """A cursor made for tenant "a" is refused for tenant "b" and for no tenant."""
    await submit(store, *(new_job(tenant="a") for _ in range(3)))
    page = await store.list_jobs(status=JobStatus.QUEUED, tenant="a", limit=1)
    assert page.next_cursor is not None
    for tenant in ("b", None):
        with pytest.raises(ValueError):
            await store.list_jobs(
                status=JobStatus.QUEUED, tenant=tenant, limit=1, cursor=page.next_cursor
            )


async def test_a_tenant_filter_that_is_not_a_string_is_refused(store: InMemoryJobStore) -> None:
    """tenant=5: ValueError."""
    with pytest.raises(ValueError):
        await store.list_jobs(tenant=5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "position"),
    [
        (JobStatus.QUEUED, ["default", 0]),
        (JobStatus.QUEUED, ["default", 1.5, "0" * 32]),
        (JobStatus.QUEUED, ["default", 0, "not a uuid"]),
        (JobStatus.SCHEDULED, [1.0, 5]),
        (JobStatus.IN_PROGRESS, [True, "0" * 32]),
    ],
)
async def test_a_live_listing_cursor_of_the_wrong_shape_is_refused(
    store: InMemoryJobStore, status: JobStatus, position: list[object]
) -> None:
    """Positions are (queue,) time and id: anything else is a ValueError."""
    await store.enqueue(new_job())
    with pytest.raises(ValueError):
        await store.list_jobs(
            status=status, cursor=encode_cursor(filters_of(status, None), position)
        )


async def test_listing_finished_jobs_by_tenant_pages_through_that_tenants_only(
    store: InMemoryJobStore,
) -> None:
    """Completed jobs of two tenants and none: the tenant's, newest finished first, two per
    page, read from the logs' tenants (the others are not decoded)."""
    ours = []
    for _ in range(5):
        ours += await submit(store, new_job(tenant="ours"))
        await submit(store, new_job(tenant="theirs"), new_job())
    for claim in await store.claim(15, lease=LEASE):
        await store.complete(claim, None)
    for status in (JobStatus.COMPLETED, None):
        seen, cursor = [], None
        while True:
            page = await store.list_jobs(status=status, tenant="ours", limit=2, cursor=cursor)
            seen += [job.id for job in page.jobs]
            if (cursor := page.next_cursor) is None:
                break
        assert seen == [job.id for job in reversed(ours)]


async def test_cancelling_most_delayed_jobs_drops_their_timer_entries_and_the_rest_still_run(
    store: InMemoryJobStore, clock: ManualClock
) -> None:
    """3,000 jobs due in an hour, 2,500 of them cancelled: stale timer entries are filtered
    out once they are most of the timer (at most 1,024 stay), and the other 500 jobs are
    all claimable when due."""
    jobs = await submit(store, *(new_job(delay=3600 + index % 7) for index in range(3000)))
    for job in jobs[:2500]:
        await store.cancel(job.id)
    assert len(store._ready.timer) <= 500 + 1024
    clock.advance(3600 + 7)
    ids = [claim.job.id for claim in await store.claim(1000, lease=LEASE)]
    assert sorted(ids) == sorted(job.id for job in jobs[2500:])
    assert_nothing_left_for_keys_or_tenants(store)
