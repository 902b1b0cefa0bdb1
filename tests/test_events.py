"""Lifecycle events: submitted, started, finished (with outcome) and cancelled, once each."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI

from async_endpoints import AsyncContext, AsyncEndpoints, InMemoryJobStore
from async_endpoints._events import AttemptOutcome, EventKind, LifecycleEvent, LifecycleEvents
from async_endpoints.testing import ManualClock


class Recorder:
    """Subscribed to an engine: every event as (kind, outcome, job status)."""

    def __init__(self, engine: AsyncEndpoints) -> None:
        self.events: list[LifecycleEvent] = []
        self.unsubscribe = engine.events.subscribe(self.events.append)

    def seen(self) -> list[tuple[str, str | None, str]]:
        return [
            (event.kind.value, event.outcome and event.outcome.value, event.job.status.value)
            for event in self.events
        ]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def engine(clock: ManualClock) -> AsyncIterator[AsyncEndpoints]:
    endpoints = AsyncEndpoints(
        store=InMemoryJobStore(clock=clock), max_retries=1, retry_base_delay=0, retry_jitter=0
    )

    async def ok(ctx: AsyncContext[None]) -> str:
        return "ok"

    async def broken(ctx: AsyncContext[None]) -> None:
        raise RuntimeError("broken")

    endpoints.add_handler(ok)
    endpoints.add_handler(broken)
    async with endpoints.running(workers=False):
        yield endpoints


async def test_a_job_that_completes_emits_submitted_started_finished(
    engine: AsyncEndpoints,
) -> None:
    """submit -> submitted (Queued); drain -> started (InProgress), finished completed."""
    recorder = Recorder(engine)
    job = await engine.submit("ok")
    await engine.drain()
    assert recorder.seen() == [
        ("submitted", None, "Queued"),
        ("started", None, "InProgress"),
        ("finished", "completed", "Completed"),
    ]
    assert {event.job.id for event in recorder.events} == {job.id}
    assert recorder.events[-1].duration is not None and recorder.events[-1].duration >= 0


async def test_a_failing_job_emits_retried_then_failed(engine: AsyncEndpoints) -> None:
    """Each attempt ends with one finished event: retried while retries are left, then
    failed; the job in the event carries the error."""
    recorder = Recorder(engine)
    await engine.submit("broken")
    await engine.drain()
    finished = [event for event in recorder.events if event.kind is EventKind.FINISHED]
    assert [event.outcome for event in finished] == [
        AttemptOutcome.RETRIED,
        AttemptOutcome.FAILED,
    ]
    assert all(event.job.error.type == "RuntimeError" for event in finished)


async def test_cancelling_a_waiting_job_emits_cancelled_once(engine: AsyncEndpoints) -> None:
    """cancel -> one cancelled event; a second cancel of the Canceled job emits nothing."""
    job = await engine.submit("ok")
    recorder = Recorder(engine)
    await engine.cancel(job.id)
    await engine.cancel(job.id)
    assert recorder.seen() == [("cancelled", None, "Canceled")]


def test_the_cancel_event_kind_is_spelt_as_the_canceled_status_and_by_its_first_name() -> None:
    """`EventKind.CANCELED`, as `JobStatus.CANCELED`; `CANCELLED` is the same member."""
    assert EventKind.CANCELED is EventKind.CANCELLED
    assert EventKind("cancelled") is EventKind.CANCELED
    assert list(EventKind).count(EventKind.CANCELED) == 1


async def test_a_running_job_cancelled_finishes_as_canceled_and_a_lost_one_as_lost(
    clock: ManualClock,
) -> None:
    """A cancelled running attempt ends "canceled"; one whose claim was recovered
    elsewhere ends "lost" (and its retry then "completed")."""
    store = InMemoryJobStore(clock=clock)
    engine = AsyncEndpoints(store=store, claim_timeout=0.3, recovery_interval=60)
    started = asyncio.Event()

    async def hold(ctx: AsyncContext[None]) -> str:
        if ctx.retry_count:
            return "again"
        started.set()
        await asyncio.Event().wait()
        return "never"

    engine.add_handler(hold)
    recorder = Recorder(engine)
    ended = asyncio.Event()
    engine.events.subscribe(lambda event: event.kind is EventKind.FINISHED and ended.set())
    async with engine.running():
        canceled = await engine.submit("hold")
        async with asyncio.timeout(5):
            await started.wait()
        await engine.cancel(canceled.id)
        async with asyncio.timeout(5):
            await ended.wait()
        started.clear()
        lost = await engine.submit("hold")
        async with asyncio.timeout(5):
            await started.wait()
        clock.advance(1)  # its lease lapses as if this worker had hung
        await store.recover()
        await engine.wait_for(lost.id, timeout=5)
    outcomes = {
        (event.job.id, event.outcome)
        for event in recorder.events
        if event.kind is EventKind.FINISHED
    }
    assert outcomes == {
        (canceled.id, AttemptOutcome.CANCELED),
        (lost.id, AttemptOutcome.LOST),
        (lost.id, AttemptOutcome.COMPLETED),
    }
    assert [event.kind for event in recorder.events].count(EventKind.CANCELLED) == 1


async def test_an_outcome_refused_because_the_job_was_cancelled_elsewhere_ends_canceled() -> None:
    """A cancel whose push never reached this worker (its listener gone): the handler
    returns, the store refuses the outcome, and the attempt ends "canceled" (the job is
    read back), not "lost" (no recovery follows a cancel to count it)."""
    store = InMemoryJobStore()
    engine = AsyncEndpoints(store=store)
    started, release = asyncio.Event(), asyncio.Event()

    async def hold(ctx: AsyncContext[None]) -> str:
        started.set()
        await release.wait()
        return "late"

    engine.add_handler(hold)
    recorder = Recorder(engine)
    ended = asyncio.Event()
    engine.events.subscribe(lambda event: event.kind is EventKind.FINISHED and ended.set())
    async with engine.running():
        store._cancel_listeners.clear()  # the push is lost on its way
        job = await engine.submit("hold")
        async with asyncio.timeout(5):
            await started.wait()
        await engine.cancel(job.id)
        release.set()
        async with asyncio.timeout(5):
            await ended.wait()
    finished = [event.outcome for event in recorder.events if event.kind is EventKind.FINISHED]
    assert finished == [AttemptOutcome.CANCELED]


async def test_a_post_emits_submitted(http_client_for) -> None:
    """The HTTP submission path emits the same submitted event as submit()."""
    app = FastAPI()
    engine = AsyncEndpoints(app, run_workers=False)

    @engine.map_async_post("/ok")
    async def ok(ctx: AsyncContext) -> None: ...

    recorder = Recorder(engine)
    async with http_client_for(app) as client:
        response = await client.post("/ok")
    assert recorder.seen() == [("submitted", None, "Queued")]
    assert str(recorder.events[0].job.id) == response.json()["id"]


async def test_a_listener_that_raises_is_logged_and_breaks_nothing(
    engine: AsyncEndpoints, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing listener is logged; the others still hear the event and the job runs."""

    def broken(event: LifecycleEvent) -> None:
        raise RuntimeError("listener bug")

    engine.events.subscribe(broken)
    recorder = Recorder(engine)
    with caplog.at_level(logging.ERROR, logger="async_endpoints"):
        job = await engine.submit("ok")
        await engine.drain()
    assert (await engine.get_job(job.id)).result == "ok"
    assert len(recorder.events) == 3 and "listener bug" in caplog.text


