"""The contract of `Claim.due_at`: when the claimed job last became due, on the store's
clock (the metrics' pickup time runs from it to the claim).

The field is optional: a store that does not say leaves it None, and these tests are then
skipped, naming the field (`reports_due_at`; `require` gates the capabilities that are
protocols, and this one is a field). A store that reports it for a plain job's claim
reports it for every claim, a job handed over by `JobStore.wait_for_work` included.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

import pytest

from .._job import Job, JobStatus
from .._store import Claim
from ._contract_support import BOOM, TICK, control, new_job, read
from ._kit import StoreKit

#: How far a reported time may be from the one expected: stores may keep times to the
#: millisecond.
TOLERANCE = timedelta(seconds=TICK)
#: How long a test lets a waiter settle into its wait before it acts (never a condition
#: of the test passing).
SETTLE = 0.05


def step(kit: StoreKit) -> float:
    """A while that leaves the times of a test apart, within a lease and the retention."""
    return min(kit.lease, kit.retention) / 5


def reports_due_at(claim: Claim) -> datetime:
    """The claim's ``due_at``; skip the running test when the store leaves it None (the
    field is optional)."""
    if claim.due_at is None:
        pytest.skip(
            "the store does not report the optional Claim.due_at (when the claimed job "
            "last became due; the pickup time counts from it)"
        )
    return claim.due_at


def due_at(claim: Claim) -> datetime:
    """The claim's ``due_at``, which a store that reports it must report for every claim."""
    assert claim.due_at is not None, f"no due_at on the claim of job {claim.job.id}"
    return claim.due_at


def assert_near(reported: datetime, expected: datetime | None, what: str) -> None:
    """``reported`` is ``expected`` within `TOLERANCE`."""
    assert expected is not None, what
    assert abs(reported - expected) <= TOLERANCE, f"due_at {reported}, expected {what} {expected}"


async def claim_by_id(kit: StoreKit, count: int) -> dict[uuid.UUID, Claim]:
    """Exactly ``count`` claims, taken now, by their job's id."""
    claims = await kit.store.claim(count + 1, lease=kit.lease)
    assert len(claims) == count, claims
    return {claim.job.id: claim for claim in claims}


async def failed_for_retry(kit: StoreKit, retry_in: float) -> tuple[Job, Claim]:
    """A job claimed (its ``due_at`` reported, else the test is skipped) and failed for a
    retry in ``retry_in`` seconds; returns the job as stored then, and the first claim."""
    await kit.store.enqueue(new_job(max_retries=3))
    (first,) = await kit.store.claim(2, lease=kit.lease)
    reports_due_at(first)
    await kit.advance(step(kit))
    failed = await kit.store.fail(first, BOOM, retry_in=retry_in)
    assert failed is not None
    return failed, first


class DueTimeContract:
    """`Claim.due_at`: a plain job is due from its enqueue, a delayed one from its
    ``run_at``, a retry from its backoff's end (or its failure, when retried at once), a
    requeued job from its requeue."""

    async def test_a_plain_job_is_due_from_its_enqueue(self, kit: StoreKit) -> None:
        """A job claimed a while after its enqueue: due at its ``created_at``, not at its
        claim."""
        job = await kit.store.enqueue(new_job())
        await kit.advance(step(kit))
        (claim,) = await kit.store.claim(2, lease=kit.lease)
        due = reports_due_at(claim)
        assert_near(due, job.created_at, "created_at")
        assert claim.job.started_at is not None and due < claim.job.started_at

    async def test_a_delayed_job_is_due_from_its_run_at(self, kit: StoreKit) -> None:
        """A delayed job claimed a while after it fell due: due at its ``run_at`` (not at
        its enqueue, not at its claim); a plain job claimed with it is due from its
        enqueue."""
        delay = step(kit)
        plain = await kit.store.enqueue(new_job())
        delayed = await kit.store.enqueue(new_job(delay=delay))
        assert delayed.status is JobStatus.SCHEDULED and delayed.run_at is not None
        await kit.advance(2 * delay)
        claims = await claim_by_id(kit, 2)
        assert_near(reports_due_at(claims[plain.id]), plain.created_at, "created_at")
        due = due_at(claims[delayed.id])
        assert_near(due, delayed.run_at, "run_at")
        assert due - delayed.created_at > TOLERANCE

    async def test_a_retry_after_backoff_is_due_when_its_backoff_ends(self, kit: StoreKit) -> None:
        """A failed attempt retried in a while: the next claim's job is due at the
        ``run_at`` the failure set, however late it is claimed."""
        backoff = step(kit)
        failed, first = await failed_for_retry(kit, backoff)
        assert failed.status is JobStatus.SCHEDULED and failed.run_at is not None
        await kit.advance(2 * backoff)
        (second,) = await kit.store.claim(2, lease=kit.lease)
        assert second.job.id == failed.id and second.job.retry_count == 1
        due = due_at(second)
        assert_near(due, failed.run_at, "the backoff's run_at")
        assert due > due_at(first)

    async def test_a_retry_at_once_is_due_from_its_failure(self, kit: StoreKit) -> None:
        """A failed attempt retried at once: the next claim's job is due when the
        failure queued it again, not at its first enqueue."""
        failed, first = await failed_for_retry(kit, 0.0)
        assert failed.status is JobStatus.QUEUED
        await kit.advance(step(kit))
        (second,) = await kit.store.claim(2, lease=kit.lease)
        assert second.job.id == failed.id
        due = due_at(second)
        assert_near(due, failed.last_updated_at, "the failure's last_updated_at")
        assert due > due_at(first)

    async def test_a_requeued_job_is_due_from_its_requeue(self, kit: StoreKit) -> None:
        """A failed job requeued a while after it ended: due at the requeue, not at its
        enqueue nor at its failure."""
        store = control(kit)
        job = await kit.store.enqueue(new_job(max_retries=0))
        (first,) = await kit.store.claim(2, lease=kit.lease)
        reports_due_at(first)
        await kit.store.fail(first, BOOM, retry_in=None)
        await kit.advance(step(kit))
        requeued = await store.requeue(job.id)
        assert requeued is not None and requeued.status is JobStatus.QUEUED
        await kit.advance(step(kit))
        (second,) = await kit.store.claim(2, lease=kit.lease)
        assert_near(due_at(second), requeued.last_updated_at, "the requeue's last_updated_at")
        assert due_at(second) - due_at(first) > TOLERANCE

    async def test_a_job_handed_over_to_a_waiter_is_due_from_its_enqueue(
        self, kit: StoreKit
    ) -> None:
        """A job handed to an idle waiter (`wait_for_work` with ``take``), or claimed
        next by a store that does not hand over: due at its ``created_at`` too."""
        probe = await kit.store.enqueue(new_job())
        (claim,) = await kit.store.claim(2, lease=kit.lease)
        assert_near(reports_due_at(claim), probe.created_at, "created_at")
        assert await kit.store.claim(2, lease=kit.lease) == []  # idle, as a waiting worker
        waiter = asyncio.create_task(kit.store.wait_for_work(30, take=2, lease=kit.lease))
        await asyncio.sleep(SETTLE)
        job = await kit.store.enqueue(new_job())
        async with asyncio.timeout(5):
            handed = await waiter
        claims = handed + await kit.store.claim(2, lease=kit.lease)
        assert [c.job.id for c in claims] == [job.id]
        assert_near(due_at(claims[0]), (await read(kit.store, job.id)).created_at, "created_at")
