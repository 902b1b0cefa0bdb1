"""The engine driven in drain mode with a manual clock: run, retry, fail, validate."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    ConfigurationError,
    InMemoryJobStore,
    JobStatus,
    JobValidationError,
    QueueFullError,
    StoreUnavailableError,
    UnknownJobNameError,
)
from async_endpoints._events import AttemptOutcome, EventKind
from async_endpoints.testing import ManualClock


class Order(BaseModel):
    item: str
    quantity: int = 1


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def endpoints(clock: ManualClock) -> AsyncIterator[AsyncEndpoints]:
    engine = AsyncEndpoints(
        store=InMemoryJobStore(clock=clock), retry_base_delay=10.0, retry_jitter=0.0
    )
    async with engine.running(workers=False):
        yield engine


async def test_a_submitted_job_runs_and_completes_with_the_handler_result(
    endpoints: AsyncEndpoints,
) -> None:
    """submit -> drain -> Completed, with the return value serialised as JSON."""

    async def total(ctx: AsyncContext[Order]) -> dict[str, Any]:
        return {"item": ctx.request.item, "total": ctx.request.quantity * 3}

    endpoints.add_handler(total)
    job = await endpoints.submit("total", Order(item="tea", quantity=2))
    assert job.status is JobStatus.QUEUED
    assert await endpoints.drain() == 1
    done = await endpoints.get_job(job.id)
    assert done.status is JobStatus.COMPLETED and done.result == {"item": "tea", "total": 6}


class Receipt(BaseModel):
    """A result model whose JSON names are camelCase aliases."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    item_name: str
    unit_price: float


async def test_a_model_result_is_kept_under_its_aliases_as_fastapi_answers_it(
    endpoints: AsyncEndpoints,
) -> None:
    """A result model with aliases is stored under them (as a FastAPI route's
    ``response_model`` answers by default), so it validates back into the model."""

    async def receipt(ctx: AsyncContext[None]) -> Receipt:
        return Receipt(item_name="tea", unit_price=2.5)

    endpoints.add_handler(receipt)
    job = await endpoints.submit("receipt")
    await endpoints.drain()
    done = await endpoints.get_job(job.id)
    assert done.result == {"itemName": "tea", "unitPrice": 2.5}
    assert Receipt.model_validate(done.result) == Receipt(item_name="tea", unit_price=2.5)


async def test_the_handler_receives_the_captured_request(endpoints: AsyncEndpoints) -> None:
    """Body, headers, query parameters, route parameters, id and retry count reach ctx."""
    seen: list[AsyncContext[Order]] = []

    async def capture(ctx: AsyncContext[Order]) -> None:
        seen.append(ctx)

    endpoints.add_handler(capture)
    job = await endpoints.submit(
        "capture",
        {"item": "tea"},
        headers=[("X-Trace", "a"), ("x-trace", "b")],
        query_string="tag=x&tag=y",
        route_params={"tenant": "acme"},
    )
    await endpoints.drain()
    (ctx,) = seen
    assert ctx.request == Order(item="tea") and ctx.job_id == job.id and ctx.retry_count == 0
    assert ctx.headers.getlist("X-TRACE") == ["a", "b"]
    assert ctx.query_params.getlist("tag") == ["x", "y"]
    assert ctx.route_params == {"tenant": "acme"}


async def test_a_failing_job_is_retried_with_backoff_until_it_fails_for_good(
    endpoints: AsyncEndpoints, clock: ManualClock
) -> None:
    """Each failure schedules retry n after 10 * 2 ** (n - 1) s; the last one is final."""
    attempts: list[int] = []

    async def flaky(ctx: AsyncContext[None]) -> None:
        attempts.append(ctx.retry_count)
        raise RuntimeError(f"attempt {ctx.retry_count} broke")

    endpoints.add_handler(flaky)
    job = await endpoints.submit("flaky")
    for delay in (10.0, 20.0, 40.0):
        await endpoints.drain()
        waiting = await endpoints.get_job(job.id)
        assert waiting.status is JobStatus.SCHEDULED
        assert waiting.run_at - waiting.last_updated_at == timedelta(seconds=delay)
        clock.advance(delay - 0.001)
        assert await endpoints.drain() == 0
        clock.advance(0.001)
    await endpoints.drain()
    failed = await endpoints.get_job(job.id)
    assert attempts == [0, 1, 2, 3]
    assert failed.status is JobStatus.FAILED and failed.retry_count == 3
    assert failed.error.to_json() == {"message": "attempt 3 broke", "type": "RuntimeError"}


