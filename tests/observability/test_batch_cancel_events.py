"""`cancel_batch` tells the lifecycle listeners of every job it cancelled, as `cancel` does
for one job: the metrics count them ``Canceled`` (on both stores), a job that was already
terminal is not announced, and cancelling the batch again announces nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from async_endpoints import AsyncContext, AsyncEndpoints, InMemoryJobStore, JobSpec, JobStatus
from async_endpoints._events import AttemptOutcome, EventKind, LifecycleEvent
from async_endpoints_redis import RedisJobStore


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[AsyncEndpoints]:
    if request.param == "memory":
        store: Any = InMemoryJobStore()
    else:
        server = request.getfixturevalue("redis_server")
        store = RedisJobStore(server.url, prefix=request.getfixturevalue("prefix"))
    endpoints = AsyncEndpoints(store=store, max_concurrency=1, job_timeout=60)

    async def ok(ctx: AsyncContext[None]) -> str:
        return "ok"

    async def hold(ctx: AsyncContext[None]) -> None:
        await asyncio.Event().wait()

    endpoints.add_handler(ok, name="Ok")
    endpoints.add_handler(hold, name="Hold")
    endpoints.enable_metrics()
    async with endpoints.running(workers=False):
        yield endpoints


class Heard:
    """The events of each kind, and an asyncio.Event per (kind, handler name)."""

    def __init__(self, endpoints: AsyncEndpoints) -> None:
        self.events: list[LifecycleEvent] = []
        self.seen: dict[tuple[EventKind, str], asyncio.Event] = {}
        endpoints.events.subscribe(self.note)

    def note(self, event: LifecycleEvent) -> None:
        self.events.append(event)
        self.flag(event.kind, event.job.name).set()

    def flag(self, kind: EventKind, name: str) -> asyncio.Event:
        return self.seen.setdefault((kind, name), asyncio.Event())

    def of(self, kind: EventKind) -> list[LifecycleEvent]:
        return [event for event in self.events if event.kind is kind]


async def test_each_job_cancel_batch_cancels_is_announced_once(engine: AsyncEndpoints) -> None:
    """A batch of: Ok (completed before the cancel), Hold (running), Ok (Queued behind it,
    one slot), Ok (Scheduled in a minute). cancel_batch announces the last three as
    cancelled, and the metrics count them Canceled; the running attempt ends canceled."""
    heard = Heard(engine)
    specs = [JobSpec("Ok"), JobSpec("Hold"), JobSpec("Ok"), JobSpec("Ok", delay=60)]
    batch = await engine.submit_batch(specs)
    async with engine.pool:
        await heard.flag(EventKind.STARTED, "Hold").wait()
        jobs = (await engine.list_jobs(batch_id=batch.id, limit=10)).jobs
        unfinished = {job.id for job in jobs if not job.status.is_terminal}
        assert len(unfinished) == 3
        canceled = await engine.cancel_batch(batch.id)
        assert canceled is not None
        await heard.flag(EventKind.FINISHED, "Hold").wait()
    announced = heard.of(EventKind.CANCELLED)
    assert {event.job.id for event in announced} == unfinished
    assert len(announced) == 3
    assert all(event.job.status is JobStatus.CANCELED for event in announced)
    (hold_end,) = [e for e in heard.of(EventKind.FINISHED) if e.job.name == "Hold"]
    assert hold_end.outcome is AttemptOutcome.CANCELED

    engine.metrics.flush()  # the events noted, counted
    finished = engine.metrics.finished
    assert finished[("Ok", "default", "Canceled")] == 2
    assert finished[("Hold", "default", "Canceled")] == 1
    assert finished[("Ok", "default", "Completed")] == 1

    await engine.cancel_batch(batch.id)
    assert len(heard.of(EventKind.CANCELLED)) == 3
