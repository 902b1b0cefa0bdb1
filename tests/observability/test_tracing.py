"""OpenTelemetry: a submit span in the request's trace, a run span per attempt in the same
trace (carried with the job as W3C trace context), errors recorded on the span."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.responses import Response

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    InMemoryJobStore,
    Job,
    JobRequest,
    JobSpec,
    JobStatus,
    JobStore,
)
from async_endpoints._tracing import (
    BATCH_ID,
    BATCH_SIZE,
    JOB_ID,
    JOB_NAME,
    OUTCOME,
    REPEAT,
    RETRY_COUNT,
    attempt_span,
)
from async_endpoints._webhook import WEBHOOK_JOB
from tests.lost_claims import a_lost_claim
from tests.observability.spans import install_provider, tracing
from tests.webhook_receiver import SECRET, receiving, settled_webhook


def tracer() -> trace.Tracer:
    """The tests' tracer, from the provider set now (one resolved once would stay bound
    to the no-op provider a test installed before)."""
    return trace.get_tracer_provider().get_tracer("tests")


NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def spans() -> Iterator[InMemorySpans]:
    with tracing() as exporter:
        yield InMemorySpans(exporter)


class InMemorySpans:
    """The spans ended while the test runs."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.exporter = exporter

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name.startswith(prefix)]


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEndpoints]:
    app = FastAPI()
    endpoints = AsyncEndpoints(app, store=InMemoryJobStore(), max_retries=1, retry_base_delay=0)

    @endpoints.map_async_post("/ok", name="Ok")
    async def ok(ctx: AsyncContext[None]) -> str:
        with tracer().start_as_current_span("inside the handler"):
            return "ok"

    @endpoints.map_async_post("/broken", name="Broken")
    async def broken(ctx: AsyncContext[None]) -> None:
        raise RuntimeError("it broke")

    async with endpoints.running(workers=False):
        yield endpoints


async def test_the_run_span_is_in_the_submitting_trace(
    engine: AsyncEndpoints, spans: InMemorySpans
) -> None:
    """submit inside a request span: the submit span is its child, the run span the submit
    span's child, the handler's own span the run span's child; one trace."""
    with tracer().start_as_current_span("POST /ok") as request_span:
        job = await engine.submit("Ok")
    await engine.drain()
    (submit,) = spans.named("async_endpoints.submit Ok")
    (run,) = spans.named("async_endpoints.run Ok")
    (inner,) = spans.named("inside the handler")
    trace_id = request_span.get_span_context().trace_id
    assert {submit.context.trace_id, run.context.trace_id, inner.context.trace_id} == {trace_id}
    request_span_id = request_span.get_span_context().span_id
    assert submit.parent is not None and submit.parent.span_id == request_span_id
    assert run.parent is not None and run.parent.span_id == submit.context.span_id
    assert inner.parent is not None and inner.parent.span_id == run.context.span_id
    assert submit.kind is SpanKind.PRODUCER and run.kind is SpanKind.CONSUMER
    assert run.attributes == {JOB_ID: str(job.id), JOB_NAME: "Ok", RETRY_COUNT: 0}
    assert run.status.status_code is StatusCode.UNSET


async def test_a_batchs_jobs_and_continuations_run_in_the_submitting_trace(
    engine: AsyncEndpoints, spans: InMemorySpans
) -> None:
    """submit_batch and append_to_batch inside a request span: each makes one span
    ``async_endpoints.submit_batch`` (a child of the request's), and the run span of every
    job they stored, continuations included, is a child of it; one trace."""
    with pytest.raises(ValueError, match="no job handler"):  # refused before its span
        await engine.submit_batch([JobSpec("Ok"), JobSpec("NoSuchHandler")])
    assert spans.named("async_endpoints.submit_batch") == []
    with tracer().start_as_current_span("POST /reports") as request_span:
        batch = await engine.submit_batch(
            [JobSpec("Ok"), JobSpec("Ok")], continue_with=[JobSpec("Ok")]
        )
        await engine.append_to_batch(batch.id, [JobSpec("Ok")])
    await engine.drain()
    await engine.drain()  # the continuation, queued when the batch finished
    first, appended = sorted(
        spans.named("async_endpoints.submit_batch"), key=lambda s: s.start_time or 0
    )
    request = request_span.get_span_context()
    for made in (first, appended):
        assert made.kind is SpanKind.PRODUCER
        assert made.parent is not None and made.parent.span_id == request.span_id
        assert made.attributes is not None and made.attributes[BATCH_ID] == str(batch.id)
    assert (first.attributes or {})[BATCH_SIZE] == 3
    assert (appended.attributes or {})[BATCH_SIZE] == 1
    runs = spans.named("async_endpoints.run Ok")
    assert len(runs) == 4
    assert {run.context.trace_id for run in runs} == {request.trace_id}
    parents = sorted(run.parent.span_id for run in runs if run.parent is not None)
    assert parents == sorted([first.context.span_id] * 3 + [appended.context.span_id])


