"""The lifecycle event type: its fields, immutable, compared and copied by value, however
it was built (by a listener's test, or on the worker's per-attempt path)."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import uuid
from datetime import UTC, datetime

import pytest

from async_endpoints import AsyncContext, AsyncEndpoints, InMemoryJobStore, Job, JobStatus
from async_endpoints._events import AttemptOutcome, EventKind, LifecycleEvent

NOW = datetime(2026, 1, 1, tzinfo=UTC)
FIELDS = ("kind", "job", "outcome", "duration", "due_at")


def a_job() -> Job:
    return Job(uuid.uuid4(), "x", JobStatus.COMPLETED, 0, 0, NOW, NOW, NOW, NOW)


def assert_frozen(event: LifecycleEvent) -> None:
    """Every field refuses assignment and deletion; no other attribute can be added."""
    for name in FIELDS:
        before = getattr(event, name)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(event, name, None)
        with pytest.raises(dataclasses.FrozenInstanceError):
            delattr(event, name)
        assert getattr(event, name) is before
    with pytest.raises(AttributeError):
        event.other = 1  # type: ignore[attr-defined]
    assert not hasattr(event, "__dict__")


def test_an_event_has_its_fields_in_order_with_defaults() -> None:
    """kind and job are required; outcome, duration and due_at default to None."""
    job = a_job()
    event = LifecycleEvent(EventKind.SUBMITTED, job)
    assert tuple(field.name for field in dataclasses.fields(event)) == FIELDS
    assert (event.kind, event.job, event.outcome, event.duration, event.due_at) == (
        EventKind.SUBMITTED,
        job,
        None,
        None,
        None,
    )
    assert "kind=<EventKind.SUBMITTED" in repr(event)


def test_an_event_is_immutable() -> None:
    assert_frozen(LifecycleEvent(EventKind.FINISHED, a_job(), AttemptOutcome.COMPLETED, 0.5))


def test_events_compare_by_their_fields_and_copy_and_replace_as_dataclasses() -> None:
    job = a_job()
    event = LifecycleEvent(EventKind.FINISHED, job, AttemptOutcome.COMPLETED, 0.5)
    assert event == LifecycleEvent(EventKind.FINISHED, job, AttemptOutcome.COMPLETED, 0.5)
    assert event != LifecycleEvent(EventKind.FINISHED, job, AttemptOutcome.FAILED, 0.5)
    for copied in (copy.copy(event), copy.deepcopy(event), pickle.loads(pickle.dumps(event))):
        assert copied == event and type(copied) is LifecycleEvent
        assert_frozen(copied)
    replaced = dataclasses.replace(event, outcome=AttemptOutcome.RETRIED)
    assert replaced.outcome is AttemptOutcome.RETRIED and replaced.duration == 0.5
    assert event.outcome is AttemptOutcome.COMPLETED
    assert_frozen(replaced)


async def test_the_events_of_a_real_attempt_are_the_same_type() -> None:
    """STARTED (with the claim's due time) and FINISHED (outcome, duration), as the
    worker builds them: LifecycleEvents, immutable, equal to one built by hand."""
    engine = AsyncEndpoints(store=InMemoryJobStore())

    async def ok(ctx: AsyncContext[None]) -> str:
        return "ok"

    engine.add_handler(ok)
    heard: list[LifecycleEvent] = []
    engine.events.subscribe(heard.append)
    async with engine.running(workers=False):
        job = await engine.submit("ok")
        await engine.drain()
    kinds = [event.kind for event in heard]
    assert kinds == [EventKind.SUBMITTED, EventKind.STARTED, EventKind.FINISHED]
    started, finished = heard[1], heard[2]
    assert started.job.id == job.id and started.due_at is not None
    assert started.outcome is None and started.duration is None
    assert finished.outcome is AttemptOutcome.COMPLETED and finished.due_at is None
    assert finished.duration is not None and finished.duration >= 0
    assert finished.job.status is JobStatus.COMPLETED
    for event in heard:
        assert type(event) is LifecycleEvent
        assert_frozen(event)
    assert finished == LifecycleEvent(
        EventKind.FINISHED, finished.job, AttemptOutcome.COMPLETED, finished.duration
    )


def test_a_subclass_of_the_event_keeps_its_class_and_fields() -> None:
    """A listener's own event type derived from LifecycleEvent is built as such."""

    class Tagged(LifecycleEvent):
        pass

    job = a_job()
    event = Tagged(EventKind.STARTED, job, due_at=NOW)
    assert type(event) is Tagged
    assert (event.kind, event.job, event.due_at, event.outcome) == (
        EventKind.STARTED,
        job,
        NOW,
        None,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.kind = EventKind.FINISHED  # type: ignore[misc]
