"""Tenants: within a queue, claims take turns between the tenants that have a claimable
job (the policy of `async_endpoints._lifecycle`); `list_jobs` filters by tenant."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from .._job import MAX_LABEL_LENGTH, Job, JobStatus
from ._contract_listing import PRIORITY, listed, paged
from ._contract_support import (
    BOOM,
    TICK,
    assert_in_group_order,
    assert_turns,
    claim_ids,
    claim_until,
    inspection,
    new_job,
    of_group,
)
from ._kit import StoreKit


async def backlog(kit: StoreKit, tenant: str | None, count: int, **options: Any) -> list[Job]:
    """``count`` jobs of ``tenant`` enqueued one after the other, as stored."""
    jobs = []
    for _ in range(count):
        jobs.append(await kit.store.enqueue(new_job(tenant=tenant, **options)))
        await kit.advance(TICK)
    return jobs


def by_id(jobs: list[Job]) -> dict[uuid.UUID, Job]:
    """``jobs`` by id."""
    return {job.id: job for job in jobs}


async def one_by_one(
    kit: StoreKit, count: int, queues: tuple[str, ...] = ("default",)
) -> list[Job]:
    """The jobs of ``count`` claims of one job each, in the order they were taken."""
    taken = []
    for _ in range(count):
        (claim,) = await kit.store.claim(1, queues=queues, lease=kit.lease)
        taken.append(claim.job)
    return taken


class TenantContract:
    """Round robin between tenants within a queue, strict priority between queues, and
    listings per tenant."""

    async def test_one_tenants_backlog_does_not_hold_up_another_tenants_job(
        self, kit: StoreKit
    ) -> None:
        """Behind six jobs of tenant A, tenant B's one job is among the first two jobs
        claimed one at a time, and among the first two of a single claim (counting the
        jobs of its order group)."""
        await backlog(kit, "A", 6)
        (lone,) = await backlog(kit, "B", 1)
        assert lone.id in of_group(kit, await claim_until(kit, lone.id, 1), lone)[:2]
        await backlog(kit, "A", 6)
        (lone,) = await backlog(kit, "C", 1)
        assert lone.id in of_group(kit, await claim_until(kit, lone.id, 3), lone)[:2]

    async def test_tenants_take_turns_one_job_each_oldest_first(self, kit: StoreKit) -> None:
        """Three tenants with three jobs each, submitted tenant after tenant: every round
        of claims takes one job of each (in each order group), and each tenant's jobs go
        oldest first."""
        jobs = {tenant: await backlog(kit, tenant, 3) for tenant in "ABC"}
        taken = await one_by_one(kit, 9)
        assert_turns(kit, taken)
        for made in jobs.values():
            assert_in_group_order(kit, [job for job in taken if job.tenant == made[0].tenant], made)
        assert await claim_ids(kit) == []

    async def test_jobs_without_a_tenant_take_turns_as_one_tenant(self, kit: StoreKit) -> None:
        """Four tenant-less jobs take one turn per round, like tenant A's four jobs."""
        await backlog(kit, None, 4)
        await backlog(kit, "A", 4)
        (lone,) = await backlog(kit, "B", 1)
        taken = await one_by_one(kit, 9)
        assert_turns(kit, taken)
        assert lone.id in of_group(kit, taken, lone)[:3]

    async def test_strict_queue_priority_comes_before_tenant_turns(self, kit: StoreKit) -> None:
        """Every job of a higher queue is taken before a lower queue's (of its order
        group), whoever's turn it would be."""
        (low,) = await backlog(kit, "B", 1, queue="low")
        high = await backlog(kit, "A", 3, queue="high")
        taken = await one_by_one(kit, 4, queues=PRIORITY)
        assert_in_group_order(kit, taken, [*high, low])
        assert len({job.id for job in taken}) == 4

    async def test_a_retried_job_takes_its_tenants_turn(self, kit: StoreKit) -> None:
        """A job retried at once waits for its tenant's next turn like any other: the
        turns keep alternating (within each order group)."""
        await backlog(kit, "A", 3)
        await backlog(kit, "B", 3)
        (first,) = await one_by_one(kit, 1)
        (claim,) = await kit.store.claim(1, lease=kit.lease)
        await kit.store.fail(claim, BOOM, retry_in=0)
        taken = [first, claim.job, *await one_by_one(kit, 5)]
        assert_turns(kit, taken)
        assert claim.job.id in [job.id for job in taken[2:]]
        assert await claim_ids(kit) == []

    async def test_tenants_and_partition_keys_compose(self, kit: StoreKit) -> None:
        """A tenant's jobs behind a busy key give its turn away: the other tenant's
        claimable jobs are taken; the key's next job runs once the first ends."""
        lane = [await kit.store.enqueue(new_job(tenant="A", partition_key="k")) for _ in range(3)]
        others = await backlog(kit, "B", 2)
        claims = await kit.store.claim(10, lease=kit.lease)
        assert sorted(c.job.id for c in claims) == sorted([lane[0].id, *(j.id for j in others)])
        assert await claim_ids(kit) == []
        for claim in claims:
            await kit.store.complete(claim, None)
        assert await claim_ids(kit) == [lane[1].id]

    async def test_queued_jobs_are_listed_in_the_order_claims_take_them(
        self, kit: StoreKit
    ) -> None:
        """With tenants taking turns, the Queued listing is the order claims then take the
        jobs in (in each order group): queue after queue in priority order, the first job
        of every tenant in the order of their turns, then the second ones, and so on, the
        jobs without a tenant as one tenant; then the jobs waiting behind their partition
        key. Page by page, and per tenant, alike."""
        store = inspection(kit)
        made = []
        for tenant, key, queue in (
            ("A", None, "default"), ("A", None, "default"), ("A", None, "default"),
            ("B", None, "default"), ("A", "k", "default"), (None, None, "default"),
            ("B", None, "low"), ("C", None, "default"), ("B", "k", "default"),
            (None, None, "default"), ("A", None, "high"), ("C", None, "high"),
        ):  # fmt: skip
            job = new_job(tenant=tenant, partition_key=key, queue=queue)
            made.append(await kit.store.enqueue(job))
            await kit.advance(TICK)
        jobs = by_id(made)
        order = await listed(store, status=JobStatus.QUEUED)
        assert sorted(order) == sorted(jobs)
        if kit.order_group is None:
            assert order == [made[i].id for i in (10, 11, 0, 3, 5, 7, 1, 9, 2, 4, 8, 6)]
        for limit in (1, 2, 5):
            pages = await paged(store, limit, status=JobStatus.QUEUED, queue=None)
            assert [job.id for job in pages] == order
        for tenant in ("A", "B", "C"):
            theirs = await paged(store, 1, status=JobStatus.QUEUED, queue=None, tenant=tenant)
            assert [job.id for job in theirs] == [i for i in order if jobs[i].tenant == tenant]
        behind = made[8]  # B's job waiting behind A's with key k
        taken = await one_by_one(kit, 11, queues=PRIORITY)
        assert_in_group_order(kit, taken, [jobs[i] for i in order if i != behind.id])
        assert await claim_ids(kit, queues=PRIORITY) == []

    async def test_list_jobs_keeps_the_jobs_of_one_tenant(self, kit: StoreKit) -> None:
        """With a tenant, every listing (each status and none, each queue and none) holds
        exactly that tenant's jobs, in its usual order, page by page alike."""
        store = inspection(kit)
        made = await backlog(kit, "A", 3) + await backlog(kit, "B", 3, queue="low")
        made += await backlog(kit, None, 2)
        made += await backlog(kit, "A", 1, queue="low", delay=3600)
        claims = await kit.store.claim(4, queues=("default", "low"), lease=kit.lease)
        await kit.store.complete(claims[0], None)
        await kit.store.fail(claims[1], BOOM, retry_in=None)
        jobs = {job.id: job for job in (await inspection(kit).list_jobs(limit=100)).jobs}
        assert len(jobs) == len(made)
        for tenant in ("A", "B", "nobody"):
            assert await listed(store, tenant=tenant) == [
                job.id for job in made[::-1] if job.tenant == tenant
            ]
            for status in (None, *JobStatus):
                for queue in (None, "default", "low"):
                    wanted = await listed(store, status=status, queue=queue)
                    pages = await paged(store, 1, status=status, queue=queue, tenant=tenant)
                    assert [job.id for job in pages] == [
                        job_id for job_id in wanted if jobs[job_id].tenant == tenant
                    ]

    @pytest.mark.parametrize("letter", ["é", "中", "\U0001d518"], ids=["latin", "cjk", "astral"])
    async def test_a_listing_by_the_longest_tenant_outside_ascii_pages_to_its_end(
        self, kit: StoreKit, letter: str
    ) -> None:
        """A tenant of 255 characters that take 2, 3 or 4 bytes each: every listing's
        cursor goes back in (its own cursors are never too long), page by page, to every
        job of that tenant."""
        store = inspection(kit)
        tenant = letter * MAX_LABEL_LENGTH
        made = await backlog(kit, tenant, 3) + await backlog(kit, "other", 1)
        claims = await kit.store.claim(1, lease=kit.lease)
        await kit.store.complete(claims[0], None)
        for status in (None, JobStatus.QUEUED, JobStatus.COMPLETED):
            pages = await paged(store, 1, status=status, queue=None, tenant=tenant)
            wanted = await listed(store, status=status, tenant=tenant)
            assert [job.id for job in pages] == wanted
        assert {
            job.id for job in await paged(store, 1, status=None, queue=None, tenant=tenant)
        } == {job.id for job in made[:3]}

    @pytest.mark.parametrize("status", [None, JobStatus.QUEUED], ids=["all", "queued"])
    async def test_a_listing_cursor_is_bound_to_its_tenant(
        self, kit: StoreKit, status: JobStatus | None
    ) -> None:
        """A cursor of tenant A's listing continues only that listing: given with
        another tenant, or with none, it is a `ValueError`, and so is the converse."""
        store = inspection(kit)
        await backlog(kit, "A", 2)
        await backlog(kit, "B", 2)
        tenant_a = (await store.list_jobs(status=status, tenant="A", limit=1)).next_cursor
        everyone = (await store.list_jobs(status=status, limit=1)).next_cursor
        assert tenant_a is not None and everyone is not None
        for tenant, cursor in (("B", tenant_a), (None, tenant_a), ("A", everyone)):
            with pytest.raises(ValueError):
                await store.list_jobs(status=status, tenant=tenant, limit=1, cursor=cursor)
        rest = await store.list_jobs(status=status, tenant="A", limit=1, cursor=tenant_a)
        assert [job.tenant for job in rest.jobs] == ["A"]
