"""Rules found by auditing the library against its public contract (API.md): input the
contract is silent about is refused with an exception (or a 4xx) naming the problem,
never a hang, a late crash inside a worker, or a 500."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from starlette.applications import Starlette

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    ConfigurationError,
    InMemoryJobStore,
    JobStatus,
)


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
        {"route_params": {"id": 7}},
        {"route_params": {1: "a"}},
        {"owner": 5},
        {"query_string": b"a=1"},
    ],
    ids=[
        "header-int",
        "header-not-latin-1",
        "header-triple",
        "headers-str",
        "route-param-int",
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
    """Text headers (any latin-1) and text route parameters reach the handler as given."""
    endpoints = AsyncEndpoints()
    endpoints.add_handler(echo)
    async with endpoints.running(workers=False):
        job = await endpoints.submit(
            "echo", headers=[("X-Note", "café"), ("x-note", "two")], route_params={"id": "7"}
        )
        await endpoints.drain()
        done = await endpoints.get_job(job.id)
    assert done is not None and done.status == JobStatus.COMPLETED
    assert done.result == {
        "headers": [["x-note", "café"], ["x-note", "two"]],
        "route_params": {"id": "7"},
    }


# --- InMemoryJobStore -------------------------------------------------------------------------


@pytest.mark.parametrize("retention", ["86400", None, True], ids=["str", "none", "bool"])
def test_in_memory_store_refuses_a_retention_that_is_not_a_number(retention: Any) -> None:
    """A ConfigurationError naming ``retention``, as for a negative one (not a TypeError)."""
    with pytest.raises(ConfigurationError, match="retention"):
        InMemoryJobStore(retention=retention)
