"""A job taken back by stale-claim recovery gets a span ``async_endpoints.recover {name}``
from the engine that recovered it, in the submitting request's trace: the only sign in the
trace of an attempt whose process died. On the in-memory, Redis and sharded stores (two
engines on one store: the one that stops without settling, and the survivor)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from async_endpoints import AsyncEndpoints, InMemoryJobStore, JobStatus
from async_endpoints._job import NewJob
from async_endpoints._recovery import recover_forever
from async_endpoints._store import CLAIM_EXPIRED
from async_endpoints._tracing import JOB_ID, JOB_NAME, OUTCOME, RETRY_COUNT
from tests.observability.dead_workers import Handles, engine_on, left_running
from tests.observability.spans import install_provider, tracing
from tests.redis.support import eventually

tracer = trace.get_tracer("tests")
T = TypeVar("T")


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    with tracing() as exporter:
        yield exporter


def named(spans: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in spans.get_finished_spans() if span.name == name]


def fetch(read: Callable[..., T], *args: Any) -> Callable[[], Awaitable[T]]:
    """``read(*args)`` as the awaitable check `eventually` polls."""

    async def check() -> T:
        return read(*args)

    return check


async def survive(engine: AsyncEndpoints, job_id: uuid.UUID, spans: InMemorySpanExporter) -> None:
    """Run ``engine`` (no metrics, no lifecycle listener) until the job has completed and
    a recover span has ended (the job is read back for it after the recovery: its retry
    may complete first)."""
    async with engine.running():
        done = await engine.wait_for(job_id, timeout=20)
        await eventually(fetch(named, spans, "async_endpoints.recover hold"))
    assert done is not None and done.status is JobStatus.COMPLETED


async def test_the_recovering_engine_adds_a_recover_span_to_the_submitting_trace(
    handles: Handles, spans: InMemorySpanExporter
) -> None:
    """The survivor, with tracing its only reason to read the job back, ends one span
    "async_endpoints.recover hold": a child of the submit span, with the job's id, name,
    retry count after the recovery and outcome "lost", an error status and the
    ClaimExpired exception; the retry's run span follows it in the same trace."""
    with tracer.start_as_current_span("POST /hold") as request:
        job_id, _ = await left_running(handles(), retries=1)
    await survive(engine_on(handles(), asyncio.Event(), retries=1), job_id, spans)
    (submit,) = named(spans, "async_endpoints.submit hold")
    (recover,) = named(spans, "async_endpoints.recover hold")
    runs = sorted(named(spans, "async_endpoints.run hold"), key=lambda s: s.start_time or 0)
    trace_id = request.get_span_context().trace_id
    assert {span.context.trace_id for span in (submit, recover, *runs)} == {trace_id}
    assert recover.parent is not None and recover.parent.span_id == submit.context.span_id
    assert recover.attributes == {
        JOB_ID: str(job_id),
        JOB_NAME: "hold",
        RETRY_COUNT: 1,
        OUTCOME: "lost",
    }
    assert recover.status.status_code is StatusCode.ERROR
    (event,) = recover.events
    assert event.name == "exception" and event.attributes is not None
    assert event.attributes["exception.type"] == CLAIM_EXPIRED
    assert "stopped renewing its claim" in str(event.attributes["exception.message"])
    # The dying engine ended its own attempt's span "lost" (it stopped past its grace);
    # the retry's span comes after the recovery.
    assert [(run.attributes or {}).get(OUTCOME) for run in runs] == ["lost", None]
    assert (recover.start_time or 0) <= (runs[1].start_time or 0)


async def test_a_job_recovered_without_a_trace_context_gets_a_recover_span_of_its_own_trace(
    spans: InMemorySpanExporter,
) -> None:
    """A job stored without trace context (submitted while tracing was off): its recover
    span starts a trace of its own, as its run spans do."""
    store = InMemoryJobStore()
    job = await store.enqueue(NewJob(uuid.uuid4(), "hold", 1))
    (claim,) = await store.claim(1, lease=0)
    assert claim.job.id == job.id and job.request.trace_context is None
    recovery = asyncio.create_task(recover_forever(store, 60))
    try:
        (recover,) = await eventually(fetch(named, spans, "async_endpoints.recover hold"))
    finally:
        recovery.cancel()
    assert recover.parent is None
    assert recover.attributes is not None and recover.attributes[JOB_ID] == str(job.id)


async def test_without_tracing_recovery_reads_nothing_back_and_makes_no_span(
    spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    """With no tracer provider (and no listener), recovery logs the job by id only: no
    store read for it, no span."""
    install_provider(None)
    store = CountingReads()
    job = await store.enqueue(NewJob(uuid.uuid4(), "hold", 1))
    await store.claim(1, lease=0)
    caplog.set_level(logging.WARNING, logger="async_endpoints")
    recovery = asyncio.create_task(recover_forever(store, 60))
    try:
        await eventually(fetch(lambda: str(job.id) in caplog.text))
    finally:
        recovery.cancel()
    assert store.reads == 0
    assert spans.get_finished_spans() == ()


class CountingReads(InMemoryJobStore):
    """Counts the jobs read by id."""

    reads = 0

    async def get(self, job_id: uuid.UUID) -> object:  # type: ignore[override]
        self.reads += 1
        return await super().get(job_id)
