"""Across processes through Redis: the run span, ended in a worker process, is a child of
the submit span of the process that took the request; the worker serves its own metrics."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from async_endpoints import AsyncContext, AsyncEndpoints, JobSpec
from async_endpoints_redis import RedisJobStore
from tests.observability.spans import tracing

pytestmark = [pytest.mark.redis, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
tracer = trace.get_tracer("tests")


@pytest.fixture
def spans_file(tmp_path: Path) -> Path:
    return tmp_path / "spans.jsonl"


@pytest.fixture
def metrics_port() -> int:
    return free_port()


def start_worker(log: Path, **env: str) -> subprocess.Popen[bytes]:
    """A worker process (the CLI) serving tests.observability.traced_app, configured by
    ``env`` (see that module), its output written to ``log``."""
    command = [sys.executable, "-m", "async_endpoints", "worker"]
    command.append("tests.observability.traced_app:endpoints")
    with log.open("ab") as out:
        env = {**os.environ, **env}
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def worker(
    redis_server: Any, prefix: str, spans_file: Path, tmp_path: Path, metrics_port: int
) -> Iterator[None]:
    """A worker process serving tests.observability.traced_app."""
    process = start_worker(
        tmp_path / "worker.log",
        REDIS_URL=redis_server.url,
        AE_PREFIX=prefix,
        SPANS_FILE=str(spans_file),
        METRICS_PORT=str(metrics_port),
    )
    yield
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """This process traces too."""
    with tracing() as exporter:
        yield exporter


@pytest.fixture
async def api(
    redis_server: Any, prefix: str, spans: InMemorySpanExporter
) -> AsyncIterator[AsyncEndpoints]:
    """This process: takes submissions (no workers), with the same handler names."""
    store = RedisJobStore(redis_server.url, prefix=prefix)
    endpoints = AsyncEndpoints(store=store, max_retries=0)
    endpoints.enable_metrics()

    async def traced(ctx: AsyncContext[None]) -> str:
        raise AssertionError("runs in the worker process only")

    endpoints.add_handler(traced, name="Traced")
    endpoints.add_handler(traced, name="Failing")
    endpoints.add_handler(traced, name="Hanging", max_retries=1)
    async with endpoints.running(workers=False):
        yield endpoints


def worker_spans(path: Path, count: int) -> list[dict[str, Any]]:
    """The first ``count`` spans the worker wrote (polled with a deadline)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path.exists():
            lines = path.read_text().splitlines()
            if len(lines) >= count:
                return [json.loads(line) for line in lines]
        time.sleep(0.05)
    raise AssertionError(f"the worker wrote fewer than {count} spans")


async def test_the_worker_run_span_is_a_child_of_the_submit_span(
    api: AsyncEndpoints, worker: None, spans_file: Path, spans: InMemorySpanExporter
) -> None:
    """Submit here inside a request span; the worker's run span has the same trace id and
    the submit span as its parent (the traceparent went through Redis with the job)."""
    with tracer.start_as_current_span("POST /traced") as request_span:
        job = await api.submit("Traced")
    done = await api.wait_for(job.id, timeout=30)
    assert done.result == "traced"
    (submit,) = [s for s in spans.get_finished_spans() if s.name.startswith("async_")]
    trace_id = f"{request_span.get_span_context().trace_id:032x}"
    span_id = f"{submit.context.span_id:016x}"
    assert job.request.trace_context is not None
    assert job.request.trace_context.startswith(f"00-{trace_id}-{span_id}-")
    (run,) = worker_spans(spans_file, 1)
    assert run["name"] == "async_endpoints.run Traced"
    assert (run["trace_id"], run["parent_id"]) == (trace_id, span_id)
    assert run["attributes"]["async_endpoints.job_id"] == str(job.id)
    assert run["status"] == "UNSET"


async def test_a_batchs_jobs_run_in_the_worker_under_the_batchs_submit_span(
    api: AsyncEndpoints, worker: None, spans_file: Path, spans: InMemorySpanExporter
) -> None:
    """submit_batch here: the worker's run spans of its jobs and of its continuation are
    children of the batch's one submit span (the trace context went through Redis with
    every job of the batch)."""
    with tracer.start_as_current_span("POST /batch") as request_span:
        batch = await api.submit_batch(
            [JobSpec("Traced"), JobSpec("Traced")], continue_with=[JobSpec("Traced")]
        )
    (continuation,) = batch.continuation_ids
    (made,) = [s for s in spans.get_finished_spans() if s.name == "async_endpoints.submit_batch"]
    trace_id = f"{request_span.get_span_context().trace_id:032x}"
    runs = worker_spans(spans_file, 3)  # the continuation's comes last: it waits for the batch
    assert {(run["trace_id"], run["parent_id"]) for run in runs} == {
        (trace_id, f"{made.context.span_id:016x}")
    }
    assert str(continuation) in {run["attributes"]["async_endpoints.job_id"] for run in runs}