async def test_the_job_carries_the_w3c_trace_context_of_its_submit_span(
    engine: AsyncEndpoints, spans: InMemorySpans
) -> None:
    """job.request.trace_context is the traceparent of the submit span."""
    job = await engine.submit("Ok")
    (submit,) = spans.named("async_endpoints.submit Ok")
    context = submit.context
    expected = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    assert job.request.trace_context == expected
    stored = await engine.get_job(job.id)
    assert stored is not None and stored.request.trace_context == expected


async def test_each_failed_attempt_records_its_exception_and_an_error_status(
    engine: AsyncEndpoints, spans: InMemorySpans
) -> None:
    """Two attempts (one retry): two run spans in one trace, retry counts 0 and 1, each
    with the exception event and status ERROR."""
    await engine.submit("Broken")
    await engine.drain()
    runs = sorted(spans.named("async_endpoints.run Broken"), key=lambda s: s.start_time or 0)
    assert [run.attributes and run.attributes[RETRY_COUNT] for run in runs] == [0, 1]
    assert len({run.context.trace_id for run in runs}) == 1
    for run in runs:
        assert run.status.status_code is StatusCode.ERROR
        (event,) = [e for e in run.events if e.name == "exception"]
        assert event.attributes is not None
        assert event.attributes["exception.type"] == "RuntimeError"
        assert event.attributes["exception.message"] == "it broke"


@pytest.mark.parametrize("ignores_cancellation", [False, True])
async def test_a_timed_out_attempt_records_a_jobtimeout_exception_and_an_error_status(
    spans: InMemorySpans, ignores_cancellation: bool
) -> None:
    """An attempt past job_timeout raised nothing of its own, whether its handler stopped at
    the cancellation or ignored it (abandoned): its span still records a JobTimeout
    exception event and status ERROR."""
    endpoints = AsyncEndpoints(store=InMemoryJobStore(), max_retries=0, job_timeout=0.2)

    async def slow(ctx: AsyncContext[None]) -> None:
        for _ in range(2 if ignores_cancellation else 1):
            try:
                # Ignoring it: 2 x 1 s, past the second the pool waits for a cancelled
                # handler (CANCEL_WAIT), so the attempt is abandoned.
                await asyncio.sleep(30 if not ignores_cancellation else 1.0)
            except asyncio.CancelledError:
                if not ignores_cancellation:
                    raise

    endpoints.add_handler(slow, name="Slow")
    async with endpoints.running():
        job = await endpoints.submit("Slow")
        done = await endpoints.wait_for(job.id, timeout=20)
    assert done.status is JobStatus.FAILED and done.error is not None
    assert done.error.type == "JobTimeout"
    (run,) = spans.named("async_endpoints.run Slow")
    assert run.status.status_code is StatusCode.ERROR
    (event,) = [e for e in run.events if e.name == "exception"]
    assert event.attributes is not None and event.attributes["exception.type"] == "JobTimeout"
    assert "job_timeout" in str(event.attributes["exception.message"])