async def test_a_retry_that_succeeds_completes_the_job(
    endpoints: AsyncEndpoints, clock: ManualClock
) -> None:
    """A transient failure costs one retry, then the job completes with its result."""

    async def once_broken(ctx: AsyncContext[None]) -> str:
        if ctx.retry_count == 0:
            raise ConnectionError("try later")
        return "fine"

    endpoints.add_handler(once_broken)
    job = await endpoints.submit("once_broken")
    await endpoints.drain()
    clock.advance(10)
    await endpoints.drain()
    done = await endpoints.get_job(job.id)
    assert (done.status, done.result, done.retry_count) == (JobStatus.COMPLETED, "fine", 1)


async def test_an_attempt_longer_than_job_timeout_fails(clock: ManualClock) -> None:
    """The attempt is cancelled at job_timeout and recorded as a JobTimeout failure."""
    engine = AsyncEndpoints(store=InMemoryJobStore(clock=clock), job_timeout=0.05, max_retries=0)

    async def stuck(ctx: AsyncContext[None]) -> None:
        await asyncio.Event().wait()

    engine.add_handler(stuck)
    async with engine.running(workers=False):
        job = await engine.submit("stuck")
        await engine.drain()
        failed = await engine.get_job(job.id)
    assert failed.status is JobStatus.FAILED and failed.error.type == "JobTimeout"
    assert "job_timeout" in failed.error.message


def block_the_loop(seconds: float) -> None:
    """What ``time.sleep(seconds)`` does to the event loop, measured on the loop's clock."""
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    while loop.time() < until:
        pass


@pytest.mark.parametrize("ending", ["returns", "raises"])
async def test_a_handler_blocking_the_loop_past_job_timeout_fails_as_a_timeout(
    clock: ManualClock, ending: str
) -> None:
    """A handler that blocks the event loop (no ``await``) past job_timeout could not be
    cancelled, but it still ran longer: its result (or exception) is discarded and the
    attempt fails as a JobTimeout, as if the cancel had reached it."""
    engine = AsyncEndpoints(store=InMemoryJobStore(clock=clock), job_timeout=0.05, max_retries=0)

    async def blocking(ctx: AsyncContext[None]) -> str:
        block_the_loop(0.2)
        if ending == "raises":
            raise RuntimeError("late failure")
        return "late result"

    engine.add_handler(blocking)
    async with engine.running(workers=False):
        job = await engine.submit("blocking")
        await engine.drain()
        failed = await engine.get_job(job.id)
    assert failed.status is JobStatus.FAILED and failed.error.type == "JobTimeout"
    assert failed.result is None


async def test_a_handler_blocking_briefly_within_job_timeout_keeps_its_result(
    clock: ManualClock,
) -> None:
    engine = AsyncEndpoints(store=InMemoryJobStore(clock=clock), job_timeout=5.0, max_retries=0)

    async def brief(ctx: AsyncContext[None]) -> str:
        block_the_loop(0.05)
        return "in time"

    engine.add_handler(brief)
    async with engine.running(workers=False):
        job = await engine.submit("brief")
        await engine.drain()
        done = await engine.get_job(job.id)
    assert (done.status, done.result) == (JobStatus.COMPLETED, "in time")