async def test_a_failed_attempt_in_the_worker_has_an_error_span(
    api: AsyncEndpoints, worker: None, spans_file: Path
) -> None:
    """The worker's span of a failing attempt records the exception, status ERROR."""
    with tracer.start_as_current_span("POST /failing") as request_span:
        job = await api.submit("Failing")
    done = await api.wait_for(job.id, timeout=30)
    assert done.status == "Failed"
    (run,) = worker_spans(spans_file, 1)
    assert run["trace_id"] == f"{request_span.get_span_context().trace_id:032x}"
    assert run["status"] == "ERROR"
    assert run["events"] == ["exception"]


async def test_the_worker_process_serves_its_own_metrics(
    api: AsyncEndpoints, worker: None, metrics_port: int
) -> None:
    """Jobs run by the worker process are counted in the metrics it serves (polled until
    its last attempt's end is counted); the API process counts their submissions."""
    for name in ("Traced", "Traced", "Failing"):
        await api.wait_for((await api.submit(name)).id, timeout=30)
    expected = [
        'async_endpoints_job_attempts_total{name="Traced",outcome="completed"} 2.0',
        'async_endpoints_job_attempts_total{name="Failing",outcome="failed"} 1.0',
        "async_endpoints_jobs_running 0.0",
    ]
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            text = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
            if all(line in text for line in expected):
                break
            await asyncio.sleep(0.05)
    assert [line for line in expected if line not in text] == []
    submitted = api.metrics.registry.get_sample_value(
        "async_endpoints_jobs_submitted_total", {"name": "Traced", "queue": "default"}
    )
    assert submitted == 2


async def test_a_worker_process_recovering_a_killed_ones_job_ends_a_recover_span(
    api: AsyncEndpoints,
    redis_server: Any,
    prefix: str,
    tmp_path: Path,
    spans: InMemorySpanExporter,
) -> None:
    """A worker process killed (SIGKILL) mid-attempt ends no span; a second worker process
    takes the job back once the claim expires and ends "async_endpoints.recover Hanging" in
    the submitting request's trace, a child of its submit span, with outcome "lost" and the
    ClaimExpired error; the retry's run span follows it in the same trace."""
    common = {"REDIS_URL": redis_server.url, "AE_PREFIX": prefix, "CLAIM_TIMEOUT": "3"}
    killed_spans, survivor_spans = tmp_path / "killed.jsonl", tmp_path / "survivor.jsonl"
    first = start_worker(
        tmp_path / "killed.log",
        **common,
        SPANS_FILE=str(killed_spans),
        METRICS_PORT=str(free_port()),
    )
    try:
        with tracer.start_as_current_span("POST /hanging") as request_span:
            job = await api.submit("Hanging")
        deadline = time.monotonic() + 30
        while (await api.get_job(job.id)).status != "InProgress":  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the first worker never started the job"
            await asyncio.sleep(0.05)
    finally:
        first.kill()
        first.wait(timeout=30)
    second = start_worker(
        tmp_path / "survivor.log",
        **common,
        SPANS_FILE=str(survivor_spans),
        METRICS_PORT=str(free_port()),
    )
    try:
        done = await api.wait_for(job.id, timeout=60)
        by_name = {span["name"]: span for span in worker_spans(survivor_spans, 2)}
    finally:
        second.terminate()
        second.wait(timeout=30)
    assert (done.status, done.result, done.retry_count) == ("Completed", "after the recovery", 1)
    assert not killed_spans.exists() or killed_spans.read_text() == ""
    (submit,) = [
        s for s in spans.get_finished_spans() if s.name == "async_endpoints.submit Hanging"
    ]
    trace_id = f"{request_span.get_span_context().trace_id:032x}"
    submit_id = f"{submit.context.span_id:016x}"
    recover = by_name["async_endpoints.recover Hanging"]
    assert (recover["trace_id"], recover["parent_id"]) == (trace_id, submit_id)
    assert recover["attributes"] == {
        "async_endpoints.job_id": str(job.id),
        "async_endpoints.job_name": "Hanging",
        "async_endpoints.retry_count": 1,
        "async_endpoints.outcome": "lost",
    }
    assert (recover["status"], recover["events"]) == ("ERROR", ["exception"])
    run = by_name["async_endpoints.run Hanging"]
    assert (run["trace_id"], run["parent_id"], run["status"]) == (trace_id, submit_id, "UNSET")
