"""Library store errors raised in the app's own routes answer 503 + Retry-After, as JSON."""

from __future__ import annotations

import asyncio
import importlib
import logging
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, WebSocketRoute
from starlette.websockets import WebSocket

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    JobStoreError,
    QueueFullError,
    StoreUnavailableError,
)
from async_endpoints_redis import RedisJobStore
from tests.redis_servers import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]


def dead_redis_url() -> str:
    """A loopback port nothing listens on: every call is refused at once."""
    return f"redis://127.0.0.1:{free_port()}/0"


def add_sync_route(app: Starlette, endpoints: AsyncEndpoints) -> None:
    """The app's own route starting a job and waiting for it (example_app's pattern)."""

    async def run_now(request: Request) -> Response:
        job = await endpoints.submit("noop")
        job = await endpoints.wait_for(job.id, timeout=5)
        return JSONResponse({"status": job.status})

    app.add_route("/run-now", run_now, methods=["POST"])


def add_task_group_route(app: Starlette, endpoints: AsyncEndpoints, *, also: bool = False) -> None:
    """The app's own route submitting two jobs inside a TaskGroup, which wraps what they
    raise in an ExceptionGroup; ``also``: a third task fails with its own error."""

    async def both(request: Request) -> Response:
        async def fails_too() -> None:
            raise LookupError("the app's own failure")

        async with asyncio.TaskGroup() as group:
            group.create_task(endpoints.submit("noop"))
            group.create_task(endpoints.submit("noop"))
            if also:
                group.create_task(fails_too())
        return JSONResponse({"submitted": 2})

    app.add_route("/both", both, methods=["POST"])


async def noop(ctx: AsyncContext[None]) -> None:
    return None


#: The app's own routes meeting store errors: one submit, and two in a TaskGroup (which
#: wraps what they raise in an ExceptionGroup, answered as its first error).
OWN_ROUTES = pytest.mark.parametrize("route", ["/run-now", "/both"], ids=["one", "task-group"])


@OWN_ROUTES
async def test_a_full_queue_in_an_apps_own_route_answers_503_with_retry_after(
    app: Starlette, http_client_for: Any, route: str
) -> None:
    """QueueFullError from submit() is a 503 JSON answer, not a plain-text 500."""
    endpoints = AsyncEndpoints(app, max_queue_size=1, run_workers=False)
    endpoints.add_handler(noop)
    add_sync_route(app, endpoints)
    add_task_group_route(app, endpoints)
    async with http_client_for(app) as client:
        await endpoints.submit("noop")
        response = await client.post(route)
    assert response.status_code == 503 and int(response.headers["retry-after"]) >= 1
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": "too many jobs are waiting; try again later"}


@OWN_ROUTES
async def test_an_unreachable_store_in_an_apps_own_route_answers_503_naming_no_host(
    app: Starlette, http_client_for: Any, route: str
) -> None:
    """StoreUnavailableError is a 503 with a fixed message: no host, port or Redis text."""
    url = dead_redis_url()
    endpoints = AsyncEndpoints(app, store=RedisJobStore(url, cluster=False), run_workers=False)
    endpoints.add_handler(noop)
    add_sync_route(app, endpoints)
    add_task_group_route(app, endpoints)
    async with http_client_for(app) as client:
        response = await client.post(route)
    assert response.status_code == 503 and int(response.headers["retry-after"]) >= 1
    assert response.json() == {"detail": "the job store is unavailable; try again later"}
    assert url.split("//")[1].split("/")[0] not in response.text


async def own_answer(request: Request, exc: Exception) -> Response:
    return JSONResponse({"mine": type(exc).__name__}, 599)


@pytest.mark.parametrize(
    ("handled", "route", "answered"),
    [
        (JobStoreError, "/run-now", "QueueFullError"),  # a base of the library's errors
        (ExceptionGroup, "/both", "ExceptionGroup"),  # a TaskGroup's group of them
    ],
)
async def test_handlers_the_app_registered_for_these_errors_or_their_bases_stay_in_charge(
    http_client_for: Any, handled: type[Exception], route: str, answered: str
) -> None:
    """An app handling JobStoreError (a base), QueueFullError or ExceptionGroup itself
    keeps its answer."""
    app = FastAPI(exception_handlers={handled: own_answer})
    endpoints = AsyncEndpoints(app, max_queue_size=1, run_workers=False)
    endpoints.add_handler(noop)
    add_sync_route(app, endpoints)
    add_task_group_route(app, endpoints)
    async with http_client_for(app) as client:
        await endpoints.submit("noop")
        response = await client.post(route)
    assert response.status_code == 599 and response.json() == {"mine": answered}
    assert app.exception_handlers[handled] is own_answer
    if handled is JobStoreError:
        assert StoreUnavailableError not in app.exception_handlers


