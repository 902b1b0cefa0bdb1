"""GET job details: the job JSON for known ids, 404 for anything else, hooks that replace it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from async_endpoints import AsyncContext, AsyncEndpoints, Job, JobStatus
from tests.wire import JOB_FIELDS


class Order(BaseModel):
    item: str
    quantity: int = 1


@pytest.fixture(params=[FastAPI, Starlette], ids=["fastapi", "starlette"])
def app(request: pytest.FixtureRequest) -> Starlette:
    """A fresh, empty app: every rule here holds for FastAPI and for plain Starlette."""
    app_class: type[Starlette] = request.param
    return app_class()


def order_app(app: Starlette, **settings: Any) -> AsyncEndpoints:
    """``POST /orders`` (a handler totalling the order) and ``GET /jobs/{job_id}``."""
    endpoints = AsyncEndpoints(app, **settings)

    @endpoints.map_async_post("/orders", name="PlaceOrder")
    async def place_order(ctx: AsyncContext[Order]) -> dict[str, Any]:
        return {"item": ctx.request.item, "total": ctx.request.quantity * 3}

    endpoints.map_job_details("/jobs/{job_id}")
    return endpoints


async def test_a_known_id_answers_200_with_the_job_json(app, http_client_for) -> None:
    """GET /jobs/{id} of a submitted job answers 200 and the same job JSON the 202 had."""
    order_app(app, run_workers=False)
    async with http_client_for(app) as client:
        submitted = (await client.post("/orders", json={"item": "tea"})).json()
        response = await client.get(f"/jobs/{submitted['id']}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert set(response.json()) == JOB_FIELDS and response.json() == submitted


async def test_head_answers_as_get_does_and_stays_out_of_the_openapi_document(
    app, http_client_for
) -> None:
    """HEAD /jobs/{id} (``curl -I``, an uptime probe): the GET's status and headers, on
    FastAPI as on Starlette; FastAPI's OpenAPI document lists GET only."""
    order_app(app, run_workers=False)
    async with http_client_for(app) as client:
        submitted = (await client.post("/orders", json={"item": "tea"})).json()
        known = await client.head(f"/jobs/{submitted['id']}")
        unknown = await client.head(f"/jobs/{uuid.uuid4()}")
    assert known.status_code == 200
    assert known.headers["content-type"].startswith("application/json")
    assert unknown.status_code == 404
    if isinstance(app, FastAPI):
        assert list(app.openapi()["paths"]["/jobs/{job_id}"]) == ["get"]


async def test_an_unknown_uuid_answers_404_with_a_json_error(app, http_client_for) -> None:
    """A well-formed id that names no job answers 404 with a JSON error."""
    order_app(app, run_workers=False)
    async with http_client_for(app) as client:
        response = await client.get(f"/jobs/{uuid.uuid4()}")
    assert response.status_code == 404 and "detail" in response.json()


@pytest.mark.parametrize(
    "job_id",
    [
        "not-a-uuid",
        "12345",
        "x" * 10_000,
        "1" * 10_000,
        "..%2F..",
        "..%2F..%2Fetc%2Fpasswd",
        "%2E%2E",
        "%00",
        "%C3%A9t%C3%A9",
        f"{uuid.UUID('3f1d9a52-8c4e-4f0b-9d6a-2b7e5c1a9f03')}extra",
    ],
    ids=lambda job_id: job_id[:24],
)
async def test_a_malformed_id_answers_404_or_422_never_500(
    app, http_client_for, job_id: str
) -> None:
    """Ids that are not UUIDs (long, traversal-like, odd bytes) answer 404 or 422."""
    order_app(app, run_workers=False)
    async with http_client_for(app) as client:
        response = await client.get(f"/jobs/{job_id}")
    assert response.status_code in {404, 422}


async def test_a_completed_job_shows_its_result_and_completed_at(app, http_client_for) -> None:
    """Once Completed, the job JSON carries the handler's result and completedAt (in Z)."""
    endpoints = order_app(app)
    async with http_client_for(app) as client:
        submitted = (await client.post("/orders", json={"item": "tea", "quantity": 2})).json()
        await endpoints.wait_for(submitted["id"], timeout=5)
        job = (await client.get(f"/jobs/{submitted['id']}")).json()
    assert job["status"] == "Completed" and job["result"] == {"item": "tea", "total": 6}
    assert job["completedAt"].endswith("Z") and job["startedAt"].endswith("Z")
    assert job["error"] is None


async def test_a_failed_job_shows_message_and_type_but_no_traceback(app, http_client_for) -> None:
    """A Failed job's error is exactly {message, type}; no stack trace is shown by default."""
    endpoints = AsyncEndpoints(app, max_retries=0)

    @endpoints.map_async_post("/orders", name="PlaceOrder")
    async def place_order(ctx: AsyncContext[Order]) -> None:
        raise LookupError(f"no stock of {ctx.request.item}")

    endpoints.map_job_details("/jobs/{job_id}")
    async with http_client_for(app) as client:
        submitted = (await client.post("/orders", json={"item": "tea"})).json()
        await endpoints.wait_for(submitted["id"], timeout=5)
        response = await client.get(f"/jobs/{submitted['id']}")
    job = response.json()
    assert job["status"] == "Failed" and job["retryCount"] == 0 and job["maxRetries"] == 0
    assert job["error"] == {"message": "no stock of tea", "type": "LookupError"}
    assert "traceback" not in response.text.lower() and 'File "' not in response.text


# --- the authorize hook --------------------------------------------------------------------


def owner_only_sync(request: Request, job: Job) -> bool:
    return request.headers.get("x-user") == "owner"


async def owner_only_async(request: Request, job: Job) -> bool:
    return owner_only_sync(request, job)


