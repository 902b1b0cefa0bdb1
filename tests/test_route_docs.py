"""FastAPI's own route options on an async endpoint: ``dependencies`` run before anything
is stored, and ``tags``, ``summary``, ``description``, ``deprecated`` and
``include_in_schema`` shape its OpenAPI entry; a plain Starlette app refuses those it
cannot honour."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel
from starlette.applications import Starlette

from async_endpoints import AsyncContext, AsyncEndpoints, ConfigurationError


class Note(BaseModel):
    text: str


def require_key(x_api_key: str | None = Header(default=None)) -> None:
    if x_api_key != "right":
        raise HTTPException(status_code=403, detail="wrong key")


async def test_a_routes_dependencies_run_first_and_a_refusal_stores_nothing(
    http_client_for: Any,
) -> None:
    """dependencies=[Depends(...)]: a dependency raising HTTPException is the answer and
    no job is stored; one that passes lets the submission through (202)."""
    app = FastAPI()
    endpoints = AsyncEndpoints(app, run_workers=False)

    @endpoints.map_async_post("/notes", dependencies=[Depends(require_key)])
    async def take_note(ctx: AsyncContext[Note]) -> None: ...

    async with http_client_for(app) as client:
        refused = await client.post("/notes", json={"text": "hi"}, headers={"x-api-key": "no"})
        missing = await client.post("/notes", json={"text": "hi"})
        accepted = await client.post("/notes", json={"text": "hi"}, headers={"x-api-key": "right"})
    assert (refused.status_code, refused.json()) == (403, {"detail": "wrong key"})
    assert missing.status_code == 403
    assert accepted.status_code == 202
    jobs = (await endpoints.list_jobs()).jobs
    assert [str(job.id) for job in jobs] == [accepted.json()["id"]]


async def test_tags_summary_description_deprecated_and_include_in_schema_reach_openapi(
    http_client_for: Any,
) -> None:
    """The route's OpenAPI entry takes the options given (over the name's summary and the
    docstring); include_in_schema=False leaves the route out, and it still answers."""
    app = FastAPI()
    endpoints = AsyncEndpoints(app, run_workers=False)

    @endpoints.map_async_post(
        "/notes",
        tags=["notes"],
        summary="Take a note",
        description="Stores the note later.",
        deprecated=True,
    )
    async def take_note(ctx: AsyncContext[Note]) -> None:
        """Not this docstring."""

    @endpoints.map_async_post("/hidden", include_in_schema=False)
    async def hidden(ctx: AsyncContext[Note]) -> None: ...

    async with http_client_for(app) as client:
        document = (await client.get("/openapi.json")).json()
        still = await client.post("/hidden", json={"text": "x"})
    operation = document["paths"]["/notes"]["post"]
    assert operation["tags"] == ["notes"] and operation["deprecated"] is True
    assert operation["summary"] == "Take a note"
    assert operation["description"] == "Stores the note later."
    assert "/hidden" not in document["paths"] and still.status_code == 202


def test_options_only_fastapi_honours_are_refused_on_a_starlette_app() -> None:
    """A Starlette route has no dependencies nor FastAPI OpenAPI entry: those options are
    a ConfigurationError naming them, and nothing is registered; include_in_schema is
    Starlette's own and accepted."""
    app = Starlette()
    endpoints = AsyncEndpoints(app)

    async def take_note(ctx: AsyncContext[Note]) -> None: ...

    with pytest.raises(ConfigurationError, match="dependencies, tags need a FastAPI app"):
        endpoints.add_async_route(
            "POST", "/notes", take_note, tags=["x"], dependencies=[Depends(require_key)]
        )
    assert app.routes == [] and endpoints.handlers == {}
    endpoints.add_async_route("POST", "/notes", take_note, include_in_schema=False)
    assert [route.include_in_schema for route in app.routes] == [False]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("option", "value"),
    [("tags", "notes"), ("summary", 3), ("deprecated", "yes"), ("dependencies", Depends)],
)
def test_a_wrongly_typed_route_option_is_refused_naming_it(option: str, value: Any) -> None:
    """tags must be a list of str, summary a str, deprecated a bool, dependencies a list."""
    endpoints = AsyncEndpoints(FastAPI())

    async def take_note(ctx: AsyncContext[Note]) -> None: ...

    with pytest.raises(ConfigurationError, match=f"{option} must be"):
        endpoints.add_async_route("POST", "/notes", take_note, **{option: value})