@pytest.fixture
def example_on_a_dead_redis(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``example_app.main`` freshly imported with REDIS_URL naming a port nobody serves."""
    monkeypatch.setenv("REDIS_URL", dead_redis_url())
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    return importlib.reload(importlib.import_module("example_app.main"))


async def test_the_example_apps_synchronous_route_answers_503_while_redis_is_down(
    example_on_a_dead_redis: ModuleType, http_client_for: Any
) -> None:
    """POST /api/process-data-sync/{tenant} meets StoreUnavailableError: 503 JSON."""
    async with http_client_for(example_on_a_dead_redis.app) as client:
        response = await client.post("/api/process-data-sync/acme", json={"data": "now"})
    assert response.status_code == 503 and "retry-after" in response.headers
    assert response.json() == {"detail": "the job store is unavailable; try again later"}


async def test_a_websocket_route_meeting_the_error_is_closed_with_try_again_later() -> None:
    """No HTTP answer exists for a socket: it is closed with code 1013."""

    async def live(websocket: WebSocket) -> None:
        await websocket.accept()
        await endpoints.submit("noop")
        await endpoints.submit("noop")

    app = Starlette(routes=[WebSocketRoute("/live", live)])
    endpoints = AsyncEndpoints(app, max_queue_size=1, run_workers=False)
    endpoints.add_handler(noop)
    incoming = [{"type": "websocket.connect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/live", "headers": [], "query_string": b""}
    await app(scope, receive, send)
    assert [message["type"] for message in sent] == ["websocket.accept", "websocket.close"]
    assert sent[-1]["code"] == 1013


async def test_a_job_route_meeting_an_unreachable_store_logs_the_jobs_id(
    app: Starlette, http_client_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """GET /jobs/{id}, POST .../cancel, GET .../events, and a submission with a chosen
    ``X-Async-Request-Id`` answer 503, and each record of it (a warning, or at DEBUG once
    the outage's first warning is out: `_outage_log`) is about that job: its text names
    the id and the record carries ``job_id``."""
    endpoints = AsyncEndpoints(
        app, store=RedisJobStore(dead_redis_url(), cluster=False), run_workers=False
    )
    endpoints.add_async_post("/run", noop)
    endpoints.map_job_details()
    endpoints.map_job_cancel()
    endpoints.map_job_events()
    job_id = str(uuid.uuid4())
    caplog.set_level(logging.DEBUG, logger="async_endpoints")
    async with http_client_for(app) as client:
        for method, path in [
            ("GET", f"/jobs/{job_id}"),
            ("POST", f"/jobs/{job_id}/cancel"),
            ("GET", f"/jobs/{job_id}/events"),
            ("POST", "/run"),
        ]:
            caplog.clear()
            headers = {"X-Async-Request-Id": job_id} if path == "/run" else {}
            response = await client.request(method, path, headers=headers)
            assert response.status_code == 503, path
            (record,) = [r for r in caplog.records if r.getMessage().startswith("could not")]
            assert job_id in record.getMessage()
            assert (record.job_id, record.job_name) == (job_id, None)  # type: ignore[attr-defined]


@pytest.mark.parametrize("sub_app_class", [Starlette, FastAPI], ids=["starlette", "fastapi"])
async def test_a_route_of_a_mounted_app_answers_503_too(
    app: Starlette, http_client_for: Any, sub_app_class: type[Starlette]
) -> None:
    """A sub-app mounted under the app (two levels deep here, the first mount behind a
    middleware) answers its own routes' errors: the handlers are installed on it at
    startup, so QueueFullError from its route is the same 503 JSON with Retry-After,
    not a plain-text 500."""
    endpoints = AsyncEndpoints(app, max_queue_size=1, run_workers=False)
    endpoints.add_handler(noop)
    inner = sub_app_class()
    add_sync_route(inner, endpoints)
    outer = Starlette(routes=[Mount("/inner", app=inner)])
    # Behind a middleware the mount wraps it in: the handlers still find it.
    app.router.routes.append(Mount("/outer", app=outer, middleware=[Middleware(GZipMiddleware)]))
    async with http_client_for(app) as client:
        await endpoints.submit("noop")
        response = await client.post("/outer/inner/run-now")
    assert response.status_code == 503 and int(response.headers["retry-after"]) >= 1
    assert response.json() == {"detail": "too many jobs are waiting; try again later"}


async def test_a_group_with_any_other_error_is_left_as_it_was(
    app: Starlette, http_client_for: Any
) -> None:
    """A group that also holds the app's own failure is not turned into a 503: it goes on
    to the server as any unhandled error (a 500), whole."""
    endpoints = AsyncEndpoints(app, max_queue_size=1, run_workers=False)
    endpoints.add_handler(noop)
    add_task_group_route(app, endpoints, also=True)
    async with http_client_for(app) as client:
        await endpoints.submit("noop")
        with pytest.raises(ExceptionGroup) as raised:
            await client.post("/both")
    assert raised.group_contains(LookupError) and raised.group_contains(QueueFullError)
