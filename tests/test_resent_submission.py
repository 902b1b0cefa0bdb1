"""A submission whose store call was resent after its reply was lost (redis-py resends a
command once on a fresh connection): the first send stored the job, a worker may even
have finished it, and the resend finds its id taken. A fresh random id can only be this
very job, so the submission answers it: 202 (or the job from `submit`), never a 500 or a
`DuplicateJobError`. The resend is played by giving the second submission the id the
first one drew."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from async_endpoints import AsyncContext, AsyncEndpoints, InMemoryJobStore, JobStatus
from async_endpoints import _submission as submission_module
from async_endpoints_redis import RedisJobStore


class Order(BaseModel):
    item: str


def engine_on(store: Any) -> AsyncEndpoints:
    engine = AsyncEndpoints(FastAPI(), store=store)

    @engine.map_async_post("/orders")
    async def place(ctx: AsyncContext[Order]) -> str:
        return f"placed {ctx.request.item}"

    return engine


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, redis_server: Any, prefix: str) -> Any:
    if request.param == "redis":
        return RedisJobStore(redis_server.url, prefix=prefix)
    return InMemoryJobStore()


async def test_a_resent_post_of_a_job_already_finished_answers_202_with_that_job(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job the first send stored ran to Completed (keeping no request); the resend
    answers 202 with it, and nothing else is stored."""
    drawn = uuid.uuid4()
    monkeypatch.setattr(submission_module.uuid, "uuid4", lambda: drawn)
    engine = engine_on(store)
    transport = httpx.ASGITransport(app=engine.app)
    async with (
        engine.running(),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        first = await client.post("/orders", json={"item": "tea"})
        assert first.status_code == 202 and first.json()["id"] == str(drawn)
        done = await engine.wait_for(drawn, timeout=10)
        assert done.status is JobStatus.COMPLETED
        again = await client.post("/orders", json={"item": "tea"})
        assert again.status_code == 202, again.text
        assert again.json()["id"] == str(drawn) and again.json()["status"] == "Completed"
        resubmitted = await engine.submit("place", {"item": "tea"})
        assert resubmitted.id == drawn and resubmitted.status is JobStatus.COMPLETED
        stats = await engine.queue_stats()
    assert sum(s.queued + s.in_progress + s.completed for s in stats) == 1
