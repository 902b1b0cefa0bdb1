"""POST /jobs/{job_id}/cancel: 200 once Canceled, 409 when terminal, 404 like job details."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request

from async_endpoints import AsyncContext, AsyncEndpoints, ConfigurationError, JobStore
from tests.hanging import hangs_until_cancelled
from tests.wire import JOB_FIELDS


class Order(BaseModel):
    item: str


def cancel_app(app: Starlette, **settings: Any) -> AsyncEndpoints:
    """``POST /orders``, ``GET /jobs/{job_id}`` and ``POST /jobs/{job_id}/cancel``."""
    endpoints = AsyncEndpoints(app, **settings)

    @endpoints.map_async_post("/orders", name="PlaceOrder")
    async def place_order(ctx: AsyncContext[Order]) -> str:
        return ctx.request.item

    endpoints.map_job_details()
    endpoints.map_job_cancel()
    return endpoints


async def test_cancelling_a_queued_job_answers_200_with_the_canceled_job(
    app: Starlette, store: JobStore, http_client_for
) -> None:
    """200 and the job JSON with status Canceled; job details agree."""
    cancel_app(app, store=store, run_workers=False)
    async with http_client_for(app) as client:
        job = (await client.post("/orders", json={"item": "tea"})).json()
        response = await client.post(f"/jobs/{job['id']}/cancel")
        details = (await client.get(f"/jobs/{job['id']}")).json()
    assert response.status_code == 200 and set(response.json()) == JOB_FIELDS
    assert response.json()["status"] == "Canceled" and response.json()["completedAt"]
    assert details == response.json()


async def test_cancelling_a_terminal_job_answers_409_and_changes_nothing(
    app: Starlette, store: JobStore, http_client_for
) -> None:
    """A second cancel, or a cancel of a Completed job: 409 with a JSON error."""
    endpoints = cancel_app(app, store=store, run_workers=False)
    async with http_client_for(app) as client:
        canceled = (await client.post("/orders", json={"item": "a"})).json()
        await client.post(f"/jobs/{canceled['id']}/cancel")
        again = await client.post(f"/jobs/{canceled['id']}/cancel")
        completed = (await client.post("/orders", json={"item": "b"})).json()
        await endpoints.drain()
        too_late = await client.post(f"/jobs/{completed['id']}/cancel")
        still = (await client.get(f"/jobs/{completed['id']}")).json()
    assert again.status_code == 409 and "Canceled" in again.json()["detail"]
    assert too_late.status_code == 409 and "Completed" in too_late.json()["detail"]
    assert still["status"] == "Completed" and still["result"] == "b"


async def test_concurrent_cancels_answer_200_once_and_409_to_the_others(
    app: Starlette, store: JobStore, http_client_for
) -> None:
    """Three cancels of one job at once: the one that cancelled it answers 200, the
    others 409 (the job was Canceled already when they reached the store), and the
    cancelled event is emitted once."""
    endpoints = cancel_app(app, store=store, run_workers=False)
    heard: list[Any] = []
    endpoints.events.subscribe(heard.append)
    async with http_client_for(app) as client:
        job = (await client.post("/orders", json={"item": "tea"})).json()
        answers = await asyncio.gather(
            *(client.post(f"/jobs/{job['id']}/cancel") for _ in range(3))
        )
    assert sorted(answer.status_code for answer in answers) == [200, 409, 409]
    assert [event.kind.value for event in heard].count("cancelled") == 1


@pytest.mark.parametrize(
    "job_id",
    [str(uuid.UUID("3f1d9a52-8c4e-4f0b-9d6a-2b7e5c1a9f03")), "not-a-uuid", "1" * 5000, "%00"],
)
async def test_cancelling_an_unknown_id_answers_404(
    app: Starlette, http_client_for, job_id: str
) -> None:
    """Unknown ids and non-UUIDs: 404 with a JSON error, never a 500."""
    cancel_app(app, run_workers=False)
    async with http_client_for(app) as client:
        response = await client.post(f"/jobs/{job_id}/cancel")
    assert response.status_code == 404 and "detail" in response.json()


async def test_a_job_authorize_refuses_answers_404_and_is_not_cancelled(
    app: Starlette, http_client_for
) -> None:
    """authorize guards cancel as it guards details: Bob's cancel of Alice's job is the
    very 404 an unknown id gets, and the job is still Queued; Alice's works."""

    def authorize(request: Request, job: Any) -> bool:
        return job.owner == request.headers.get("x-user")

    endpoints = cancel_app(
        app,
        run_workers=False,
        owner=lambda request: request.headers.get("x-user"),
        authorize=authorize,
    )
    async with http_client_for(app) as client:
        alice, bob = {"x-user": "alice"}, {"x-user": "bob"}
        job = (await client.post("/orders", json={"item": "tea"}, headers=alice)).json()
        by_bob = await client.post(f"/jobs/{job['id']}/cancel", headers=bob)
        unknown = await client.post(f"/jobs/{uuid.uuid4()}/cancel", headers=bob)
        still_queued = await endpoints.get_job(job["id"])
        by_alice = await client.post(f"/jobs/{job['id']}/cancel", headers=alice)
    assert (by_bob.status_code, by_bob.content) == (404, unknown.content)
    assert still_queued.status.value == "Queued"
    assert by_alice.status_code == 200 and by_alice.json()["status"] == "Canceled"


