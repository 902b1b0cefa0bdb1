"""A handler's return annotation is its result's model, as a FastAPI route's return
annotation is its response model: the value is validated against it (lax, as FastAPI
does) before it is kept, so that what the model does not declare is never stored nor
served, and a value it refuses fails the job at once (not retried), as
``ResultValidationError``, the message naming where and why but never the value."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel

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
