"""Rules found by auditing the library against its public contract (API.md): input the
contract is silent about is refused with an exception (or a 4xx) naming the problem,
never a hang, a late crash inside a worker, or a 500."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    ConfigurationError,
    InMemoryJobStore,
    JobStatus,
)
from tests.serving import served


async def noop(ctx: AsyncContext) -> None:
    return None


async def forever(ctx: AsyncContext) -> None:
    await asyncio.Event().wait()


# --- wait_for ---------------------------------------------------------------------------------


async def test_wait_for_refuses_a_timeout_that_is_not_a_number() -> None:
    """``timeout=nan`` is a ValueError naming it, at once: it used to spin a core for ever
    (no deadline ever passed, and every wait was of 0 s)."""
    endpoints = AsyncEndpoints()
    endpoints.add_handler(forever)
    async with endpoints.running(workers=False):
        job = await endpoints.submit("forever")
        async with asyncio.timeout(5):
            with pytest.raises(ValueError, match="timeout"):
                await endpoints.wait_for(job.id, timeout=math.nan)


# --- registering handlers ---------------------------------------------------------------------


@pytest.mark.parametrize("name", [5, b"bytes", ("a",)], ids=["int", "bytes", "tuple"])
def test_a_job_name_that_is_not_text_is_a_configuration_error(name: Any) -> None:
    """The job JSON's ``name`` is a string: a route is not registered under another type."""
    app = Starlette()
    endpoints = AsyncEndpoints(app)
    with pytest.raises(ConfigurationError, match="name"):
        endpoints.map_async_post("/x", name=name)(noop)
    assert endpoints.handlers == {} and app.routes == []


def test_a_validator_that_is_not_callable_is_a_configuration_error() -> None:
    """Not a 500 on every POST later: the validator is checked when the route is mapped."""
    app = Starlette()
    endpoints = AsyncEndpoints(app)
    with pytest.raises(ConfigurationError, match="validator"):
        endpoints.map_async_post("/x", validator="yes")(noop)  # type: ignore[arg-type]
    assert endpoints.handlers == {} and app.routes == []


def test_a_handler_needing_more_than_the_context_is_a_configuration_error() -> None:
    """A handler is called with its context alone: one that needs another argument would
    fail every attempt with a TypeError, so it is refused when registered."""

    async def two(ctx: AsyncContext, extra: int) -> None:
        return None

    async def keyword(ctx: AsyncContext, *, extra: int) -> None:
        return None

    endpoints = AsyncEndpoints()
    for handler in (two, keyword):
        with pytest.raises(ConfigurationError, match="extra"):
            endpoints.add_handler(handler)
    assert endpoints.handlers == {}


def test_a_handler_with_optional_extra_parameters_is_accepted() -> None:
    """Parameters with defaults (or ``*args``, ``**kwargs``) need nothing from the caller."""

    async def optional(ctx: AsyncContext, extra: int = 1, *args: Any, **kwargs: Any) -> None:
        return None

    endpoints = AsyncEndpoints()
    endpoints.add_handler(optional)
    assert "optional" in endpoints.handlers


# --- retry delays -----------------------------------------------------------------------------


async def fails(ctx: AsyncContext) -> None:
    raise RuntimeError("failed on purpose")


@pytest.mark.parametrize(
    "settings",
    [
        {"retry_max_delay": math.inf, "retry_base_delay": 1e300},
        {"retry_max_delay": 1e300, "retry_base_delay": 1e300},
    ],
    ids=["no-cap", "huge-cap"],
)
async def test_a_retry_delay_too_long_to_keep_waits_a_hundred_years(
    settings: dict[str, float],
) -> None:
    """A failed attempt whose backoff exceeds what a time can hold is still recorded: the
    retry waits the longest delay a job may have (100 years, as for ``delay``), instead of
    the settling failing with OverflowError and the job staying InProgress."""
    endpoints = AsyncEndpoints(max_retries=1, retry_jitter=0.0, **settings)
    endpoints.add_handler(fails)
    async with endpoints.running(workers=False):
        job = await endpoints.submit("fails")
        await endpoints.drain()
        failed = await endpoints.get_job(job.id)
    assert failed is not None and failed.status == JobStatus.SCHEDULED
    assert failed.run_at is not None and failed.error is not None
    waits = (failed.run_at - failed.created_at).total_seconds()
    assert 99 * 365 * 86400 < waits < 101 * 365 * 86400


