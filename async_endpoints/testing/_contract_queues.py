"""The core contract's scheduling: delayed jobs, and queues taken in strict priority."""

from __future__ import annotations

from datetime import timedelta

from .._job import JobStatus
from ._contract_support import BOOM, assert_in_group_order, claim_every, new_job, read
from ._kit import StoreKit

PRIORITY = ("high", "default", "low")


class QueueContract:
    """Delays on the store's clock; queues claimed highest first, only those asked for."""

    async def test_a_delayed_job_is_stored_scheduled_until_its_run_at(self, kit: StoreKit) -> None:
        """enqueue with a delay stores the job Scheduled, due ``delay`` seconds after it
        was created."""
        delay = kit.lease * 10
        stored = await kit.store.enqueue(new_job(delay=delay))
        job = await read(kit.store, stored.id)
        assert job == stored and job.status is JobStatus.SCHEDULED
        assert job.run_at is not None and job.started_at is None
        late = job.run_at - (job.created_at + timedelta(seconds=delay))
        assert abs(late) <= timedelta(milliseconds=5)

    async def test_a_delayed_job_is_claimable_only_once_its_delay_has_passed(
        self, kit: StoreKit
    ) -> None:
        """Not claimed before its run-at time; claimed (run_at cleared) once due."""
        job = await kit.store.enqueue(new_job(delay=kit.lease))
        assert await kit.store.claim(1, lease=kit.lease) == []
        await kit.advance(kit.lease * 0.5)
        assert await kit.store.claim(1, lease=kit.lease) == []
        await kit.advance(kit.lease * 0.7)
        (claim,) = await kit.store.claim(1, lease=kit.lease)
        assert claim.job.id == job.id and claim.job.status is JobStatus.IN_PROGRESS
        assert claim.job.run_at is None and claim.job.started_at is not None
        done = await kit.store.complete(claim, "later")
        assert done is not None and done.status is JobStatus.COMPLETED

    async def test_a_delayed_job_does_not_hold_up_the_jobs_behind_it(self, kit: StoreKit) -> None:
        """A job enqueued after a delayed one is claimed first."""
        await kit.store.enqueue(new_job(delay=kit.lease * 10))
        plain = await kit.store.enqueue(new_job())
        assert [c.job.id for c in await kit.store.claim(5, lease=kit.lease)] == [plain.id]

    async def test_claim_takes_from_the_first_queue_that_has_a_due_job(self, kit: StoreKit) -> None:
        """Strict priority: every "high" job goes before any "default" one (of its order
        group), whatever the order they came in; oldest first within a queue."""
        low = await kit.store.enqueue(new_job(queue="low"))
        default = await kit.store.enqueue(new_job(queue="default"))
        high = [await kit.store.enqueue(new_job(queue="high")) for _ in range(2)]
        claims = await claim_every(kit, 2, 2, queues=PRIORITY)
        claims += await claim_every(kit, 1, 1, queues=PRIORITY)
        claims += await claim_every(kit, 1, 1, queues=PRIORITY)
        assert_in_group_order(kit, [c.job for c in claims], [*high, default, low])
        assert len({c.job.id for c in claims}) == 4

    async def test_a_claim_fills_its_limit_down_the_queues_in_priority_order(
        self, kit: StoreKit
    ) -> None:
        """One claim takes what the first queue has, then goes on to the next ones (in
        each order group; a store of several takes every group's jobs)."""
        low = await kit.store.enqueue(new_job(queue="low"))
        default = [await kit.store.enqueue(new_job()) for _ in range(2)]
        high = await kit.store.enqueue(new_job(queue="high"))
        claims = await claim_every(kit, 4, queues=PRIORITY)
        assert_in_group_order(kit, [c.job for c in claims], [high, *default, low])

    async def test_the_order_of_the_queues_given_is_the_priority(self, kit: StoreKit) -> None:
        """Priority is the order a claim names the queues in, not a property of names."""
        high = await kit.store.enqueue(new_job(queue="high"))
        low = await kit.store.enqueue(new_job(queue="low"))
        claims = await claim_every(kit, 2, 2, queues=("low", "high"))
        assert_in_group_order(kit, [c.job for c in claims], [low, high])

    async def test_a_claim_takes_only_jobs_of_the_queues_it_names(self, kit: StoreKit) -> None:
        """Jobs of other queues stay Queued for the workers that serve them; a claim
        without queues serves "default" alone."""
        low = await kit.store.enqueue(new_job(queue="low"))
        high = await kit.store.enqueue(new_job(queue="high"))
        assert await kit.store.claim(5, lease=kit.lease) == []
        assert await kit.store.claim(5, queues=("default", "other"), lease=kit.lease) == []
        claims = await kit.store.claim(5, queues=("high",), lease=kit.lease)
        assert [c.job.id for c in claims] == [high.id]
        assert (await read(kit.store, low.id)).status is JobStatus.QUEUED
        claims = await kit.store.claim(5, queues=("low",), lease=kit.lease)
        assert [c.job.id for c in claims] == [low.id]

    async def test_a_job_keeps_its_queue_through_claim_retry_and_settlement(
        self, kit: StoreKit
    ) -> None:
        """A retried job waits in its own queue again; its queue reads back throughout."""
        job = await kit.store.enqueue(new_job(queue="low"))
        assert job.queue == "low"
        (claim,) = await kit.store.claim(1, queues=("low",), lease=kit.lease)
        assert claim.job.queue == "low"
        retried = await kit.store.fail(claim, BOOM, retry_in=0)
        assert retried is not None and retried.queue == "low"
        assert await kit.store.claim(5, queues=("default", "high"), lease=kit.lease) == []
        (claim,) = await kit.store.claim(1, queues=("low",), lease=kit.lease)
        done = await kit.store.complete(claim, None)
        assert done is not None and done.queue == "low"
        assert (await read(kit.store, job.id)).queue == "low"
