"""The Queued listing is the claim order (API.md: "Order: `Queued` in claim order"), on
the in-memory store, on Redis and on a Redis Cluster, at sizes where the listing reads its
structures in several steps: many tenants and rounds of turns across pages, a long queue
read in chunks, cancelled jobs among the turns, and jobs waiting behind their partition
key after more claimable jobs than one page may pass."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from async_endpoints import InMemoryJobStore
from async_endpoints._batch import NewBatch
from async_endpoints._job import Job, JobStatus
from async_endpoints._listing import MAX_LIMIT, encode_cursor, filters_of
from async_endpoints.testing import StoreKit
from async_endpoints.testing._contract_support import BOOM, new_job
from async_endpoints_redis import RedisJobStore
from tests.contract.conftest import redis_kit_on


async def store_kit(request: pytest.FixtureRequest, kind: str) -> AsyncIterator[StoreKit]:
    """A fresh store of ``kind``: in memory, on Redis, on a Redis Cluster, or sharded (3
    shards on one server)."""
    if kind == "memory":
        store = InMemoryJobStore()
        await store.start()
        yield StoreKit(store, asyncio.sleep, lease=30.0, retention=60.0)
        await store.aclose()
    elif kind == "sharded":
        server = request.getfixturevalue("redis_server")
        sharded = RedisJobStore(server.url, prefix=f"claims-{uuid.uuid4().hex[:8]}", shards=3)
        await sharded.start()
        yield StoreKit(sharded, asyncio.sleep, lease=30.0, retention=60.0)
        await sharded.aclose()
    else:
        server = request.getfixturevalue("redis_server" if kind == "redis" else "redis_cluster")
        async for made in redis_kit_on(server.url):
            yield made


@pytest.fixture(params=["memory", "redis", "cluster"])
async def kit(request: pytest.FixtureRequest) -> AsyncIterator[StoreKit]:
    """A store of each kind that keeps one claim order."""
    async for made in store_kit(request, request.param):
        yield made


@pytest.fixture(params=["memory", "redis", "cluster", "sharded"])
async def any_kit(request: pytest.FixtureRequest) -> AsyncIterator[StoreKit]:
    """A store of each kind, a sharded one among them."""
    async for made in store_kit(request, request.param):
        yield made


async def listing(kit: StoreKit, limit: int, **filters: str) -> list[Job]:
    """Every Queued job, page after page of at most ``limit`` (each page full but the last,
    unless a filter or the jobs behind their keys cut it short)."""
    store = kit.store
    assert isinstance(store, InMemoryJobStore | RedisJobStore)
    jobs: list[Job] = []
    cursor = None
    for _ in range(10_000):
        page = await store.list_jobs(
            status=JobStatus.QUEUED, limit=limit, cursor=cursor, queues=("high", "default"),
            **filters,
        )  # fmt: skip
        assert len(page.jobs) <= limit
        jobs += page.jobs
        if page.next_cursor is None:
            return jobs
        cursor = page.next_cursor
    raise AssertionError("paging never ended")


async def claimed(kit: StoreKit, size: int, count: int | None = None) -> list[uuid.UUID]:
    """The ids of the jobs claims of ``size`` jobs take, in the order they take them: every
    claimable job, or the first ``count``."""
    taken: list[uuid.UUID] = []
    while count is None or len(taken) < count:
        limit = size if count is None else min(size, count - len(taken))
        claims = await kit.store.claim(limit, lease=30.0, queues=("high", "default"))
        if not claims:
            break
        taken += [claim.job.id for claim in claims]
    return taken


async def enqueued(kit: StoreKit, *specs: tuple[str | None, str | None, str]) -> list[Job]:
    """Jobs of (tenant, partition key, queue) enqueued one after the other."""
    made = []
    for tenant, key, queue in specs:
        made.append(await kit.store.enqueue(new_job(tenant=tenant, partition_key=key, queue=queue)))
    return made


async def test_many_tenants_are_listed_page_by_page_in_the_order_claims_take_them(
    kit: StoreKit,
) -> None:
    """Six tenants' backlogs of 1 to 40 claimable jobs, submitted one after the other, jobs
    without a tenant among them, in two queues: pages of 7, 16 and 1,000 jobs list the
    order that claims of 1 and of 10 jobs then take; a tenant's own listing is its jobs
    in that order."""
    specs: list[tuple[str | None, str | None, str]] = []
    counts = {"a": 40, "b": 1, "c": 17, None: 25, "d": 3, "e": 33}
    for tenant, count in counts.items():  # backlog after backlog: claims interleave them
        specs += [(tenant, None, "high" if tenant == "d" else "default")] * count
    made = await enqueued(kit, *specs)
    whole = [job.id for job in await listing(kit, MAX_LIMIT)]
    assert sorted(whole) == sorted(job.id for job in made)
    for limit in (7, 16):
        assert [job.id for job in await listing(kit, limit)] == whole
    for tenant in ("a", "c", "e"):
        theirs = [job.id for job in await listing(kit, 5, tenant=tenant)]
        assert theirs == [job.id for job in made if job.tenant == tenant]
        assert theirs == [job_id for job_id in whole if job_id in set(theirs)]
    taken = await claimed(kit, 1, 50) + await claimed(kit, 10)
    assert taken == whole


async def test_hundreds_of_tenants_are_listed_in_the_order_claims_take_them(
    kit: StoreKit,
) -> None:
    """700 tenants (more than the Redis store reads of the turns at once) with 1 to 4
    claimable jobs each, and 40 jobs without one: pages of 50 and of 333 list the order
    that claims of 64 jobs then take."""
    specs: list[tuple[str | None, str | None, str]] = [(None, None, "default")] * 40
    for number in range(700):
        specs += [(f"t{number}", None, "default")] * (number % 4 + 1)
    made = await asyncio.gather(*(kit.store.enqueue(new_job(tenant=t)) for t, _, _ in specs))
    whole = [job.id for job in await listing(kit, MAX_LIMIT)]
    assert sorted(whole) == sorted(job.id for job in made)
    assert [job.id for job in await listing(kit, 50)] == whole
    assert [job.id for job in await listing(kit, 333)] == whole
    assert await claimed(kit, 64) == whole


async def test_a_long_queue_and_cancelled_jobs_are_listed_in_the_order_claims_take_them(
    kit: StoreKit,
) -> None:
    """2,500 jobs without a tenant and 60 of two tenants, every seventh cancelled: pages of
    1,000 and of 300 list each job left once, in the order claims then take them."""
    specs = [(None, None, "default")] * 2500 + [("a", None, "default"), ("b", None, "default")] * 30
    made = await asyncio.gather(
        *(kit.store.enqueue(new_job(tenant=tenant, queue=queue)) for tenant, _, queue in specs)
    )
    control = kit.store
    assert isinstance(control, InMemoryJobStore | RedisJobStore)
    cancelled = {job.id for job in made[::7]}
    for job_id in cancelled:
        await control.cancel(job_id)
    whole = [job.id for job in await listing(kit, MAX_LIMIT)]
    assert sorted(whole) == sorted(job.id for job in made if job.id not in cancelled)
    assert [job.id for job in await listing(kit, 300)] == whole
    assert await claimed(kit, 100) == whole


async def test_jobs_behind_their_key_are_listed_last_after_many_claimable_jobs(
    kit: StoreKit,
) -> None:
    """Two jobs waiting behind their partition key, submitted before 10,050 claimable jobs,
    are listed after them (more than one page may pass over to reach them), each once;
    pages may come back short on the way, never over their limit, and paging ends."""
    lane = [await kit.store.enqueue(new_job(partition_key="k")) for _ in range(3)]
    plain = await asyncio.gather(*(kit.store.enqueue(new_job()) for _ in range(10_050)))
    whole = [job.id for job in await listing(kit, MAX_LIMIT)]
    assert len(whole) == len(set(whole)) == 10_053
    assert whole[-2:] == [lane[1].id, lane[2].id]
    assert whole[0] == lane[0].id
    assert set(whole[:-2]) == {job.id for job in (*plain, lane[0])}
    assert [job.id for job in await listing(kit, 50, tenant="nobody")] == []


async def test_jobs_that_stay_queued_are_listed_once_while_claims_take_others(
    any_kit: StoreKit,
) -> None:
    """Three tenants' jobs (jobs without one among them), paged 7 at a time while claims
    take 3 jobs between two pages: each page resumes after its last job where that job
    is now, so every job that stays Queued through the listing is listed exactly once,
    and no job twice."""
    made = await enqueued(any_kit, *[(tenant, None, "default") for tenant in ("a", "b", None)] * 30)
    taken: set[uuid.UUID] = set()
    seen: list[uuid.UUID] = []
    cursor = None
    for _ in range(100):
        store = any_kit.store
        assert isinstance(store, InMemoryJobStore | RedisJobStore)
        page = await store.list_jobs(status=JobStatus.QUEUED, limit=7, cursor=cursor)
        seen += [job.id for job in page.jobs]
        if (cursor := page.next_cursor) is None:
            break
        taken |= {claim.job.id for claim in await any_kit.store.claim(3, lease=30.0)}
    assert cursor is None
    assert len(seen) == len(set(seen))
    stayed = {job.id for job in made} - taken
    assert stayed <= set(seen)
    assert len(taken) >= 30


CHANGES = [
    "claims past the page",
    "its last job claimed and retried",
    "the next job cancelled",
    "a later job cancelled",
]


@pytest.mark.parametrize("change", CHANGES)
async def test_no_job_that_stays_queued_is_skipped_whatever_happened_between_two_pages(
    any_kit: StoreKit, change: str
) -> None:
    """Twelve jobs of three tenants, a page of five, then between it and the next pages:
    claims of seven (past the page), its last job claimed and failed back into the queue,
    the job that came next cancelled, or one after it. Every job Queued then that the
    first page did not show is listed by the pages after it; after claims alone none is
    listed twice."""
    store = any_kit.store
    assert isinstance(store, InMemoryJobStore | RedisJobStore)
    await enqueued(any_kit, *[(tenant, None, "default") for tenant in "abc"] * 4)
    first = await store.list_jobs(status=JobStatus.QUEUED, limit=5)
    shown = [job.id for job in first.jobs]
    assert first.next_cursor is not None
    if change == "claims past the page":
        await store.claim(7, lease=30.0)
    elif change == "its last job claimed and retried":
        while True:
            (claim,) = await store.claim(1, lease=30.0)
            if claim.job.id == shown[-1]:
                break
        await store.fail(claim, BOOM, retry_in=0)
    else:
        peek = await store.list_jobs(status=JobStatus.QUEUED, limit=3, cursor=first.next_cursor)
        await store.cancel(peek.jobs[0 if change == "the next job cancelled" else 2].id)
    rest: list[uuid.UUID] = []
    cursor: str | None = first.next_cursor
    while cursor is not None:
        page = await store.list_jobs(status=JobStatus.QUEUED, limit=5, cursor=cursor)
        rest += [job.id for job in page.jobs]
        cursor = page.next_cursor
    queued = {job.id for job in (await store.list_jobs(status=JobStatus.QUEUED, limit=100)).jobs}
    assert queued - set(shown) <= set(rest)
    if change == "claims past the page":
        assert len(rest) == len(set(rest)) and not set(rest) & set(shown)


async def test_a_page_cut_short_by_a_filter_resumes_from_the_top_when_claims_took_its_place(
    kit: StoreKit,
) -> None:
    """A batch's three jobs queued behind 10,001 others: a page of the batch's Queued jobs
    ends short, its cursor at the last job it looked at; when claims take that job (and
    every one before it) before the next page, paging on from the top still lists all
    three."""
    store = kit.store
    assert isinstance(store, InMemoryJobStore | RedisJobStore)
    await asyncio.gather(*(store.enqueue(new_job()) for _ in range(10_001)))
    batch = uuid.uuid4()
    members = [dataclasses.replace(new_job(), batch_id=batch) for _ in range(3)]
    await store.create_batch(NewBatch(batch, members))
    first = await store.list_jobs(status=JobStatus.QUEUED, limit=5, batch_id=batch)
    assert first.jobs == [] and first.next_cursor is not None
    assert len(await claimed(kit, 500, 10_000)) == 10_000
    listed: list[uuid.UUID] = []
    cursor: str | None = first.next_cursor
    while cursor is not None:
        page = await store.list_jobs(
            status=JobStatus.QUEUED, limit=5, cursor=cursor, batch_id=batch
        )
        listed += [job.id for job in page.jobs]
        cursor = page.next_cursor
    assert listed == [job.id for job in members]


async def test_a_queued_cursor_of_an_earlier_release_or_forged_is_a_value_error(
    kit: StoreKit,
) -> None:
    """A Queued position of the order before claim order (memory: queue, µs, seq, id;
    Redis: queue, index entry), and positions of the claim order with a field out of place
    (an unknown section, a negative or fractional round or place, an id or entry that is
    none, one field too few or too many) raise ValueError, on every store: never a Redis
    error, never a page of other jobs."""
    store = kit.store
    assert isinstance(store, InMemoryJobStore | RedisJobStore)
    await enqueued(kit, *[("a", None, "default"), ("b", None, "default")] * 3)
    made = await store.list_jobs(status=JobStatus.QUEUED, limit=2)
    assert made.next_cursor is not None
    _, _, position = json.loads(base64.urlsafe_b64decode(made.next_cursor + "=="))
    entry = "0" * 47
    forged: list[list[Any]] = [
        ["default", 1733600000000000, 3, uuid.uuid4().hex],  # the earlier in-memory form
        ["default", entry],  # the earlier Redis form
        ["default", 2, *position[2:]],
        ["default", 0, -1, *position[3:]],
        ["default", 0, 0.5, *position[3:]],
        ["default", 0, position[2], -2, *position[4:]],
        ["default", 0, position[2], position[3], "not an id", *position[5:]],
        position[:-1],
        [*position, 0],
        ["default", 1, "xyz"],
        ["default", 1],
    ]
    for bad in forged:
        cursor = encode_cursor(filters_of(JobStatus.QUEUED, None), bad)
        with pytest.raises(ValueError):
            await store.list_jobs(status=JobStatus.QUEUED, limit=2, cursor=cursor)
