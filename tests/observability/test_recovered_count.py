"""A lost attempt is counted where stale-claim recovery takes its job back: once, whether
its worker died (and could count nothing) or lived on and saw its claim lost; a job whose
last attempt was lost counts ``Failed`` there, and its webhook delivery as submitted. On
the in-memory and Redis stores (two engines on one store: the worker that stops without
settling, and the one whose recovery finds its claim)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from prometheus_client import CollectorRegistry

from async_endpoints import (
    InMemoryJobStore,
    Job,
    JobStatus,
    JobStore,
    StoreUnavailableError,
)
from async_endpoints._events import AttemptOutcome, EventKind, LifecycleEvent, LifecycleEvents
from async_endpoints._job import NewJob
from async_endpoints._recovery import _announce
from async_endpoints._webhook import WEBHOOK_JOB
from async_endpoints.testing import ManualClock
from tests.observability.dead_workers import LEASE, Handles, engine_on, left_running
from tests.webhook_receiver import SECRET, receiving

ATTEMPTS = "async_endpoints_job_attempts_total"
FINISHED = "async_endpoints_jobs_finished_total"
SUBMITTED = "async_endpoints_jobs_submitted_total"


async def recovered_by_another(
    store: JobStore, job_id: uuid.UUID, until: JobStatus, **settings: object
) -> tuple[CollectorRegistry, list[LifecycleEvent]]:
    """A second engine on the same jobs runs until its recovery has taken ``job_id``
    back and the job is ``until``; its metrics and the RECOVERED events it heard."""
    survivor = engine_on(store, asyncio.Event(), **settings)
    registry = CollectorRegistry()
    survivor.enable_metrics(registry)
    heard: list[LifecycleEvent] = []
    recovered = asyncio.Event()

    def note(event: LifecycleEvent) -> None:
        if event.kind is EventKind.RECOVERED:
            heard.append(event)
            recovered.set()

    survivor.events.subscribe(note)
    async with survivor.running():
        async with asyncio.timeout(15):
            await recovered.wait()
        job = await survivor.wait_for(job_id, timeout=15)
    assert job is not None and job.status is until
    return registry, heard


async def test_a_dead_workers_last_attempt_counts_lost_and_failed_where_it_is_recovered(
    handles: Handles,
) -> None:
    """No retries left: the recovering engine counts one lost attempt and one Failed job;
    the engine that stopped without settling counts neither (it cannot know)."""
    job_id, dying = await left_running(handles())
    survivor, heard = await recovered_by_another(handles(), job_id, JobStatus.FAILED)
    assert [(event.job.id, event.outcome) for event in heard] == [(job_id, AttemptOutcome.LOST)]
    assert heard[0].job.status is JobStatus.FAILED
    lost = {"name": "hold", "outcome": "lost"}
    failed = {"name": "hold", "queue": "default", "status": "Failed"}
    assert survivor.get_sample_value(ATTEMPTS, lost) == 1
    assert survivor.get_sample_value(FINISHED, failed) == 1
    assert dying.get_sample_value(ATTEMPTS, lost) is None
    assert dying.get_sample_value(FINISHED, failed) is None


async def test_a_dead_workers_attempt_with_retries_left_counts_lost_then_its_retry(
    handles: Handles,
) -> None:
    """A retry left: the recovering engine counts the lost attempt, runs the retry and
    counts it completed; the job is counted finished once, Completed."""
    job_id, _ = await left_running(handles(), retries=1)
    survivor, heard = await recovered_by_another(handles(), job_id, JobStatus.COMPLETED, retries=1)
    assert len(heard) == 1
    assert survivor.get_sample_value(ATTEMPTS, {"name": "hold", "outcome": "lost"}) == 1
    assert survivor.get_sample_value(ATTEMPTS, {"name": "hold", "outcome": "completed"}) == 1
    labels = {"name": "hold", "queue": "default"}
    assert survivor.get_sample_value(FINISHED, {**labels, "status": "Completed"}) == 1
    assert survivor.get_sample_value(FINISHED, {**labels, "status": "Failed"}) is None


async def test_a_job_failed_by_recovery_counts_its_webhook_delivery_as_submitted(
    handles: Handles,
) -> None:
    """Recovery failing a job with a webhook enqueues its delivery in the same step: the
    recovering engine counts it submitted (the webhook job's name), once."""
    async with receiving() as receiver:
        hooks = {"webhook_secret": SECRET, "webhook_allowed_hosts": [receiver.host]}
        job_id, dying = await left_running(handles(), webhook_to=receiver.url, **hooks)
        survivor, _ = await recovered_by_another(handles(), job_id, JobStatus.FAILED, **hooks)
    delivery = {"name": WEBHOOK_JOB, "queue": "default"}
    assert survivor.get_sample_value(SUBMITTED, delivery) == 1
    assert dying.get_sample_value(SUBMITTED, delivery) is None


async def test_a_live_worker_that_sees_its_claim_lost_does_not_count_it_twice() -> None:
    """One engine whose own recovery takes back its own hung attempt (the lease lapsed on
    the store's clock): the worker then sees the claim lost and ends the attempt "lost",
    the retry completes; the lost attempt is counted once."""
    clock = ManualClock()
    started = asyncio.Event()
    engine = engine_on(InMemoryJobStore(clock=clock), started, retries=1)
    registry = CollectorRegistry()
    engine.enable_metrics(registry)
    kinds: list[tuple[EventKind, AttemptOutcome | None]] = []
    saw_lost = asyncio.Event()

    def note(event: LifecycleEvent) -> None:
        kinds.append((event.kind, event.outcome))
        if (event.kind, event.outcome) == (EventKind.FINISHED, AttemptOutcome.LOST):
            saw_lost.set()

    engine.events.subscribe(note)
    async with engine.running():
        job = await engine.submit("hold", None)
        async with asyncio.timeout(10):
            await started.wait()
        clock.advance(LEASE * 2)  # as if this worker had hung past its lease
        done = await engine.wait_for(job.id, timeout=10)
        assert done is not None and done.status is JobStatus.COMPLETED
        async with asyncio.timeout(10):
            await saw_lost.wait()
    assert (EventKind.RECOVERED, AttemptOutcome.LOST) in kinds
    assert registry.get_sample_value(ATTEMPTS, {"name": "hold", "outcome": "lost"}) == 1
    assert registry.get_sample_value(ATTEMPTS, {"name": "hold", "outcome": "completed"}) == 1
    assert registry.get_sample_value("async_endpoints_jobs_running") == 0


class UnreadableStore(InMemoryJobStore):
    """Fails to read one job (the store cut off for that call)."""

    unreadable: uuid.UUID | None = None

    async def get(self, job_id: uuid.UUID) -> Job | None:
        if job_id == self.unreadable:
            raise StoreUnavailableError("cut off")
        return await super().get(job_id)


async def test_a_read_back_that_fails_leaves_out_its_batch_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """25 recovered jobs read back 20 at a time, one read failing: its batch is not
    announced (logged), the other 5 are; nothing raises out of the recovery loop."""
    store = UnreadableStore()
    ids = [(await store.enqueue(NewJob(uuid.uuid4(), "hold", 0))).id for _ in range(25)]
    store.unreadable = ids[0]
    events = LifecycleEvents()
    heard: list[LifecycleEvent] = []
    events.subscribe(heard.append)
    await _announce(store, ids, events)
    assert [event.job.id for event in heard] == ids[20:]
    assert "could not read back 20 recovered job(s)" in caplog.text
