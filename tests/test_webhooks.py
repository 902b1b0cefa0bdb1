"""Webhooks through real HTTP: an app served by uvicorn delivers to a real receiver on
127.0.0.1, which checks every signature on its own; on the in-memory and Redis stores."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from async_endpoints import AsyncContext, AsyncEndpoints, InMemoryJobStore, JobStore
from async_endpoints_redis import RedisJobStore
from tests.serving import served
from tests.webhook_receiver import SECRET, answer_with, receiving, signature_is_valid


class Order(BaseModel):
    mode: Literal["ok", "fail", "wait"] = "ok"
    hook: str | None = None


async def hook_of(request: Request, body: Order) -> str | None:
    return body.hook


def webhook_app(store: JobStore, hosts: list[str], **settings: Any) -> FastAPI:
    """``POST /orders`` (webhook URL from the body's ``hook``), job details and cancel."""
    app = FastAPI()
    endpoints = AsyncEndpoints(
        app,
        store=store,
        webhook_secret=SECRET,
        webhook_allowed_hosts=hosts,
        webhook_retry_base_delay=settings.pop("webhook_retry_base_delay", 0.01),
        retry_jitter=0.0,
        max_retries=0,
        **settings,
    )

    @endpoints.map_async_post("/orders", name="Order", webhook_url=hook_of)
    async def order(ctx: AsyncContext[Order]) -> dict[str, str]:
        if ctx.request.mode == "fail":
            raise RuntimeError("out of stock")
        if ctx.request.mode == "wait":
            await asyncio.Event().wait()
        return {"item": "tea"}

    endpoints.map_job_details()
    endpoints.map_job_cancel()
    app.state.endpoints = endpoints
    return app


@asynccontextmanager
async def client_of(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with served(app) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


async def job_until(
    client: httpx.AsyncClient, job_id: str, done: Any, timeout: float = 20.0
) -> dict[str, Any]:
    """The job JSON once ``done(job)`` holds; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = (await client.get(f"/jobs/{job_id}")).json()
        if done(job):
            return job
        assert time.monotonic() < deadline, f"not within {timeout} s: {job}"
        await asyncio.sleep(0.02)


def webhook_ended(job: dict[str, Any]) -> bool:
    return job["webhook"] is not None and job["webhook"]["status"] != "Pending"


async def submit(client: httpx.AsyncClient, **order: Any) -> dict[str, Any]:
    response = await client.post("/orders", json=order)
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


@pytest.mark.parametrize("ending", ["Completed", "Failed", "Canceled"])
async def test_a_jobs_webhook_is_delivered_once_signed_when_the_job_ends(
    store: JobStore, ending: str
) -> None:
    """Completed, Failed or Canceled: one signed POST of the job JSON (as job details
    serve it) to the URL; the webhook is then Delivered after 1 attempt."""
    mode = {"Completed": "ok", "Failed": "fail", "Canceled": "wait"}[ending]
    async with receiving() as receiver, client_of(webhook_app(store, [receiver.host])) as client:
        job = await submit(client, mode=mode, hook=f"{receiver.url}/hooks/orders?x=1")
        assert job["webhook"] == {"status": "Pending", "attempts": 0}
        if ending == "Canceled":
            await job_until(client, job["id"], lambda job: job["status"] == "InProgress")
            assert (await client.post(f"/jobs/{job['id']}/cancel")).status_code == 200
        final = await job_until(client, job["id"], webhook_ended)
    assert final["status"] == ending
    assert final["webhook"] == {"status": "Delivered", "attempts": 1}
    [delivery] = receiver.deliveries
    assert signature_is_valid(delivery)
    assert delivery.path == "/hooks/orders"
    assert delivery.headers["content-type"] == "application/json"
    assert uuid.UUID(delivery.headers["webhook-id"]) != uuid.UUID(job["id"])
    sent = delivery.job
    assert sent["webhook"] == {"status": "Pending", "attempts": 1}
    same = {key for key in final if key not in {"webhook", "lastUpdatedAt"}}
    assert {key: sent[key] for key in same} == {key: final[key] for key in same}


async def test_a_bare_host_in_the_allow_list_allows_the_receiver_on_any_port(
    store: JobStore,
) -> None:
    """``webhook_allowed_hosts=["127.0.0.1"]`` allows a receiver on an ephemeral port of
    that host, as API.md's "only hosts in webhook_allowed_hosts" reads."""
    async with receiving() as receiver, client_of(webhook_app(store, ["127.0.0.1"])) as client:
        job = await submit(client, mode="ok", hook=f"{receiver.url}/hooks/orders")
        final = await job_until(client, job["id"], webhook_ended)
    assert final["webhook"] == {"status": "Delivered", "attempts": 1}
    [delivery] = receiver.deliveries
    assert signature_is_valid(delivery) and delivery.path == "/hooks/orders"


async def test_a_receiver_answering_500_gets_every_attempt_and_the_webhook_fails(
    store: JobStore,
) -> None:
    """webhook_retries=4 and a receiver that always answers 500: five signed attempts
    with one webhook-id, then webhook Failed after 5 attempts; the job stays Completed.
    The delivery job's error names the job whose webhook failed, and why."""
    async with receiving(answer_with(500)) as receiver:
        app = webhook_app(store, [receiver.host], webhook_retries=4)
        async with client_of(app) as client:
            job = await submit(client, hook=receiver.url)
            final = await job_until(client, job["id"], webhook_ended)
            delivery_id = receiver.deliveries[0].headers["webhook-id"]
            delivery = (await client.get(f"/jobs/{delivery_id}")).json()
    assert delivery["error"] == {
        "message": f"the webhook of job {job['id']}: the receiver answered 500",
        "type": "WebhookDeliveryError",
    }
    assert final["status"] == "Completed" and final["result"] == {"item": "tea"}
    assert final["webhook"] == {"status": "Failed", "attempts": 5}
    assert len(receiver.deliveries) == 5
    assert len({delivery.headers["webhook-id"] for delivery in receiver.deliveries}) == 1
    assert all(signature_is_valid(delivery) for delivery in receiver.deliveries)


async def test_cancelling_a_delivery_job_fails_the_webhook_with_no_more_attempts(
    store: JobStore,
) -> None:
    """The delivery job (its id is the webhook-id) is a job like any: cancelled while it
    waits for its retry, the job's webhook reads Failed after the attempts made, and the
    receiver gets nothing more."""
    async with receiving(answer_with(500)) as receiver:
        app = webhook_app(store, [receiver.host], webhook_retry_base_delay=30)
        async with client_of(app) as client:
            job = await submit(client, hook=receiver.url)
            await job_until(client, job["id"], lambda _: len(receiver.deliveries) == 1)
            delivery_id = receiver.deliveries[0].headers["webhook-id"]
            await job_until(client, delivery_id, lambda job: job["status"] == "Scheduled")
            assert (await client.post(f"/jobs/{delivery_id}/cancel")).status_code == 200
            final = await job_until(client, job["id"], webhook_ended)
    assert final["webhook"] == {"status": "Failed", "attempts": 1}
    assert len(receiver.deliveries) == 1


async def test_a_failed_delivery_is_retried_until_the_receiver_takes_it(store: JobStore) -> None:
    """Two 503s, then 200: delivered on the third attempt, with the same webhook-id."""

    def answer(number: int, _request: Request) -> Response:
        return Response(status_code=503 if number < 3 else 200)

    async with receiving(answer) as receiver:
        app = webhook_app(store, [receiver.host])
        async with client_of(app) as client:
            job = await submit(client, hook=receiver.url)
            final = await job_until(client, job["id"], webhook_ended)
    assert final["webhook"] == {"status": "Delivered", "attempts": 3}
    assert [d.headers["webhook-id"] for d in receiver.deliveries] == [
        receiver.deliveries[0].headers["webhook-id"]
    ] * 3


async def test_a_redirect_is_never_followed_and_counts_as_a_failed_attempt(
    store: JobStore,
) -> None:
    """A receiver answering 302 to another (even allowed) host: that host is never
    called; each 302 is a failed attempt, so the webhook ends Failed."""
    async with receiving() as elsewhere:
        redirect = RedirectResponse(f"{elsewhere.url}/stolen", status_code=302)
        async with receiving(lambda _n, _r: redirect) as receiver:
            hosts = [receiver.host, elsewhere.host]
            async with client_of(webhook_app(store, hosts, webhook_retries=1)) as client:
                job = await submit(client, hook=receiver.url)
                final = await job_until(client, job["id"], webhook_ended)
    assert final["webhook"] == {"status": "Failed", "attempts": 2}
    assert len(receiver.deliveries) == 2 and elsewhere.deliveries == []


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://other.example/hook", "not in webhook_allowed_hosts"),
        ("http://127.0.0.1.evil.example/hook", "not in webhook_allowed_hosts"),
        ("http://exa%6dple.com/hook", "no valid host"),
        ("ftp://{host}/hook", "http:// or https://"),
        ("http://user:pass@{host}/hook", "credentials"),
        ("/relative/hook", "http:// or https://"),
        ("http://{host}/" + "a" * 3000, "longer than"),
        ("http://{host}/a b", "whitespace"),
    ],
)
async def test_a_refused_webhook_url_answers_422_and_nothing_is_stored(
    store: JobStore, url: str, why: str
) -> None:
    """A URL with another host, another scheme, credentials, no valid host, whitespace or
    an absurd length:
    422 with a JSON error naming the problem; no job is stored."""
    async with receiving() as receiver:
        app = webhook_app(store, [receiver.host])
        async with client_of(app) as client:
            response = await client.post("/orders", json={"hook": url.format(host=receiver.host)})
            stored = await app.state.endpoints.list_jobs()
    assert response.status_code == 422
    assert why in response.json()["detail"] and "webhook_url" in response.json()["detail"]
    assert stored.jobs == [] and receiver.deliveries == []