async def test_an_abandoned_attempts_span_ends_when_its_job_fails_not_when_its_handler_returns(
    spans: InMemorySpans, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler ignoring its cancellation at job_timeout is abandoned and its job fails
    with JobTimeout: the attempt's span has ended by then (error status, JobTimeout
    event), while the handler still runs; its late return ends nothing twice."""
    endpoints = AsyncEndpoints(store=InMemoryJobStore(), max_retries=0, job_timeout=0.2)
    release = asyncio.Event()

    async def stubborn(ctx: AsyncContext[None]) -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()

    endpoints.add_handler(stubborn, name="Stubborn")
    async with endpoints.running():
        try:
            job = await endpoints.submit("Stubborn")
            done = await endpoints.wait_for(job.id, timeout=20)
            ended = spans.named("async_endpoints.run Stubborn")
            assert endpoints.pool.attempts.abandoned  # the handler still runs
        finally:
            release.set()
    assert done.status is JobStatus.FAILED and done.error is not None
    (run,) = ended
    assert run.status.status_code is StatusCode.ERROR
    (event,) = [e for e in run.events if e.name == "exception"]
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "JobTimeout"
    assert event.attributes["exception.message"] == done.error.message
    assert len(spans.named("async_endpoints.run Stubborn")) == 1
    assert not [r for r in caplog.records if r.name.startswith("opentelemetry")]


SECRET_ERROR = "connect failed: postgres://app:S3cr3tPw@db/prod?api_key=KEY123"


@pytest.mark.parametrize(
    "settings",
    [{}, {"include_tracebacks": True}, {"error_message": lambda exc: "redacted by the app"}],
    ids=["default", "tracebacks", "error_message"],
)
async def test_a_failed_attempts_exception_event_says_what_the_jobs_error_says(
    spans: InMemorySpans, settings: dict[str, Any]
) -> None:
    """The exception event of a failed attempt holds the job's error as stored (masked by
    default, the app's ``error_message`` when set), never the exception's own text, and a
    stack trace only when the app keeps them (``include_tracebacks``), masked as the
    job's: what goes to the tracing backend leaks no more than the job JSON."""
    endpoints = AsyncEndpoints(store=InMemoryJobStore(), max_retries=0, **settings)

    async def leaks(ctx: AsyncContext[None]) -> None:
        raise ConnectionError(SECRET_ERROR)

    endpoints.add_handler(leaks, name="Leaks")
    async with endpoints.running(workers=False):
        job = await endpoints.submit("Leaks")
        await endpoints.drain()
    done = await endpoints.get_job(job.id)
    assert done is not None and done.error is not None
    (run,) = spans.named("async_endpoints.run Leaks")
    (event,) = [e for e in run.events if e.name == "exception"]
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "ConnectionError"
    assert event.attributes["exception.message"] == done.error.message
    assert event.attributes.get("exception.stacktrace") == done.error.traceback
    recorded = repr([(e.name, dict(e.attributes or {})) for e in run.events])
    assert "S3cr3tPw" not in recorded and "KEY123" not in recorded
    if "include_tracebacks" in settings:
        assert "Traceback" in str(event.attributes["exception.stacktrace"])


async def test_a_handler_that_cancels_itself_records_the_cancellation(
    spans: InMemorySpans,
) -> None:
    """A handler letting a CancelledError of its own out fails its attempt: the span
    records it as any failure (exception event, status ERROR)."""
    endpoints = AsyncEndpoints(store=InMemoryJobStore(), max_retries=0)

    async def gives_up(ctx: AsyncContext[None]) -> None:
        raise asyncio.CancelledError

    endpoints.add_handler(gives_up, name="GivesUp")
    async with endpoints.running(workers=False):
        await endpoints.submit("GivesUp")
        await endpoints.drain()
    (run,) = spans.named("async_endpoints.run GivesUp")
    assert run.status.status_code is StatusCode.ERROR
    (event,) = [e for e in run.events if e.name == "exception"]
    assert event.attributes is not None and event.attributes["exception.type"] == "CancelledError"


async def test_a_cancelled_attempt_says_so_and_is_no_error(spans: InMemorySpans) -> None:
    """cancel() stops a running attempt: its span carries async_endpoints.outcome
    "canceled" and no error status (the operator asked for it)."""
    endpoints = AsyncEndpoints(store=InMemoryJobStore(), max_retries=0)
    started, stopped = asyncio.Event(), asyncio.Event()

    async def waits(ctx: AsyncContext[None]) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    endpoints.add_handler(waits, name="Waits")
    async with endpoints.running():
        job = await endpoints.submit("Waits")
        async with asyncio.timeout(5):
            await started.wait()
        await endpoints.cancel(job.id)
        async with asyncio.timeout(5):
            await stopped.wait()
    # Leaving running() waited for the attempt to end, span and all.
    (run,) = spans.named("async_endpoints.run Waits")
    assert run.attributes is not None and run.attributes[OUTCOME] == "canceled"
    assert run.status.status_code is StatusCode.UNSET