def test_unsubscribed_listeners_hear_nothing_more() -> None:
    """subscribe returns the function that unsubscribes; calling it twice is harmless."""
    hub = LifecycleEvents()
    heard: list[Any] = []
    unsubscribe = hub.subscribe(heard.append)
    assert hub
    unsubscribe()
    unsubscribe()
    assert not hub and heard == []


async def test_the_public_names_hear_a_failed_attempt_until_unsubscribed() -> None:
    """As the README shows it, with the names exported at the package root: a listener
    hears the failed attempt's FINISHED event; once unsubscribed it hears nothing."""
    from async_endpoints import AttemptOutcome as PublicOutcome
    from async_endpoints import EventKind as PublicKind
    from async_endpoints import LifecycleEvent as PublicEvent

    engine = AsyncEndpoints(store=InMemoryJobStore(), max_retries=0)

    async def broken(ctx: AsyncContext[None]) -> None:
        raise RuntimeError("no")

    engine.add_handler(broken)
    failed: list[PublicEvent] = []

    def on_event(event: PublicEvent) -> None:
        if event.kind is PublicKind.FINISHED and event.outcome is PublicOutcome.FAILED:
            failed.append(event)

    unsubscribe = engine.events.subscribe(on_event)
    async with engine.running(workers=False):
        first = await engine.submit("broken")
        await engine.drain()
        unsubscribe()
        await engine.submit("broken")
        await engine.drain()
    assert [event.job.id for event in failed] == [first.id]


async def test_a_refused_attempt_of_a_job_recovered_then_cancelled_stays_lost() -> None:
    """The refused outcome is read back: a job cancelled during this attempt (same retry
    count) makes it "canceled"; a job recovered since (its lost attempt counted by the
    recovery) and cancelled after leaves this attempt lost, not counted twice."""
    from async_endpoints._job import NewJob
    from async_endpoints._retry import RetryPolicy
    from async_endpoints._worker import AttemptRunner, Outcome

    clock = ManualClock()
    store = InMemoryJobStore(clock=clock)
    runner = AttemptRunner(store=store, handlers={}, retry_policy=RetryPolicy(), job_timeout=60)
    cancelled_now = await store.enqueue(NewJob(uuid.uuid4(), "hold", 3))
    recovered_first = await store.enqueue(NewJob(uuid.uuid4(), "hold", 3))
    claims = {claim.job.id: claim for claim in await store.claim(2, lease=1)}
    clock.advance(2)  # both leases lapse; recovery takes recovered_first back first
    await store.renew([claims[cancelled_now.id]], lease=1)  # (its own lease is renewed)
    await store.recover()
    await store.cancel(cancelled_now.id)
    await store.cancel(recovered_first.id)
    await runner._refused(claims[cancelled_now.id], Outcome(result=None), False)
    await runner._refused(claims[recovered_first.id], Outcome(result=None), False)
    assert runner.canceled == {claims[cancelled_now.id].token}
