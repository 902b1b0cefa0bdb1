"""endpoints.cancel: waiting jobs never run, running handlers are cancelled at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import pytest

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    ConfigurationError,
    InMemoryJobStore,
    JobStatus,
    JobStore,
)
from async_endpoints._events import AttemptOutcome, EventKind, LifecycleEvent
from async_endpoints.testing import ManualClock


def engine_with(**settings: Any) -> AsyncEndpoints:
    return AsyncEndpoints(**{"polling_interval": 60.0, **settings})


class Blocking:
    """A handler that waits until released, noting what happened to it."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.saw_cancellation = asyncio.Event()
        self.attempts = 0

    async def run(self, ctx: AsyncContext[None]) -> str:
        self.attempts += 1
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.saw_cancellation.set()
            raise
        return "finished"


class FinishedAttempts:
    """The outcomes of the ``finished`` events of ``engine``, in order."""

    def __init__(self, engine: AsyncEndpoints) -> None:
        self.outcomes: list[AttemptOutcome | None] = []
        self.finished = asyncio.Event()
        engine.events.subscribe(self._heard)

    def _heard(self, event: LifecycleEvent) -> None:
        if event.kind is EventKind.FINISHED:
            self.outcomes.append(event.outcome)
            self.finished.set()


async def test_a_queued_job_cancelled_becomes_canceled_and_never_runs() -> None:
    """Cancel of a Queued job: Canceled at once, with completedAt; draining runs nothing."""
    engine = engine_with()
    ran: list[str] = []

    async def work(ctx: AsyncContext[None]) -> None:
        ran.append("ran")

    engine.add_handler(work)
    async with engine.running(workers=False):
        job = await engine.submit("work")
        canceled = await engine.cancel(job.id)
        assert await engine.drain() == 0
        stored = await engine.get_job(job.id)
    assert canceled.status is JobStatus.CANCELED and canceled.completed_at is not None
    assert stored.status is JobStatus.CANCELED and ran == []


async def test_a_scheduled_job_cancelled_never_runs_even_once_due() -> None:
    """A delayed job cancelled before it is due stays Canceled when its time comes."""
    clock = ManualClock()
    engine = engine_with(store=InMemoryJobStore(clock=clock))
    ran: list[str] = []

    async def work(ctx: AsyncContext[None]) -> None:
        ran.append("ran")

    engine.add_handler(work)
    async with engine.running(workers=False):
        job = await engine.submit("work", delay=60)
        assert job.status is JobStatus.SCHEDULED
        canceled = await engine.cancel(job.id)
        clock.advance(61)
        assert await engine.drain() == 0
    assert canceled.status is JobStatus.CANCELED and canceled.run_at is None and ran == []


async def test_a_running_handler_sees_cancelled_error_and_its_job_is_not_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Cancel of an InProgress job: the handler's task is cancelled at once (pushed, not
    found at a renewal), the job stays Canceled, it is not retried, nothing is warned."""
    engine = engine_with(claim_timeout=60, max_retries=3)
    handler = Blocking()
    engine.add_handler(handler.run, name="blocking")
    attempts = FinishedAttempts(engine)
    with caplog.at_level(logging.WARNING, logger="async_endpoints"):
        async with engine.running():
            job = await engine.submit("blocking")
            async with asyncio.timeout(5):
                await handler.started.wait()
            canceled = await engine.cancel(job.id)
            async with asyncio.timeout(5):  # a renewal would come after 20 s
                await handler.saw_cancellation.wait()
                await attempts.finished.wait()
            stored = await engine.get_job(job.id)
            assert engine.pool.running == 0
    assert canceled.status is JobStatus.CANCELED and stored == canceled
    assert handler.attempts == 1 and stored.retry_count == 0
    assert attempts.outcomes == [AttemptOutcome.CANCELED] and caplog.records == []


async def test_a_handler_that_swallows_the_cancellation_has_its_result_discarded() -> None:
    """Whatever a cancelled handler returns afterwards is refused: the job stays Canceled."""
    engine = engine_with()
    started = asyncio.Event()
    returned = asyncio.Event()

    async def stubborn(ctx: AsyncContext[None]) -> str:
        started.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        returned.set()
        return "late result"

    engine.add_handler(stubborn)
    async with engine.running():
        job = await engine.submit("stubborn")
        async with asyncio.timeout(5):
            await started.wait()
        await engine.cancel(job.id)
        async with asyncio.timeout(5):
            await returned.wait()
        await asyncio.sleep(0)  # its attempt concludes in the next turns
        stored = await engine.get_job(job.id)
    assert stored.status is JobStatus.CANCELED and stored.result is None


async def test_a_handler_ignoring_the_cancellation_is_abandoned_and_frees_its_slot(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A handler that goes on after its job was cancelled is abandoned one CANCEL_WAIT
    later (logged), its slot is freed, and the job stays Canceled."""
    engine = engine_with(max_concurrency=1)
    started = asyncio.Event()
    release = asyncio.Event()

    async def stubborn(ctx: AsyncContext[None]) -> str:
        started.set()
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()
        return "too late"

    async def quick(ctx: AsyncContext[None]) -> str:
        return "quick"

    engine.add_handler(stubborn)
    engine.add_handler(quick)
    with caplog.at_level(logging.ERROR, logger="async_endpoints"):
        async with engine.running():
            job = await engine.submit("stubborn")
            async with asyncio.timeout(5):
                await started.wait()
            await engine.cancel(job.id)
            other = await engine.submit("quick")
            done = await engine.wait_for(other.id, timeout=10)  # the slot was freed
            release.set()
    assert done.result == "quick"
    assert (await engine.get_job(job.id)).status is JobStatus.CANCELED
    assert "ignores cancellation" in caplog.text


