"""What the contract suite's tests share: job specs, reads that must find the job, and the
capability gates that skip a test when the store lacks an optional capability."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import pytest

from .._job import DEFAULT_QUEUE, Job, JobError, JobRequest, NewJob
from .._store import Claim, ControlStore, InspectionStore, JobStore
from .._store_features import (
    BatchStore,
    EventStore,
    FollowUpStore,
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
    InspectionStore: "count_waiting, list_jobs, queue_stats",
    BatchStore: "create_batch, append_to_batch, get_batch, list_batches, cancel_batch",
    ScheduleStore: (
        "upsert_schedule, remove_schedule, list_schedules, schedule_time, due_schedules, "
        "fire_schedule"
    ),
    ProgressStore: "set_progress",
    EventStore: "watch_job",
    FollowUpStore: "follow_up_of, and NewJob.follow_up and delivers_for kept",
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
