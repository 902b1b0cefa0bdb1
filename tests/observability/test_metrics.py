"""Prometheus metrics: names and labels as API.md fixes them, values after real jobs, label
values bounded, queue depth read from the store at most once a second."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    ConfigurationError,
    InMemoryJobStore,
    Job,
    JobStatus,
    StoreUnavailableError,
    _metrics,
)
from async_endpoints._events import AttemptOutcome, EventKind, LifecycleEvent
from async_endpoints._metrics import UNKNOWN_NAME

NOW = datetime(2026, 1, 1, tzinfo=UTC)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class CountingStore(InMemoryJobStore):
    """Counts the queue_stats reads."""

    reads = 0
    unreachable = False

    async def queue_stats(self, queues):  # type: ignore[no-untyped-def]
        self.reads += 1
        if self.unreachable:
            raise StoreUnavailableError("cut off")
        return await super().queue_stats(queues)


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEndpoints]:
    app = Starlette()
    endpoints = AsyncEndpoints(
        app,
        store=CountingStore(),
        queues=("high", "default"),
        max_retries=1,
        retry_base_delay=0,
        retry_jitter=0,
        job_timeout=0.2,
    )

    @endpoints.map_async_post("/ok", name="Ok", queue="high")
    async def ok(ctx: AsyncContext[None]) -> str:
        return "ok"

    @endpoints.map_async_post("/broken", name="Broken")
    async def broken(ctx: AsyncContext[None]) -> None:
        raise RuntimeError("broken")

    @endpoints.map_async_post("/slow", name="Slow")
    async def slow(ctx: AsyncContext[None]) -> None:
        await asyncio.sleep(10)

    @endpoints.map_async_post("/hold", name="Hold", job_timeout=60)
    async def hold(ctx: AsyncContext[None]) -> None:
        await asyncio.Event().wait()

    endpoints.map_metrics()
    async with endpoints.running(workers=False):
        yield endpoints


async def scrape(engine: AsyncEndpoints) -> Samples:
    transport = httpx.ASGITransport(app=engine.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answer = await client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples.get((metric, tuple(sorted(labels.items()))), 0.0)


async def test_counters_after_real_jobs(engine: AsyncEndpoints) -> None:
    """Two Ok (completed), one Broken (failed twice: a retry, then dead), one Slow (timed
    out twice), one cancelled while waiting: every counter says so."""
    for name in ("Ok", "Ok", "Broken", "Slow"):
        await engine.submit(name)
    waiting = await engine.submit("Ok")
    await engine.cancel(waiting.id)
    await engine.drain()
    samples = await scrape(engine)
    submitted = "async_endpoints_jobs_submitted_total"
    assert value(samples, submitted, name="Ok", queue="high") == 3
    assert value(samples, submitted, name="Broken", queue="default") == 1
    finished = "async_endpoints_jobs_finished_total"
    assert value(samples, finished, name="Ok", queue="high", status="Completed") == 2
    assert value(samples, finished, name="Ok", queue="high", status="Canceled") == 1
    assert value(samples, finished, name="Broken", queue="default", status="Failed") == 1
    assert value(samples, finished, name="Slow", queue="default", status="Failed") == 1
    attempts = "async_endpoints_job_attempts_total"
    assert value(samples, attempts, name="Ok", outcome="completed") == 2
    assert value(samples, attempts, name="Broken", outcome="failed") == 2
    assert value(samples, attempts, name="Slow", outcome="timeout") == 2
    assert value(samples, "async_endpoints_job_duration_seconds_count", name="Ok") == 2
    assert value(samples, "async_endpoints_job_duration_seconds_count", name="Slow") == 2
    # Pickup is counted per attempt (due -> started): Broken ran twice.
    assert value(samples, "async_endpoints_job_pickup_seconds_count", name="Broken") == 2
    assert value(samples, "async_endpoints_jobs_running") == 0


async def test_a_running_job_is_counted_running_and_a_cancel_counts_once(
    engine: AsyncEndpoints,
) -> None:
    """While an attempt runs, jobs_running is 1; cancelled, it is 0 again, the attempt's
    outcome is canceled and the job is counted Canceled once."""
    started, finished = asyncio.Event(), asyncio.Event()
    kinds = {"started": started, "finished": finished}

    def note(event: LifecycleEvent) -> None:
        if event.kind.value in kinds:
            kinds[event.kind.value].set()

    engine.events.subscribe(note)
    job = await engine.submit("Hold")
    async with engine.pool:
        await started.wait()
        assert value(await scrape(engine), "async_endpoints_jobs_running") == 1
        await engine.cancel(job.id)
        await finished.wait()
    samples = await scrape(engine)
    assert value(samples, "async_endpoints_jobs_running") == 0
    attempts = "async_endpoints_job_attempts_total"
    assert value(samples, attempts, name="Hold", outcome="canceled") == 1
    finished_total = "async_endpoints_jobs_finished_total"
    assert value(samples, finished_total, name="Hold", queue="default", status="Canceled") == 1


async def test_queue_depth_is_read_from_the_store_at_most_once_a_second(
    engine: AsyncEndpoints,
) -> None:
    """jobs_waiting{queue} counts the jobs waiting per queue, Queued and Scheduled (as
    max_queue_size does); ten scrapes in a row read the store once."""
    store = engine.store
    assert isinstance(store, CountingStore)
    for name in ("Ok", "Broken", "Broken"):
        await engine.submit(name)
    await engine.submit("Broken", delay=3600)
    samples = await scrape(engine)
    assert value(samples, "async_endpoints_jobs_waiting", queue="high") == 1
    assert value(samples, "async_endpoints_jobs_waiting", queue="default") == 3
    reads = store.reads
    await asyncio.gather(*(scrape(engine) for _ in range(10)))
    assert store.reads == reads


async def test_metrics_answer_200_without_the_depth_while_the_store_is_unreachable(
    engine: AsyncEndpoints, caplog: pytest.LogCaptureFixture
) -> None:
    """An outage is when the process's own counters matter most: /metrics answers 200
    with them (not the job routes' 503), and leaves the jobs_waiting gauge out rather than
    report a stale or zero depth."""
    store = engine.store
    assert isinstance(store, CountingStore)
    await engine.submit("Ok")
    await engine.drain()
    store.unreachable = True
    samples = await scrape(engine)  # asserts the 200
    assert value(samples, "async_endpoints_jobs_submitted_total", name="Ok", queue="high") == 1
    assert not [key for key in samples if key[0] == "async_endpoints_jobs_waiting"]
    assert "could not read the queue depth" in caplog.text


async def test_a_depth_read_before_an_outage_is_not_served_during_it(
    engine: AsyncEndpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A depth read while the store answered is dropped when a later read fails: the
    gauge is left out, not the last depth served as if current; it returns with the store."""
    monkeypatch.setattr(_metrics, "DEPTH_MAX_AGE", 0)  # every scrape reads the depth
    store = engine.store
    assert isinstance(store, CountingStore)
    await engine.submit("Ok")  # no worker runs: it waits
    waiting = "async_endpoints_jobs_waiting"
    assert value(await scrape(engine), waiting, queue="high") == 1
    store.unreachable = True
    assert not [key for key in await scrape(engine) if key[0] == waiting]
    store.unreachable = False
    assert value(await scrape(engine), waiting, queue="high") == 1


async def test_label_values_are_bounded(engine: AsyncEndpoints) -> None:
    """No label holds a job id or a tenant; every label is one of the fixed names."""
    job = await engine.submit("Ok", tenant="acme")
    await engine.drain()
    samples = await scrape(engine)
    labels = {label for _, pairs in samples for label in pairs}
    assert {name for name, _ in labels} <= {"name", "queue", "status", "outcome", "le"}
    assert not [v for _, v in labels if str(job.id) in v or "acme" in v]


def test_each_instance_has_its_own_registry_unless_one_is_passed() -> None:
    """Two instances in one process never clash; an app may pass its registry."""
    first, second = AsyncEndpoints(Starlette()), AsyncEndpoints(Starlette())
    assert first.map_metrics().registry is not second.map_metrics().registry
    registry = CollectorRegistry()
    third = AsyncEndpoints(Starlette())
    assert third.map_metrics("/m", registry=registry).registry is registry
    assert registry.get_sample_value("async_endpoints_jobs_running") == 0


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    """0.25 s lands in le="0.25" (inclusive) and every bucket above; the sum adds up."""
    registry = CollectorRegistry()
    engine = AsyncEndpoints(Starlette())
    metrics = engine.enable_metrics(registry)
    job = Job(uuid.uuid4(), "x", JobStatus.COMPLETED, 0, 0, NOW, NOW, NOW, NOW, queue="default")
    for seconds in (0.25, 3.0):
        metrics.observe(LifecycleEvent(EventKind.FINISHED, job, AttemptOutcome.COMPLETED, seconds))
    sample = registry.get_sample_value
    name = "async_endpoints_job_duration_seconds"
    labels = {"name": UNKNOWN_NAME}
    assert sample(f"{name}_bucket", {**labels, "le": "0.1"}) == 0
    assert sample(f"{name}_bucket", {**labels, "le": "0.25"}) == 1
    assert sample(f"{name}_bucket", {**labels, "le": "5.0"}) == 2
    assert sample(f"{name}_bucket", {**labels, "le": "+Inf"}) == 2
    assert sample(f"{name}_sum", labels) == 3.25
    assert sample(f"{name}_count", labels) == 2


def test_a_worker_process_serves_its_metrics_from_a_thread() -> None:
    """metrics.serve(port): prometheus-client's HTTP server with this registry."""
    engine = AsyncEndpoints()
    metrics = engine.enable_metrics()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    metrics.serve(port, "127.0.0.1")
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert "async_endpoints_jobs_running 0.0" in text


async def test_an_authorize_hook_guards_the_metrics_route_with_the_apps_own_404(
    http_client_for,
) -> None:
    """map_metrics(authorize=...): a request the hook refuses (sync or async), whatever
    its method, answers the app's 404 (FastAPI's JSON, as for a path it does not have, no
    405 telling the route exists) and reads nothing from the store; a scrape it allows
    gets the metrics, a POST it allows a 405."""
    from fastapi import FastAPI

    store = CountingStore()
    app = FastAPI()
    endpoints = AsyncEndpoints(app, store=store, run_workers=False)

    async def scraper(request: Request) -> bool:
        return request.headers.get("authorization") == "Bearer scrape-token"

    endpoints.map_metrics(authorize=scraper)
    endpoints.map_metrics("/sync-metrics", authorize=lambda request: False)
    async with http_client_for(app) as client:
        refused = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"authorization": "Bearer guess"})
        never = await client.get("/sync-metrics", headers={"authorization": "Bearer scrape-token"})
        posted = await client.post("/metrics")
        slashed = await client.get("/metrics/")  # no slash redirect telling the route
        assert store.reads == 0
        token = {"authorization": "Bearer scrape-token"}
        allowed = await client.get("/metrics", headers=token)
        posted_allowed = await client.post("/metrics", headers=token)
        unknown = await client.get("/no-such-path")
    for answer in (refused, wrong, never, posted, slashed):
        assert (answer.status_code, answer.json()) == (404, unknown.json())
        assert "allow" not in answer.headers
    assert allowed.status_code == 200 and "async_endpoints_jobs_running 0.0" in allowed.text
    assert posted_allowed.status_code == 405 and posted_allowed.headers["allow"] == "GET, HEAD"


def test_a_metrics_authorize_of_the_wrong_shape_is_refused_when_mapped() -> None:
    endpoints = AsyncEndpoints(Starlette())
    with pytest.raises(ConfigurationError, match=r"map_metrics's authorize"):
        endpoints.map_metrics(authorize=lambda request, job: True)  # type: ignore[misc,arg-type]
