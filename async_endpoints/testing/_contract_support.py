"""What the contract suite's tests share: job specs, reads that must find the job, and the
capability gates that skip a test when the store lacks an optional capability."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Hashable, Sequence
from typing import Any

import pytest

from .._job import DEFAULT_QUEUE, Job, JobError, JobRequest, NewJob
from .._store import Claim, ControlStore, InspectionStore, JobStore
from .._store_features import (
    BatchStore,
    ClaimCancelStore,
    EventStore,
    FollowUpStore,
    GiveBackStore,
    IdempotentStore,
    PendingContinuationStore,
    ProgressStore,
    ScheduleStore,
)
from ._kit import StoreKit

BOOM = JobError("boom", "RuntimeError")
#: A little time, more than the millisecond that stores may keep times to, so that two
#: stamps taken either side of it differ.
TICK = 0.002
#: A delay that never passes within a test.
FAR = 3600.0

_CAPABILITIES = {
    ControlStore: "cancel, requeue, pause, resume, paused_queues, add_cancel_listener",
    ClaimCancelStore: "add_claim_cancel_listener",
    InspectionStore: "count_waiting, list_jobs, queue_stats",
    BatchStore: "create_batch, append_to_batch, get_batch, list_batches, cancel_batch",
    ScheduleStore: (
        "upsert_schedule, remove_schedule, list_schedules, schedule_time, due_schedules, "
        "fire_schedule, move_schedule"
    ),
    ProgressStore: "set_progress",
    EventStore: "watch_job",
    FollowUpStore: "follow_up_of, and NewJob.follow_up and delivers_for kept",
    IdempotentStore: "enqueue_once",
    PendingContinuationStore: "pending_continuation",
    GiveBackStore: "give_back",
}


def new_job(
    name: str = "Echo",
    max_retries: int = 3,
    *,
    queue: str = DEFAULT_QUEUE,
    delay: float = 0.0,
    partition_key: str | None = None,
    tenant: str | None = None,
    **request: Any,
) -> NewJob:
    """A new job with a fresh id; ``request`` holds `JobRequest` fields."""
    return NewJob(
        uuid.uuid4(),
        name,
        max_retries,
        JobRequest(**request),
        queue,
        delay,
        partition_key=partition_key,
        tenant=tenant,
    )


async def read(store: JobStore, job_id: uuid.UUID) -> Job:
    """The stored job, which must exist."""
    job = await store.get(job_id)
    assert job is not None, f"job {job_id} is missing"
    return job


async def claim_ids(
    kit: StoreKit, limit: int = 10, *, queues: tuple[str, ...] = (DEFAULT_QUEUE,)
) -> list[uuid.UUID]:
    """The ids of the jobs one claim of up to ``limit`` takes, in the order it took them."""
    return [c.job.id for c in await kit.store.claim(limit, queues=queues, lease=kit.lease)]


# Claim orders are kept within each of the store's order groups (`StoreKit.order_group`):
# with the default, one group, the checks below are exactly "this order"; for a sharded
# store they check the order of each shard's jobs, and that claims take every due job.


def group_of(kit: StoreKit, job: Job) -> Hashable:
    """The order group ``job`` is in (None for a store that keeps one order)."""
    return None if kit.order_group is None else kit.order_group(job)


def of_group(kit: StoreKit, jobs: Sequence[Job], like: Job) -> list[uuid.UUID]:
    """The ids of ``jobs`` in the order group of ``like``, in their order."""
    group = group_of(kit, like)
    return [job.id for job in jobs if group_of(kit, job) == group]


def assert_in_group_order(kit: StoreKit, taken: Sequence[Job], order: Sequence[Job]) -> None:
    """Within each order group, the jobs ``taken`` (in the order they were claimed) are
    the group's first jobs of ``order``, in that order: with one group, ``taken`` is
    exactly the start of ``order``."""
    assert {job.id for job in taken} <= {job.id for job in order}, "a job not expected"
    for job in order:
        mine = of_group(kit, taken, job)
        assert mine == of_group(kit, order, job)[: len(mine)], f"order of group {job.id}"


def assert_turns(kit: StoreKit, taken: Sequence[Job]) -> None:
    """Within each order group, the tenants of the jobs ``taken`` (every claim of the
    group's jobs, all claimable from the start, in the order they were taken) take
    turns: each round takes one job of every tenant with jobs left, in the order of the
    first round."""
    for group in {group_of(kit, job) for job in taken}:
        tenants = [job.tenant for job in taken if group_of(kit, job) == group]
        cycle = list(dict.fromkeys(tenants))
        start = 0
        while start < len(tenants):
            left = set(tenants[start:])
            turn = [tenant for tenant in cycle if tenant in left]
            assert tenants[start : start + len(turn)] == turn, f"turns {tenants}"
            start += len(turn)


async def claim_every(
    kit: StoreKit,
    count: int,
    limit: int = 10,
    *,
    queues: tuple[str, ...] = (DEFAULT_QUEUE,),
) -> list[Claim]:
    """Exactly ``count`` (at most ``limit``) claims of the jobs due now, in the order
    taken: one claim of up to ``limit`` takes them all from a store of one order group; a
    claim of a store of several may pass over a group it found dry a moment ago (a
    sharded store: until the wake-up of a new job there comes), so further claims within
    a lease take the rest."""
    assert count <= limit
    claims = await kit.store.claim(limit, queues=queues, lease=kit.lease)
    deadline = time.monotonic() + kit.lease
    while kit.order_group is not None and len(claims) < count:
        if time.monotonic() > deadline:
            break
        await kit.advance(TICK)
        claims += await kit.store.claim(limit - len(claims), queues=queues, lease=kit.lease)
    assert len(claims) == count, [claim.job.id for claim in claims]
    return claims


async def claim_until(
    kit: StoreKit, job_id: uuid.UUID, limit: int, *, queues: tuple[str, ...] = (DEFAULT_QUEUE,)
) -> list[Job]:
    """The jobs of claims of up to ``limit`` each, in the order taken, up to the claim
    that takes ``job_id``: with one order group no claim comes back empty before; with
    several, within a lease (see `claim_every`)."""
    taken: list[Job] = []
    deadline = time.monotonic() + kit.lease
    while job_id not in [job.id for job in taken]:
        claims = await kit.store.claim(limit, queues=queues, lease=kit.lease)
        taken += [claim.job for claim in claims]
        if not claims:
            assert kit.order_group is not None, f"job {job_id} never claimed"
            assert time.monotonic() < deadline, f"job {job_id} never claimed"
            await kit.advance(TICK)
    return taken


def forged(job: Job) -> Claim:
    """A claim of ``job`` that its store never handed out."""
    return Claim(job, secrets.token_hex(16))


def require(store: JobStore, capability: type[Any]) -> None:
    """Skip the running test when ``store`` lacks the optional ``capability``, naming it
    and its methods (the one place the suite skips: a store author sees what is missing)."""
    if not isinstance(store, capability):
        pytest.skip(
            f"{type(store).__name__} does not implement the optional "
            f"{capability.__name__} ({_CAPABILITIES[capability]})"
        )


def control(kit: StoreKit) -> ControlStore:
    """``kit.store`` as a `ControlStore`, or skip the test when it is not one."""
    require(kit.store, ControlStore)
    assert isinstance(kit.store, ControlStore)
    return kit.store


def peer_control(kit: StoreKit) -> ControlStore:
    """``kit.other`` as a `ControlStore`, or skip the test when it is not one."""
    require(kit.other, ControlStore)
    assert isinstance(kit.other, ControlStore)
    return kit.other


def inspection(kit: StoreKit) -> InspectionStore:
    """``kit.store`` as an `InspectionStore`, or skip the test when it is not one."""
    require(kit.store, InspectionStore)
    assert isinstance(kit.store, InspectionStore)
    return kit.store
