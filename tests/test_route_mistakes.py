"""Route mapping mistakes are refused at once, naming the problem, with nothing registered:
a decorator written without its parentheses or given something other than a path, and a
route that one already there would shadow (the same path mapped twice, two
`AsyncEndpoints` on one app mapping one path, the app's own route there first)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from async_endpoints import AsyncContext, AsyncEndpoints, ConfigurationError, InMemoryJobStore


async def noop(ctx: AsyncContext[None]) -> None:
    return None


@pytest.fixture(params=[FastAPI, Starlette], ids=["fastapi", "starlette"])
def app(request: pytest.FixtureRequest) -> Starlette:
    app_class: type[Starlette] = request.param
    return app_class()


def routed(app: Starlette) -> list[tuple[str, frozenset[str]]]:
    return [(r.path, frozenset(getattr(r, "methods", None) or ())) for r in app.routes]


@pytest.mark.parametrize("verb", ["post", "put", "patch", "delete"])
def test_a_decorator_without_its_parentheses_is_refused_saying_how_to_write_it(
    app: Starlette, verb: str
) -> None:
    endpoints = AsyncEndpoints(app)
    before = routed(app)
    decorator = getattr(endpoints, f"map_async_{verb}")
    with pytest.raises(ConfigurationError) as refused:
        decorator(noop)
    assert f'write @endpoints.map_async_{verb}("/path"), with its parentheses' in str(refused.value)
    assert "above noop" in str(refused.value)
    assert endpoints.handlers == {} and routed(app) == before


@pytest.mark.parametrize("path", [5, None, b"/x", "x"], ids=["int", "none", "bytes", "no-slash"])
def test_a_decorator_given_no_path_is_refused_when_called_not_when_decorating(
    app: Starlette, path: Any
) -> None:
    endpoints = AsyncEndpoints(app)
    with pytest.raises(ConfigurationError, match="a route path must be text starting with '/'"):
        endpoints.map_async_post(path)
    with pytest.raises(ConfigurationError, match="a route path must be text starting with '/'"):
        endpoints.add_async_post(path, noop)
    assert endpoints.handlers == {}


def test_add_async_route_given_the_handler_first_says_the_path_comes_first(
    app: Starlette,
) -> None:
    endpoints = AsyncEndpoints(app)
    with pytest.raises(ConfigurationError, match="takes the route's path before the handler"):
        endpoints.add_async_route("POST", noop, "/x")  # type: ignore[arg-type]


def test_the_same_path_and_method_mapped_twice_is_refused_naming_the_first(
    app: Starlette,
) -> None:
    endpoints = AsyncEndpoints(app)
    endpoints.add_async_post("/work/{item}", noop, name="First")
    before = routed(app)
    with pytest.raises(ConfigurationError) as refused:
        endpoints.add_async_post("/work/{other}", noop, name="Second")  # same pattern
    assert str(refused.value) == (
        "POST /work/{other} is routed already (to 'First'): "
        "a second route there would never be reached"
    )
    assert "Second" not in endpoints.handlers and routed(app) == before
    endpoints.add_async_route("PUT", "/work/{item}", noop, name="Other")  # another method


def test_each_job_route_mapped_twice_is_refused(app: Starlette) -> None:
    endpoints = AsyncEndpoints(app, store=InMemoryJobStore())
    endpoints.map_job_details()
    endpoints.map_job_cancel()
    endpoints.map_job_events()
    endpoints.map_batch_details()
    endpoints.map_metrics()
    endpoints.map_dashboard(authorize=lambda request: True)
    before = routed(app)
    for again in (
        endpoints.map_job_details,
        endpoints.map_job_cancel,
        endpoints.map_job_events,
        endpoints.map_batch_details,
        endpoints.map_metrics,
        lambda: endpoints.map_dashboard(authorize=lambda request: True),
    ):
        with pytest.raises(ConfigurationError, match="is routed already"):
            again()
    assert routed(app) == before


def test_a_second_async_endpoints_mapping_the_first_ones_job_route_is_refused(
    app: Starlette,
) -> None:
    """Its jobs' Location would lead to the first instance's route, which answers 404."""
    first = AsyncEndpoints(app, store=InMemoryJobStore())
    first.map_job_details()
    second = AsyncEndpoints(app, store=InMemoryJobStore())
    with pytest.raises(ConfigurationError, match=r"GET(/HEAD)? /jobs/\{job_id\} is routed already"):
        second.map_job_details()
    second.map_job_details("/other-jobs/{job_id}")


def test_the_apps_own_route_there_first_is_named() -> None:
    async def mine(request: Any) -> PlainTextResponse:
        return PlainTextResponse("mine")

    app = Starlette(routes=[Route("/jobs/{id}", mine, name="mine")])
    endpoints = AsyncEndpoints(app)
    with pytest.raises(ConfigurationError, match=r"to 'mine'"):
        endpoints.map_job_details()
    anything = Starlette(routes=[Route("/any", mine)])  # no methods: GET and HEAD only
    AsyncEndpoints(anything).add_async_post("/any", noop)


def test_a_route_of_the_same_router_prefix_is_refused_and_other_paths_are_not() -> None:
    app = FastAPI()
    router = APIRouter(prefix="/v1")
    endpoints = AsyncEndpoints(app)
    endpoints.add_async_post("/work", noop, name="First", router=router)
    with pytest.raises(ConfigurationError, match="POST /v1/work is routed already"):
        endpoints.add_async_post("/work", noop, name="Second", router=router)
    endpoints.add_async_post("/work", noop, name="Unprefixed")  # /work on the app: fine


def test_a_mount_or_another_path_is_no_conflict(app: Starlette) -> None:
    app.router.routes.append(Mount("/static", routes=[]))
    endpoints = AsyncEndpoints(app)
    endpoints.add_async_post("/static", noop, name="A")
    endpoints.add_async_post("/static/{name}", noop, name="B")
    assert set(endpoints.handlers) == {"A", "B"}


@pytest.mark.parametrize("verb", ["post", "put", "patch", "delete"])
def test_an_endpoints_handler_without_an_annotated_context_is_refused(
    app: Starlette, verb: str
) -> None:
    """``async def create_order(ctx)``: an unannotated context would take no body, and a
    client's JSON would be dropped without a word; the mapping is refused, saying how to
    annotate it, with nothing registered. (A handler mapped without a route, add_handler,
    may leave it unannotated: it takes no body.)"""
    endpoints = AsyncEndpoints(app)
    before = routed(app)

    async def create_order(ctx):
        return None

    with pytest.raises(ConfigurationError) as refused:
        getattr(endpoints, f"map_async_{verb}")("/orders")(create_order)
    assert "ctx: AsyncContext[Model] takes a JSON body (read as ctx.request)" in str(refused.value)
    assert endpoints.handlers == {} and routed(app) == before
    endpoints.add_handler(create_order)
    assert list(endpoints.handlers) == ["create_order"]


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"retries": 3}, "retries (did you mean max_retries?)"),
        ({"response_model": int}, "response_model (the handler's return annotation is its"),
        ({"status_code": 201}, "status_code (an async endpoint answers 202, or as the"),
    ],
    ids=["misspelt", "response_model", "status_code"],
)
def test_an_unknown_route_option_names_the_one_meant(
    app: Starlette, options: dict[str, Any], said: str
) -> None:
    """A misspelt option names the option it most likely means; FastAPI's own route
    options that an async endpoint has no use for say what takes their place."""
    endpoints = AsyncEndpoints(app)
    with pytest.raises(TypeError) as refused:
        endpoints.map_async_post("/orders", **options)
    assert said in str(refused.value)