async def test_a_route_on_an_apirouter_takes_its_prefix_tags_and_dependencies(
    http_client_for: Any,
) -> None:
    """router=APIRouter(prefix=..., tags=..., dependencies=...): once the app includes
    the router, the async endpoint answers under its prefix, behind its dependencies, and
    is listed under its tags; the job's Location still leads to the job."""
    app = FastAPI()
    endpoints = AsyncEndpoints(app, run_workers=False)
    router = APIRouter(prefix="/api/v1", tags=["notes"], dependencies=[Depends(require_key)])

    @endpoints.map_async_post("/notes", router=router)
    async def take_note(ctx: AsyncContext[Note]) -> None: ...

    app.include_router(router)
    endpoints.map_job_details()
    async with http_client_for(app) as client:
        refused = await client.post("/api/v1/notes", json={"text": "hi"})
        accepted = await client.post(
            "/api/v1/notes", json={"text": "hi"}, headers={"x-api-key": "right"}
        )
        job = await client.get(accepted.headers["location"])
        document = (await client.get("/openapi.json")).json()
    assert refused.status_code == 403 and accepted.status_code == 202
    assert job.json()["name"] == "take_note"
    assert document["paths"]["/api/v1/notes"]["post"]["tags"] == ["notes"]
    body = document["paths"]["/api/v1/notes"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/Note"}
    assert set(document["components"]["schemas"]["Note"]["properties"]) == {"text"}
    assert "/notes" not in document["paths"]


def test_a_router_that_is_not_an_apirouter_or_on_a_starlette_app_is_refused() -> None:
    """router must be a FastAPI APIRouter, on a FastAPI app; nothing is registered."""

    async def take_note(ctx: AsyncContext[Note]) -> None: ...

    fastapi_endpoints = AsyncEndpoints(FastAPI())
    with pytest.raises(ConfigurationError, match="router must be a FastAPI APIRouter"):
        fastapi_endpoints.add_async_route("POST", "/n", take_note, router=FastAPI())
    starlette_endpoints = AsyncEndpoints(Starlette())
    with pytest.raises(ConfigurationError, match="router needs a FastAPI app"):
        starlette_endpoints.add_async_route("POST", "/n", take_note, router=APIRouter())
    assert fastapi_endpoints.handlers == starlette_endpoints.handlers == {}


async def test_a_parameter_a_dependency_reads_too_is_listed_once(http_client_for: Any) -> None:
    """A route dependency reading the path's parameter, and an app dependency reading the
    Prefer header the library documents: each parameter is listed once per operation
    (OpenAPI forbids repeats), the dependency's own entry kept."""

    def tenant_known(tenant: str) -> None:
        return None

    def prefer_seen(prefer: str | None = Header(default=None)) -> None:
        return None

    app = FastAPI(dependencies=[Depends(prefer_seen)])
    endpoints = AsyncEndpoints(app, run_workers=False)

    @endpoints.map_async_post("/tenants/{tenant}/notes", dependencies=[Depends(tenant_known)])
    async def take_note(ctx: AsyncContext[Note]) -> None: ...

    async with http_client_for(app) as client:
        document = (await client.get("/openapi.json")).json()
        again = (await client.get("/openapi.json")).json()
    parameters = document["paths"]["/tenants/{tenant}/notes"]["post"]["parameters"]
    places = [(p["name"].lower(), p["in"]) for p in parameters]
    assert len(places) == len(set(places)), places
    assert ("tenant", "path") in places and ("prefer", "header") in places
    assert ("idempotency-key", "header") in places
    assert again == document


async def _scale(ctx: AsyncContext[int], factor: int = 1) -> int:
    """Scale the number."""
    return (ctx.request or 0) * factor


def test_a_partial_handlers_route_is_documented_by_its_functions_docstring() -> None:
    """A route whose handler is a ``functools.partial`` shows the wrapped function's
    docstring, not the one ``functools.partial`` has of its own."""
    import functools

    app = FastAPI()
    endpoints = AsyncEndpoints(app, run_workers=False)
    endpoints.add_async_post("/triple", functools.partial(_scale, factor=3), name="Triple")
    operation = app.openapi()["paths"]["/triple"]["post"]
    assert operation["description"] == "Scale the number."
