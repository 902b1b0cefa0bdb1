"""Declared query parameters (an async endpoint's ``query=Model``): validated when the job
is submitted (422, nothing stored), read by the handler as ``ctx.query`` on every store,
checked for jobs submitted from code, batches and schedules, and listed in FastAPI's
OpenAPI document."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import pytest
from fastapi import FastAPI
from pydantic import AliasChoices, AliasPath, BaseModel, Field
from starlette.applications import Starlette

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    ConfigurationError,
    InMemoryJobStore,
    JobSpec,
    JobStatus,
    JobStore,
    JobValidationError,
)


class ConvertQuery(BaseModel):
    dpi: int = Field(default=150, ge=72, description="Dots per inch of the images.")
    pages: list[int] = []
    lang: Literal["en", "fr"] = "en"


class ExportQuery(BaseModel):
    format: str


def convert_app(app: Starlette, store: JobStore) -> AsyncEndpoints:
    endpoints = AsyncEndpoints(app, store=store, max_retries=0)

    @endpoints.map_async_post("/convert", name="Convert", query=ConvertQuery)
    async def convert(ctx: AsyncContext[None]) -> dict[str, Any]:
        assert isinstance(ctx.query, ConvertQuery)
        return ctx.query.model_dump()

    @endpoints.map_async_post("/export", name="Export", query=ExportQuery)
    async def export(ctx: AsyncContext[None]) -> str:
        return str(ctx.query.format)

    return endpoints


async def test_the_handler_reads_the_declared_query_as_its_model_on_every_store(
    app: Starlette, store: JobStore, http_client_for: Any
) -> None:
    """Values are read as the model's types; a list field takes every value of a repeated
    key, another field the last; a parameter not sent takes its default."""
    endpoints = convert_app(app, store)
    async with http_client_for(app) as client:
        full = await client.post("/convert?dpi=300&pages=1&pages=3&lang=fr")
        repeated = await client.post("/convert?dpi=100&dpi=200")
        bare = await client.post("/convert")
        results = [
            (await endpoints.wait_for(answer.json()["id"], timeout=10)).result
            for answer in (full, repeated, bare)
        ]
    assert results == [
        {"dpi": 300, "pages": [1, 3], "lang": "fr"},
        {"dpi": 200, "pages": [], "lang": "en"},
        {"dpi": 150, "pages": [], "lang": "en"},
    ]


async def test_a_query_failing_its_model_answers_422_and_stores_nothing(
    app: Starlette, store: JobStore, http_client_for: Any
) -> None:
    """A value of the wrong type, out of range, not among the choices, or a required
    parameter missing: 422 in FastAPI's shape, each error located under "query"."""
    endpoints = convert_app(app, store)
    async with http_client_for(app) as client:
        wrong = await client.post("/convert?dpi=lots&lang=de")
        low = await client.post("/convert?dpi=10")
        missing = await client.post("/export?fmt=pdf")
        assert (await endpoints.list_jobs()).jobs == []
    assert [answer.status_code for answer in (wrong, low, missing)] == [422, 422, 422]
    assert [e["loc"] for e in wrong.json()["detail"]] == [["query", "dpi"], ["query", "lang"]]
    assert low.json()["detail"][0]["type"] == "greater_than_equal"
    assert missing.json()["detail"] == [
        {"loc": ["query", "format"], "msg": "Field required", "type": "missing"}
    ]


async def test_a_query_parameter_left_out_as_sensitive_cannot_be_declared() -> None:
    """A field named as a sensitive query parameter (never captured, in any spelling) is
    refused when the route is mapped, as is a query that is not a pydantic model."""

    class Signed(BaseModel):
        access_token: str

    endpoints = AsyncEndpoints(Starlette())

    async def handle(ctx: AsyncContext[None]) -> None: ...

    with pytest.raises(ConfigurationError, match="'access_token' of Signed is one of sensitive"):
        endpoints.add_async_route("POST", "/signed", handle, query=Signed)
    with pytest.raises(ConfigurationError, match="query must be a pydantic BaseModel class"):
        endpoints.add_async_route("POST", "/dict", handle, query=dict)  # type: ignore[arg-type]
    assert endpoints.handlers == {}


async def test_jobs_from_code_batches_and_schedules_are_checked_against_the_query_model() -> None:
    """submit(query_string=...) is validated like a request's query; a batch's jobs and a
    schedule's have no query string, refused for a model that requires a parameter."""
    endpoints = convert_app(Starlette(), InMemoryJobStore())
    async with endpoints.running():
        with pytest.raises(JobValidationError, match=r"query\.dpi: Input should be a valid"):
            await endpoints.submit("Convert", query_string="dpi=many")
        job = await endpoints.submit("Convert", query_string="dpi=96&pages=2")
        done = await endpoints.wait_for(job.id, timeout=10)
        assert done.result == {"dpi": 96, "pages": [2], "lang": "en"}
        with pytest.raises(JobValidationError, match=r"query\.format: Field required"):
            await endpoints.submit_batch([JobSpec("Export")])
        with pytest.raises(JobValidationError, match=r"query\.format: Field required"):
            await endpoints.upsert_schedule("nightly-export", "Export", cron="0 3 * * *")
        assert [j.id for j in (await endpoints.list_jobs()).jobs] == [job.id]