async def test_a_job_without_a_webhook_url_has_no_webhook(store: JobStore) -> None:
    """The function gives None: no webhook (null in the job JSON), nothing delivered."""
    async with receiving() as receiver, client_of(webhook_app(store, [receiver.host])) as client:
        job = await submit(client)
        final = await job_until(client, job["id"], lambda job: job["status"] == "Completed")
    assert job["webhook"] is None and final["webhook"] is None
    assert receiver.deliveries == []


async def test_a_constant_url_and_a_sync_function_deliver_alike(store: JobStore) -> None:
    """webhook_url as a constant (on a PUT route) or a sync function (on a DELETE route):
    each job's webhook is delivered to its URL."""
    async with receiving() as receiver:
        app = FastAPI()
        endpoints = AsyncEndpoints(
            app, store=store, webhook_secret=SECRET, webhook_allowed_hosts=[receiver.host]
        )

        @endpoints.map_async_put("/things/{name}", webhook_url=f"{receiver.url}/constant")
        async def put_thing(ctx: AsyncContext[None]) -> str:
            return ctx.route_params["name"]

        @endpoints.map_async_delete(
            "/things/{name}",
            webhook_url=lambda request, body: f"{receiver.url}/{request.path_params['name']}",
        )
        async def delete_thing(ctx: AsyncContext[None]) -> None:
            pass

        endpoints.map_job_details()
        async with client_of(app) as client:
            put = (await client.put("/things/a")).json()
            deleted = (await client.delete("/things/b")).json()
            for job in (put, deleted):
                await job_until(client, job["id"], webhook_ended)
    paths = {delivery.job["id"]: delivery.path for delivery in receiver.deliveries}
    assert paths == {put["id"]: "/constant", deleted["id"]: "/b"}