async def test_cancelling_twice_returns_the_canceled_job_unchanged() -> None:
    """A second cancel is no error and changes nothing."""
    engine = engine_with()

    async def work(ctx: AsyncContext[None]) -> None:
        pass

    engine.add_handler(work)
    async with engine.running(workers=False):
        job = await engine.submit("work")
        first = await engine.cancel(job.id)
        second = await engine.cancel(job.id)
    assert first.status is JobStatus.CANCELED and second == first


async def test_cancelling_a_finished_job_returns_it_unchanged() -> None:
    """A Completed job stays Completed."""
    engine = engine_with()

    async def work(ctx: AsyncContext[None]) -> str:
        return "done"

    engine.add_handler(work)
    async with engine.running(workers=False):
        job = await engine.submit("work")
        await engine.drain()
        after = await engine.cancel(job.id)
    assert after.status is JobStatus.COMPLETED and after.result == "done"


@pytest.mark.parametrize(
    "job_id",
    [
        uuid.UUID("3f1d9a52-8c4e-4f0b-9d6a-2b7e5c1a9f03"),
        str(uuid.UUID("b7e2c4d8-1a3f-4e5b-8c9d-0f6a2e4b7c15")),
        "not-a-uuid",
        "",
        "x" * 999,
    ],
)
async def test_cancelling_an_unknown_id_returns_none(job_id: Any) -> None:
    """Unknown ids, and ids that are not UUIDs, give None, never an exception."""
    engine = engine_with()
    async with engine.running(workers=False):
        assert await engine.cancel(job_id) is None


class CoreOnlyStore:
    """A store with the core contract only (no control, no inspection)."""

    def __init__(self) -> None:
        self._inner = InMemoryJobStore()

    def __getattr__(self, name: str) -> Any:
        if name in {"cancel", "requeue", "pause", "resume", "paused_queues"}:
            raise AttributeError(name)
        if name in {"add_cancel_listener", "list_jobs", "queue_stats", "count_waiting"}:
            raise AttributeError(name)
        return getattr(self._inner, name)


async def test_a_store_without_the_control_capability_is_named_in_the_error() -> None:
    """cancel, requeue, pause and resume on a core-only store raise ConfigurationError
    naming ControlStore; list_jobs and queue_stats name InspectionStore."""
    store: JobStore = CoreOnlyStore()  # type: ignore[assignment]
    engine = AsyncEndpoints(store=store)
    async with engine.running(workers=False):
        for call in (engine.cancel, engine.requeue):
            with pytest.raises(ConfigurationError, match="ControlStore"):
                await call(uuid.uuid4())
        for steer in (engine.pause, engine.resume):
            with pytest.raises(ConfigurationError, match="ControlStore"):
                await steer()
        with pytest.raises(ConfigurationError, match="InspectionStore"):
            await engine.list_jobs()
        with pytest.raises(ConfigurationError, match="InspectionStore"):
            await engine.queue_stats()


class DeafStore(InMemoryJobStore):
    """A store whose cancel pushes never arrive (a dropped subscription, say)."""

    def add_cancel_listener(self, listener: Any) -> None:
        pass


async def test_a_missed_cancel_push_is_caught_by_the_next_renewal_without_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without the push, the renewal finds the claim lost, sees the job Canceled and
    cancels the handler as a push would have: no "lost the claim" warning, outcome
    canceled."""
    engine = engine_with(store=DeafStore(), claim_timeout=0.3)  # a renewal every 0.1 s
    handler = Blocking()
    engine.add_handler(handler.run, name="blocking")
    attempts = FinishedAttempts(engine)
    with caplog.at_level(logging.WARNING, logger="async_endpoints"):
        async with engine.running():
            job = await engine.submit("blocking")
            async with asyncio.timeout(5):
                await handler.started.wait()
            await engine.cancel(job.id)
            async with asyncio.timeout(5):
                await handler.saw_cancellation.wait()
                await attempts.finished.wait()
    assert attempts.outcomes == [AttemptOutcome.CANCELED] and caplog.records == []
