"""An app's own handlers for ``RequestValidationError`` and ``HTTPException`` shape the
library's refusals too, as they shape the app's own routes' errors; without them (or with
FastAPI's defaults) the library answers itself, in FastAPI's shape. A refused submission
stores nothing either way."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from async_endpoints import AsyncContext, AsyncEndpoints, InMemoryJobStore


class Order(BaseModel):
    quantity: int


async def on_invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"problem": "invalid", "fields": len(exc.errors())}, 422)


async def on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse({"problem": exc.detail}, exc.status_code, headers=exc.headers)


def app_with(app: Starlette) -> tuple[Starlette, AsyncEndpoints]:
    endpoints = AsyncEndpoints(app, store=InMemoryJobStore(), run_workers=False)

    @endpoints.map_async_post("/orders", name="Order")
    async def order(ctx: AsyncContext[Order]) -> int:
        return ctx.request.quantity

    endpoints.map_job_details()
    endpoints.map_job_cancel()
    endpoints.map_job_events()
    endpoints.map_batch_details()
    return app, endpoints


@pytest.mark.parametrize("handler_class", [HTTPException, StarletteHTTPException])
async def test_the_apps_handlers_answer_the_librarys_refusals(
    http_client_for, handler_class: type[Exception]
) -> None:
    app = FastAPI()
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(handler_class, on_http)
    app, endpoints = app_with(app)
    unknown = uuid.uuid4()
    async with http_client_for(app) as client:
        invalid = await client.post("/orders", json={"quantity": "many"})
        not_json = await client.post("/orders", content="x", headers={"content-type": "text/plain"})
        bad_key = await client.post(
            "/orders", json={"quantity": 1}, headers={"Idempotency-Key": ""}
        )
        missing = [
            await client.get(f"/jobs/{unknown}"),
            await client.post(f"/jobs/{unknown}/cancel"),
            await client.get(f"/jobs/{unknown}/events"),
            await client.get(f"/batches/{unknown}"),
        ]
        job_id = (await endpoints.submit("Order", {"quantity": 1})).id
        await endpoints.cancel(job_id)
        again = await client.post(f"/jobs/{job_id}/cancel")
        stored = await endpoints.list_jobs()
    assert (invalid.status_code, invalid.json()) == (422, {"problem": "invalid", "fields": 1})
    assert (not_json.status_code, not_json.json()["problem"]) == (
        415,
        "expected a JSON body (application/json)",
    )
    assert bad_key.status_code == 400 and "Idempotency-Key" in bad_key.json()["problem"]
    assert [(m.status_code, m.json()) for m in missing] == [
        (404, {"problem": "job not found"}),
        (404, {"problem": "job not found"}),
        (404, {"problem": "job not found"}),
        (404, {"problem": "batch not found"}),
    ]
    assert again.status_code == 409 and "Canceled already" in again.json()["problem"]
    assert [job.id for job in stored.jobs] == [job_id]  # the refused POSTs stored nothing


@pytest.mark.parametrize("kind", ["fastapi-defaults", "starlette"])
async def test_without_handlers_of_its_own_the_library_answers_in_fastapis_shape(
    http_client_for, kind: str
) -> None:
    app, _ = app_with(FastAPI() if kind == "fastapi-defaults" else Starlette())
    async with http_client_for(app) as client:
        invalid = await client.post("/orders", json={"quantity": "many"})
        missing = await client.get(f"/jobs/{uuid.uuid4()}")
    assert invalid.status_code == 422 and invalid.json()["detail"][0]["loc"][-1] == "quantity"
    assert (missing.status_code, missing.json()) == (404, {"detail": "job not found"})


async def test_a_starlette_apps_own_http_exception_handler_answers_too(http_client_for) -> None:
    app = Starlette(exception_handlers={StarletteHTTPException: on_http})
    app, _ = app_with(app)
    async with http_client_for(app) as client:
        missing: Any = await client.get(f"/jobs/{uuid.uuid4()}")
    assert (missing.status_code, missing.json()) == (404, {"problem": "job not found"})


async def report_anything(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"reported": type(exc).__name__}, 500)


@pytest.mark.parametrize("kind", ["fastapi", "starlette"])
async def test_a_catch_all_exception_handler_is_no_handler_of_refusals(
    http_client_for, kind: str
) -> None:
    """An error-reporting handler for ``Exception`` leaves the library's refusals as they
    were (JSON), not plain text nor a 500."""
    made = FastAPI() if kind == "fastapi" else Starlette()
    made.add_exception_handler(Exception, report_anything)
    app, _ = app_with(made)
    async with http_client_for(app) as client:
        invalid = await client.post("/orders", json={"quantity": "many"})
        missing = await client.get(f"/jobs/{uuid.uuid4()}")
    assert invalid.status_code == 422 and invalid.json()["detail"][0]["loc"][-1] == "quantity"
    assert (missing.status_code, missing.json()) == (404, {"detail": "job not found"})


async def test_an_idempotency_key_used_for_another_body_reaches_the_apps_handler(
    http_client_for,
) -> None:
    app = FastAPI()
    app.add_exception_handler(HTTPException, on_http)
    app, _ = app_with(app)
    key = {"Idempotency-Key": "k-1"}
    async with http_client_for(app) as client:
        first = await client.post("/orders", json={"quantity": 1}, headers=key)
        other = await client.post("/orders", json={"quantity": 2}, headers=key)
    assert first.status_code == 202
    assert other.status_code == 422 and "problem" in other.json()
