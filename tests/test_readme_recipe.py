"""The README's "A production app on one page", run as written on a real Redis and served
by uvicorn on a real socket: its API-key auth, owners, progress, webhook, ``Prefer: wait``,
idempotent retries, metrics and dashboard behave as the section says."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as redis

from tests.redis_servers import RedisServer
from tests.serving import served
from tests.test_readme_examples import python_blocks
from tests.webhook_receiver import SECRET, Receiver, receiving, signature_is_valid

pytestmark = pytest.mark.redis

ALICE = {"X-Api-Key": "key-of-alice"}
BOB = {"X-Api-Key": "key-of-bob"}
OPS = {"X-Api-Key": "key-of-ops"}


@pytest.fixture
async def recipe(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, Receiver]]:
    """The section's module, its environment set as the section says (a database of the
    session's server of its own, the webhook receiver's host allowed), served; a client
    of it and the receiver."""
    [module] = python_blocks("## A production app on one page")
    database = redis_server.url.removesuffix("/0") + "/13"
    earlier = redis.Redis.from_url(database)
    await earlier.flushdb()  # what an earlier test left there
    await earlier.aclose()
    async with receiving() as receiver:
        monkeypatch.setenv("REDIS_URL", database)
        monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
        monkeypatch.setenv("WEBHOOK_HOSTS", receiver.host)
        names: dict[str, Any] = {"__name__": "main"}
        exec(compile(module, "README.md", "exec"), names)
        async with served(names["app"]) as url, httpx.AsyncClient(base_url=url) as client:
            yield client, receiver


async def test_a_callers_report_is_answered_finished_with_wait_and_delivered_signed(
    recipe: tuple[httpx.AsyncClient, Receiver],
) -> None:
    """With ``Prefer: wait=5`` the POST answers 200 with the Completed job, its result and
    last progress; the callback receives the same job JSON, signed with the secret."""
    client, receiver = recipe
    body = {"month": "2026-11", "callback": f"{receiver.url}/reports"}
    answer = await client.post("/reports", json=body, headers={**ALICE, "Prefer": "wait=5"})
    assert answer.status_code == 200, answer.text
    job = answer.json()
    assert job["status"] == "Completed"
    assert job["result"] == {"month": "2026-11", "rows": 1000}
    assert job["progress"] == {"done": 4, "of": 4}
    [delivery] = await receiver.wait_for(1)
    assert delivery.path == "/reports"
    assert signature_is_valid(delivery)
    assert delivery.job["id"] == job["id"]
    assert delivery.job["status"] == "Completed"


async def test_without_a_key_nothing_is_stored_and_a_job_is_its_owners_and_ops(
    recipe: tuple[httpx.AsyncClient, Receiver],
) -> None:
    """No key: 401. Alice's job: 200 to her and to ops, 404 to Bob and to no key, exactly
    as for an unknown id; Bob cannot cancel it either."""
    client, _ = recipe
    refused = await client.post("/reports", json={"month": "2026-11"})
    assert refused.status_code == 401
    assert refused.json() == {"detail": "send your X-Api-Key"}
    answer = await client.post("/reports", json={"month": "2026-10"}, headers=ALICE)
    assert answer.status_code == 202
    path = answer.headers["location"]
    assert (await client.get(path, headers=ALICE)).status_code == 200
    assert (await client.get(path, headers=OPS)).status_code == 200
    unknown = await client.get(f"/jobs/{uuid.uuid4()}", headers=BOB)
    for headers in (BOB, {}):
        foreign = await client.get(path, headers=headers)
        assert (foreign.status_code, foreign.json()) == (404, unknown.json())
    assert (await client.post(f"{path}/cancel", headers=BOB)).status_code == 404
    listed = (await client.get("/metrics")).text
    assert 'async_endpoints_jobs_submitted_total{name="BuildReport",queue="default"} 1.0' in listed


async def test_a_retried_post_with_one_idempotency_key_answers_the_first_job(
    recipe: tuple[httpx.AsyncClient, Receiver],
) -> None:
    """The same ``Idempotency-Key`` from the same caller answers the job the first POST
    made; from another caller it is another job (keys are per owner)."""
    client, _ = recipe
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = await client.post("/reports", json={"month": "2026-09"}, headers={**ALICE, **key})
    again = await client.post("/reports", json={"month": "2026-09"}, headers={**ALICE, **key})
    other = await client.post("/reports", json={"month": "2026-09"}, headers={**BOB, **key})
    assert [first.status_code, again.status_code, other.status_code] == [202, 202, 202]
    assert again.json()["id"] == first.json()["id"]
    assert other.json()["id"] != first.json()["id"]


async def test_the_events_stream_shows_progress_then_the_finished_job(
    recipe: tuple[httpx.AsyncClient, Receiver],
) -> None:
    """The owner's event stream carries the job's progress and ends with its Completed
    status."""
    client, _ = recipe
    job = (await client.post("/reports", json={"month": "2026-08"}, headers=ALICE)).json()
    events: list[tuple[str, Any]] = []
    async with client.stream("GET", f"/jobs/{job['id']}/events", headers=ALICE) as stream:
        assert stream.status_code == 200
        kind = ""
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((kind, json.loads(line.removeprefix("data: "))))
    assert events[-1][0] == "status"
    assert events[-1][1]["status"] == "Completed"
    assert ("progress", {"progress": {"done": 4, "of": 4}}) in events


async def test_the_dashboard_opens_to_ops_alone_by_header_or_by_the_browsers_cookie(
    recipe: tuple[httpx.AsyncClient, Receiver],
) -> None:
    """``/dashboard/`` answers 200 to the ops key, sent as the header or as the
    ``api_key`` cookie; 404 to another caller's key and to none. The cookie counts on the
    dashboard only: a job route ignores it."""
    client, _ = recipe
    assert (await client.get("/dashboard/", headers=OPS)).status_code == 200
    assert (
        await client.get("/dashboard/", headers={"Cookie": "api_key=key-of-ops"})
    ).status_code == 200
    assert (await client.get("/dashboard/", headers=ALICE)).status_code == 404
    assert (await client.get("/dashboard/")).status_code == 404
    job = (await client.post("/reports", json={"month": "2026-07"}, headers=ALICE)).json()
    by_cookie = await client.get(f"/jobs/{job['id']}", headers={"Cookie": "api_key=key-of-ops"})
    assert by_cookie.status_code == 404