async def test_a_receiver_that_does_not_answer_in_time_is_tried_again(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No answer within the delivery timeout fails the attempt; a retry of the same
    delivery (same webhook-id) is taken: Delivered after 2 attempts or more."""
    monkeypatch.setattr("async_endpoints._webhook.DELIVERY_TIMEOUT", 0.5)
    release = asyncio.Event()

    async def answer(number: int, _request: Request) -> Response:
        if number == 1:
            await release.wait()  # held until a retry arrives: only the timeout ends it
        release.set()
        return Response(status_code=200)

    async with receiving(answer) as receiver:
        try:
            async with client_of(webhook_app(store, [receiver.host])) as client:
                job = await submit(client, hook=receiver.url)
                final = await job_until(client, job["id"], webhook_ended)
        finally:
            release.set()
    assert final["webhook"]["status"] == "Delivered" and final["webhook"]["attempts"] >= 2
    assert len({delivery.headers["webhook-id"] for delivery in receiver.deliveries}) == 1


@asynccontextmanager
async def trickling_receiver() -> AsyncIterator[str]:
    """A raw HTTP server on 127.0.0.1 that reads a request and then sends its answer's
    headers one byte every 0.05 s, never ending them; its URL for the block."""

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nx-slow: ")
        try:
            while True:
                writer.write(b"a")
                await writer.drain()
                await asyncio.sleep(0.05)
        except (ConnectionError, asyncio.CancelledError):
            writer.close()

    server = await asyncio.start_server(trickle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}"
        server.close()


async def test_an_attempt_is_bounded_by_the_delivery_timeout_in_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A receiver trickling its answer (each read within httpx's per-phase timeout) is
    cut at DELIVERY_TIMEOUT in all: the attempt fails, and the delivery ends Failed well
    before the job's own timeout."""
    monkeypatch.setattr("async_endpoints._webhook.DELIVERY_TIMEOUT", 0.5)
    async with trickling_receiver() as url:
        host = url.removeprefix("http://")
        app = webhook_app(InMemoryJobStore(), [host], webhook_retries=0)
        endpoints: AsyncEndpoints = app.state.endpoints
        async with endpoints.running(workers=False):
            job = await endpoints.submit("Order", {}, webhook_url=f"{url}/hook")
            async with asyncio.timeout(10):  # the delivery job's own timeout is 30 s
                await endpoints.drain()
            final = await endpoints.get_job(job.id)
    assert final is not None and final.webhook is not None
    assert final.webhook.status.value == "Failed" and final.webhook.attempts == 1


@asynccontextmanager
async def gathering_receiver(count: int) -> AsyncIterator[str]:
    """A raw HTTP server on 127.0.0.1 that answers 200 to no request until ``count``
    requests are open at once (then to all of them); its URL for the block."""
    gathered = asyncio.Event()
    open_now = 0

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_now
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        open_now += 1
        if open_now >= count:
            gathered.set()
        try:
            await asyncio.wait_for(gathered.wait(), 30)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0, backlog=count + 16)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}"
        server.close()


