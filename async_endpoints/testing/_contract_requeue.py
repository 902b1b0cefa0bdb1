"""The control contract's requeue: the way back from the dead letter."""

from __future__ import annotations

import uuid

import pytest

from .._job import Job, JobStatus
from .._lifecycle import InvalidTransitionError
from ._contract_support import (
    BOOM,
    FAR,
    assert_in_group_order,
    claim_every,
    control,
    new_job,
    read,
)
from ._kit import StoreKit


class RequeueContract:
    """Requeue: Failed and Canceled jobs wait again, at the tail, with their retries back."""

    async def test_requeue_of_a_failed_job_queues_it_at_the_tail_with_its_error_kept(
        self, kit: StoreKit
    ) -> None:
        """The job is Queued behind the jobs already waiting, retry_count 0, completed_at
        cleared, its last error and first start kept; claimed, it runs again."""
        store = control(kit)
        spec = new_job(max_retries=1, body='{"a": 1}')
        await kit.store.enqueue(spec)
        (first,) = await kit.store.claim(1, lease=kit.lease)
        await kit.store.fail(first, BOOM, retry_in=0)
        (second,) = await kit.store.claim(1, lease=kit.lease)
        failed = await kit.store.fail(second, BOOM, retry_in=None)
        assert failed is not None and failed.retry_count == 1
        waiting = await kit.store.enqueue(new_job())
        requeued = await store.requeue(spec.id)
        assert requeued is not None and requeued.status is JobStatus.QUEUED
        assert requeued.retry_count == 0 and requeued.error == BOOM
        assert requeued.completed_at is None and requeued.run_at is None
        assert requeued.started_at == failed.started_at
        assert await kit.store.get(spec.id) == requeued
        claims = {c.job.id: c for c in await claim_every(kit, 2, 5)}
        assert_in_group_order(kit, [c.job for c in claims.values()], [waiting, requeued])
        assert claims[spec.id].job.request == spec.request

    async def test_a_requeued_job_has_all_its_retries_again(self, kit: StoreKit) -> None:
        """After a requeue, a failed attempt is retried again, as on a fresh job."""
        store = control(kit)
        job = await kit.store.enqueue(new_job(max_retries=1))
        (claim,) = await kit.store.claim(1, lease=kit.lease)
        await kit.store.fail(claim, BOOM, retry_in=0)
        (claim,) = await kit.store.claim(1, lease=kit.lease)
        await kit.store.fail(claim, BOOM, retry_in=0)
        await store.requeue(job.id)
        (claim,) = await kit.store.claim(1, lease=kit.lease)
        retried = await kit.store.fail(claim, BOOM, retry_in=0)
        assert retried is not None and retried.status is JobStatus.QUEUED
        assert retried.retry_count == 1

    async def test_requeue_of_a_canceled_job_runs_it_with_its_request(self, kit: StoreKit) -> None:
        """A job cancelled while queued waits again in its own queue, and its worker gets
        the request it was submitted with."""
        store = control(kit)
        spec = new_job(queue="low", body='{"b": 2}', headers=(("x-a", "1"),), owner="bob")
        await kit.store.enqueue(spec)
        await store.cancel(spec.id)
        requeued = await store.requeue(spec.id)
        assert requeued is not None and requeued.status is JobStatus.QUEUED
        assert requeued.queue == "low" and requeued.completed_at is None
        assert await kit.store.claim(5, lease=kit.lease) == []
        (claim,) = await kit.store.claim(5, queues=("low",), lease=kit.lease)
        assert claim.job.id == spec.id and claim.job.request == spec.request

    async def test_requeue_of_a_job_canceled_while_running_leaves_its_old_claim_lost(
        self, kit: StoreKit
    ) -> None:
        """The new attempt has a new claim; the cancelled attempt's one stays refused."""
        store = control(kit)
        await kit.store.enqueue(new_job())
        (old,) = await kit.store.claim(1, lease=kit.lease)
        await store.cancel(old.job.id)
        await store.requeue(old.job.id)
        (new,) = await kit.store.claim(1, lease=kit.lease)
        assert new.job.id == old.job.id and new.token != old.token
        assert await kit.store.complete(old, "stale") is None
        assert await kit.store.renew([old, new], lease=kit.lease) == {old.token}
        done = await kit.store.complete(new, "fresh")
        assert done is not None and done.result == "fresh"

    async def test_requeue_refuses_a_job_that_is_not_failed_or_canceled(
        self, kit: StoreKit
    ) -> None:
        """Queued, Scheduled, InProgress and Completed jobs: InvalidTransitionError (a
        ValueError), and the job is unchanged."""
        store = control(kit)
        await kit.store.enqueue(new_job())
        await kit.store.enqueue(new_job())
        running, finishing = await kit.store.claim(2, lease=kit.lease)
        completed = await kit.store.complete(finishing, None)
        queued = await kit.store.enqueue(new_job())
        scheduled = await kit.store.enqueue(new_job(delay=FAR))
        assert completed is not None
        jobs: list[Job] = [queued, scheduled, await read(kit.store, running.job.id), completed]
        for job in jobs:
            with pytest.raises(InvalidTransitionError):
                await store.requeue(job.id)
            assert await kit.store.get(job.id) == job
        assert issubclass(InvalidTransitionError, ValueError)

    async def test_requeue_of_an_unknown_id_answers_none(self, kit: StoreKit) -> None:
        """No job with that id: None, not an error."""
        assert await control(kit).requeue(uuid.uuid4()) is None
