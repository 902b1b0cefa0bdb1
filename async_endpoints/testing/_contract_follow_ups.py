"""The follow-up contract (`FollowUpStore`): a job's follow-up is enqueued in the step that
makes the job terminal, whatever the route, once; a delivery job's transitions are kept in
its target's ``webhook``."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from .._batch import ContinueWhen, NewBatch
from .._errors import DuplicateJobError, QueueFullError
from .._job import DEFAULT_QUEUE, Job, JobStatus, NewJob, WebhookState, WebhookStatus
from .._store import Claim
from .._store_features import FollowUpStore
from ._contract_batches import batches, member
from ._contract_support import (
    BOOM,
    FAR,
    control,
    inspection,
    new_job,
    peer_control,
    read,
    require,
)
from ._kit import StoreKit

PENDING = WebhookState(WebhookStatus.PENDING, 0)


def follow_ups(kit: StoreKit) -> FollowUpStore:
    """``kit.store`` as a `FollowUpStore`, or skip the test when it is not one."""
    require(kit.store, FollowUpStore)
    assert isinstance(kit.store, FollowUpStore)
    return kit.store


def delivery(target: uuid.UUID, **fields: Any) -> NewJob:
    """A new webhook delivery job for the job ``target``; ``fields`` as for `new_job`."""
    return dataclasses.replace(new_job("Deliver", **fields), delivers_for=target)


def with_delivery(parent: NewJob, **fields: Any) -> NewJob:
    """``parent`` with a follow-up that delivers its webhook (``fields`` for that job)."""
    return dataclasses.replace(parent, follow_up=delivery(parent.id, **fields))


async def enqueue_squatter(kit: StoreKit, job_id: uuid.UUID) -> Job | None:
    """Enqueue another job under ``job_id`` (a follow-up's id); None when the store
    refuses it because the follow-up reserves the id (`DuplicateJobError`: a store whose
    follow-up is stored where the job's own enqueue cannot see, such as a sharded one,
    keeps ids unique that way). Either way no id is ever held by two jobs."""
    try:
        return await kit.store.enqueue(dataclasses.replace(new_job("Other"), id=job_id))
    except DuplicateJobError:
        return None


def follow_up(parent: NewJob) -> NewJob:
    """The follow-up of ``parent``, which must have one."""
    assert parent.follow_up is not None
    return parent.follow_up


async def claim_one(kit: StoreKit) -> Claim:
    """Exactly one claim, taken now."""
    claims = await kit.store.claim(5, lease=kit.lease)
    assert len(claims) == 1, claims
    return claims[0]


async def running_parent(
    kit: StoreKit, max_retries: int = 0, **fields: Any
) -> tuple[NewJob, Claim]:
    """A job with a delivery follow-up, stored and claimed."""
    parent = with_delivery(new_job(max_retries=max_retries), **fields)
    await kit.store.enqueue(parent)
    return parent, await claim_one(kit)


async def _complete(kit: StoreKit, parent: NewJob) -> None:
    await kit.store.enqueue(parent)
    await kit.store.complete(await claim_one(kit), "ok")


async def _dead(kit: StoreKit, parent: NewJob) -> None:
    await kit.store.enqueue(parent)
    await kit.store.fail(await claim_one(kit), BOOM, retry_in=None)


async def _retries_used_up(kit: StoreKit, parent: NewJob) -> None:
    await kit.store.enqueue(parent)  # max_retries 0: a retry is asked for, none is left
    await kit.store.fail(await claim_one(kit), BOOM, retry_in=0.0)


async def _cancel_queued(kit: StoreKit, parent: NewJob) -> None:
    await kit.store.enqueue(parent)
    await control(kit).cancel(parent.id)


async def _cancel_scheduled(kit: StoreKit, parent: NewJob) -> None:
    await kit.store.enqueue(dataclasses.replace(parent, delay=FAR))
    await control(kit).cancel(parent.id)


async def _cancel_running(kit: StoreKit, parent: NewJob) -> None:
    await kit.store.enqueue(parent)
    await claim_one(kit)
    await control(kit).cancel(parent.id)


async def _recovered_dead(kit: StoreKit, parent: NewJob) -> None:
    await kit.store.enqueue(parent)  # max_retries 0: the lost attempt was its last
    await claim_one(kit)
    await kit.advance(kit.lease + 0.2)
    assert parent.id in await kit.store.recover()


async def _batch_cancel(kit: StoreKit, parent: NewJob) -> None:
    store = batches(kit)
    batch_id = uuid.uuid4()
    await store.create_batch(NewBatch(batch_id, [dataclasses.replace(parent, batch_id=batch_id)]))
    await store.cancel_batch(batch_id)


async def _continuation_not_run(kit: StoreKit, parent: NewJob) -> None:
    store = batches(kit)
    batch_id = uuid.uuid4()
    then = dataclasses.replace(parent, batch_id=batch_id)
    spec = NewBatch(batch_id, [member(batch_id, max_retries=0)], [then], ContinueWhen.ALL_COMPLETED)
    await store.create_batch(spec)
    await kit.store.fail(await claim_one(kit), BOOM, retry_in=None)  # so `then` must not run


#: Each route to a terminal status: (its name, the status, what takes the parent there).
ROUTES: list[tuple[str, JobStatus, Callable[[StoreKit, NewJob], Awaitable[None]]]] = [
    ("complete", JobStatus.COMPLETED, _complete),
    ("dead", JobStatus.FAILED, _dead),
    ("retries used up", JobStatus.FAILED, _retries_used_up),
    ("cancel Queued", JobStatus.CANCELED, _cancel_queued),
    ("cancel Scheduled", JobStatus.CANCELED, _cancel_scheduled),
    ("cancel InProgress", JobStatus.CANCELED, _cancel_running),
    ("recovery with no retries left", JobStatus.FAILED, _recovered_dead),
    ("batch cancel", JobStatus.CANCELED, _batch_cancel),
    ("continuation stored Canceled", JobStatus.CANCELED, _continuation_not_run),
]


class FollowUpContract:
    """Follow-ups enqueued once at the end of their job; webhook state kept by deliveries."""

    async def test_a_follow_up_is_kept_out_of_the_job_until_it_ends(self, kit: StoreKit) -> None:
        """Stored with a follow-up: the job's webhook is Pending, 0, and the follow-up is
        held (`follow_up_of`), not stored, while the job waits and runs; a job without one
        has no webhook and no follow-up."""
        store = follow_ups(kit)
        parent = with_delivery(new_job())
        stored = await kit.store.enqueue(parent)
        assert stored.webhook == PENDING
        assert await store.follow_up_of(parent.id) == parent.follow_up
        plain = await kit.store.enqueue(new_job())
        assert plain.webhook is None and await store.follow_up_of(plain.id) is None
        assert await store.follow_up_of(uuid.uuid4()) is None
        claims = await kit.store.claim(5, lease=kit.lease)
        assert {claim.job.id for claim in claims} == {parent.id, plain.id}
        assert await kit.store.get(follow_up(parent).id) is None
        assert (await read(kit.store, parent.id)).webhook == PENDING

    @pytest.mark.parametrize("route", ROUTES, ids=[route[0] for route in ROUTES])
    async def test_each_terminal_route_enqueues_the_follow_up_once(
        self,
        kit: StoreKit,
        route: tuple[str, JobStatus, Callable[[StoreKit, NewJob], Awaitable[None]]],
    ) -> None:
        """Whatever makes the job terminal stores its follow-up as `enqueue` would
        (Queued, no key, its own id) and forgets it: `follow_up_of` is None after."""
        store = follow_ups(kit)
        _, status, end = route
        parent = with_delivery(new_job(max_retries=0))
        await end(kit, parent)
        ended = await read(kit.store, parent.id)
        assert ended.status is status and ended.webhook == PENDING
        stored = await read(kit.store, follow_up(parent).id)
        assert stored.status is JobStatus.QUEUED and stored.name == "Deliver"
        assert stored.partition_key is None and stored.webhook is None
        assert await store.follow_up_of(parent.id) is None
        assert await claim_ids_now(kit) == [follow_up(parent).id]

    async def test_a_delayed_follow_up_is_stored_scheduled(self, kit: StoreKit) -> None:
        """A follow-up with a delay is stored Scheduled, as `enqueue` would."""
        follow_ups(kit)
        parent, claim = await running_parent(kit, delay=FAR)
        await kit.store.complete(claim, "ok")
        stored = await read(kit.store, follow_up(parent).id)
        assert stored.status is JobStatus.SCHEDULED and stored.run_at is not None

    async def test_attempts_that_leave_retries_do_not_enqueue_the_follow_up(
        self, kit: StoreKit
    ) -> None:
        """A failed attempt with retries left, and a recovery with retries left, do not end
        the job: no follow-up yet; the end after them stores it."""
        store = follow_ups(kit)
        parent, claim = await running_parent(kit, max_retries=2)
        await kit.store.fail(claim, BOOM, retry_in=0.0)
        assert await kit.store.get(follow_up(parent).id) is None
        await claim_one(kit)
        await kit.advance(kit.lease + 0.2)
        assert await kit.store.recover() == [parent.id]
        assert await kit.store.get(follow_up(parent).id) is None
        assert await store.follow_up_of(parent.id) == parent.follow_up
        await kit.store.complete(await claim_one(kit), "ok")
        assert (await read(kit.store, follow_up(parent).id)).status is JobStatus.QUEUED

    async def test_a_requeued_job_does_not_enqueue_its_follow_up_again(self, kit: StoreKit) -> None:
        """At most once per job: after its follow-up ran, the job requeued and ended again
        stores nothing (the follow-up stays as it ended)."""
        follow_ups(kit)
        parent, claim = await running_parent(kit)
        await kit.store.fail(claim, BOOM, retry_in=None)
        delivered = await kit.store.complete(await claim_one(kit), "sent")
        assert delivered is not None and delivered.id == follow_up(parent).id
        await control(kit).requeue(parent.id)
        await kit.store.fail(await claim_one(kit), BOOM, retry_in=None)
        assert await read(kit.store, follow_up(parent).id) == delivered
        assert await claim_ids_now(kit) == []

    async def test_a_follow_up_whose_id_is_taken_is_skipped(self, kit: StoreKit) -> None:
        """A job stored meanwhile under the follow-up's id is left as it is; the job still
        ends normally."""
        follow_ups(kit)
        parent, claim = await running_parent(kit)
        squatter = await enqueue_squatter(kit, follow_up(parent).id)
        done = await kit.store.complete(claim, "ok")
        assert done is not None and done.status is JobStatus.COMPLETED
        if squatter is None:  # the id was reserved: the follow-up is stored, once
            stored = await read(kit.store, follow_up(parent).id)
            assert stored.name == follow_up(parent).name
        else:
            assert await read(kit.store, squatter.id) == squatter

    async def test_a_skipped_follow_up_leaves_the_webhook_failed(self, kit: StoreKit) -> None:
        """The follow-up (a delivery) skipped because its id is taken: the job's webhook
        is Failed (nothing will deliver it), not Pending for ever; nothing is claimable
        but the job that took the id."""
        follow_ups(kit)
        parent, claim = await running_parent(kit)
        squatter = await enqueue_squatter(kit, follow_up(parent).id)
        await kit.store.complete(claim, "ok")
        ended = await read(kit.store, parent.id)
        if squatter is None:  # the id was reserved: the follow-up is stored and waits
            assert ended.webhook == WebhookState(WebhookStatus.PENDING, 0)
            name = follow_up(parent).name
        else:
            assert ended.webhook == WebhookState(WebhookStatus.FAILED, 0)
            name = "Other"
        [taken] = await kit.store.claim(5, lease=kit.lease)
        assert taken.job.id == follow_up(parent).id and taken.job.name == name

    async def test_a_follow_up_that_cannot_be_stored_is_refused(self, kit: StoreKit) -> None:
        """A follow-up with an infinite delay, or naming a batch: ValueError at enqueue,
        nothing stored."""
        follow_ups(kit)
        parent = new_job()
        for follow_up in (
            delivery(parent.id, delay=float("inf")),
            dataclasses.replace(delivery(parent.id), batch_id=uuid.uuid4()),
        ):
            with pytest.raises(ValueError):
                await kit.store.enqueue(dataclasses.replace(parent, follow_up=follow_up))
            assert await kit.store.get(parent.id) is None

    async def test_the_follow_up_of_a_partitioned_job_does_not_wait_behind_its_key(
        self, kit: StoreKit
    ) -> None:
        """The follow-up has no key: claimable while the key's next job runs."""
        follow_ups(kit)
        parent = with_delivery(new_job(partition_key="k"))
        nxt = new_job(partition_key="k")
        await kit.store.enqueue(parent)
        await kit.store.enqueue(nxt)
        await kit.store.complete(await claim_one(kit), "ok")
        claims = await kit.store.claim(5, lease=kit.lease)
        assert {claim.job.id for claim in claims} == {nxt.id, follow_up(parent).id}

    async def test_concurrent_complete_and_cancels_enqueue_the_follow_up_once(
        self, kit: StoreKit
    ) -> None:
        """A completion racing two cancels from two processes: one outcome, one
        follow-up."""
        follow_ups(kit)
        store, peer = control(kit), peer_control(kit)
        for _ in range(3):
            parent, claim = await running_parent(kit)
            await asyncio.gather(
                kit.store.complete(claim, "ok"), store.cancel(parent.id), peer.cancel(parent.id)
            )
            assert await claim_ids_now(kit) == [follow_up(parent).id]
            assert await claim_ids_now(kit) == []

    async def test_claims_and_the_end_of_a_delivery_are_kept_in_its_target(
        self, kit: StoreKit
    ) -> None:
        """Each claim of the delivery adds an attempt (still Pending, also after a failed
        attempt that is retried); its completion makes the target's webhook Delivered;
        the target stays Completed."""
        follow_ups(kit)
        parent, claim = await running_parent(kit)
        await kit.store.complete(claim, "ok")
        first = await claim_one(kit)
        assert (await read(kit.store, parent.id)).webhook == WebhookState(WebhookStatus.PENDING, 1)
        await kit.store.fail(first, BOOM, retry_in=0.0)
        assert (await read(kit.store, parent.id)).webhook == WebhookState(WebhookStatus.PENDING, 1)
        await kit.store.complete(await claim_one(kit), None)
        target = await read(kit.store, parent.id)
        assert target.status is JobStatus.COMPLETED and target.result == "ok"
        assert target.webhook == WebhookState(WebhookStatus.DELIVERED, 2)

    async def test_a_delivery_that_fails_for_good_marks_its_target_failed(
        self, kit: StoreKit
    ) -> None:
        """Dead delivery: the target's webhook is Failed with the attempts made."""
        follow_ups(kit)
        parent, claim = await running_parent(kit, max_retries=1)
        await kit.store.complete(claim, "ok")
        await kit.store.fail(await claim_one(kit), BOOM, retry_in=0.0)
        await kit.store.fail(await claim_one(kit), BOOM, retry_in=None)
        target = await read(kit.store, parent.id)
        assert target.status is JobStatus.COMPLETED
        assert target.webhook == WebhookState(WebhookStatus.FAILED, 2)

    async def test_a_requeued_delivery_goes_on_updating_its_target(self, kit: StoreKit) -> None:
        """A delivery that failed for good and is requeued by hand: its next claim adds an
        attempt and its completion makes the target's webhook Delivered."""
        follow_ups(kit)
        parent, claim = await running_parent(kit, max_retries=0)
        await kit.store.complete(claim, "ok")
        deliver = await claim_one(kit)
        await kit.store.fail(deliver, BOOM, retry_in=None)
        assert (await read(kit.store, parent.id)).webhook == WebhookState(WebhookStatus.FAILED, 1)
        await control(kit).requeue(deliver.job.id)
        again = await claim_one(kit)
        assert (await read(kit.store, parent.id)).webhook == WebhookState(WebhookStatus.FAILED, 2)
        await kit.store.complete(again, None)
        target = await read(kit.store, parent.id)
        assert target.webhook == WebhookState(WebhookStatus.DELIVERED, 2)

    async def test_a_cancelled_delivery_marks_its_target_failed(self, kit: StoreKit) -> None:
        """Cancelled before it ran, or while it runs: Failed."""
        follow_ups(kit)
        for claimed in (0, 1):
            parent, claim = await running_parent(kit)
            await kit.store.fail(claim, BOOM, retry_in=None)
            if claimed:
                await claim_one(kit)
            await control(kit).cancel(follow_up(parent).id)
            target = await read(kit.store, parent.id)
            assert target.status is JobStatus.FAILED
            assert target.webhook == WebhookState(WebhookStatus.FAILED, claimed)

    async def test_a_target_outlives_its_retention_until_its_delivery_ends(
        self, kit: StoreKit
    ) -> None:
        """The target's retention passes while its delivery is live: the target stays
        readable by id (no longer listed), its webhook kept, until the delivery ends;
        then it is gone."""
        follow_ups(kit)
        parent, claim = await running_parent(kit, max_retries=1)
        await kit.store.complete(claim, "ok")
        await kit.advance(kit.retention + 0.5)
        await kit.store.recover()
        assert (await read(kit.store, parent.id)).webhook == PENDING
        for status in (JobStatus.COMPLETED, None):
            listed = await inspection(kit).list_jobs(status=status)
            assert parent.id not in [job.id for job in listed.jobs]
        await kit.store.fail(await claim_one(kit), BOOM, retry_in=0.0)
        await kit.advance(kit.retention + 0.5)
        await kit.store.recover()
        assert (await read(kit.store, parent.id)).webhook == WebhookState(WebhookStatus.PENDING, 1)
        await kit.store.complete(await claim_one(kit), None)
        assert await kit.store.get(parent.id) is None

    async def test_a_target_held_for_its_delivery_can_be_requeued(self, kit: StoreKit) -> None:
        """A Failed target held past its retention for its delivery is requeued like any
        Failed job: listed again, and kept as usual once it ends."""
        follow_ups(kit)
        parent, claim = await running_parent(kit)
        await kit.store.fail(claim, BOOM, retry_in=None)
        await kit.advance(kit.retention + 0.5)
        await kit.store.recover()
        for _ in range(70):  # enough stores for the in-memory store to trim its logs
            await kit.store.enqueue(new_job())
        requeued = await control(kit).requeue(parent.id)
        assert requeued is not None and requeued.status is JobStatus.QUEUED
        for status in (JobStatus.QUEUED, None):
            listed = await inspection(kit).list_jobs(status=status, limit=100)
            assert parent.id in [job.id for job in listed.jobs]
        assert (await inspection(kit).queue_stats([DEFAULT_QUEUE]))[0].failed == 0

    async def test_deliveries_are_not_waiting_jobs_for_max_waiting(self, kit: StoreKit) -> None:
        """Webhook deliveries, Queued, Scheduled for a retry, requeued or recovered, are
        left out of `count_waiting` and of ``max_waiting`` (a receiver that is down never
        refuses submissions); `queue_stats` counts them with their queue's jobs."""
        follow_ups(kit)
        store = inspection(kit)
        parent, claim = await running_parent(kit, max_retries=3)
        await kit.store.complete(claim, "ok")  # its delivery is Queued
        assert await store.count_waiting() == 0
        plain = await kit.store.enqueue(new_job(), max_waiting=1)
        assert await store.count_waiting() == 1
        assert (await store.queue_stats([DEFAULT_QUEUE]))[0].queued == 2
        with pytest.raises(QueueFullError):
            await kit.store.enqueue(new_job(), max_waiting=1)
        claims = {claim.job.id: claim for claim in await kit.store.claim(5, lease=kit.lease)}
        await kit.store.fail(claims[follow_up(parent).id], BOOM, retry_in=FAR)  # Scheduled
        await kit.store.complete(claims[plain.id], "ok")
        assert await store.count_waiting() == 0
        assert (await store.queue_stats([DEFAULT_QUEUE]))[0].scheduled == 1
        await control(kit).cancel(follow_up(parent).id)
        await control(kit).requeue(follow_up(parent).id)  # Queued again
        assert await store.count_waiting() == 0
        await claim_one(kit)
        await kit.advance(kit.lease + 0.2)
        assert await kit.store.recover() == [follow_up(parent).id]  # Queued again
        assert await store.count_waiting() == 0
        assert (await store.queue_stats([DEFAULT_QUEUE]))[0].queued == 1
        await kit.store.enqueue(new_job(), max_waiting=1)
        assert await store.count_waiting() == 1

    async def test_a_job_delivering_for_an_unknown_job_creates_nothing(self, kit: StoreKit) -> None:
        """A delivery enqueued by itself for an id that was never stored: its transitions
        leave that id unknown."""
        follow_ups(kit)
        target = uuid.uuid4()
        job = await kit.store.enqueue(delivery(target))
        assert job.webhook is None
        await kit.store.fail(await claim_one(kit), BOOM, retry_in=None)
        assert await kit.store.get(target) is None


async def claim_ids_now(kit: StoreKit) -> list[uuid.UUID]:
    """The ids of every job claimable now (claimed, and so taken)."""
    return [claim.job.id for claim in await kit.store.claim(20, lease=kit.lease)]