async def test_as_many_deliveries_as_max_concurrency_are_sent_at_once() -> None:
    """A process sends as many deliveries at once as its pool runs handlers: none waits
    for a connection of the shared HTTP client (whose wait would count against its
    delivery timeout). With max_concurrency=110 the receiver, answering only once 110
    deliveries are open, gets every one (httpx's default pool of 100 connections held
    the last 10 back until the others timed out)."""
    jobs = 110
    async with gathering_receiver(jobs) as url:
        host = url.removeprefix("http://")
        app = webhook_app(InMemoryJobStore(), [host], webhook_retries=0, max_concurrency=jobs)
        endpoints: AsyncEndpoints = app.state.endpoints
        async with endpoints.running(workers=False):
            submitted = [
                await endpoints.submit("Order", {}, webhook_url=f"{url}/hook") for _ in range(jobs)
            ]
            await endpoints.drain()
            finals = [await endpoints.get_job(job.id) for job in submitted]
    statuses = {final.webhook.status.value for final in finals if final and final.webhook}
    assert statuses == {"Delivered"}


async def test_a_receiver_that_cannot_be_reached_ends_failed(store: JobStore) -> None:
    """Nothing listening on the allowed host's port: each attempt fails (connection
    refused), and after 1 + webhook_retries attempts the webhook is Failed."""
    with socket.socket() as bound:  # the port stays ours, bound but never listening
        bound.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{bound.getsockname()[1]}"
        async with client_of(webhook_app(store, [host], webhook_retries=2)) as client:
            job = await submit(client, hook=f"http://{host}/hook")
            final = await job_until(client, job["id"], webhook_ended)
    assert final["status"] == "Completed"
    assert final["webhook"] == {"status": "Failed", "attempts": 3}


