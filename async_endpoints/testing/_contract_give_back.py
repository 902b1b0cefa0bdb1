"""The give-back contract (`GiveBackStore`): a claim its worker gives back unfinished
lets its job wait again (at once, or after a delay), the attempt not counted."""

from __future__ import annotations

from .._job import JobStatus
from .._store_features import GiveBackStore
from ._contract_support import BOOM, control, new_job, read, require
from ._kit import StoreKit


def giving_back(kit: StoreKit) -> GiveBackStore:
    """``kit.store`` as a `GiveBackStore`, or skip the test when it is not one."""
    require(kit.store, GiveBackStore)
    assert isinstance(kit.store, GiveBackStore)
    return kit.store


class GiveBackContract:
    """Give back: Queued again (or Scheduled), retry count and error as they were; a lost
    claim changes nothing; a partition key stays the job's."""

    async def test_a_given_back_job_is_queued_at_once_with_its_attempt_not_counted(
        self, kit: StoreKit
    ) -> None:
        """After a failed attempt (retry count 1, its error) and a second claim given
        back: Queued, due now, retry count 1 and the error kept; claimed again at once,
        with its request; the old claim is lost (its outcome changes nothing)."""
        store = giving_back(kit)
        spec = new_job(max_retries=3, body='{"a": 1}')
        await kit.store.enqueue(spec)
        (first,) = await kit.store.claim(1, lease=kit.lease)
        await kit.store.fail(first, BOOM, retry_in=0)
        (second,) = await kit.store.claim(1, lease=kit.lease)
        back = await store.give_back(second, retry_in=0)
        assert back is not None and back.status is JobStatus.QUEUED
        assert back.retry_count == 1 and back.error == BOOM and back.run_at is None
        assert await read(kit.store, spec.id) == back
        (third,) = await kit.store.claim(1, lease=kit.lease)
        assert third.job.id == spec.id and third.job.request == spec.request
        assert third.job.retry_count == 1
        assert await kit.store.complete(second, "stale") is None
        done = await kit.store.complete(third, "fresh")
        assert done is not None and done.result == "fresh" and done.retry_count == 1

    async def test_giving_back_a_lost_claim_changes_nothing(self, kit: StoreKit) -> None:
        """A claim whose job completed, or was cancelled meanwhile: None, the job as it
        was."""
        store = giving_back(kit)
        done = await kit.store.enqueue(new_job())
        (claim,) = await kit.store.claim(1, lease=kit.lease)
        await kit.store.complete(claim, 1)
        assert await store.give_back(claim, retry_in=0) is None
        assert (await read(kit.store, done.id)).status is JobStatus.COMPLETED
        canceled = await kit.store.enqueue(new_job())
        (claim,) = await kit.store.claim(1, lease=kit.lease)
        await control(kit).cancel(canceled.id)
        assert await store.give_back(claim, retry_in=0) is None
        assert (await read(kit.store, canceled.id)).status is JobStatus.CANCELED

    async def test_a_given_back_job_keeps_its_partition_key(self, kit: StoreKit) -> None:
        """Two jobs of one key, the first claimed and given back: the second still waits
        behind it; the first is claimed again, and once it completes the second runs."""
        store = giving_back(kit)
        first = await kit.store.enqueue(new_job(partition_key="k"))
        second = await kit.store.enqueue(new_job(partition_key="k"))
        (claim,) = await kit.store.claim(5, lease=kit.lease)
        assert claim.job.id == first.id
        await store.give_back(claim, retry_in=0)
        (again,) = await kit.store.claim(5, lease=kit.lease)
        assert again.job.id == first.id
        assert await kit.store.claim(5, lease=kit.lease) == []
        await kit.store.complete(again, 1)
        (last,) = await kit.store.claim(5, lease=kit.lease)
        assert last.job.id == second.id

    async def test_a_job_given_back_with_a_delay_is_scheduled_until_then(
        self, kit: StoreKit
    ) -> None:
        """Given back with ``retry_in``: Scheduled with ``run_at`` that far off, not
        claimable before, claimed once due, its retry count as it was."""
        store = giving_back(kit)
        job = await kit.store.enqueue(new_job())
        (claim,) = await kit.store.claim(1, lease=kit.lease)
        back = await store.give_back(claim, retry_in=1.0)
        assert back is not None and back.status is JobStatus.SCHEDULED
        assert back.run_at is not None and back.retry_count == 0
        assert await kit.store.claim(1, lease=kit.lease) == []
        await kit.advance(1.2)
        (again,) = await kit.store.claim(1, lease=kit.lease)
        assert again.job.id == job.id and again.job.retry_count == 0