@pytest.mark.parametrize("jitter", [math.inf, math.nan])
def test_retry_jitter_must_be_finite(jitter: float) -> None:
    """An infinite jitter has no delay to give (0 x inf is NaN): a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="retry_jitter"):
        AsyncEndpoints(retry_jitter=jitter)


# --- submit's request parts -------------------------------------------------------------------


async def echo(ctx: AsyncContext) -> dict[str, Any]:
    return {"headers": ctx.headers.items(), "route_params": ctx.route_params}


@pytest.mark.parametrize(
    "parts",
    [
        {"headers": {"x-count": 1}},
        {"headers": {"x-price": "10 €"}},
        {"headers": [("x-a", "b", "c")]},
        {"headers": "x-a: b"},
        {"route_params": {"id": [7]}},
        {"route_params": {1: "a"}},
        {"owner": 5},
        {"query_string": b"a=1"},
    ],
    ids=[
        "header-int",
        "header-not-latin-1",
        "header-triple",
        "headers-str",
        "route-param-list",
        "route-param-name-int",
        "owner-int",
        "query-bytes",
    ],
)
async def test_submit_refuses_request_parts_a_handler_could_not_be_given(
    parts: dict[str, Any],
) -> None:
    """Headers (latin-1 text pairs), route parameters (text to text), the owner (text) and
    the query string (text) are checked by ``submit``: a ValueError, and nothing stored,
    rather than a job whose every attempt fails rebuilding its context."""
    endpoints = AsyncEndpoints()
    endpoints.add_handler(echo)
    async with endpoints.running(workers=False):
        with pytest.raises(ValueError, match=r"headers|route_params|owner|query_string"):
            await endpoints.submit("echo", **parts)
        assert (await endpoints.list_jobs()).jobs == []


async def test_submit_gives_the_handler_the_headers_and_route_params_it_was_given() -> None:
    """Text headers (any latin-1) reach the handler as given, route parameters as text (a
    path convertor's int, float or UUID as a POST would give it)."""
    endpoints = AsyncEndpoints()
    endpoints.add_handler(echo)
    async with endpoints.running(workers=False):
        job = await endpoints.submit(
            "echo",
            headers=[("X-Note", "café"), ("x-note", "two")],
            route_params={"id": 7, "name": "n", "ratio": 0.5},
        )
        await endpoints.drain()
        done = await endpoints.get_job(job.id)
    assert done is not None and done.status == JobStatus.COMPLETED
    assert done.result == {
        "headers": [["x-note", "café"], ["x-note", "two"]],
        "route_params": {"id": "7", "name": "n", "ratio": "0.5"},
    }


# --- InMemoryJobStore -------------------------------------------------------------------------


@pytest.mark.parametrize("retention", ["86400", None, True], ids=["str", "none", "bool"])
def test_in_memory_store_refuses_a_retention_that_is_not_a_number(retention: Any) -> None:
    """A ConfigurationError naming ``retention``, as for a negative one (not a TypeError)."""
    with pytest.raises(ConfigurationError, match="retention"):
        InMemoryJobStore(retention=retention)


# --- Location ---------------------------------------------------------------------------------


def tenant_app(app: Starlette) -> AsyncEndpoints:
    """Submissions under ``/tenants/{tenant}/...`` and elsewhere; job details under the
    tenant's path."""
    endpoints = AsyncEndpoints(app)

    @endpoints.map_async_post("/tenants/{tenant}/reports", name="TenantReport")
    async def tenant_report(ctx: AsyncContext) -> str:
        return ctx.route_params["tenant"]

    @endpoints.map_async_post("/reports", name="Report")
    async def report(ctx: AsyncContext) -> str:
        return "plain"

    endpoints.map_job_details("/tenants/{tenant}/jobs/{job_id}")
    return endpoints


@pytest.mark.parametrize("make_app", [Starlette, FastAPI], ids=["starlette", "fastapi"])
async def test_location_fills_the_details_path_from_the_submissions_path(
    make_app: Callable[[], Starlette],
) -> None:
    """A job-details path with a parameter besides ``{job_id}`` takes its value from the
    submission's own path parameters: ``Location`` names the job under the same tenant
    (it used to answer 500 after storing the job)."""
    app = make_app()
    tenant_app(app)
    async with served(app) as base, httpx.AsyncClient(base_url=base) as client:
        submitted = await client.post("/tenants/acme/reports")
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]
        assert submitted.headers["location"] == f"/tenants/acme/jobs/{job_id}"
        assert (await client.get(submitted.headers["location"])).status_code == 200
        # A value that is not plain ASCII is percent-encoded, as it came.
        submitted = await client.post("/tenants/%E2%82%AC%20x/reports")
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]
        assert submitted.headers["location"] == f"/tenants/%E2%82%AC%20x/jobs/{job_id}"
        shown = await client.get(submitted.headers["location"])
        assert shown.status_code == 200, shown.text