async def test_cancelling_a_running_job_over_http_cancels_its_handler(
    app: Starlette, store: JobStore, http_client_for
) -> None:
    """The running handler sees CancelledError (pushed by the store, long before a lease
    renewal would find the claim lost); the answer is 200 Canceled."""
    endpoints = AsyncEndpoints(app, store=store, polling_interval=60.0, claim_timeout=60.0)
    started, cancelled = asyncio.Event(), asyncio.Event()

    endpoints.map_async_post("/slow", name="Slow")(hangs_until_cancelled(started, cancelled))
    endpoints.map_job_cancel("/slow/{job_id}/cancel")
    async with http_client_for(app) as client:
        job = (await client.post("/slow")).json()
        async with asyncio.timeout(5):
            await started.wait()
        response = await client.post(f"/slow/{job['id']}/cancel")
        async with asyncio.timeout(5):
            await cancelled.wait()
    assert response.status_code == 200 and response.json()["status"] == "Canceled"


def test_the_cancel_path_must_hold_the_job_id() -> None:
    """A path without {job_id}, or without a leading /, is a ConfigurationError."""
    endpoints = AsyncEndpoints(FastAPI())
    for path in ("/jobs/cancel", "jobs/{job_id}/cancel"):
        with pytest.raises(ConfigurationError, match="job_id"):
            endpoints.map_job_cancel(path)


async def test_the_cancel_route_is_in_the_openapi_document(http_client_for) -> None:
    """FastAPI lists POST /jobs/{job_id}/cancel: 200 with the job schema, 404, 409."""
    app = FastAPI()
    cancel_app(app, run_workers=False)
    async with http_client_for(app) as client:
        document = (await client.get("/openapi.json")).json()
    operation = document["paths"]["/jobs/{job_id}/cancel"]["post"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/JobModel"}
    assert {"404", "409"} <= set(operation["responses"])
    assert [p["name"] for p in operation["parameters"]] == ["job_id"]


@pytest.mark.parametrize("convertor", ["uuid", "str"])
def test_a_job_id_with_a_convertor_is_refused_saying_to_leave_it_out(convertor: str) -> None:
    """``{job_id:uuid}`` holds the job id, but with a convertor of the app's: the error
    says the library reads and checks the id itself (it said only "must hold
    {job_id}", which the path seemed to)."""
    endpoints = AsyncEndpoints(FastAPI())
    path = f"/jobs/{{job_id:{convertor}}}"
    for mapping in (endpoints.map_job_details, endpoints.map_job_cancel):
        with pytest.raises(ConfigurationError, match="no convertor") as refused:
            mapping(path)
        assert repr(path) in str(refused.value)
