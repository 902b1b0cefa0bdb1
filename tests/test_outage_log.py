"""The warnings of an outage's 503s: the first of a spell, then one every 10 s that counts
the others (logged at DEBUG), however many requests the outage meets."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import FastAPI

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    InMemoryJobStore,
    StoreUnavailableError,
)
from async_endpoints._outage_log import LoopOutage, OutageLog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_one_warning_per_spell_and_the_next_counts_those_kept_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    log = OutageLog(logging.getLogger("async_endpoints"), every=10.0, clock=clock)
    with caplog.at_level(logging.DEBUG, logger="async_endpoints"):
        for second in range(25):
            clock.now = float(second)
            log.warning("could not %s", "queue a job")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    counted = " (and 9 more refused for the store since the last such warning, at DEBUG)"
    assert warnings == [
        "could not queue a job",
        "could not queue a job" + counted,
        "could not queue a job" + counted,
    ]
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 22


def test_a_loops_outage_warns_when_it_begins_every_10_s_while_it_lasts_and_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A background loop failing every second for 25 s (claiming, the cron scheduler,
    recovery while Redis is down): three warnings (the start, 10 s and 20 s in), each
    pass at DEBUG, and one line when a pass goes through again; a new spell warns anew."""
    clock = Clock()
    outage = LoopOutage(logging.getLogger("async_endpoints"), "claiming", clock=clock)
    refused = StoreUnavailableError("Redis is unavailable: connection refused")
    with caplog.at_level(logging.DEBUG, logger="async_endpoints"):
        for second in range(25):
            clock.now = float(second)
            outage.failed(refused, 1.0)
        clock.now = 25.5
        outage.succeeded()
        outage.succeeded()  # no spell: nothing
        outage.failed(refused, 1.0)
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno > logging.DEBUG]
    assert said == [
        ("WARNING", "claiming paused, store unavailable: Redis is unavailable: connection refused"),
        (
            "WARNING",
            "claiming still paused after 10 s (11 tries), store unavailable: "
            "Redis is unavailable: connection refused",
        ),
        (
            "WARNING",
            "claiming still paused after 20 s (21 tries), store unavailable: "
            "Redis is unavailable: connection refused",
        ),
        ("INFO", "claiming resumed after 25.5 s: the store answers again"),
        ("WARNING", "claiming paused, store unavailable: Redis is unavailable: connection refused"),
    ]
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 22


class UnreachableStore(InMemoryJobStore):
    async def enqueue(self, new_job, *, max_waiting=None):  # type: ignore[no-untyped-def]
        raise StoreUnavailableError("Redis is unavailable: connection refused")


async def test_an_outage_under_load_logs_one_warning_not_one_per_request(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 submissions refused with 503 while the store is out of reach: one warning."""
    fresh = OutageLog(logging.getLogger("async_endpoints"))  # no spell of an earlier test
    monkeypatch.setattr("async_endpoints._http.STORE_OUTAGE", fresh)
    app = FastAPI()
    endpoints = AsyncEndpoints(app, store=UnreachableStore(), run_workers=False)

    @endpoints.map_async_post("/work")
    async def work(ctx: AsyncContext[None]) -> None:
        pass

    transport = httpx.ASGITransport(app=app)
    async with (
        endpoints.running(workers=False),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        with caplog.at_level(logging.WARNING, logger="async_endpoints"):
            answers = [await client.post("/work") for _ in range(200)]
    assert {answer.status_code for answer in answers} == {503}
    outage = [r for r in caplog.records if "could not queue a job" in r.getMessage()]
    assert len(outage) == 1 and outage[0].levelno == logging.WARNING
