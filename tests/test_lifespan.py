"""AsyncEndpoints joins the app's lifespan, keeping the app's own, and runs (or not) workers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from async_endpoints import AsyncContext, AsyncEndpoints, JobStatus


class Greeting(BaseModel):
    name: str


def app_with_own_lifespan(
    app_class: type[Starlette], events: list[str]
) -> tuple[Starlette, AsyncEndpoints]:
    """An app whose own lifespan sets up a resource and yields state; a handler uses both."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        for _ in range(20):  # like connecting to a database: startup takes a while
            await asyncio.sleep(0)
        app.state.salutation = "Hello"
        events.append("app startup")
        yield {"motto": "from the app's lifespan"}
        events.append("app shutdown")

    async def motto(request: Request) -> JSONResponse:
        return JSONResponse({"motto": request.state.motto})

    app = app_class(lifespan=lifespan, routes=[Route("/motto", motto)])
    endpoints = AsyncEndpoints(app)

    @endpoints.map_async_post("/greetings", name="Greet")
    async def greet(ctx: AsyncContext[Greeting]) -> str:
        events.append("job ran")
        return f"{app.state.salutation}, {ctx.request.name}"

    @endpoints.map_async_post("/mottos", name="Motto")
    async def motto_job(ctx: AsyncContext) -> str:
        ctx.state.scribbled = "by one attempt"  # a copy: the next attempt does not see it
        return str(ctx.state.motto)

    return app, endpoints


APP_CLASSES = pytest.mark.parametrize(
    "app_class", [FastAPI, Starlette], ids=["fastapi", "starlette"]
)


@APP_CLASSES
async def test_the_apps_own_startup_runs_before_the_workers_start(
    http_client_for, app_class: type[Starlette]
) -> None:
    """A job queued before startup runs only after the app's startup, using what it set up."""
    events: list[str] = []
    app, endpoints = app_with_own_lifespan(app_class, events)
    job = await endpoints.submit("Greet", Greeting(name="Ada"))
    async with http_client_for(app):
        done = await endpoints.wait_for(job.id, timeout=5)
    assert done.status is JobStatus.COMPLETED and done.result == "Hello, Ada"
    assert events[:2] == ["app startup", "job ran"]


@APP_CLASSES
async def test_the_apps_lifespan_state_is_still_available(
    http_client_for, app_class: type[Starlette]
) -> None:
    """State yielded by the app's own lifespan still reaches the app's routes."""
    app, _ = app_with_own_lifespan(app_class, [])
    async with http_client_for(app) as client:
        response = await client.get("/motto")
    assert response.json() == {"motto": "from the app's lifespan"}


@APP_CLASSES
async def test_a_handler_reads_the_lifespan_state_as_a_route_does(
    http_client_for, app_class: type[Starlette]
) -> None:
    """What the app's lifespan yielded is ``ctx.state`` (as ``request.state`` for a route):
    ``ctx.state.motto``; each attempt gets its own copy, as each request does."""
    app, endpoints = app_with_own_lifespan(app_class, [])
    async with http_client_for(app) as client:
        accepted = await client.post("/mottos")
        first = await endpoints.wait_for(accepted.json()["id"], timeout=10)
        second = await endpoints.wait_for((await endpoints.submit("Motto")).id, timeout=10)
        scribbled = await client.get("/motto")
    assert first.result == second.result == "from the app's lifespan"
    assert scribbled.json() == {"motto": "from the app's lifespan"}
    assert endpoints.pool.attempts.state == {"motto": "from the app's lifespan"}


@APP_CLASSES
async def test_the_apps_own_shutdown_runs(http_client_for, app_class: type[Starlette]) -> None:
    """Leaving the lifespan runs the app's shutdown code, once."""
    events: list[str] = []
    app, _ = app_with_own_lifespan(app_class, events)
    async with http_client_for(app):
        assert events == ["app startup"]
    assert events == ["app startup", "app shutdown"]


