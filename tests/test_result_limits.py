"""Results a store cannot keep: larger than max_result_size, or without a JSON form.

Either way the job is Failed after its one attempt: running the handler again would only
return the same value, so no retry is used up on it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from fastapi import HTTPException as FastAPIHTTPException
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    ConfigurationError,
    InMemoryJobStore,
    Job,
    JobStatus,
    JobStore,
    NonRetryableError,
)
from async_endpoints.testing import ManualClock


class Reading(BaseModel):
    sensor: str
    value: float


async def run_to_the_end(endpoints: AsyncEndpoints, outcome: Callable[[], Any]) -> tuple[Job, int]:
    """One job of a handler answering ``outcome()`` (its value, or what it raises), run by
    the endpoints' workers until it ends; the job and how many attempts it took."""
    runs = 0

    async def produce(ctx: AsyncContext[None]) -> Any:
        nonlocal runs
        runs += 1
        return outcome()

    endpoints.add_handler(produce)
    async with endpoints.running():
        job = await endpoints.wait_for((await endpoints.submit("produce")).id, timeout=10)
    return job, runs


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEndpoints]:
    endpoints = AsyncEndpoints(
        store=InMemoryJobStore(clock=ManualClock()), max_retries=3, max_result_size=10
    )
    async with endpoints.running(workers=False):
        yield endpoints


async def run_once(engine: AsyncEndpoints, value: Any) -> tuple[Job, int]:
    """Register a handler returning ``value``, drain; the job and how often it ran."""
    runs = 0

    async def produce(ctx: AsyncContext[None]) -> Any:
        nonlocal runs
        runs += 1
        return value

    name = f"produce_{len(engine.handlers)}"
    engine.add_handler(produce, name=name)
    job = await engine.submit(name)
    await engine.drain()
    settled = await engine.get_job(job.id)
    assert settled is not None
    return settled, runs


@pytest.mark.parametrize(
    ("value", "size"),
    [("x" * 9, 11), ("é" * 5, 12), ([1, 2, 3, 4, 5], 11)],
    ids=["ascii", "two-byte-utf8", "list"],
)
async def test_a_result_over_max_result_size_fails_at_once_with_result_too_large(
    engine: AsyncEndpoints, value: Any, size: int
) -> None:
    """The compact JSON's UTF-8 bytes are measured: over the limit is Failed, not retried."""
    job, runs = await run_once(engine, value)
    assert runs == 1 and job.status is JobStatus.FAILED and job.retry_count == 0
    assert job.error is not None and job.error.type == "ResultTooLarge"
    assert f"{size} bytes" in job.error.message and job.result is None


@pytest.mark.parametrize("value", ["x" * 8, "é" * 4, [1, 2, 3, 4]], ids=["ascii", "utf8", "list"])
async def test_a_result_of_exactly_max_result_size_bytes_completes(
    engine: AsyncEndpoints, value: Any
) -> None:
    """The limit itself is allowed: '"xxxxxxxx"', '"éééé"' and '[1,2,3,4]' are 10 bytes."""
    job, runs = await run_once(engine, value)
    assert runs == 1 and job.status is JobStatus.COMPLETED and job.result == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (math.nan, "NaN or Infinity"),
        ([1.5, -math.inf], "NaN or Infinity"),
        ({"mean": math.inf}, "NaN or Infinity"),
        (Reading(sensor="t1", value=math.nan), "NaN or Infinity"),
        ("caf\udce9", "lone surrogate"),
        (10**5000, "integer too long"),
        (10**400, "beyond 2**53 - 1"),
        (2**64, "beyond 2**53 - 1"),
        ({"ids": [1, -(2**53)]}, "beyond 2**53 - 1"),
        (object(), "unknown type"),
    ],
    ids=[
        "nan",
        "-inf-in-list",
        "inf-in-dict",
        "nan-in-model",
        "surrogate",
        "huge-int",
        "int-past-doubles",
        "2**64",
        "nested-int-past-2**53",
        "object",
    ],
)
async def test_a_result_without_a_json_form_fails_at_once_as_not_serializable(
    value: Any, reason: str
) -> None:
    """NaN and Infinity are refused (never turned into null), like any value JSON lacks."""
    endpoints = AsyncEndpoints(store=InMemoryJobStore(clock=ManualClock()), max_retries=3)
    async with endpoints.running(workers=False):
        job, runs = await run_once(endpoints, value)
    assert runs == 1 and job.status is JobStatus.FAILED and job.retry_count == 0
    assert job.error is not None and job.error.type == "ResultNotSerializable"
    assert reason in job.error.message


@pytest.mark.parametrize(
    "value",
    [2**53 - 1, -(2**53 - 1), {"id": 1234567890123456}, ["9" * 400], 1.7976931348623157e308],
    ids=["2**53-1", "-(2**53-1)", "16-digit-id", "digits-in-a-string", "largest-double"],
)
async def test_integers_every_reader_reads_exactly_are_kept_whole(value: Any) -> None:
    """An integer within ±(2**53 - 1) completes, exactly as returned; so do a long run
    of digits inside a string and the largest double."""
    endpoints = AsyncEndpoints(store=InMemoryJobStore(clock=ManualClock()), max_retries=3)
    async with endpoints.running(workers=False):
        job, runs = await run_once(endpoints, value)
    assert runs == 1 and job.status is JobStatus.COMPLETED and job.result == value


