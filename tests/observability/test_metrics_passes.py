"""The metrics note events and count them in passes: every `BATCH` events, and before
every scrape, so a scrape sees every event before it; a scrape from another thread (as
`JobMetrics.serve` does) while events arrive loses none and counts none twice."""

from __future__ import annotations

import sys
import threading
import uuid
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from async_endpoints import AsyncEndpoints, Job, JobStatus
from async_endpoints._events import AttemptOutcome, EventKind, LifecycleEvent
from async_endpoints._metrics import BATCH

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ATTEMPTS = "async_endpoints_job_attempts_total"


def finished_event() -> LifecycleEvent:
    job = Job(uuid.uuid4(), "x", JobStatus.COMPLETED, 0, 0, NOW, NOW, NOW, NOW)
    return LifecycleEvent(EventKind.FINISHED, job, AttemptOutcome.COMPLETED, 0.01)


def test_events_are_counted_every_batch_and_at_every_scrape() -> None:
    registry = CollectorRegistry()
    metrics = AsyncEndpoints().enable_metrics(registry)
    event = finished_event()
    for _ in range(BATCH - 1):
        metrics.observe(event)
    assert metrics.attempts == {}  # noted, not counted yet
    metrics.observe(event)
    assert sum(metrics.attempts.values()) == BATCH
    metrics.observe(event)
    labels = {"name": "(unknown)", "outcome": "completed"}
    assert registry.get_sample_value(ATTEMPTS, labels) == BATCH + 1
    assert metrics.running == -(BATCH + 1)  # finished attempts never started here


def test_a_scrape_from_another_thread_loses_and_doubles_nothing() -> None:
    registry = CollectorRegistry()
    metrics = AsyncEndpoints().enable_metrics(registry)
    event, total = finished_event(), 20_000
    done = threading.Event()

    def scrape() -> None:
        while not done.is_set():
            list(registry.collect())

    scraper = threading.Thread(target=scrape)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # the threads take turns as often as they can
    scraper.start()
    try:
        for _ in range(total):
            metrics.observe(event)
    finally:
        done.set()
        scraper.join()
        sys.setswitchinterval(interval)
    labels = {"name": "(unknown)", "outcome": "completed"}
    assert registry.get_sample_value(ATTEMPTS, labels) == total