@APP_CLASSES
async def test_the_apps_shutdown_runs_after_running_jobs_have_finished(
    http_client_for, app_class: type[Starlette]
) -> None:
    """Workers drain before the app's own shutdown, so handlers keep their resources."""
    events: list[str] = []
    app, endpoints = app_with_own_lifespan(app_class, events)
    started = asyncio.Event()

    @endpoints.map_async_post("/slow", name="Slow")
    async def slow(ctx: AsyncContext[None]) -> None:
        started.set()
        for _ in range(100):  # still running when shutdown begins
            await asyncio.sleep(0)
        events.append("slow job finished")

    async with http_client_for(app) as client:
        submitted = (await client.post("/slow")).json()
        async with asyncio.timeout(5):
            await started.wait()
    job = await endpoints.get_job(submitted["id"])
    assert job is not None and job.status is JobStatus.COMPLETED
    assert events == ["app startup", "slow job finished", "app shutdown"]


@APP_CLASSES
async def test_jobs_submitted_with_workers_run_to_completed(
    http_client_for, app_class: type[Starlette]
) -> None:
    """With workers (the default), every job POSTed while the app runs is Completed."""
    app, endpoints = app_with_own_lifespan(app_class, [])
    names = ["Ada", "Grace", "Linus"]
    async with http_client_for(app) as client:
        ids = [(await client.post("/greetings", json={"name": n})).json()["id"] for n in names]
        jobs = [await endpoints.wait_for(job_id, timeout=5) for job_id in ids]
    assert [job.status for job in jobs] == [JobStatus.COMPLETED] * 3
    assert [job.result for job in jobs] == [f"Hello, {n}" for n in names]


@pytest.mark.parametrize("app_factory", [FastAPI, Starlette], ids=["fastapi", "starlette"])
async def test_an_app_without_a_lifespan_of_its_own_gets_workers(
    http_client_for, app_factory: Callable[[], Starlette]
) -> None:
    """An app created without a lifespan still runs its jobs."""
    app = app_factory()
    endpoints = AsyncEndpoints(app)

    @endpoints.map_async_post("/ping")
    async def ping(ctx: AsyncContext) -> str:
        return "pong"

    async with http_client_for(app) as client:
        submitted = (await client.post("/ping")).json()
        job = await endpoints.wait_for(submitted["id"], timeout=5)
    assert job.status is JobStatus.COMPLETED and job.result == "pong"


@APP_CLASSES
async def test_an_api_only_instance_queues_but_never_runs_jobs(
    http_client_for, app_class: type[Starlette]
) -> None:
    """run_workers=False: POSTs are queued and stay Queued; the job was runnable all along."""
    events: list[str] = []
    app = app_class()
    endpoints = AsyncEndpoints(app, run_workers=False)

    @endpoints.map_async_post("/greetings", name="Greet")
    async def greet(ctx: AsyncContext[Greeting]) -> str:
        events.append("job ran")
        return f"Hello, {ctx.request.name}"

    async with http_client_for(app) as client:
        submitted = (await client.post("/greetings", json={"name": "Ada"})).json()
        with pytest.raises(TimeoutError):
            await endpoints.wait_for(submitted["id"], timeout=0.2)
    queued = await endpoints.get_job(submitted["id"])
    assert queued is not None and queued.status is JobStatus.QUEUED and events == []
    assert await endpoints.drain() == 1  # a worker elsewhere would have run it
    assert events == ["job ran"]


def mounted(child: Starlette, *, run_its_lifespan: bool) -> Starlette:
    """A parent app serving ``child`` under ``/api``, running the child's lifespan from its
    own as the README shows, or not (Starlette's default for a mount)."""

    @asynccontextmanager
    async def lifespan(parent: Starlette) -> AsyncIterator[Any]:
        async with child.router.lifespan_context(child) as state:
            yield state

    return Starlette(
        routes=[Mount("/api", app=child)], lifespan=lifespan if run_its_lifespan else None
    )


