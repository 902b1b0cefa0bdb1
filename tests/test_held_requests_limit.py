"""Event streams and ``Prefer: wait`` requests hold their connections open; the library
sets no limit of its own on how many: uvicorn's ``limit_concurrency`` bounds them, as
the README says (a request beyond it gets ``503`` at once, and a slot freed by a closed
stream is taken again)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from async_endpoints import AsyncContext, AsyncEndpoints, InMemoryJobStore
from tests.serving import served

LIMIT = 4


class Held:
    """The app's job is released by ``release``; ``waiting`` is set once a request with
    a ``Prefer`` header has reached the app (its connection is held)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.waiting = asyncio.Event()


@contextlib.asynccontextmanager
async def held_app() -> AsyncIterator[tuple[httpx.AsyncClient, str, Held]]:
    """An app served with ``limit_concurrency=LIMIT`` and one job that runs until
    released; yields a client, the job's id and its `Held`."""
    app = Starlette()
    held = Held()

    class NoteWaits:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and b"prefer" in dict(scope["headers"]):
                held.waiting.set()
            await self.app(scope, receive, send)

    app.add_middleware(NoteWaits)
    endpoints = AsyncEndpoints(app, store=InMemoryJobStore())

    @endpoints.map_async_post("/work", name="Hold")
    async def hold(ctx: AsyncContext[None]) -> str:
        await held.release.wait()
        return "done"

    endpoints.map_job_details()
    endpoints.map_job_events()
    async with served(app, limit_concurrency=LIMIT) as url:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10) as http:
            job_id = (await http.post("/work")).json()["id"]
            try:
                yield http, job_id, held
            finally:
                held.release.set()


async def test_held_streams_and_waits_beyond_uvicorns_limit_get_503_at_once() -> None:
    """With ``limit_concurrency=4`` and the job running, three connections held open (two
    event streams and a ``Prefer: wait``) leave room for no fourth: it is answered 503
    at once; closing one stream lets the next request in."""
    async with held_app() as (http, job_id, held), contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(http.stream("GET", f"/jobs/{job_id}/events"))
        second = await stack.enter_async_context(http.stream("GET", f"/jobs/{job_id}/events"))
        assert (first.status_code, second.status_code) == (200, 200)
        waiting = asyncio.create_task(http.get(f"/jobs/{job_id}", headers={"Prefer": "wait=20"}))
        async with asyncio.timeout(10):
            await held.waiting.wait()  # the wait holds its connection
        assert (await http.get(f"/jobs/{job_id}")).status_code == 503
        async with http.stream("GET", f"/jobs/{job_id}/events") as third:
            assert third.status_code == 503
        assert not waiting.done()
        await first.aclose()
        async with asyncio.timeout(10):  # the closed stream's slot is free again
            answer = await http.get(f"/jobs/{job_id}")
            while answer.status_code == 503:
                await asyncio.sleep(0.02)
                answer = await http.get(f"/jobs/{job_id}")
        assert answer.status_code == 200 and answer.json()["status"] == "InProgress"
        held.release.set()
        async with asyncio.timeout(10):
            finished = await waiting
        assert finished.status_code == 200 and finished.json()["status"] == "Completed"