@pytest.mark.parametrize("authorize", [owner_only_sync, owner_only_async], ids=["sync", "async"])
async def test_authorize_false_answers_exactly_like_an_unknown_id(
    app, http_client_for, authorize: Any
) -> None:
    """A job the caller may not see answers the very 404 an unknown id gets."""
    order_app(app, run_workers=False, authorize=authorize)
    async with http_client_for(app) as client:
        submitted = (await client.post("/orders", json={"item": "tea"})).json()
        hidden = await client.get(f"/jobs/{submitted['id']}", headers={"x-user": "intruder"})
        unknown = await client.get(f"/jobs/{uuid.uuid4()}", headers={"x-user": "owner"})
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.content == unknown.content
    assert hidden.headers["content-type"] == unknown.headers["content-type"]


@pytest.mark.parametrize("authorize", [owner_only_sync, owner_only_async], ids=["sync", "async"])
async def test_authorize_true_shows_the_job(app, http_client_for, authorize: Any) -> None:
    """A job the caller may see answers 200 with its JSON."""
    order_app(app, run_workers=False, authorize=authorize)
    async with http_client_for(app) as client:
        submitted = (await client.post("/orders", json={"item": "tea"})).json()
        response = await client.get(f"/jobs/{submitted['id']}", headers={"x-user": "owner"})
    assert response.status_code == 200 and response.json() == submitted


async def test_authorize_receives_the_request_and_the_job(app, http_client_for) -> None:
    """authorize(request, job): the Starlette request and the stored Job."""
    calls: list[tuple[Request, Job]] = []

    def authorize(request: Request, job: Job) -> bool:
        calls.append((request, job))
        return True

    order_app(app, run_workers=False, authorize=authorize)
    async with http_client_for(app) as client:
        submitted = (await client.post("/orders", json={"item": "tea"})).json()
        await client.get(f"/jobs/{submitted['id']}")
    ((request, job),) = calls
    assert isinstance(request, Request) and request.url.path == f"/jobs/{submitted['id']}"
    assert isinstance(job, Job) and str(job.id) == submitted["id"]


# --- the job_status_response factory -------------------------------------------------------


def status_sync(job: Job | None, request: Request) -> Response:
    if job is None:
        return JSONResponse({"found": False}, 404, headers={"X-Custom": "yes"})
    return JSONResponse({"found": True, "state": job.status.value}, headers={"X-Custom": "yes"})


async def status_async(job: Job | None, request: Request) -> Response:
    return status_sync(job, request)


@pytest.mark.parametrize("factory", [status_sync, status_async], ids=["sync", "async"])
async def test_job_status_response_replaces_the_job_details_response(
    app, http_client_for, factory: Any
) -> None:
    """The factory's Response is sent for known ids and, given None, for unknown ones."""
    order_app(app, run_workers=False, job_status_response=factory)
    async with http_client_for(app) as client:
        submitted = (await client.post("/orders", json={"item": "tea"})).json()
        known = await client.get(f"/jobs/{submitted['id']}")
        unknown = await client.get(f"/jobs/{uuid.uuid4()}")
        malformed = await client.get("/jobs/not-a-uuid")
    assert (known.status_code, known.json()) == (200, {"found": True, "state": "Queued"})
    assert (unknown.status_code, unknown.json()) == (404, {"found": False})
    assert (malformed.status_code, malformed.json()) == (404, {"found": False})
    assert known.headers["x-custom"] == unknown.headers["x-custom"] == "yes"


async def test_job_status_response_gets_none_for_a_job_authorize_hides(
    app, http_client_for
) -> None:
    """A hidden job reaches the factory as None, exactly like an unknown id."""
    seen: list[Job | None] = []

    def factory(job: Job | None, request: Request) -> Response:
        seen.append(job)
        return JSONResponse({"visible": job is not None})

    order_app(
        app, run_workers=False, authorize=lambda request, job: False, job_status_response=factory
    )
    async with http_client_for(app) as client:
        submitted = (await client.post("/orders", json={"item": "tea"})).json()
        response = await client.get(f"/jobs/{submitted['id']}")
    assert seen == [None] and response.json() == {"visible": False}


# --- what the job JSON never shows ---------------------------------------------------------


async def test_the_job_json_never_contains_the_captured_headers(app, http_client_for) -> None:
    """Captured headers stay with the job for its handler; neither 202 nor GET shows them."""
    endpoints = order_app(app, run_workers=False)
    headers = {"x-tenant": "tenant-marker-7f3a"}
    async with http_client_for(app) as client:
        submitted = await client.post("/orders", json={"item": "tea"}, headers=headers)
        details = await client.get(f"/jobs/{submitted.json()['id']}")
        stored = await endpoints.get_job(submitted.json()["id"])
    assert stored is not None and ("x-tenant", "tenant-marker-7f3a") in stored.request.headers
    for response in (submitted, details):
        assert set(response.json()) == JOB_FIELDS
        assert "tenant-marker-7f3a" not in response.text and "x-tenant" not in response.text


async def test_job_details_follow_the_job_to_its_terminal_status(app, http_client_for) -> None:
    """The GET answer tracks the store: Queued before the job runs, Completed after."""
    endpoints = order_app(app, run_workers=False)
    async with http_client_for(app) as client:
        submitted = (await client.post("/orders", json={"item": "tea"})).json()
        before = (await client.get(f"/jobs/{submitted['id']}")).json()
        await endpoints.drain()
        after = (await client.get(f"/jobs/{submitted['id']}")).json()
    assert before["status"] == JobStatus.QUEUED and after["status"] == JobStatus.COMPLETED
    assert after["createdAt"] == before["createdAt"] and after["id"] == before["id"]