@APP_CLASSES
async def test_a_mounted_app_runs_its_jobs_when_the_parent_runs_its_lifespan(
    http_client_for, app_class: type[Starlette], caplog: pytest.LogCaptureFixture
) -> None:
    """The README's parent lifespan: the child's own startup and the workers run, the job
    completes, the child's lifespan state reaches its routes, Location carries the
    mount's prefix, and nothing is warned."""
    events: list[str] = []
    child, endpoints = app_with_own_lifespan(app_class, events)
    endpoints.map_job_details()
    caplog.set_level(logging.WARNING, logger="async_endpoints")
    async with http_client_for(mounted(child, run_its_lifespan=True)) as client:
        response = await client.post("/api/greetings", json={"name": "Ada"})
        job = await endpoints.wait_for(response.json()["id"], timeout=5)
        motto = await client.get("/api/motto")
    assert motto.json() == {"motto": "from the app's lifespan"}  # the child's state
    assert response.headers["location"] == f"/api/jobs/{job.id}"
    assert job.status is JobStatus.COMPLETED and job.result == "Hello, Ada"
    assert events[:2] == ["app startup", "job ran"] and "lifespan" not in caplog.text


@APP_CLASSES
async def test_a_job_accepted_by_an_app_whose_lifespan_never_ran_is_warned_about_once(
    http_client_for, app_class: type[Starlette], caplog: pytest.LogCaptureFixture
) -> None:
    """Mounted without the parent running its lifespan: the POSTs are accepted (a worker
    process on a shared store could run them) and one warning says why none runs here."""
    child, _ = app_with_own_lifespan(app_class, [])
    caplog.set_level(logging.WARNING, logger="async_endpoints")
    async with http_client_for(mounted(child, run_its_lifespan=False)) as client:
        for name in ("Ada", "Grace"):
            response = await client.post("/api/greetings", json={"name": name})
            assert response.status_code == 202
    warned = [r for r in caplog.records if "lifespan has not run" in r.getMessage()]
    assert len(warned) == 1 and "Mounted under another app" in warned[0].getMessage()


async def test_an_api_only_app_whose_lifespan_never_ran_is_not_warned_about(
    http_client_for, caplog: pytest.LogCaptureFixture
) -> None:
    """run_workers=False: no worker was to run the job here, so there is nothing to warn."""
    child = Starlette()
    endpoints = AsyncEndpoints(child, run_workers=False)

    @endpoints.map_async_post("/greetings", name="Greet")
    async def greet(ctx: AsyncContext[Greeting]) -> str:
        return ctx.request.name

    caplog.set_level(logging.WARNING, logger="async_endpoints")
    async with http_client_for(mounted(child, run_its_lifespan=False)) as client:
        response = await client.post("/api/greetings", json={"name": "Ada"})
    assert response.status_code == 202 and "lifespan has not run" not in caplog.text


async def test_a_job_accepted_after_the_lifespan_ended_is_warned_about_once_per_ending(
    http_client_for, caplog: pytest.LogCaptureFixture
) -> None:
    """After the app's lifespan has ended (a test client used without its ``with``
    block after another's), an in-memory app still accepts a POST, and one warning says
    no worker here runs it since the lifespan has ended; after the next lifespan's end,
    once again."""
    app = Starlette()
    endpoints = AsyncEndpoints(app)

    @endpoints.map_async_post("/greetings", name="Greet")
    async def greet(ctx: AsyncContext[Greeting]) -> str:
        return ctx.request.name

    caplog.set_level(logging.WARNING, logger="async_endpoints")
    transport = httpx.ASGITransport(app=app)  # runs no lifespan
    for _ in range(2):
        async with http_client_for(app) as client:
            assert (await client.post("/greetings", json={"name": "in"})).status_code == 202
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for name in ("Ada", "Grace"):
                response = await client.post("/greetings", json={"name": name})
                assert response.status_code == 202
    warned = [r for r in caplog.records if "lifespan has ended" in r.getMessage()]
    assert len(warned) == 2
    assert "has not run" not in caplog.text