async def test_an_attempt_whose_claim_was_lost_says_so_with_an_error(
    spans: InMemorySpans,
) -> None:
    """A renewal finds the attempt's claim recovered elsewhere (this worker looked dead):
    its handler is cancelled and its span carries async_endpoints.outcome "lost" and an
    error status; the next attempt has a span of its own."""
    async with a_lost_claim() as (endpoints, job):
        done = await endpoints.wait_for(job.id, timeout=10)
    assert done.result == "second attempt"
    runs = sorted(spans.named("async_endpoints.run Hangs"), key=lambda s: s.start_time or 0)
    lost = [run for run in runs if (run.attributes or {}).get(OUTCOME) == "lost"]
    assert len(runs) == 2 and lost == [runs[0]]
    assert runs[0].status.status_code is StatusCode.ERROR
    assert runs[1].status.status_code is StatusCode.UNSET


async def test_a_post_to_an_async_endpoint_is_traced_too(
    engine: AsyncEndpoints, spans: InMemorySpans
) -> None:
    """The HTTP path (not only submit) stores the trace context."""
    import httpx

    assert engine.app is not None
    transport = httpx.ASGITransport(app=engine.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answer = await client.post("/ok")
    assert answer.status_code == 202
    await engine.drain()
    (submit,) = spans.named("async_endpoints.submit Ok")
    (run,) = spans.named("async_endpoints.run Ok")
    assert run.parent is not None and run.parent.span_id == submit.context.span_id


@pytest.mark.parametrize("header", ["Idempotency-Key", "X-Async-Request-Id"])
async def test_a_repeated_submission_says_so_on_its_span_and_names_the_job_it_answered(
    engine: AsyncEndpoints, spans: InMemorySpans, header: str
) -> None:
    """A POST repeating an earlier one (same key or client-chosen id) stores nothing: its
    submit span is marked ``async_endpoints.repeat`` and names the earlier job (not the
    id a new job would have had), so a tracing backend can tell submissions from repeats;
    the first submission's span has no such mark."""
    import httpx

    assert engine.app is not None
    value = "order-17" if header == "Idempotency-Key" else str(uuid.uuid4())
    transport = httpx.ASGITransport(app=engine.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        first, again = [await client.post("/ok", headers={header: value}) for _ in range(2)]
    assert first.status_code == again.status_code == 202
    job_id = first.json()["id"]
    assert again.json()["id"] == job_id
    made, repeat = sorted(spans.named("async_endpoints.submit Ok"), key=lambda s: s.start_time or 0)
    assert made.attributes is not None and repeat.attributes is not None
    assert REPEAT not in made.attributes and made.attributes[JOB_ID] == job_id
    assert repeat.attributes[REPEAT] is True and repeat.attributes[JOB_ID] == job_id
    assert repeat.status.status_code is StatusCode.UNSET


def test_without_opentelemetry_nothing_is_imported_and_jobs_run() -> None:
    """With opentelemetry hidden, the package imports none of it and a job still runs."""
    script = """
import asyncio, sys
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ImportError(name)
sys.meta_path.insert(0, Hide())
from async_endpoints import AsyncEndpoints, AsyncContext
async def main():
    endpoints = AsyncEndpoints()
    async def ok(ctx: AsyncContext[None]) -> str:
        return "ok"
    endpoints.add_handler(ok)
    async with endpoints.running(workers=False):
        job = await endpoints.submit("ok")
        await endpoints.drain()
        done = await endpoints.get_job(job.id)
        assert done.result == "ok" and done.request.trace_context is None, done
asyncio.run(main())
assert not [m for m in sys.modules if m.startswith("opentelemetry")]
print("fine")
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "fine"


def test_the_carried_tracestate_reaches_the_run_span(spans: InMemorySpans) -> None:
    """A job carrying traceparent and tracestate: its run span's parent is that span, and
    its own context keeps the tracestate."""
    carried = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\ncongo=t61rcWkgMzE"
    job = Job(
        uuid.uuid4(), "Ok", JobStatus.IN_PROGRESS, 0, 0, NOW, NOW, None, NOW,
        request=JobRequest(trace_context=carried),
    )  # fmt: skip
    with attempt_span(job):
        pass
    (run,) = spans.named("async_endpoints.run Ok")
    assert f"{run.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert run.parent is not None and f"{run.parent.span_id:016x}" == "b7ad6b7169203331"
    assert run.context.trace_state.get("congo") == "t61rcWkgMzE"


@pytest.mark.parametrize(
    "carried", ["garbage", "01-abc-def-01", "00-" + "0" * 32 + "-" + "0" * 16 + "-01"]
)
def test_a_malformed_trace_context_starts_a_trace_of_its_own(
    spans: InMemorySpans, carried: str
) -> None:
    """Nothing breaks: the attempt's span is a root span."""
    job = Job(
        uuid.uuid4(), "Ok", JobStatus.IN_PROGRESS, 0, 0, NOW, NOW, None, NOW,
        request=JobRequest(trace_context=carried),
    )  # fmt: skip
    with attempt_span(job):
        pass
    (run,) = spans.named("async_endpoints.run Ok")
    assert run.parent is None


async def test_without_a_tracer_provider_no_span_and_no_trace_context(
    engine: AsyncEndpoints,
) -> None:
    """opentelemetry-api installed but no provider set (outside `tracing`): jobs carry no
    trace context and the tracing helpers report themselves off."""
    from async_endpoints._tracing import enabled

    with tracing():
        assert enabled()
    assert not enabled()
    job = await engine.submit("Ok")
    assert job.request.trace_context is None


async def test_with_opentelemetrys_no_op_provider_no_span_is_made(
    engine: AsyncEndpoints,
) -> None:
    """A provider whose tracer is OpenTelemetry's no-op one (the API's NoOpTracerProvider):
    the tracing helpers report themselves off, jobs carry no trace context and run."""
    from async_endpoints._tracing import enabled

    install_provider(trace.NoOpTracerProvider())
    try:
        assert not enabled()
        job = await engine.submit("Ok")
        await engine.drain()
        done = await engine.get_job(job.id)
        assert done is not None and done.result == "ok"
        assert done.request.trace_context is None
    finally:
        install_provider(None)
    assert not enabled()


async def test_an_attempt_of_a_job_without_a_handler_records_unknownjob(
    engine: AsyncEndpoints, spans: InMemorySpans
) -> None:
    """A job whose name no handler here has (another deployment's, say): its run span
    records an UnknownJob exception event and status ERROR, as a raised failure does."""
    from async_endpoints import NewJob

    await engine.store.enqueue(NewJob(uuid.uuid4(), "Nobody", max_retries=0))
    await engine.drain()
    (run,) = spans.named("async_endpoints.run Nobody")
    assert run.status.status_code is StatusCode.ERROR
    (event,) = [e for e in run.events if e.name == "exception"]
    assert event.attributes is not None and event.attributes["exception.type"] == "UnknownJob"


async def test_a_webhook_delivery_runs_in_its_jobs_trace(
    spans: InMemorySpans, store: JobStore
) -> None:
    """Each attempt of a job's webhook delivery has its run span in the trace of the
    submission, a child of the submit span (a failing delivery is traced to its job), not
    a trace of its own; on the in-memory and Redis stores."""
    async with receiving(
        lambda number, _request: Response(status_code=500 if number == 1 else 204)
    ) as receiver:
        engine = AsyncEndpoints(
            store=store,
            webhook_secret=SECRET,
            webhook_allowed_hosts=[receiver.host],
            webhook_retry_base_delay=0.01,
            retry_jitter=0.0,
        )

        async def note(ctx: AsyncContext[None]) -> str:
            return "done"

        engine.add_handler(note, max_retries=0)
        async with engine.running():
            with tracer().start_as_current_span("POST /note") as request_span:
                job = await engine.submit("note", None, webhook_url=receiver.url)
            await settled_webhook(engine, job)
    assert len(receiver.deliveries) == 2
    (submit,) = spans.named("async_endpoints.submit note")
    deliveries = spans.named(f"async_endpoints.run {WEBHOOK_JOB}")
    assert len(deliveries) == 2
    assert {d.context.trace_id for d in deliveries} == {request_span.get_span_context().trace_id}
    assert all(
        d.parent is not None and d.parent.span_id == submit.context.span_id for d in deliveries
    )
    assert [d.status.status_code for d in deliveries] == [StatusCode.ERROR, StatusCode.UNSET]