async def test_a_declared_model_result_with_nan_is_refused_rather_than_nulled() -> None:
    """A handler annotated -> Reading gets the same refusal as an unannotated one."""
    endpoints = AsyncEndpoints(store=InMemoryJobStore(clock=ManualClock()))

    async def read(ctx: AsyncContext[None]) -> Reading:
        return Reading(sensor="t1", value=math.nan)

    endpoints.add_handler(read)
    async with endpoints.running(workers=False):
        job = await endpoints.submit("read")
        await endpoints.drain()
        failed = await endpoints.get_job(job.id)
    assert failed is not None and failed.status is JobStatus.FAILED
    assert failed.error is not None and failed.error.type == "ResultNotSerializable"


async def test_an_exception_raised_by_the_handler_is_still_retried(engine: AsyncEndpoints) -> None:
    """Only unkeepable results skip the retries; a failing handler keeps its backoff."""

    async def flaky(ctx: AsyncContext[None]) -> None:
        raise ValueError("not yet")

    engine.add_handler(flaky)
    job = await engine.submit("flaky")
    await engine.drain()
    scheduled = await engine.get_job(job.id)
    assert scheduled is not None and scheduled.status is JobStatus.SCHEDULED


@pytest.mark.parametrize("size", [0, -1, 1.5, True, "16MiB", None])
def test_max_result_size_must_be_a_positive_int(size: Any) -> None:
    """A limit that is not a positive number of bytes is refused at construction."""
    with pytest.raises(ConfigurationError, match="max_result_size"):
        AsyncEndpoints(max_result_size=size)


@pytest.mark.parametrize(
    ("value", "error_type"),
    [("x" * 200, "ResultTooLarge"), (math.nan, "ResultNotSerializable")],
    ids=["too-large", "not-serializable"],
)
async def test_every_store_fails_an_unkeepable_result_after_exactly_one_attempt(
    store: JobStore, value: Any, error_type: str
) -> None:
    """Memory and a real Redis: running workers, max_retries=3, one attempt, Failed."""
    endpoints = AsyncEndpoints(
        store=store, max_retries=3, retry_base_delay=0.01, max_result_size=100
    )
    job, runs = await run_to_the_end(endpoints, lambda: value)
    assert runs == 1 and job.status is JobStatus.FAILED and job.retry_count == 0
    assert job.error is not None and job.error.type == error_type


class UnsupportedFormat(NonRetryableError):
    """A document the converter cannot read."""


@pytest.mark.parametrize(
    ("raised", "error_type"),
    [
        (NonRetryableError("account 42 is closed"), "NonRetryableError"),
        (UnsupportedFormat("cannot read .xyz files"), "UnsupportedFormat"),
    ],
    ids=["itself", "subclass"],
)
async def test_a_handler_raising_non_retryable_error_fails_its_job_after_one_attempt(
    store: JobStore, raised: Exception, error_type: str
) -> None:
    """Memory and a real Redis, max_retries=3: one attempt, Failed at once with retry
    count 0, the error typed by the raised class's name with its message; a job whose
    handler raises any other exception still uses its retries."""
    endpoints = AsyncEndpoints(store=store, max_retries=3, retry_base_delay=0.01)
    runs: dict[str, int] = {"refuse": 0, "stumble": 0}

    async def refuse(ctx: AsyncContext[None]) -> None:
        runs["refuse"] += 1
        raise raised

    async def stumble(ctx: AsyncContext[None]) -> None:
        runs["stumble"] += 1
        raise RuntimeError("try again")

    endpoints.add_handler(refuse)
    endpoints.add_handler(stumble)
    async with endpoints.running():
        refused = await endpoints.wait_for((await endpoints.submit("refuse")).id, timeout=10)
        stumbled = await endpoints.wait_for((await endpoints.submit("stumble")).id, timeout=10)
    assert runs == {"refuse": 1, "stumble": 4}
    assert refused.status is JobStatus.FAILED and refused.retry_count == 0
    assert refused.error is not None and refused.error.type == error_type
    assert refused.error.message == str(raised)
    assert stumbled.status is JobStatus.FAILED and stumbled.retry_count == 3


@pytest.mark.parametrize(
    "raised",
    [FastAPIHTTPException(404, "no such customer"), StarletteHTTPException(503, "upstream down")],
    ids=["fastapi-404", "starlette-503"],
)
async def test_a_handlers_http_exception_is_a_failed_attempt_said_once_to_answer_no_client(
    raised: Exception, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``raise HTTPException(404)`` in a handler (a FastAPI habit) answers no client: as
    API.md has any exception, it fails the attempt and is retried per the retry settings,
    the error typed HTTPException with the status and detail; a warning, once per
    process, says so and names NonRetryableError for a failure no retry can mend."""
    monkeypatch.setattr("async_endpoints._worker._HINTED", [])

    def lookup() -> None:
        raise raised

    endpoints = AsyncEndpoints(max_retries=3, retry_base_delay=0.01)
    with caplog.at_level(logging.WARNING, logger="async_endpoints"):
        job, ran = await run_to_the_end(endpoints, lookup)
    assert ran == 4
    assert job.status is JobStatus.FAILED and job.retry_count == 3
    assert job.error is not None and job.error.type == "HTTPException"
    assert job.error.message == str(raised)
    hints = [r.getMessage() for r in caplog.records if "answers no client" in r.getMessage()]
    assert len(hints) == 1 and "raise NonRetryableError" in hints[0]
