"""Partition keys with the rest of the store: cancel, requeue, pause, hand-over to idle
workers, counts and listing."""

from __future__ import annotations

import asyncio

import pytest

from .._job import JobStatus
from .._listing import QueueStats
from ._contract_listing import PRIORITY, listed, paged
from ._contract_partitions import KEY, OTHER, submitted
from ._contract_support import (
    BOOM,
    FAR,
    TICK,
    claim_ids,
    control,
    forged,
    inspection,
    new_job,
    read,
)
from ._contract_waits import PROMPTLY, SETTLE
from ._kit import StoreKit


class PartitionControlContract:
    """Cancel and requeue move jobs in and out of their lanes; pause, hand-over, counts
    and listing see the jobs that wait behind their key."""

    async def test_cancelling_a_keys_waiting_first_job_makes_the_next_claimable(
        self, kit: StoreKit
    ) -> None:
        """Cancel releases the key at once when its first job was still waiting."""
        store = control(kit)
        first, second, _ = await submitted(kit, 3)
        canceled = await store.cancel(first.id)
        assert canceled is not None and canceled.status is JobStatus.CANCELED
        assert await claim_ids(kit) == [second.id]

    @pytest.mark.parametrize("report", ["fail", "complete"])
    async def test_a_cancelled_running_first_job_keeps_its_key_until_its_attempt_ends(
        self, kit: StoreKit, report: str
    ) -> None:
        """A running job cancelled is Canceled at once, but its handler may still run for
        a moment: the key stays its attempt's until the worker reports the handler's end
        (with the claim's own token; the store refuses the outcome) and the next job is
        claimable then, never before."""
        store = control(kit)
        first, second = await submitted(kit, 2)
        (claim,) = await kit.store.claim(10, lease=kit.lease)
        assert claim.job.id == first.id
        canceled = await store.cancel(first.id)
        assert canceled is not None and canceled.status is JobStatus.CANCELED
        assert await claim_ids(kit) == []
        assert await kit.store.fail(forged(claim.job), BOOM, retry_in=None) is None
        assert await claim_ids(kit) == [], "a claim that is not the attempt's let the key go"
        if report == "fail":
            assert await kit.store.fail(claim, BOOM, retry_in=None) is None
        else:
            assert await kit.store.complete(claim, "late") is None
        assert await claim_ids(kit) == [second.id]
        kept = await read(kit.store, first.id)
        assert (kept.status, kept.retry_count, kept.result) == (JobStatus.CANCELED, 0, None)

    async def test_a_cancelled_running_jobs_key_is_let_go_when_its_lease_runs_out(
        self, kit: StoreKit
    ) -> None:
        """A cancelled attempt that never reports its end (its process died) keeps the key
        only while its lease lasts: renewing its claim says the claim is lost but extends
        that lease (its handler may still be unwinding); once it runs out, recovery gives
        the key to the next job and counts no attempt of the canceled one (whose record
        may be gone by then: the key is let go all the same)."""
        store = control(kit)
        first, second = await submitted(kit, 2)
        (claim,) = await kit.store.claim(10, lease=kit.lease)
        await store.cancel(first.id)
        await kit.advance(kit.lease / 2)
        assert await kit.store.renew([claim], lease=kit.lease) == {claim.token}
        await kit.advance(kit.lease / 2 + TICK)
        assert first.id not in await kit.store.recover()
        assert await claim_ids(kit) == [], "the renewed lease was not kept"
        await kit.advance(kit.lease / 2 + 10 * TICK)
        assert first.id not in await kit.store.recover()
        assert await claim_ids(kit) == [second.id]
        kept = await kit.store.get(first.id)  # the suite's retention may have passed
        assert kept is None or (kept.status, kept.retry_count) == (JobStatus.CANCELED, 0)

    async def test_a_cancelled_running_job_requeued_runs_after_its_own_attempt_ended(
        self, kit: StoreKit
    ) -> None:
        """Requeued while its cancelled attempt still runs, the job joins the end of its
        lane, behind that attempt: it runs again only after the attempt reported its end
        and the key's other jobs ran."""
        store = control(kit)
        first, second = await submitted(kit, 2)
        (claim,) = await kit.store.claim(10, lease=kit.lease)
        await store.cancel(first.id)
        requeued = await store.requeue(first.id)
        assert requeued is not None and requeued.status is JobStatus.QUEUED
        assert await claim_ids(kit) == []
        assert await kit.store.fail(claim, BOOM, retry_in=None) is None
        order = []
        for _ in range(2):
            (claim,) = await kit.store.claim(10, lease=kit.lease)
            order.append(claim.job.id)
            assert await claim_ids(kit) == []
            assert await kit.store.complete(claim, None) is not None
        assert order == [second.id, first.id]
        assert (await read(kit.store, first.id)).status is JobStatus.COMPLETED

    async def test_cancelling_a_later_job_takes_it_out_of_its_lane(self, kit: StoreKit) -> None:
        """The canceled job never runs; the one behind it comes next in its place, and a
        lane whose last job was canceled leaves nothing to claim."""
        store = control(kit)
        first, second, third, last = await submitted(kit, 4)
        (claim,) = await kit.store.claim(10, lease=kit.lease)
        assert claim.job.id == first.id
        for job in (second, last):
            canceled = await store.cancel(job.id)
            assert canceled is not None and canceled.status is JobStatus.CANCELED
        assert await claim_ids(kit) == []
        await kit.store.complete(claim, None)
        (claim,) = await kit.store.claim(10, lease=kit.lease)
        assert claim.job.id == third.id
        await kit.store.complete(claim, None)
        assert await claim_ids(kit) == []
        assert (await read(kit.store, second.id)).status is JobStatus.CANCELED

    async def test_a_requeued_job_joins_the_end_of_its_lane(self, kit: StoreKit) -> None:
        """A Failed first job requeued runs after the jobs its key has now; requeued on
        a key with no other job, it is claimable at once."""
        store = control(kit)
        first, second = await submitted(kit, 2)
        (claim,) = await kit.store.claim(10, lease=kit.lease)
        await kit.store.fail(claim, BOOM, retry_in=None)
        (third,) = await submitted(kit, 1)
        requeued = await store.requeue(first.id)
        assert requeued is not None and requeued.status is JobStatus.QUEUED
        order = []
        for _ in range(3):
            (claim,) = await kit.store.claim(10, lease=kit.lease)
            order.append(claim.job.id)
            assert await claim_ids(kit) == []
            await kit.store.complete(claim, None)
        assert order == [second.id, third.id, first.id]
        (alone,) = await submitted(kit, 1, OTHER)
        await store.cancel(alone.id)
        await store.requeue(alone.id)
        assert await claim_ids(kit) == [alone.id]

    async def test_a_paused_queue_holds_the_next_job_of_a_key(self, kit: StoreKit) -> None:
        """The job freed by its key's first job waits for the resume, like any job of a
        paused queue; jobs of other queues run meanwhile."""
        store = control(kit)
        first, second = await submitted(kit, 2)
        (claim,) = await kit.store.claim(10, lease=kit.lease)
        await store.pause(["default"])
        await kit.store.complete(claim, None)
        elsewhere = await kit.store.enqueue(new_job(partition_key=OTHER, queue="low"))
        assert await claim_ids(kit, queues=PRIORITY) == [elsewhere.id]
        assert (await read(kit.store, second.id)).status is JobStatus.QUEUED
        await store.resume(["default"])
        assert await claim_ids(kit, queues=PRIORITY) == [second.id]
        assert first.id != second.id

    async def test_a_keyed_job_is_handed_over_only_when_first_in_its_lane(
        self, kit: StoreKit
    ) -> None:
        """An idle waiter is never handed a job whose key is busy (it stays Queued, as
        stored); a job of a free key may be handed over; each runs exactly once."""
        (first,) = await submitted(kit, 1)
        (running,) = await kit.store.claim(2, lease=kit.lease * 10)
        waiter = asyncio.create_task(kit.store.wait_for_work(0.5, take=2, lease=kit.lease))
        await asyncio.sleep(SETTLE)
        (second,) = await submitted(kit, 1)
        async with asyncio.timeout(PROMPTLY):
            assert await waiter == []
        assert await read(kit.store, second.id) == second
        assert await claim_ids(kit, 2) == []
        waiter = asyncio.create_task(kit.store.wait_for_work(30, take=2, lease=kit.lease))
        await asyncio.sleep(SETTLE)
        (free,) = await submitted(kit, 1, OTHER)
        async with asyncio.timeout(PROMPTLY):
            handed = await waiter
        claims = handed + await kit.store.claim(2, lease=kit.lease)
        assert [claim.job.id for claim in claims] == [free.id]
        await kit.store.complete(running, None)
        assert await claim_ids(kit, 2) == [second.id]
        assert running.job.id == first.id

    async def test_counts_include_the_jobs_waiting_behind_their_key(self, kit: StoreKit) -> None:
        """count_waiting and queue_stats count every Queued and Scheduled job, claimable
        or not."""
        store = inspection(kit)
        await submitted(kit, 3)
        await submitted(kit, 1, delay=FAR)
        assert await store.count_waiting() == 4
        (claim,) = await kit.store.claim(10, lease=kit.lease)
        assert await store.count_waiting() == 3
        assert await store.queue_stats(["default"]) == [
            QueueStats("default", queued=2, scheduled=1, in_progress=1)
        ]
        await kit.store.complete(claim, None)
        assert await store.queue_stats(["default"]) == [
            QueueStats("default", queued=2, scheduled=1, completed=1)
        ]

    async def test_queued_jobs_waiting_behind_their_key_are_listed_in_order(
        self, kit: StoreKit
    ) -> None:
        """Queued jobs are listed by queue priority, then in the order claims take them:
        the claimable ones first, then those waiting behind their key (which no claim
        takes before the job ahead of them ends); page by page alike."""
        store = inspection(kit)
        made = []
        for queue, key in (("default", KEY), ("low", None), ("default", KEY), ("high", OTHER)):
            made.append(await kit.store.enqueue(new_job(queue=queue, partition_key=key)))
            await kit.advance(TICK)
        assert await claim_ids(kit, queues=("default",)) == [made[0].id]
        await kit.advance(TICK)
        made.append(await kit.store.enqueue(new_job()))
        a, b, c, d, e = (job.id for job in made)
        assert await listed(store, status=JobStatus.QUEUED) == [d, e, c, b]
        pages = await paged(store, 1, status=JobStatus.QUEUED, queue=None)
        assert [job.id for job in pages] == [d, e, c, b]
        assert await listed(store, status=JobStatus.IN_PROGRESS) == [a]
