"""The in-memory store's follow-ups and webhook deliveries where its own structures matter:
a live target (requeued since) updated in place without losing its turn, a retained
target whose result has no JSON form, and deliveries forgotten once they are gone (the
contract suite covers everything the stores share)."""

from __future__ import annotations

import dataclasses
import uuid

from async_endpoints import InMemoryJobStore, JobError, JobStatus, NewJob
from async_endpoints._job import WebhookState, WebhookStatus
from async_endpoints.testing import ManualClock

BOOM = JobError("boom", "RuntimeError")


def parent_with_delivery(tenant: str | None = None) -> NewJob:
    parent = NewJob(uuid.uuid4(), "Echo", 0, tenant=tenant)
    return dataclasses.replace(
        parent, follow_up=NewJob(uuid.uuid4(), "Deliver", 3, delivers_for=parent.id)
    )


async def test_a_requeued_target_is_updated_where_it_waits_and_is_claimed_once() -> None:
    """The target failed, was requeued (Queued, claimable) before its delivery ran: the
    delivery's claim updates it live, and the target is still claimed exactly once."""
    store = InMemoryJobStore(clock=ManualClock())
    parent = parent_with_delivery(tenant="acme")
    await store.enqueue(parent)
    (claim,) = await store.claim(1, lease=30)
    await store.fail(claim, BOOM, retry_in=None)
    await store.requeue(parent.id)
    assert parent.follow_up is not None
    delivery = parent.follow_up
    claims = await store.claim(10, lease=30, queues=("default",))
    assert sorted(c.job.name for c in claims) == ["Deliver", "Echo"]
    target = await store.get(parent.id)
    assert target is not None and target.status is JobStatus.IN_PROGRESS
    assert target.webhook == WebhookState(WebhookStatus.PENDING, 1)
    (deliver,) = [c for c in claims if c.job.id == delivery.id]
    await store.complete(deliver, None)
    target = await store.get(parent.id)
    assert target is not None and target.webhook == WebhookState(WebhookStatus.DELIVERED, 1)
    assert await store.claim(10, lease=30) == []


async def test_a_queued_target_updated_keeps_its_place_for_claims() -> None:
    """A delivery claimed while its target waits Queued (requeued): the target is
    replaced in its queue's turns, not lost and not doubled."""
    store = InMemoryJobStore(clock=ManualClock())
    parent = parent_with_delivery()
    await store.enqueue(parent)
    (claim,) = await store.claim(1, lease=30)
    await store.fail(claim, BOOM, retry_in=None)  # stores the delivery, Queued
    await store.requeue(parent.id)  # Queued again, behind the delivery
    assert parent.follow_up is not None
    (deliver,) = await store.claim(1, lease=30)
    assert deliver.job.id == parent.follow_up.id
    target = await store.get(parent.id)
    assert target is not None and target.status is JobStatus.QUEUED
    assert target.webhook == WebhookState(WebhookStatus.PENDING, 1)
    claims = await store.claim(10, lease=30)
    assert [c.job.id for c in claims] == [parent.id]
    assert claims[0].job.webhook == WebhookState(WebhookStatus.PENDING, 1)


async def test_a_target_whose_result_has_no_json_form_is_updated_too() -> None:
    """A Completed target kept as a list (its result is not JSON) takes its webhook."""
    store = InMemoryJobStore(clock=ManualClock())
    parent = parent_with_delivery()
    await store.enqueue(parent)
    (claim,) = await store.claim(1, lease=30)
    result = {1, 2}
    await store.complete(claim, result)
    (deliver,) = await store.claim(1, lease=30)
    await store.fail(deliver, BOOM, retry_in=None)
    target = await store.get(parent.id)
    assert target is not None and target.result == result
    assert target.webhook == WebhookState(WebhookStatus.FAILED, 1)


async def test_deliveries_are_forgotten_once_they_are_gone() -> None:
    """What the store remembers of deliveries stays bounded by the deliveries kept."""
    clock = ManualClock()
    store = InMemoryJobStore(clock=clock, retention=10.0)
    for _ in range(500):
        await store.enqueue(parent_with_delivery())
        for claim in await store.claim(10, lease=30):
            await store.complete(claim, None)
        for claim in await store.claim(10, lease=30):
            await store.complete(claim, None)
        clock.advance(1.0)
        await store.recover()
    assert len(store._follow_ups) == 0
    assert len(store._deliveries) <= 2 * 64