@pytest.mark.parametrize("make_app", [Starlette, FastAPI], ids=["starlette", "fastapi"])
async def test_location_is_left_out_when_the_details_path_cannot_be_filled(
    make_app: Callable[[], Starlette],
) -> None:
    """A submission whose path lacks the details path's other parameters answers 202
    without ``Location`` (never a 500), and its job is stored once."""
    app = make_app()
    endpoints = tenant_app(app)
    async with served(app) as base, httpx.AsyncClient(base_url=base) as client:
        submitted = await client.post("/reports")
        assert submitted.status_code == 202, submitted.text
        assert "location" not in submitted.headers
    assert [job.name for job in (await endpoints.list_jobs()).jobs] == ["Report"]


# --- the store argument -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "store",
    ["redis://localhost:6379/0", InMemoryJobStore, object()],
    ids=["url", "class", "object"],
)
def test_a_store_that_is_not_a_job_store_is_a_configuration_error(store: Any) -> None:
    """``store=`` takes a store object: a URL, a store class or anything else is refused
    when the app is wired (it used to fail the app's startup with an AttributeError)."""
    with pytest.raises(ConfigurationError, match="JobStore"):
        AsyncEndpoints(Starlette(), store=store)


def test_a_url_given_as_the_store_is_pointed_at_redis_job_store() -> None:
    """The error says what to write instead."""
    with pytest.raises(ConfigurationError, match=r"RedisJobStore\(url\)"):
        AsyncEndpoints(store="redis://localhost:6379/0")


# --- validators -------------------------------------------------------------------------------


@pytest.mark.parametrize("make_app", [Starlette, FastAPI], ids=["starlette", "fastapi"])
@pytest.mark.parametrize("refusal", [False, True, {"detail": "no"}], ids=["false", "true", "dict"])
async def test_a_validator_returning_neither_none_nor_a_response_is_an_error_naming_it(
    make_app: Callable[[], Starlette], refusal: Any, http_client_for: Any
) -> None:
    """A validator gives None (queue the job) or a Response (send it): anything else is a
    TypeError naming the validator, and nothing is stored. FastAPI used to send it as a
    ``202`` body with no job behind it."""
    app = make_app()
    endpoints = AsyncEndpoints(app)

    def boolean_check(request: Any, body: Any) -> Any:
        return refusal

    endpoints.map_async_post("/x", validator=boolean_check)(noop)
    async with http_client_for(app) as client:
        with pytest.raises(TypeError, match="boolean_check"):
            await client.post("/x")
        assert (await endpoints.list_jobs()).jobs == []