@pytest.fixture(params=["cluster", "shards"])
def scaled_store(request: pytest.FixtureRequest, prefix: str) -> JobStore:
    """A Redis Cluster store, and a store of 3 shards on one server."""
    if request.param == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        return RedisJobStore(cluster.url, prefix=prefix, cluster=True)
    server = request.getfixturevalue("redis_server")
    return RedisJobStore(server.url, prefix=prefix, shards=3)


async def test_webhooks_on_a_cluster_and_on_shards(scaled_store: JobStore) -> None:
    """On a Cluster and on shards alike: webhooks to a receiver that takes them are
    Delivered, those to one answering 500 end Failed after 1 + webhook_retries."""
    async with receiving() as taker, receiving(answer_with(500)) as refuser:
        app = webhook_app(scaled_store, [taker.host, refuser.host], webhook_retries=1)
        async with client_of(app) as client:
            jobs = [await submit(client, hook=url) for url in [taker.url] * 4 + [refuser.url]]
            finals = [await job_until(client, job["id"], webhook_ended) for job in jobs]
    delivered, failed = {"status": "Delivered", "attempts": 1}, {"status": "Failed", "attempts": 2}
    assert [job["webhook"] for job in finals] == [delivered] * 4 + [failed]
    assert sorted(d.job["id"] for d in taker.deliveries) == sorted(j["id"] for j in jobs[:4])
    assert len(refuser.deliveries) == 2


async def test_a_delivery_job_belongs_to_the_owner_of_the_job_it_delivers(
    store: JobStore,
) -> None:
    """The receiver learns the delivery job's id (``webhook-id``): with ``owner`` and
    ``authorize`` set, that job is the submitter's, so another caller can neither read
    nor cancel it (which would end the deliveries)."""

    def principal(request: Request) -> str | None:
        return request.headers.get("x-user")

    async with receiving() as receiver:
        app = webhook_app(
            store,
            [receiver.host],
            owner=principal,
            authorize=lambda request, job: job.owner == principal(request),
        )
        async with client_of(app) as client:
            alice = {"X-User": "alice"}
            answer = await client.post("/orders", json={"hook": f"{receiver.url}/h"}, headers=alice)
            assert answer.status_code == 202, answer.text
            job_id = answer.json()["id"]
            deadline = time.monotonic() + 20
            while not webhook_ended((await client.get(f"/jobs/{job_id}", headers=alice)).json()):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            delivery_id = receiver.deliveries[0].headers["webhook-id"]
            for caller in ({}, {"X-User": "mallory"}):
                assert (await client.get(f"/jobs/{delivery_id}", headers=caller)).status_code == 404
                cancel = await client.post(f"/jobs/{delivery_id}/cancel", headers=caller)
                assert cancel.status_code == 404
            mine = await client.get(f"/jobs/{delivery_id}", headers=alice)
            assert mine.status_code == 200 and mine.json()["status"] == "Completed"
