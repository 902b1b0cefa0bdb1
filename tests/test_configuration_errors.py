"""Wiring mistakes raise ConfigurationError naming the problem, and register nothing."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette

from async_endpoints import AsyncContext, AsyncEndpoints, ConfigurationError


async def noop(ctx: AsyncContext[None]) -> None:
    return None


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("max_concurrency", "8"),
        ("max_retries", 1.5),
        ("job_timeout", None),
        ("max_queue_size", "many"),
        ("run_workers", 1),
        ("capture_headers", "x-trace"),
        ("sensitive_headers", [1]),
        ("authorize", "yes"),
    ],
)
def test_a_wrongly_typed_setting_is_a_configuration_error_naming_it(
    setting: str, value: Any
) -> None:
    """Not a TypeError from deep inside: the setting's name and what it must be."""
    with pytest.raises(ConfigurationError, match=setting):
        AsyncEndpoints(**{setting: value})


@pytest.mark.parametrize("setting", ["sensitive_headers", "sensitive_query_params"])
@pytest.mark.parametrize("name", ["", "  "], ids=["empty", "blank"])
def test_a_blank_sensitive_name_is_a_configuration_error(setting: str, name: str) -> None:
    """A blank name would match everywhere (masking every ``= value`` of an error)."""
    with pytest.raises(ConfigurationError, match=f"{setting} must not hold an empty"):
        AsyncEndpoints(**{setting: ["x-secret", name]})


@pytest.mark.parametrize("app", [object(), "app", 3], ids=["object", "str", "int"])
def test_an_app_that_is_not_starlette_is_refused(app: Any) -> None:
    """AsyncEndpoints joins Starlette and FastAPI apps only."""
    with pytest.raises(ConfigurationError, match="Starlette or FastAPI"):
        AsyncEndpoints(app)


def test_a_route_path_without_a_leading_slash_is_refused_and_nothing_registered() -> None:
    """The handler is not left registered when its route cannot be added."""
    app = Starlette()
    endpoints = AsyncEndpoints(app)
    with pytest.raises(ConfigurationError, match="must start with '/'"):
        endpoints.add_async_post("api/noop", noop)
    with pytest.raises(ConfigurationError, match="must start with '/'"):
        endpoints.map_job_details("jobs/{job_id}")
    assert endpoints.handlers == {} and app.routes == []


def test_a_handler_whose_annotations_cannot_be_used_is_refused() -> None:
    """An unresolvable name or a type pydantic cannot handle, at registration."""

    class Opaque:
        pass

    async def unresolved(ctx: AsyncContext[Missing]) -> None:  # noqa: F821
        return None

    async def opaque(ctx: AsyncContext[Opaque]) -> None:
        return None

    endpoints = AsyncEndpoints()
    for handler in (unresolved, opaque):
        with pytest.raises(ConfigurationError, match="annotations are unusable"):
            endpoints.add_handler(handler)
    assert endpoints.handlers == {}
