"""Job options: delay and run_at, queues with strict priority, per-handler overrides."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.requests import Request

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    ConfigurationError,
    InMemoryJobStore,
    JobStatus,
)
from async_endpoints._job import parse_time
from async_endpoints.testing import ManualClock


class Order(BaseModel):
    item: str
    wait: float | None = None


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def endpoints(clock: ManualClock) -> AsyncIterator[AsyncEndpoints]:
    engine = AsyncEndpoints(
        store=InMemoryJobStore(clock=clock),
        queues=("high", "default", "low"),
        retry_base_delay=10.0,
        retry_jitter=0.0,
    )

    async def note(ctx: AsyncContext[Order]) -> str:
        return ctx.request.item

    engine.add_handler(note)
    async with engine.running(workers=False):
        yield engine


async def test_a_delayed_job_is_scheduled_and_runs_once_due(
    endpoints: AsyncEndpoints, clock: ManualClock
) -> None:
    """submit(delay=30): Scheduled with runAt 30 s after its creation; runs only then."""
    job = await endpoints.submit("note", {"item": "later"}, delay=30)
    assert job.status is JobStatus.SCHEDULED
    assert job.run_at == job.created_at + timedelta(seconds=30)
    clock.advance(29)
    assert await endpoints.drain() == 0
    clock.advance(1)
    assert await endpoints.drain() == 1
    assert (await endpoints.get_job(job.id)).status is JobStatus.COMPLETED


async def test_a_zero_delay_is_due_at_once(endpoints: AsyncEndpoints) -> None:
    """delay=0 is no delay: the job is Queued."""
    job = await endpoints.submit("note", {"item": "now"}, delay=0)
    assert job.status is JobStatus.QUEUED and job.run_at is None


async def test_run_at_in_the_future_schedules_and_in_the_past_is_due_now(
    endpoints: AsyncEndpoints,
) -> None:
    """An aware run_at ahead is Scheduled that far ahead; one in the past is Queued."""
    later = await endpoints.submit(
        "note", {"item": "later"}, run_at=datetime.now(UTC) + timedelta(hours=1)
    )
    assert later.status is JobStatus.SCHEDULED
    assert timedelta(minutes=59) < later.run_at - later.created_at <= timedelta(hours=1)
    past = await endpoints.submit(
        "note", {"item": "past"}, run_at=datetime.now(UTC) - timedelta(hours=1)
    )
    assert past.status is JobStatus.QUEUED


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"delay": -1}, "delay"),
        ({"delay": math.inf}, "delay"),
        ({"delay": math.nan}, "delay"),
        ({"delay": True}, "delay"),
        ({"delay": "10"}, "delay"),
        ({"delay": 1e12}, "at most"),
        ({"run_at": datetime(9999, 12, 31, tzinfo=UTC)}, "at most"),
        ({"run_at": datetime(2030, 1, 1)}, "aware"),
        ({"run_at": "2030-01-01T00:00:00Z"}, "run_at"),
        ({"delay": 1, "run_at": datetime(2030, 1, 1, tzinfo=UTC)}, "not both"),
        ({"queue": "urgent"}, "unknown queue"),
        ({"idempotency_key": ""}, "idempotency key"),
        ({"idempotency_key": "order-\udcff"}, "UTF-8"),
    ],
)
async def test_bad_options_are_value_errors_and_store_nothing(
    endpoints: AsyncEndpoints, options: dict[str, Any], message: str
) -> None:
    """A negative, non-finite or non-numeric delay, a naive run_at, both at once, an
    unknown queue, an empty idempotency key or one holding a lone surrogate: ValueError,
    and no job is stored."""
    with pytest.raises(ValueError, match=message):
        await endpoints.submit("note", {"item": "x"}, **options)
    assert (await endpoints.queue_stats())[1].queued == 0


@pytest.mark.parametrize("max_concurrency", [1, 16])
async def test_workers_take_the_highest_priority_queue_first(
    clock: ManualClock, max_concurrency: int
) -> None:
    """Strict priority: every due job of "high" before any of "default", then "low",
    whatever the order they were submitted in (one claim at a time, or all at once)."""
    engine = AsyncEndpoints(
        store=InMemoryJobStore(clock=clock),
        queues=("high", "default", "low"),
        max_concurrency=max_concurrency,
    )
    ran: list[str] = []

    async def note(ctx: AsyncContext[Order]) -> None:
        ran.append(ctx.request.item)

    engine.add_handler(note)
    async with engine.running(workers=False):
        for queue, item in [("low", "l1"), ("default", "d1"), ("high", "h1"), ("low", "l2")]:
            await engine.submit("note", {"item": item}, queue=queue)
        await engine.submit("note", {"item": "h2"}, queue="high")
        assert await engine.drain() == 5
    assert ran == ["h1", "h2", "d1", "l1", "l2"]


async def test_a_handler_queue_is_where_its_jobs_wait(clock: ManualClock) -> None:
    """A handler's queue is its jobs' queue; submit(queue=...) overrides it."""
    engine = AsyncEndpoints(store=InMemoryJobStore(clock=clock), queues=("a", "b"))

    async def work(ctx: AsyncContext[None]) -> None:
        pass

    engine.add_handler(work, queue="b")
    async with engine.running(workers=False):
        assert (await engine.submit("work")).queue == "b"
        assert (await engine.submit("work", queue="a")).queue == "a"


@pytest.mark.parametrize(
    ("queues", "expected"),
    [
        (("high", "default", "low"), "default"),
        (("default",), "default"),
        (("main", "slow"), "slow"),
    ],
)
async def test_without_a_queue_a_handler_uses_the_default_queue_or_else_the_last(
    clock: ManualClock, queues: tuple[str, ...], expected: str
) -> None:
    """Jobs that name no queue wait in "default" when it is configured, else in the
    lowest-priority queue: they never jump ahead of work named for a higher one."""
    engine = AsyncEndpoints(store=InMemoryJobStore(clock=clock), queues=queues)

    async def work(ctx: AsyncContext[None]) -> None:
        pass

    engine.add_handler(work)
    async with engine.running(workers=False):
        assert (await engine.submit("work")).queue == expected


async def test_per_handler_max_retries_overrides_the_setting(clock: ManualClock) -> None:
    """max_retries=0 on the handler: one attempt, then Failed, whatever the setting says."""
    engine = AsyncEndpoints(store=InMemoryJobStore(clock=clock), max_retries=5)
    attempts: list[int] = []

    async def fragile(ctx: AsyncContext[None]) -> None:
        attempts.append(ctx.retry_count)
        raise RuntimeError("boom")

    engine.add_handler(fragile, max_retries=0)
    async with engine.running(workers=False):
        job = await engine.submit("fragile")
        assert job.max_retries == 0
        await engine.drain()
        failed = await engine.get_job(job.id)
    assert failed.status is JobStatus.FAILED and attempts == [0]


async def test_per_handler_job_timeout_overrides_the_setting(clock: ManualClock) -> None:
    """job_timeout on the handler ends its attempts on time; others keep the setting."""
    engine = AsyncEndpoints(store=InMemoryJobStore(clock=clock), max_retries=0, job_timeout=600)

    async def stuck(ctx: AsyncContext[None]) -> None:
        await asyncio.Event().wait()

    engine.add_handler(stuck, job_timeout=0.05)
    async with engine.running(workers=False):
        job = await engine.submit("stuck")
        async with asyncio.timeout(5):
            await engine.drain()
        failed = await engine.get_job(job.id)
    assert failed.status is JobStatus.FAILED and failed.error.type == "JobTimeout"
    assert "0.05 s" in failed.error.message


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"queue": "urgent"}, "unknown queue"),
        ({"queue": ""}, "unknown queue"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 1.5}, "max_retries"),
        ({"job_timeout": 0}, "job_timeout"),
        ({"job_timeout": math.inf}, "job_timeout"),
        ({"delay": -5}, "delay"),
        ({"delay": "soon"}, "delay"),
    ],
)
def test_bad_handler_options_are_configuration_errors(
    options: dict[str, Any], message: str
) -> None:
    """An unknown queue or an out-of-range option is refused when mapping; nothing is
    registered."""
    app = FastAPI()
    engine = AsyncEndpoints(app)
    routes = len(app.router.routes)

    async def work(ctx: AsyncContext[None]) -> None:
        pass

    with pytest.raises(ConfigurationError, match=message):
        engine.add_async_post("/work", work, **options)
    assert engine.handlers == {} and len(app.router.routes) == routes


def test_unknown_options_are_not_accepted_silently() -> None:
    """An option the library does not have (a misspelt webhook_url, say) is a TypeError,
    not ignored."""
    engine = AsyncEndpoints(FastAPI())
    with pytest.raises(TypeError, match="webhook"):
        engine.map_async_post("/work", webhook="https://example.com")  # type: ignore[call-arg]


def test_webhook_url_without_the_webhook_settings_is_refused_when_mapping() -> None:
    """webhook_url is an option, but without webhook_secret and webhook_allowed_hosts it
    is a ConfigurationError when the route is mapped; nothing is registered."""
    engine = AsyncEndpoints(FastAPI())

    async def work(ctx: AsyncContext[None]) -> None:
        pass

    with pytest.raises(ConfigurationError, match="webhook_secret and webhook_allowed_hosts"):
        engine.add_async_post("/work", work, webhook_url="https://example.com/hook")
    assert engine.handlers == {}


@pytest.mark.parametrize(
    ("queues", "message"),
    [
        ((), "at least one"),
        ("default", "sequence"),
        (("a", "a"), "repeat"),
        (("a", ""), "non-empty"),
        (("a", 1), "non-empty"),
    ],
)
def test_the_queues_setting_is_checked(queues: Any, message: str) -> None:
    """queues: a non-empty sequence of distinct, non-empty names."""
    with pytest.raises(ConfigurationError, match=message):
        AsyncEndpoints(queues=queues)


# ---------------------------------------------------------------------------------------
# Over HTTP: a delay per route, constant or computed per POST.
# ---------------------------------------------------------------------------------------


def delayed_app(delay: Any) -> tuple[FastAPI, AsyncEndpoints]:
    app = FastAPI()
    engine = AsyncEndpoints(app, run_workers=False)

    @engine.map_async_post("/orders", name="PlaceOrder", delay=delay)
    async def place_order(ctx: AsyncContext[Order]) -> str:
        return ctx.request.item

    return app, engine


async def test_a_route_delay_answers_202_scheduled_with_run_at(http_client_for) -> None:
    """map_async_post(delay=60): the 202 shows status Scheduled and runAt a minute on."""
    app, _ = delayed_app(60)
    async with http_client_for(app) as client:
        response = await client.post("/orders", json={"item": "tea"})
    job = response.json()
    assert response.status_code == 202 and job["status"] == "Scheduled"
    assert parse_time(job["runAt"]) - parse_time(job["createdAt"]) == timedelta(seconds=60)


async def test_a_delay_function_sees_the_request_and_the_body(http_client_for) -> None:
    """An async delay function gives the delay per POST; None means due at once."""
    seen: list[tuple[str, str]] = []

    async def from_body(request: Request, body: Order) -> float | None:
        seen.append((request.url.path, body.item))
        return body.wait

    app, _ = delayed_app(from_body)
    async with http_client_for(app) as client:
        later = (await client.post("/orders", json={"item": "a", "wait": 5})).json()
        now = (await client.post("/orders", json={"item": "b"})).json()
    assert later["status"] == "Scheduled" and now["status"] == "Queued"
    assert seen == [("/orders", "a"), ("/orders", "b")]


@pytest.mark.parametrize("bad", [-1, math.inf, math.nan, "5", True, 2.5e11])
async def test_a_bad_value_from_a_delay_function_answers_422_and_stores_nothing(
    http_client_for, bad: Any
) -> None:
    """A delay function giving a negative, non-finite or non-numeric delay: 422 JSON."""
    app, engine = delayed_app(lambda request, body: bad)
    async with http_client_for(app) as client:
        response = await client.post("/orders", json={"item": "tea"})
        stats = await engine.queue_stats()
    assert response.status_code == 422 and "delay" in str(response.json()["detail"])
    assert stats[0].queued == stats[0].scheduled == 0
