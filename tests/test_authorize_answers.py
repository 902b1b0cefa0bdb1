"""Only ``True`` from an ``authorize`` hook lets a caller in: a truthy value that is not a
bool (a ``Response`` returned as a validator returns one, a string) is a refusal, the same
404 as for an unknown id, on every route the hook guards, and the first such answer of a
hook is logged."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse

from async_endpoints import AsyncContext, AsyncEndpoints, InMemoryJobStore, Job, JobSpec, _authorize

TRUTHY_MISTAKES = [
    JSONResponse({"detail": "forbidden"}, status_code=403),
    "no",
    1,
    ["nope"],
]


@pytest.fixture(autouse=True)
def forget_told_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_authorize, "_told", set())


def guarded_app(answer: Any) -> tuple[FastAPI, AsyncEndpoints]:
    """POST /secret, the job, events, cancel and batch routes; ``authorize`` answers
    True for the owner and ``answer`` for anyone else."""

    def authorize(request: Request, subject: Any) -> Any:
        return True if request.headers.get("x-user") == "owner" else answer

    app = FastAPI()
    endpoints = AsyncEndpoints(
        app, store=InMemoryJobStore(), run_workers=False, authorize=authorize
    )

    @endpoints.map_async_post("/secret", name="Secret")
    async def secret(ctx: AsyncContext[None]) -> str:
        return "top secret"

    endpoints.map_job_details()
    endpoints.map_job_events()
    endpoints.map_job_cancel()
    endpoints.map_batch_details(authorize=authorize)
    return app, endpoints


@pytest.mark.parametrize("answer", TRUTHY_MISTAKES, ids=lambda a: type(a).__name__)
async def test_a_truthy_answer_that_is_not_true_refuses_as_an_unknown_id(
    http_client_for, answer: Any
) -> None:
    app, endpoints = guarded_app(answer)
    async with http_client_for(app) as client:
        job = (await client.post("/secret", headers={"x-user": "owner"})).json()
        batch = await endpoints.submit_batch([JobSpec("Secret")])
        intruder = {"x-user": "intruder"}
        unknown = await client.get(f"/jobs/{uuid.uuid4()}", headers=intruder)
        refused = [
            await client.get(f"/jobs/{job['id']}", headers=intruder),
            await client.get(f"/jobs/{job['id']}/events", headers=intruder),
            await client.post(f"/jobs/{job['id']}/cancel", headers=intruder),
        ]
        batch_refused = await client.get(f"/batches/{batch.id}", headers=intruder)
        batch_unknown = await client.get(f"/batches/{uuid.uuid4()}", headers=intruder)
        shown = await client.get(f"/jobs/{job['id']}", headers={"x-user": "owner"})
        still = await endpoints.get_job(uuid.UUID(job["id"]))
    for answer_got in refused:
        assert answer_got.status_code == 404
        assert answer_got.json() == unknown.json()
    assert batch_refused.status_code == 404 and batch_refused.json() == batch_unknown.json()
    assert shown.status_code == 200 and shown.json()["id"] == job["id"]
    assert isinstance(still, Job) and still.status.value == "Queued"  # the cancel was refused


async def test_a_hooks_first_answer_that_is_not_a_bool_is_logged_once(
    http_client_for, caplog: pytest.LogCaptureFixture
) -> None:
    app, _ = guarded_app(JSONResponse({}, status_code=403))
    async with http_client_for(app) as client:
        job = (await client.post("/secret", headers={"x-user": "owner"})).json()
        with caplog.at_level("WARNING", logger="async_endpoints"):
            for _ in range(3):
                await client.get(f"/jobs/{job['id']}", headers={"x-user": "intruder"})
    told = [r.getMessage() for r in caplog.records if "not a bool" in r.getMessage()]
    assert told == [
        "the authorize setting returned JSONResponse, not a bool: taken as a refusal "
        "(only True lets a caller in)"
    ]


async def test_false_refuses_without_a_word_in_the_log(
    http_client_for, caplog: pytest.LogCaptureFixture
) -> None:
    app, _ = guarded_app(False)
    async with http_client_for(app) as client:
        job = (await client.post("/secret", headers={"x-user": "owner"})).json()
        with caplog.at_level("WARNING", logger="async_endpoints"):
            hidden = await client.get(f"/jobs/{job['id']}", headers={"x-user": "intruder"})
    assert hidden.status_code == 404
    assert not [r for r in caplog.records if "not a bool" in r.getMessage()]
