"""A handler's return annotation is its result's model, as a FastAPI route's return
annotation is its response model: the value is validated against it (lax, as FastAPI
does) before it is kept, so that what the model does not declare is never stored nor
served, and a value it refuses fails the job at once (not retried), as
``ResultValidationError``, the message naming where and why but never the value."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Annotated, Any

import pytest
from pydantic import AfterValidator, BaseModel, Field, model_validator

from async_endpoints import AsyncContext, AsyncEndpoints, InMemoryJobStore, Job, JobStatus


class PublicUser(BaseModel):
    name: str
    email: str


class PrivateUser(PublicUser):
    password_hash: str


@dataclasses.dataclass
class Row:
    """An object with attributes, as an ORM row is."""

    name: str
    email: str
    password_hash: str


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEndpoints]:
    endpoints = AsyncEndpoints(store=InMemoryJobStore(), max_retries=3)
    async with endpoints.running(workers=False):
        yield endpoints


async def ran(engine: AsyncEndpoints, handler: Any) -> Job:
    """Register ``handler`` under a fresh name, submit one job, drain; the job."""
    name = f"h{len(engine.handlers)}"
    engine.add_handler(handler, name=name)
    submitted = await engine.submit(name)
    await engine.drain()
    return await engine.get_job(submitted.id)  # type: ignore[return-value]


USER = {"name": "ada", "email": "ada@example.com", "password_hash": "$argon2id$secret"}


async def test_a_dict_returned_for_a_model_keeps_only_the_models_fields(
    engine: AsyncEndpoints,
) -> None:
    async def user(ctx: AsyncContext[None]) -> PublicUser:
        return USER  # type: ignore[return-value]

    job = await ran(engine, user)
    assert job.status is JobStatus.COMPLETED
    assert job.result == {"name": "ada", "email": "ada@example.com"}
    assert "secret" not in job.to_json()


@pytest.mark.parametrize(
    "value",
    [PrivateUser(**USER), Row(**USER)],
    ids=["subclass-instance", "object-with-attributes"],
)
async def test_a_richer_object_returned_for_a_model_keeps_only_the_models_fields(
    engine: AsyncEndpoints, value: Any
) -> None:
    async def user(ctx: AsyncContext[None]) -> PublicUser:
        return value  # type: ignore[no-any-return]

    job = await ran(engine, user)
    assert job.result == {"name": "ada", "email": "ada@example.com"}


async def test_a_value_the_annotation_refuses_fails_at_once_naming_where_not_what(
    engine: AsyncEndpoints,
) -> None:
    async def count(ctx: AsyncContext[None]) -> int:
        return "secret-token-123"  # type: ignore[return-value]

    job = await ran(engine, count)
    assert job.status is JobStatus.FAILED and job.retry_count == 0  # of 3: not retried
    assert job.error is not None and job.error.type == "ResultValidationError"
    assert job.error.message.startswith("the result does not match h0's return annotation: ")
    assert "result: Input should be a valid integer" in job.error.message
    assert "secret-token-123" not in job.error.message


async def test_a_dict_missing_a_models_field_fails_naming_the_field(
    engine: AsyncEndpoints,
) -> None:
    async def user(ctx: AsyncContext[None]) -> PublicUser:
        return {"name": "ada"}  # type: ignore[return-value]

    job = await ran(engine, user)
    assert job.error is not None and job.error.type == "ResultValidationError"
    assert "result.email: Field required" in job.error.message


async def test_lax_values_are_converted_as_fastapi_converts_them(engine: AsyncEndpoints) -> None:
    async def count(ctx: AsyncContext[None]) -> int:
        return "5"  # type: ignore[return-value]

    async def users(ctx: AsyncContext[None]) -> list[PublicUser]:
        return [USER, USER]  # type: ignore[list-item]

    counted = await ran(engine, count)
    listed = await ran(engine, users)
    assert counted.result == 5
    assert listed.result == [{"name": "ada", "email": "ada@example.com"}] * 2


@pytest.mark.parametrize("annotation", [None, Any, object, "missing"])
async def test_none_any_object_or_no_annotation_keep_the_value_as_it_is(
    engine: AsyncEndpoints, annotation: Any
) -> None:
    async def anything(ctx: AsyncContext[None]):  # type: ignore[no-untyped-def]
        return USER

    if annotation != "missing":
        anything.__annotations__["return"] = annotation
    job = await ran(engine, anything)
    assert job.status is JobStatus.COMPLETED and job.result == USER


async def test_an_annotated_return_type_keeps_its_constraints_and_validators(
    engine: AsyncEndpoints,
) -> None:
    """Annotated metadata counts, as in a FastAPI response model: a constraint refuses,
    an AfterValidator changes the value kept."""

    async def positive(ctx: AsyncContext[None]) -> Annotated[int, Field(gt=0)]:
        return -1

    async def shout(ctx: AsyncContext[None]) -> Annotated[str, AfterValidator(str.upper)]:
        return "quiet"

    refused = await ran(engine, positive)
    shouted = await ran(engine, shout)
    assert refused.error is not None and refused.error.type == "ResultValidationError"
    assert "result: Input should be greater than 0" in refused.error.message
    assert shouted.result == "QUIET"


class Lookup(BaseModel):
    code: str

    @model_validator(mode="after")
    def known(self) -> Lookup:
        {"a": 1}[self.code]  # raises KeyError for an unknown code
        return self


async def test_a_validator_raising_another_error_fails_the_job_once_too(
    engine: AsyncEndpoints,
) -> None:
    """pydantic lets a validator's KeyError through: it still fails the job at once (the
    handler is not run again), as ResultValidationError naming the error's type only."""
    runs = 0

    async def lookup(ctx: AsyncContext[None]) -> Lookup:
        nonlocal runs
        runs += 1
        return {"code": "zz-secret"}  # type: ignore[return-value]

    job = await ran(engine, lookup)
    assert runs == 1 and job.status is JobStatus.FAILED and job.error is not None
    assert job.error.type == "ResultValidationError"
    assert job.error.message.endswith("annotation: a validator raised KeyError")