async def test_a_handler_ignoring_cancellation_is_abandoned_and_its_attempt_times_out(
    clock: ManualClock,
) -> None:
    """drain() returns one CANCEL_WAIT after job_timeout; the job fails as a JobTimeout."""
    engine = AsyncEndpoints(store=InMemoryJobStore(clock=clock), job_timeout=0.05, max_retries=0)
    release = asyncio.Event()

    async def stubborn(ctx: AsyncContext[None]) -> str:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()
        return "too late"

    engine.add_handler(stubborn)
    async with engine.running(workers=False):
        job = await engine.submit("stubborn")
        async with asyncio.timeout(5):
            await engine.drain()
        failed = await engine.get_job(job.id)
        assert failed.status is JobStatus.FAILED and failed.error.type == "JobTimeout"
        (abandoned,) = engine.pool.attempts.abandoned
        release.set()
        await asyncio.wait_for(abandoned, timeout=5)
    assert await engine.get_job(job.id) == failed  # its late result is not recorded


async def test_a_handler_that_cancels_itself_fails_its_attempt(endpoints: AsyncEndpoints) -> None:
    """CancelledError raised by the handler, with nobody cancelling it: a failed attempt."""

    async def quits(ctx: AsyncContext[None]) -> None:
        raise asyncio.CancelledError

    endpoints.add_handler(quits)
    job = await endpoints.submit("quits")
    await endpoints.drain()
    failed = await endpoints.get_job(job.id)
    assert failed.status is JobStatus.SCHEDULED and failed.error.type == "CancelledError"


class AppAbort(BaseException):
    """An app's own BaseException (not an Exception), as some frameworks raise."""


@pytest.mark.parametrize("kind", [GeneratorExit, AppAbort, SystemExit, KeyboardInterrupt])
async def test_a_base_exception_from_a_handler_fails_its_attempt_at_once(
    endpoints: AsyncEndpoints, kind: type[BaseException]
) -> None:
    """Any BaseException but a cancellation: a failed attempt named by its type, retried
    after its backoff, then Failed; the job is never left InProgress for recovery."""

    async def aborts(ctx: AsyncContext[None]) -> None:
        raise kind("stop here")

    endpoints.add_handler(aborts, max_retries=0)
    job = await endpoints.submit("aborts")
    assert await endpoints.drain() == 1
    failed = await endpoints.get_job(job.id)
    assert failed is not None and failed.status is JobStatus.FAILED
    assert failed.error is not None and failed.error.type == kind.__name__
    assert failed.error.message == "stop here"


async def test_a_result_that_is_not_json_fails_the_attempt_with_a_clear_error(
    endpoints: AsyncEndpoints,
) -> None:
    """An unserialisable return value fails the job at once (not retried), naming the type."""

    async def opaque(ctx: AsyncContext[None]) -> object:
        return object()

    endpoints.add_handler(opaque)
    job = await endpoints.submit("opaque")
    await endpoints.drain()
    attempt = await endpoints.get_job(job.id)
    assert attempt.status is JobStatus.FAILED and attempt.retry_count == 0
    assert attempt.error.type == "ResultNotSerializable"
    assert "unknown type" in attempt.error.message.lower()


async def test_tracebacks_are_kept_only_when_the_app_opts_in(clock: ManualClock) -> None:
    """include_tracebacks=True records the stack trace with the error."""

    async def broken(ctx: AsyncContext[None]) -> None:
        raise ValueError("no")

    for opted_in in (False, True):
        engine = AsyncEndpoints(
            store=InMemoryJobStore(clock=clock), include_tracebacks=opted_in, max_retries=0
        )
        engine.add_handler(broken)
        async with engine.running(workers=False):
            job = await engine.submit("broken")
            await engine.drain()
            error = (await engine.get_job(job.id)).error
        assert (error.traceback is not None) is opted_in
        assert ("traceback" in error.to_json()) is opted_in


async def test_submit_refuses_unknown_names_and_invalid_bodies_storing_nothing(
    endpoints: AsyncEndpoints,
) -> None:
    """A bad submission raises a named error and leaves the store empty."""

    async def order(ctx: AsyncContext[Order]) -> None: ...

    endpoints.add_handler(order)
    with pytest.raises(UnknownJobNameError):
        await endpoints.submit("nope", {})
    with pytest.raises(JobValidationError) as invalid:
        await endpoints.submit("order", {"quantity": "many"})
    assert {tuple(e["loc"]) for e in invalid.value.errors} == {("item",), ("quantity",)}
    assert await endpoints.store.count_waiting() == 0