async def test_a_stored_query_that_no_longer_passes_fails_the_attempt() -> None:
    """A job whose kept query no longer passes the model (here: stored before the route
    declared one) fails its attempt with JobValidationError, naming the parameter."""
    store = InMemoryJobStore()
    before = AsyncEndpoints(store=store, max_retries=0)

    async def export(ctx: AsyncContext[None]) -> str:
        return str(ctx.query.format)

    before.add_handler(export, name="Export")
    job = await before.submit("Export", query_string="fmt=pdf")
    after = convert_app(Starlette(), store)
    async with after.running():
        failed = await after.wait_for(job.id, timeout=10)
    assert failed.status is JobStatus.FAILED and failed.error is not None
    assert failed.error.type == "JobValidationError"
    assert "query.format: Field required" in failed.error.message


async def test_the_declared_query_parameters_are_listed_in_openapi(http_client_for: Any) -> None:
    """Each field is an ``in: query`` parameter with its schema, description and whether
    it is required; a list field is a repeated (exploded) parameter."""
    app = FastAPI()
    convert_app(app, InMemoryJobStore())
    async with http_client_for(app) as client:
        document = (await client.get("/openapi.json")).json()
    convert = document["paths"]["/convert"]["post"]["parameters"]
    query = {p["name"]: p for p in convert if p["in"] == "query"}
    assert set(query) == {"dpi", "pages", "lang"}
    assert query["dpi"]["required"] is False
    assert query["dpi"]["schema"]["minimum"] == 72 and query["dpi"]["schema"]["type"] == "integer"
    assert query["dpi"]["description"] == "Dots per inch of the images."
    assert query["pages"]["schema"]["type"] == "array" and query["pages"]["explode"] is True
    assert query["lang"]["schema"]["enum"] == ["en", "fr"]
    export = document["paths"]["/export"]["post"]["parameters"]
    (fmt,) = [p for p in export if p["in"] == "query"]
    assert fmt["name"] == "format" and fmt["required"] is True


class AliasedQuery(BaseModel):
    ids: list[int] = Field(default=[], validation_alias="id")
    sort: str = Field(default="name", validation_alias=AliasChoices("sort", "order"))
    tags: Sequence[str] = ()


async def test_aliases_and_sequences_read_the_keys_a_client_sends(http_client_for: Any) -> None:
    """A validation alias is the key read (an ``AliasChoices`` any of its keys), and a
    ``Sequence`` field takes every value of a repeated key, as a list does."""
    app = Starlette()
    endpoints = AsyncEndpoints(app)

    @endpoints.map_async_post("/search", name="Search", query=AliasedQuery)
    async def search(ctx: AsyncContext[None]) -> dict[str, Any]:
        return dict(ctx.query.model_dump(), tags=list(ctx.query.tags))

    async with http_client_for(app) as client:
        answer = await client.post("/search?id=1&id=2&order=date&tags=a&tags=b")
        job = await endpoints.wait_for(answer.json()["id"], timeout=10)
    assert job.result == {"ids": [1, 2], "sort": "date", "tags": ["a", "b"]}


def test_a_query_parameter_that_is_a_model_or_a_sensitive_alias_is_refused() -> None:
    """A field holding a model (or a list of models) can never come from a query string,
    and a validation alias naming a sensitive parameter would never be captured: both
    are refused when the route is mapped."""

    class Point(BaseModel):
        x: int

    class Nested(BaseModel):
        where: Point | None = None

    class Many(BaseModel):
        points: list[Point] = []

    class Hidden(BaseModel):
        code: str = Field(default="", validation_alias=AliasChoices("code", "token"))

    endpoints = AsyncEndpoints(Starlette())

    async def handle(ctx: AsyncContext[None]) -> None: ...

    for model in (Nested, Many):
        with pytest.raises(ConfigurationError, match="is a model: a query parameter holds"):
            endpoints.add_async_route("POST", "/n", handle, query=model)
    with pytest.raises(ConfigurationError, match="'token' of Hidden is one of sensitive"):
        endpoints.add_async_route("POST", "/h", handle, query=Hidden)
    assert endpoints.handlers == {}


def test_a_query_parameter_read_through_an_alias_path_is_refused() -> None:
    """An ``AliasPath`` reads inside a nested value, which a flat query string never
    holds: such a field would always be missing, so it is refused when the route is
    mapped (on its own or as one of an ``AliasChoices``)."""

    class Deep(BaseModel):
        page: int = Field(default=1, validation_alias=AliasPath("paging", "page"))

    class Either(BaseModel):
        page: int = Field(default=1, validation_alias=AliasChoices("page", AliasPath("p", 0)))

    endpoints = AsyncEndpoints(Starlette())

    async def handle(ctx: AsyncContext[None]) -> None: ...

    for model in (Deep, Either):
        with pytest.raises(ConfigurationError, match=r"'page' of \w+ reads a path"):
            endpoints.add_async_route("POST", "/d", handle, query=model)
    assert endpoints.handlers == {}
