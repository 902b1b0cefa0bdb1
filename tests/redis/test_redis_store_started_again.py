"""A Redis store closed (by its app's shutdown) starts again: an app whose lifespan runs
more than once, as Starlette's ``TestClient`` runs it once per ``with`` block (each time
in an event loop of its own), finds its store working, its jobs kept."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel
from redis.asyncio import Redis

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    Claim,
    JobStatus,
    JobStoreError,
    NewJob,
)
from async_endpoints_redis import RedisJobStore
from async_endpoints_redis._shard_store import ShardedRedisJobStore
from tests import redis_servers
from tests.redis.conftest import StoreFactory


async def claim_of(store: RedisJobStore, job_id: uuid.UUID) -> Claim:
    """The claim of ``job_id`` (a sharded store may look at another shard first)."""
    async with asyncio.timeout(10):
        while True:
            for claim in await store.claim(10, lease=60):
                if claim.job.id == job_id:
                    return claim
            await store.wait_for_work(0.2)


@pytest.mark.parametrize("shards", [1, 3])
async def test_a_closed_store_started_again_serves_its_jobs_and_tells_its_cancels(
    make_store: StoreFactory, shards: int
) -> None:
    store = await make_store(shards=shards)
    heard: asyncio.Queue[uuid.UUID] = asyncio.Queue()
    store.add_claim_cancel_listener(lambda job_id, token: heard.put_nowait(job_id))
    kept = await store.enqueue(NewJob(uuid.uuid4(), "work", 0))
    await store.aclose()
    with pytest.raises(JobStoreError, match="the store is closed"):
        await store.get(kept.id)  # only a start opens it again
    await store.start()
    found = await store.get(kept.id)
    assert found is not None and found.status is JobStatus.QUEUED
    await claim_of(store, kept.id)
    await store.cancel(kept.id)  # its push reaches the listener given before the close
    async with asyncio.timeout(10):
        assert await heard.get() == kept.id


@pytest.mark.parametrize("shards", [1, 3])
async def test_a_store_given_a_client_uses_it_again_and_warns_of_the_server_once(
    redis_server: redis_servers.RedisServer,
    prefix: str,
    shards: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A store given ``client=`` is made anew on that same client (never closed by the
    store), and the warning about the server's settings (this test server keeps no
    persistence) is given at its first start only."""
    client = Redis.from_url(redis_server.url)
    try:
        store = RedisJobStore(client=client, prefix=prefix, shards=shards)
        with caplog.at_level(logging.WARNING, logger="async_endpoints_redis"):
            await store.start()
            kept = await store.enqueue(NewJob(uuid.uuid4(), "work", 0))
            await store.aclose()
            await store.start()
            found = await store.get(kept.id)
            await store.aclose()
        assert found is not None and found.status is JobStatus.QUEUED
        assert await client.ping()  # still open: the store never closed it
        warnings = [r for r in caplog.records if "persistence is off" in r.getMessage()]
        assert len(warnings) == 1
    finally:
        await client.aclose()


async def test_a_plain_store_serving_old_shards_is_made_anew_the_same_way(
    make_store: StoreFactory,
) -> None:
    """A plain store that found another shard count recorded serves those shards too
    (`become_sharded`); started again, it reads the counts again and does the same."""
    await make_store(shards=3)  # records 3 in use
    plain = await make_store()
    assert type(plain) is ShardedRedisJobStore
    kept = await plain.enqueue(NewJob(uuid.uuid4(), "work", 0))
    await plain.aclose()
    await plain.start()
    assert type(plain) is ShardedRedisJobStore
    found = await plain.get(kept.id)
    assert found is not None and found.status is JobStatus.QUEUED


class Text(BaseModel):
    text: str


def echo_app(url: str, prefix: str, shards: int) -> tuple[FastAPI, AsyncEndpoints]:
    """An app made once, as at import time: ``POST /echo`` answers the text it was sent,
    job details at ``/jobs/{job_id}``, its Redis store given a URL."""
    app = FastAPI()
    store = RedisJobStore(url, prefix=prefix, shards=shards)
    endpoints = AsyncEndpoints(app, store=store)

    @endpoints.map_async_post("/echo")
    async def echo(ctx: AsyncContext[Text]) -> str:
        return ctx.request.text

    endpoints.map_job_details()
    return app, endpoints


@pytest.mark.parametrize("shards", [1, 3])
def test_an_apps_lifespan_run_again_by_testclient_finds_its_store_working(
    redis_server: redis_servers.RedisServer, prefix: str, shards: int
) -> None:
    """One app and its store made once, at import time, as most apps are; three
    ``with TestClient(app)`` blocks, each a lifespan in an event loop of its own: each
    runs a job, and a job of the first is still there in the last."""
    app, _ = echo_app(redis_server.url, prefix, shards)
    ids = []
    for run in range(3):
        with TestClient(app) as client:
            answer = client.post(
                "/echo", json={"text": f"run {run}"}, headers={"Prefer": "wait=10"}
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["status"] == "Completed"
            assert answer.json()["result"] == f"run {run}"
            ids.append(answer.json()["id"])
            first = client.get(f"/jobs/{ids[0]}")
            assert first.status_code == 200 and first.json()["result"] == "run 0"


@pytest.mark.parametrize("shards", [1, 3])
def test_a_request_after_the_lifespan_ended_answers_503_and_the_log_says_why(
    redis_server: redis_servers.RedisServer,
    prefix: str,
    shards: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A ``TestClient(app)`` used without its ``with`` block after another's lifespan
    ended (the store closed): a POST and a GET, even of an unknown id, answer 503 with
    ``Retry-After`` (they answered 500), nothing is stored, and the log says the
    lifespan has ended."""
    app, endpoints = echo_app(redis_server.url, prefix, shards)
    with TestClient(app) as client:
        answer = client.post("/echo", json={"text": "in"}, headers={"Prefer": "wait=10"})
        assert answer.status_code == 200
    caplog.set_level(logging.WARNING, logger="async_endpoints")
    client = TestClient(app)  # no `with`: no lifespan
    posted = client.post("/echo", json={"text": "after"})
    unknown = client.get(f"/jobs/{uuid.uuid4()}")
    for answer in (posted, unknown):
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "1"
        assert "store" in answer.json()["detail"]
    assert "the app's lifespan that started it has ended" in caplog.text
    with TestClient(app) as client:  # a lifespan again: the store too
        results = [job.result for job in _listed(client, endpoints)]
    assert results == ["in"]  # the one job of the first lifespan, and no other


def _listed(client: TestClient, endpoints: AsyncEndpoints) -> list[Any]:
    """The jobs stored, read in the client's event loop."""
    portal = client.portal
    assert portal is not None
    return list(portal.call(endpoints.list_jobs).jobs)
