"""The inspection contract's listing: `list_jobs` orders, paging and cursor checks."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest

from .._job import DEFAULT_QUEUE, Job, JobStatus
from .._listing import MAX_LIMIT, encode_cursor, filters_of
from .._store import ControlStore, InspectionStore
from ._contract_support import (
    BOOM,
    FAR,
    TICK,
    assert_in_group_order,
    claim_every,
    control,
    inspection,
    new_job,
    of_group,
    read,
)
from ._kit import StoreKit

PRIORITY = ("high", "default", "low")
TERMINAL = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED)


def _tenant(tenant: str | None) -> dict[str, Any]:
    """The tenant filter as keywords: none at all without one, as the listings that came
    before tenants call a store."""
    return {} if tenant is None else {"tenant": tenant}


async def listed(
    store: InspectionStore,
    *,
    status: JobStatus | None = None,
    queue: str | None = None,
    tenant: str | None = None,
) -> list[uuid.UUID]:
    """The ids of one page holding every matching job."""
    page = await store.list_jobs(
        status=status, queue=queue, limit=MAX_LIMIT, queues=PRIORITY, **_tenant(tenant)
    )
    assert page.next_cursor is None
    return [job.id for job in page.jobs]


async def _listed_jobs(store: InspectionStore) -> list[Job]:
    """Every Queued job, in one page."""
    page = await store.list_jobs(status=JobStatus.QUEUED, limit=MAX_LIMIT, queues=PRIORITY)
    assert page.next_cursor is None
    return list(page.jobs)


def _assert_listed_in_order(kit: StoreKit, jobs: list[Job], order: list[Job]) -> None:
    """``jobs`` are the jobs of ``order`` (whose queues come one after another), queue
    after queue in that order, and in that order within each order group: with one
    group exactly that order (a sharded store lists each shard's jobs in its claim order,
    the shards' rounds of claims interleaved)."""
    assert [job.queue for job in jobs] == [job.queue for job in order]
    assert sorted(job.id for job in jobs) == sorted(job.id for job in order)
    for job in order:
        assert of_group(kit, jobs, job) == of_group(kit, order, job), f"order of {job.id}"


async def paged(
    store: InspectionStore,
    limit: int,
    *,
    status: JobStatus | None,
    queue: str | None,
    tenant: str | None = None,
) -> list[Job]:
    """Every matching job, page after page of at most ``limit`` (exactly ``limit`` but on
    the last page, unless a ``queue`` or ``tenant`` filter may cut a page short)."""
    jobs: list[Job] = []
    cursor: str | None = None
    for _ in range(1000):
        page = await store.list_jobs(
            status=status,
            queue=queue,
            limit=limit,
            cursor=cursor,
            queues=PRIORITY,
            **_tenant(tenant),
        )
        assert len(page.jobs) <= limit
        if queue is None and tenant is None and page.next_cursor is not None:
            assert len(page.jobs) == limit
        jobs += page.jobs
        if page.next_cursor is None:
            return jobs
        cursor = page.next_cursor
    raise AssertionError("paging never ended")


async def _one_of_each(kit: StoreKit) -> dict[uuid.UUID, tuple[JobStatus, str]]:
    """Four jobs in each status (Canceled too when the store can cancel), in queues "a"
    and "b"; their status and queue by id."""
    queues = ("a", "b") * 2
    for queue in queues * 3:
        await kit.store.enqueue(new_job(queue=queue))
    claims = await kit.store.claim(12, queues=("a", "b"), lease=kit.lease)
    for claim in claims[:4]:
        await kit.store.complete(claim, None)
    for claim in claims[4:8]:
        await kit.store.fail(claim, BOOM, retry_in=None)
    for index, queue in enumerate(queues):
        await kit.store.enqueue(new_job(queue=queue, delay=FAR + index))
        await kit.store.enqueue(new_job(queue=queue))
    if isinstance(kit.store, ControlStore):
        steering = control(kit)
        for queue in queues:
            await steering.cancel((await kit.store.enqueue(new_job(queue=queue))).id)
    return {job.id: (job.status, job.queue) for job in await _all(kit)}


async def _all(kit: StoreKit) -> list[Job]:
    return list((await inspection(kit).list_jobs(limit=MAX_LIMIT, queues=PRIORITY)).jobs)


class ListingContract:
    """Listing in the orders of `async_endpoints._listing`, page by page, with cursors a
    caller cannot bend."""

    async def test_queued_jobs_are_listed_by_queue_priority_then_as_they_became_due(
        self, kit: StoreKit
    ) -> None:
        """Queues in the priority order given, each in the order its jobs became due there,
        the order workers take them in (but for tenants taking turns and jobs waiting
        behind their key): a job retried at once goes behind the jobs queued before."""
        store = inspection(kit)
        made = []
        for queue in ("low", "default", "high", "default", "high"):
            made.append(await kit.store.enqueue(new_job(queue=queue)))
            await kit.advance(TICK)
        (claim,) = await kit.store.claim(1, queues=("default",), lease=kit.lease)
        assert_in_group_order(kit, [claim.job], [made[1], made[3]])
        await kit.advance(TICK)
        await kit.store.fail(claim, BOOM, retry_in=0)
        (other,) = [job for job in (made[1], made[3]) if job.id != claim.job.id]
        _assert_listed_in_order(
            kit, await _listed_jobs(store), [made[2], made[4], other, claim.job, made[0]]
        )

    async def test_jobs_queued_at_one_moment_are_listed_in_the_order_claims_take_them(
        self, kit: StoreKit
    ) -> None:
        """Jobs queued in a burst, with no time passing between them (one millisecond of a
        server's clock, one moment of a manual clock), are listed in the order they were
        queued, the order claims take them in, not by id."""
        store = inspection(kit)
        made = [await kit.store.enqueue(new_job()) for _ in range(30)]
        listed = await _listed_jobs(store)
        assert {job.id for job in listed} == {job.id for job in made}
        assert_in_group_order(kit, listed, made)
        taken = [claim.job for claim in await claim_every(kit, 30, 30)]
        assert_in_group_order(kit, taken, made)

    async def test_requeued_and_delayed_jobs_are_listed_from_when_they_became_due(
        self, kit: StoreKit
    ) -> None:
        """A job requeued after another was submitted is listed after it, and a delayed job
        from its run_at, after the jobs queued before that, whenever it was submitted."""
        store = inspection(kit)
        dead = await kit.store.enqueue(new_job(max_retries=0))
        (claim,) = await kit.store.claim(1, lease=kit.lease)
        await kit.store.fail(claim, BOOM, retry_in=None)
        delayed = await kit.store.enqueue(new_job(delay=kit.lease))
        await kit.advance(TICK)
        plain = await kit.store.enqueue(new_job())
        await kit.advance(TICK)
        assert await control(kit).requeue(dead.id) is not None
        await kit.advance(kit.lease + TICK)
        await control(kit).pause([DEFAULT_QUEUE])
        assert await kit.store.claim(3, lease=kit.lease) == []  # due jobs are Queued now
        _assert_listed_in_order(kit, await _listed_jobs(store), [plain, dead, delayed])

    async def test_scheduled_jobs_are_listed_soonest_first(self, kit: StoreKit) -> None:
        """By run_at, whatever the order they were delayed in, retries waiting for their
        backoff among them."""
        store = inspection(kit)
        ids = [
            (await kit.store.enqueue(new_job(queue=queue, delay=FAR + offset))).id
            for queue, offset in (("high", 2.0), ("low", 0.0), ("default", 1.0))
        ]
        retried = await kit.store.enqueue(new_job(queue="low"))
        (claim,) = await kit.store.claim(1, queues=("low",), lease=kit.lease)
        await kit.store.fail(claim, BOOM, retry_in=FAR + 1.5)
        expected = [ids[1], ids[2], retried.id, ids[0]]
        assert await listed(store, status=JobStatus.SCHEDULED) == expected

    async def test_running_jobs_are_listed_oldest_start_first(self, kit: StoreKit) -> None:
        """By started_at, not by when they were submitted."""
        store = inspection(kit)
        ids = [(await kit.store.enqueue(new_job(queue=q))).id for q in ("a", "b", "c")]
        for queue in ("b", "c", "a"):
            await kit.store.claim(1, queues=(queue,), lease=kit.lease)
            await kit.advance(TICK)
        assert await listed(store, status=JobStatus.IN_PROGRESS) == [ids[1], ids[2], ids[0]]

    @pytest.mark.parametrize("status", TERMINAL, ids=[status.value for status in TERMINAL])
    async def test_terminal_jobs_are_listed_newest_completion_first(
        self, kit: StoreKit, status: JobStatus
    ) -> None:
        """Completed, Failed and Canceled jobs: the last one to finish comes first."""
        store = inspection(kit)
        steering = control(kit) if status is JobStatus.CANCELED else None
        ids = {q: (await kit.store.enqueue(new_job(queue=q))).id for q in ("a", "b", "c")}
        for queue in ("b", "c", "a"):
            if steering is not None:
                await steering.cancel(ids[queue])
            else:
                (claim,) = await kit.store.claim(1, queues=(queue,), lease=kit.lease)
                if status is JobStatus.COMPLETED:
                    await kit.store.complete(claim, None)
                else:
                    await kit.store.fail(claim, BOOM, retry_in=None)
            await kit.advance(TICK)
        assert await listed(store, status=status) == [ids["a"], ids["c"], ids["b"]]

    async def test_all_jobs_are_listed_newest_first(self, kit: StoreKit) -> None:
        """Without a status, by created_at, newest first, whatever their status now."""
        store = inspection(kit)
        ids = []
        for queue in ("a", "b", "a", "b"):
            ids.append((await kit.store.enqueue(new_job(queue=queue))).id)
            await kit.advance(TICK)
        (claim,) = await kit.store.claim(1, queues=("b",), lease=kit.lease)
        await kit.store.complete(claim, None)
        await kit.store.claim(1, queues=("a",), lease=kit.lease)
        assert await listed(store) == ids[::-1]

    async def test_paging_visits_every_matching_job_once(self, kit: StoreKit) -> None:
        """For each status and none, with and without a queue: pages of at most ``limit``
        jobs, in the listing's order, add up to every matching job, each once, each as
        stored."""
        store = inspection(kit)
        population = await _one_of_each(kit)
        for status in (None, *JobStatus):
            for queue in (None, "a", "b"):
                jobs = await paged(store, 3, status=status, queue=queue)
                ids = [job.id for job in jobs]
                assert ids == await listed(store, status=status, queue=queue)
                assert set(ids) == {
                    job_id
                    for job_id, (job_status, job_queue) in population.items()
                    if status in (None, job_status) and queue in (None, job_queue)
                }
                for job in jobs:
                    assert job.to_json() == (await read(kit.store, job.id)).to_json()

    @pytest.mark.parametrize("limit", [0, -1, MAX_LIMIT + 1, True, 2.5, "10"])
    async def test_a_limit_out_of_range_is_a_value_error(self, kit: StoreKit, limit: Any) -> None:
        """limit must be an integer from 1 to MAX_LIMIT."""
        store = inspection(kit)
        with pytest.raises(ValueError):
            await store.list_jobs(limit=limit)
        await store.list_jobs(limit=MAX_LIMIT)
        await store.list_jobs(limit=1)

    async def test_a_tampered_or_foreign_cursor_is_a_value_error(self, kit: StoreKit) -> None:
        """A cursor that does not decode, names a position this store never made, or was
        made for other filters raises ValueError: it never lists other jobs."""
        store = inspection(kit)
        await _one_of_each(kit)
        cursor = (await store.list_jobs(status=JobStatus.QUEUED, limit=1)).next_cursor
        assert cursor is not None
        raw = base64.urlsafe_b64encode(b'[1, ["Queued", null], [').decode()
        for bad in ("not a cursor", cursor[:-3], cursor + "AAAA", raw):
            with pytest.raises(ValueError):
                await store.list_jobs(status=JobStatus.QUEUED, limit=1, cursor=bad)
        for status in (None, *JobStatus):
            for position in ([{"evil": True}], [[1, 2], [3]], [None] * 100, ["x", "y"]):
                forged = encode_cursor(filters_of(status, None), position)
                with pytest.raises(ValueError):
                    await store.list_jobs(status=status, limit=1, cursor=forged)
        foreign: list[dict[str, Any]] = [
            {"status": JobStatus.FAILED},
            {"status": None},
            {"status": JobStatus.QUEUED, "queue": "default"},
        ]
        for filters in foreign:
            with pytest.raises(ValueError):
                await store.list_jobs(limit=1, cursor=cursor, **filters)