async def test_submit_refuses_when_max_queue_size_jobs_wait(clock: ManualClock) -> None:
    """Backpressure: the queue limit raises QueueFullError and stores nothing more."""
    engine = AsyncEndpoints(store=InMemoryJobStore(clock=clock), max_queue_size=2)

    async def noop(ctx: AsyncContext[None]) -> None: ...

    engine.add_handler(noop)
    async with engine.running(workers=False):
        await engine.submit("noop")
        await engine.submit("noop")
        with pytest.raises(QueueFullError):
            await engine.submit("noop")
        assert await engine.store.count_waiting() == 2


async def test_wait_for_returns_the_terminal_job_as_soon_as_it_settles(
    endpoints: AsyncEndpoints,
) -> None:
    """wait_for is woken by the settlement; it raises TimeoutError or KeyError otherwise."""

    async def noop(ctx: AsyncContext[None]) -> str:
        return "done"

    endpoints.add_handler(noop)
    job = await endpoints.submit("noop")
    with pytest.raises(TimeoutError):
        await endpoints.wait_for(job.id, timeout=0.01)
    waiter = asyncio.create_task(endpoints.wait_for(job.id, timeout=30))
    await endpoints.drain()
    async with asyncio.timeout(5):
        assert (await waiter).result == "done"
    assert (await endpoints.wait_for(str(job.id), timeout=0)).result == "done"
    with pytest.raises(KeyError, match="no job has the id 'not-a-uuid'"):
        await endpoints.wait_for("not-a-uuid", timeout=1)
    unknown = uuid.uuid4()
    with pytest.raises(KeyError, match=f"no job has the id {unknown}"):
        await endpoints.wait_for(unknown, timeout=1)


async def test_a_job_for_a_handler_this_process_lacks_fails_its_attempt(
    clock: ManualClock,
) -> None:
    """A worker without the job's handler records an UnknownJob failure, not a crash."""
    store = InMemoryJobStore(clock=clock)
    producer = AsyncEndpoints(store=store, max_retries=0)

    async def elsewhere(ctx: AsyncContext[None]) -> None: ...

    producer.add_handler(elsewhere)
    consumer = AsyncEndpoints(store=store)
    async with producer.running(workers=False):
        job = await producer.submit("elsewhere")
        await consumer.drain()
        assert (await producer.get_job(job.id)).error.type == "UnknownJob"


def test_handlers_must_be_async_and_take_an_async_context() -> None:
    """Wiring mistakes are ConfigurationErrors naming the problem."""
    engine = AsyncEndpoints()

    def sync_handler(ctx: AsyncContext[None]) -> None: ...

    async def wrong_param(ctx: int) -> None: ...

    async def fine(ctx: AsyncContext[None]) -> None: ...

    with pytest.raises(
        ConfigurationError,
        match=r"job handler sync_handler must be an async function \(async def\); for "
        r"blocking work, await asyncio.to_thread",
    ):
        engine.add_handler(sync_handler)  # type: ignore[arg-type]
    with pytest.raises(
        ConfigurationError,
        match=r"not <class 'int'>: write ctx: AsyncContext\[int\] and read the body as ctx.request",
    ):
        engine.add_handler(wrong_param)  # type: ignore[arg-type]
    engine.add_handler(fine)
    with pytest.raises(ConfigurationError, match="exists already"):
        engine.add_handler(fine)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"max_concurency": 2},
            r"unknown setting\(s\): max_concurency \(did you mean max_concurrency\?\)",
        ),
        ({"max_retry": 3, "zzz": 1}, r"max_retry \(did you mean max_retries\?\), zzz$"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_queue_size": 0}, "max_queue_size"),
        ({"max_retries": -1}, "max_retries"),
        ({"claim_timeout": 0}, "claim_timeout"),
    ],
)
def test_bad_settings_are_refused_by_name(settings: dict[str, Any], message: str) -> None:
    """A misspelt or out-of-range setting raises ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match=message):
        AsyncEndpoints(**settings)


DURATIONS = [
    "job_timeout",
    "claim_timeout",
    "recovery_interval",
    "shutdown_grace_period",
    "polling_interval",
    "max_wait",
    "idempotency_ttl",
]


@pytest.mark.parametrize("seconds", [math.inf, 1e300], ids=["infinite", "huge"])
@pytest.mark.parametrize("name", DURATIONS)
def test_a_duration_setting_must_be_finite_and_at_most_a_century(name: str, seconds: float) -> None:
    """An infinite or absurdly long timeout or interval setting is a ConfigurationError
    naming it and its bound; 100 years itself is accepted. (The retry delays are not
    among them: a backoff is capped at 100 years where it is used, and an infinite
    retry_max_delay means no cap.)"""
    with pytest.raises(ConfigurationError, match=f"{name} must be a finite number of seconds"):
        AsyncEndpoints(**{name: seconds})
    assert getattr(AsyncEndpoints(**{name: 100 * 365.25 * 86400}).settings, name) > 0


class FlakyCompletionStore(InMemoryJobStore):
    """An in-memory store whose first `complete` calls fail as if the network were down."""

    def __init__(self, failures: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.failures = failures

    async def complete(self, claim: Any, result: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailableError("connection refused")
        return await super().complete(claim, result)


async def test_a_settlement_the_store_refuses_is_retried_until_it_lands() -> None:
    """A brief store outage at settle time does not lose the handler's result."""
    store = FlakyCompletionStore(failures=3)
    engine = AsyncEndpoints(store=store)

    async def noop(ctx: AsyncContext[None]) -> str:
        return "kept"

    engine.add_handler(noop)
    async with engine.running(workers=False):
        job = await engine.submit("noop")
        await engine.drain()
        assert (await engine.get_job(job.id)).result == "kept"
    assert store.failures == 0


