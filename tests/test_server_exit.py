"""The app hears that its uvicorn server is shutting down before the lifespan's shutdown:
held `Prefer: wait` requests are answered at once and the pool takes no more jobs; only
the server that serves this app counts, and an exit without the server's flag
(``--limit-max-requests``) counts too. Without a watchable server, waits are as before,
in every event loop. (The SIGTERM case with real processes is in
tests/e2e/test_multiprocess.py.)"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from starlette.applications import Starlette

from async_endpoints import AsyncContext, AsyncEndpoints, JobStatus
from async_endpoints._events import EventKind, LifecycleEvent
from tests.redis.support import eventually


def gated_app(gate: asyncio.Event | None = None) -> tuple[FastAPI, AsyncEndpoints]:
    """One worker slot; ``hold`` runs until ``gate`` is set, ``quick`` returns at once."""
    app = FastAPI()
    endpoints = AsyncEndpoints(app, max_concurrency=1)

    @endpoints.map_async_post("/hold")
    async def hold(ctx: AsyncContext[None]) -> str:
        assert gate is not None
        await gate.wait()
        return "held"

    @endpoints.map_async_post("/quick")
    async def quick(ctx: AsyncContext[None]) -> str:
        return "quick"

    endpoints.map_job_details()
    return app, endpoints


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def serving(*apps: Any, **options: Any) -> AsyncIterator[list[uvicorn.Server]]:
    """uvicorn servers for ``apps``, started at once (their signal handlers installed in
    turn, the last one's in place when the first app's lifespan runs), on loopback."""
    servers = [
        uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=_port(), log_level="warning", **options)
        )
        for app in apps
    ]
    tasks = [asyncio.create_task(server.serve()) for server in servers]

    async def started() -> bool:
        return all(server.started for server in servers)

    try:
        await eventually(started)
        yield servers
    finally:
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks)


def base(server: uvicorn.Server) -> str:
    return f"http://127.0.0.1:{server.config.port}"


async def test_another_servers_exit_leaves_this_apps_pool_and_waits_alone() -> None:
    """An API and an admin server started together in one process (the admin's signal
    handlers installed last): the admin server stopping alone does not stop the API's
    pool, nor cut its held requests short."""
    app, endpoints = gated_app()
    admin = Starlette()
    async with serving(app, admin) as (api, other), httpx.AsyncClient(timeout=20) as client:
        other.should_exit = True

        async def stopped() -> bool:
            return not any(each.is_serving() for each in other.servers)

        await eventually(stopped)
        await asyncio.sleep(0.3)  # three looks of a watcher that would (wrongly) fire
        answer = await client.post(f"{base(api)}/quick", headers={"Prefer": "wait=10"})
        assert answer.status_code == 200 and answer.json()["status"] == "Completed"
        assert endpoints.pool.serving and not (endpoints.exiting and endpoints.exiting.is_set())


async def test_a_server_leaving_at_its_request_limit_answers_held_requests_and_claims_no_more() -> (
    None
):
    """uvicorn's ``--limit-max-requests`` (gunicorn's ``--max-requests``) ends its loop
    without its exit flag: once its sockets close, the held POST (202) and a held long
    poll of its job (200, Queued) are answered while the running job still runs, and the
    pool claims nothing more."""
    gate = asyncio.Event()
    app, endpoints = gated_app(gate)
    async with (
        serving(app, limit_max_requests=2) as (server,),
        httpx.AsyncClient(timeout=30) as client,
    ):
        running = (await client.post(f"{base(server)}/hold")).json()["id"]

        async def started() -> bool:
            return (await endpoints.get_job(running)).status is JobStatus.IN_PROGRESS

        await eventually(started)
        held = asyncio.create_task(
            client.post(f"{base(server)}/quick", headers={"Prefer": "wait=60"})
        )

        async def stored() -> bool:
            return bool((await endpoints.list_jobs(status=JobStatus.QUEUED)).jobs)

        await eventually(stored)
        (queued,) = (await endpoints.list_jobs(status=JobStatus.QUEUED)).jobs
        polled = asyncio.create_task(
            client.get(f"{base(server)}/jobs/{queued.id}", headers={"Prefer": "wait=60"})
        )

        async def both_held() -> bool:  # uvicorn's tasks of the requests under way
            return len(server.server_state.tasks) >= 2

        await eventually(both_held)
        # uvicorn counts answered requests: this one is the second, the last it takes.
        await client.get(f"{base(server)}/jobs/{running}")
        async with asyncio.timeout(10):  # not the 60 s of their waits
            answer, poll = await held, await polled
        assert answer.status_code == 202 and answer.json()["status"] == "Queued"
        assert poll.status_code == 200 and poll.json()["status"] == "Queued"
        assert poll.headers["preference-applied"] == "wait=60"
        assert (await endpoints.get_job(running)).status is JobStatus.IN_PROGRESS
        assert not endpoints.pool.serving
        gate.set()
    assert (await endpoints.get_job(answer.json()["id"])).status is JobStatus.QUEUED


def test_without_a_lifespan_a_wait_waits_in_every_event_loop() -> None:
    """An app whose lifespan never runs, called in a new event loop each time (pytest-
    asyncio's loop per test, say): each ``Prefer: wait=0.5`` for a job no worker runs
    holds its request the half second, in the second loop as in the first."""
    app, _ = gated_app(asyncio.Event())

    async def one_wait() -> float:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            began = time.monotonic()
            answer = await client.post("/quick", headers={"Prefer": "wait=0.5"})
            assert answer.status_code == 202
            assert answer.headers["preference-applied"] == "wait=0.5"
            return time.monotonic() - began

    assert asyncio.run(one_wait()) >= 0.45
    assert asyncio.run(one_wait()) >= 0.45


async def test_an_api_only_instance_on_an_in_memory_store_warns_that_nothing_runs_its_jobs(
    caplog: Any,
) -> None:
    """Served by uvicorn with ``run_workers=False`` and the in-memory store, no process
    can ever run the jobs it accepts: it says so at start (with workers, or on a shared
    store, it does not)."""
    from async_endpoints import InMemoryJobStore

    said = "run_workers=False with an in-memory store"
    for run_workers in (False, True):
        app = FastAPI()
        AsyncEndpoints(app, store=InMemoryJobStore(), run_workers=run_workers)
        caplog.clear()
        async with serving(app):
            pass
        assert (said in caplog.text) is not run_workers, run_workers


async def test_once_the_server_exits_no_cron_cycle_is_fired_while_requests_finish() -> None:
    """A schedule every second, and a slow request of the app's own holding uvicorn's
    exit before the lifespan's shutdown: once the server's exit flag is up, the process
    fires no more cycles (it takes no more jobs either: another process, or its
    successor, fires them, a missed one caught up with one job), though its scheduler
    ran on until the lifespan's shutdown before."""
    gate = asyncio.Event()
    app, endpoints = gated_app(gate)
    fired: list[float] = []

    @app.get("/slow")
    async def slow() -> str:
        await gate.wait()
        return "done"

    @endpoints.cron("* * * * * *", unique=False)
    async def every_second(ctx: AsyncContext[None]) -> None:
        return None

    def submitted(event: LifecycleEvent) -> None:
        if event.kind is EventKind.SUBMITTED and event.job.name == "every_second":
            fired.append(time.monotonic())

    endpoints.events.subscribe(submitted)
    async with serving(app) as (server,), httpx.AsyncClient(timeout=30) as client:
        held = asyncio.create_task(client.get(f"{base(server)}/slow"))

        async def fired_and_held() -> bool:
            return bool(fired) and len(server.server_state.tasks) >= 1

        try:
            await eventually(fired_and_held)
            server.should_exit = True

            async def stopped_claiming() -> bool:
                return not endpoints.pool.serving

            await eventually(stopped_claiming)
            exited = time.monotonic()
            await asyncio.sleep(2.5)  # two cycles and more would be due meanwhile
        finally:
            gate.set()  # the server's exit waits for the request
        assert (await held).status_code == 200
    assert [moment for moment in fired if moment > exited] == []
