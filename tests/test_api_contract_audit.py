"""Rules found by auditing the library against its public contract (API.md): input the
contract is silent about is refused with an exception (or a 4xx) naming the problem,
never a hang, a late crash inside a worker, or a 500."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from starlette.applications import Starlette

from async_endpoints import AsyncContext, AsyncEndpoints, ConfigurationError


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