class UnansweredSettlementStore(InMemoryJobStore):
    """An in-memory store that records the first settlement it is sent (`complete` or
    `fail`), then answers it as if the reply never came (Redis carried it out; the
    connection broke)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.unanswered = 1

    def _unanswered(self, settled: Any) -> Any:
        if self.unanswered:
            self.unanswered -= 1
            raise StoreUnavailableError("connection lost before the answer came")
        return settled

    async def complete(self, claim: Any, result: Any) -> Any:
        return self._unanswered(await super().complete(claim, result))

    async def fail(self, claim: Any, error: Any, *, retry_in: float | None) -> Any:
        return self._unanswered(await super().fail(claim, error, retry_in=retry_in))


@pytest.mark.parametrize(
    ("fails", "max_retries", "outcome", "status"),
    [
        (False, 0, AttemptOutcome.COMPLETED, JobStatus.COMPLETED),
        (True, 0, AttemptOutcome.FAILED, JobStatus.FAILED),
        (True, 1, AttemptOutcome.RETRIED, JobStatus.SCHEDULED),
    ],
    ids=["completed", "failed", "retried"],
)
async def test_a_settlement_recorded_by_a_try_whose_answer_was_lost_counts_as_made(
    caplog: pytest.LogCaptureFixture,
    fails: bool,
    max_retries: int,
    outcome: AttemptOutcome,
    status: JobStatus,
) -> None:
    """The retry of the settlement is refused (the claim is settled already), but the job
    is as this attempt's outcome left it: the attempt counts as that outcome, and nothing
    says it was dropped."""
    store = UnansweredSettlementStore()
    engine = AsyncEndpoints(store=store, max_retries=max_retries, retry_base_delay=60)
    outcomes: list[AttemptOutcome | None] = []
    engine.events.subscribe(
        lambda event: event.kind is EventKind.FINISHED and outcomes.append(event.outcome)
    )

    async def work(ctx: AsyncContext[None]) -> str:
        if fails:
            raise ValueError("no luck")
        return "kept"

    engine.add_handler(work)
    with caplog.at_level(logging.INFO, logger="async_endpoints"):
        async with engine.running(workers=False):
            job = await engine.submit("work")
            await engine.drain()
            done = await engine.get_job(job.id)
    assert store.unanswered == 0
    assert done.status is status
    assert outcomes == [outcome]
    assert "outcome was dropped" not in caplog.text
    assert "recorded by an earlier try" in caplog.text
