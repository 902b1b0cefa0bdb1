"""Wiring mistakes raise ConfigurationError naming the problem, and register nothing."""

from __future__ import annotations

import asyncio
import functools
import re
from typing import Annotated, Any

import pytest
from fastapi import Depends, Header, Query
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.responses import JSONResponse

from async_endpoints import AsyncContext, AsyncEndpoints, ConfigurationError, JobValidationError


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
    with pytest.raises(ConfigurationError, match="must be text starting with '/'"):
        endpoints.add_async_post("api/noop", noop)
    with pytest.raises(ConfigurationError, match="must start with '/'"):
        endpoints.map_job_details("jobs/{job_id}")
    assert endpoints.handlers == {} and app.routes == []


class Opaque:
    """A type pydantic has no schema for."""


def test_a_handler_whose_annotations_cannot_be_used_is_refused() -> None:
    """An unresolvable name (a type defined inside a function, under ``from __future__
    import annotations``: the message says to define it at the module's top level) or a
    type pydantic cannot handle, at registration."""

    class Local:
        pass

    async def local(ctx: AsyncContext[Local]) -> None:
        return None

    async def unresolved(ctx: AsyncContext[Missing]) -> None:  # noqa: F821
        return None

    async def opaque(ctx: AsyncContext[Opaque]) -> None:
        return None

    endpoints = AsyncEndpoints()
    for handler in (unresolved, local, opaque):
        with pytest.raises(ConfigurationError, match="annotations are unusable") as refused:
            endpoints.add_handler(handler)
        assert ("define them at its top level" in str(refused.value)) is (handler is not opaque)
    assert endpoints.handlers == {}


async def _get_db() -> str:
    return "a session"


async def with_depends(ctx: AsyncContext[None], db: Any = Depends(_get_db)) -> None: ...  # noqa: B008


async def with_annotated_depends(
    ctx: AsyncContext[None], db: Annotated[Any, Depends(_get_db)] = None
) -> None: ...


async def with_query(ctx: AsyncContext[None], page: int = Query(1)) -> None: ...


async def with_bare_annotated_depends(
    ctx: AsyncContext[None], db: Annotated[Any, Depends(_get_db)]
) -> None: ...


async def with_header(ctx: AsyncContext[None], agent: str = Header("")) -> None: ...


@pytest.mark.parametrize(
    "handler",
    [with_depends, with_annotated_depends, with_bare_annotated_depends, with_query, with_header],
    ids=["Depends", "Annotated Depends", "Annotated Depends, no default", "Query", "Header"],
)
def test_a_handler_asking_fastapi_for_a_dependency_is_refused_saying_why(handler: Any) -> None:
    """Nothing resolves a FastAPI dependency or request value for a job (the handler
    would get the marker object itself): refused at registration, naming the parameter
    and where resources come from instead."""
    endpoints = AsyncEndpoints()
    name = handler.__name__
    with pytest.raises(ConfigurationError, match=f"{name}'s parameter .* asks FastAPI") as refused:
        endpoints.add_handler(handler)
    assert "ctx.state" in str(refused.value)
    assert endpoints.handlers == {}


async def _scaled(ctx: AsyncContext[int], factor: int) -> int:
    assert ctx.request is not None
    return ctx.request * factor


async def test_a_partial_handler_runs_under_the_name_it_is_given() -> None:
    """``functools.partial`` binds a handler's options: it needs a name (it has no
    ``__name__``), and runs with its bound arguments; its body type is the function's."""
    endpoints = AsyncEndpoints()
    with pytest.raises(ConfigurationError, match="has no __name__: give it a name"):
        endpoints.add_handler(functools.partial(_scaled, factor=3))
    assert endpoints.handlers == {}
    endpoints.add_handler(functools.partial(_scaled, factor=3), name="Triple")
    async with endpoints.running(workers=False):
        job = await endpoints.submit("Triple", 5)
        with pytest.raises(JobValidationError):
            await endpoints.submit("Triple", "not a number")
        await endpoints.drain()
        done = await endpoints.get_job(job.id)
    assert done is not None and done.result == 15


def _one(first: Any) -> bool:
    return True


def _two(first: Any, second: Any) -> bool:
    return True


@pytest.mark.parametrize(
    ("setting", "wrong", "shape"),
    [
        ("authorize", _one, "authorize(request, job)"),
        ("owner", _two, "owner(request)"),
        ("job_submitted_response", _one, "job_submitted_response(job, request)"),
        ("job_status_response", lambda: None, "job_status_response(job, request)"),
        ("error_message", _two, "error_message(exception)"),
    ],
)
def test_a_hook_setting_that_cannot_take_its_arguments_is_refused_when_given(
    setting: str, wrong: Any, shape: str
) -> None:
    """A hook written for other arguments is refused at construction, naming the hook and
    how it is called, rather than answering every request with a 500 later."""
    with pytest.raises(
        ConfigurationError,
        match=f"{setting} is called as {re.escape(shape)}",
    ):
        AsyncEndpoints(**{setting: wrong})


@pytest.mark.parametrize("option", ["validator", "delay", "partition_key", "tenant"])
def test_a_route_hook_that_cannot_take_request_and_body_is_refused_and_nothing_registered(
    option: str,
) -> None:
    """validator, and delay / partition_key / tenant given as functions, are called with
    (request, body): one taking only the request is refused when the route is mapped."""
    app = Starlette()
    endpoints = AsyncEndpoints(app)
    with pytest.raises(
        ConfigurationError, match=rf"{option} is called as {option}\(request, body\)"
    ):
        endpoints.add_async_route("POST", "/x", noop, **{option: _one})
    assert app.routes == [] and endpoints.handlers == {}


def test_a_webhook_url_function_that_cannot_take_request_and_body_is_refused() -> None:
    """webhook_url given as a function is called with (request, body)."""
    endpoints = AsyncEndpoints(
        Starlette(),
        webhook_secret="whsec_c2VjcmV0c2VjcmV0c2VjcmV0",
        webhook_allowed_hosts=["hooks.example.com"],
    )
    with pytest.raises(ConfigurationError, match=r"webhook_url is called as"):
        endpoints.add_async_route("POST", "/x", noop, webhook_url=_one)


def test_the_dashboard_and_batch_route_authorize_hooks_are_checked_for_their_arguments() -> None:
    """map_dashboard's authorize takes (request), map_batch_details' (request, batch)."""
    endpoints = AsyncEndpoints(Starlette())
    with pytest.raises(ConfigurationError, match=r"authorize is called as .*\(request\)"):
        endpoints.map_dashboard("/dashboard", authorize=_two)
    with pytest.raises(ConfigurationError, match=r"authorize is called as .*\(request, batch\)"):
        endpoints.map_batch_details(authorize=_one)


class _CallableHook:
    def __call__(self, request: Any, job: Any) -> bool:
        return True


@pytest.mark.parametrize(
    "hook",
    [
        _two,
        lambda request, job, extra=None: True,
        lambda *args: True,
        lambda request, *rest, **named: True,
        _CallableHook(),
        functools.partial(lambda prefix, request, job: True, "p"),
        print,  # a builtin whose signature Python may not read: taken as it is
    ],
    ids=["two", "default", "varargs", "mixed", "callable-object", "partial", "builtin"],
)
def test_hooks_that_can_take_their_arguments_are_accepted(hook: Any) -> None:
    """Defaults, *args, callable objects and partials that accept (request, job) pass."""
    assert AsyncEndpoints(authorize=hook).settings.authorize is hook


class _Order(BaseModel):
    quantity: int
    sku: str


async def test_a_body_that_fails_its_model_is_refused_with_the_fields_named() -> None:
    """submit's JobValidationError says which fields failed and why in its message (a
    traceback or log line shows it), not only in ``.errors``."""
    endpoints = AsyncEndpoints()

    async def order(ctx: AsyncContext[_Order]) -> None:
        return None

    endpoints.add_handler(order)
    with pytest.raises(JobValidationError) as raised:
        await endpoints.submit("order", {"quantity": "many"})
    text = str(raised.value)
    assert "body.quantity: Input should be a valid integer" in text
    assert "body.sku: Field required" in text
    assert [error["loc"] for error in raised.value.errors] == [["quantity"], ["sku"]]


def test_a_cron_handler_that_needs_a_body_is_refused_saying_how_to_fix_it() -> None:
    """@cron jobs carry no body: a handler whose model needs one is refused at import,
    saying to take AsyncContext[None] (or to upsert a schedule with a body)."""
    endpoints = AsyncEndpoints()

    async def nightly(ctx: AsyncContext[_Order]) -> None:
        return None

    with pytest.raises(JobValidationError, match=r"AsyncContext\[None\]"):
        endpoints.cron("0 3 * * *")(nightly)
    assert "nightly" not in endpoints.handlers


async def test_listing_an_unknown_status_names_the_statuses_there_are() -> None:
    """list_jobs(status="Done") says which statuses exist."""
    with pytest.raises(ValueError, match=r"unknown status 'Done' \(one of: Queued, Scheduled"):
        await AsyncEndpoints().list_jobs(status="Done")


async def test_waiting_in_vain_for_a_job_no_worker_of_this_process_runs_says_so() -> None:
    """wait_for's TimeoutError for a waiting job names the likely cause when this process
    runs no worker (a script that never started the pool); a job that is running says
    only its status."""
    endpoints = AsyncEndpoints()
    release = asyncio.Event()

    async def slow(ctx: AsyncContext[None]) -> None:
        await release.wait()

    endpoints.add_handler(slow)
    job = await endpoints.submit("slow")
    with pytest.raises(TimeoutError, match=r"still Queued .*no worker runs in this process"):
        await endpoints.wait_for(job.id, timeout=0.05)
    async with endpoints.running():
        started = await endpoints.submit("slow")
        with pytest.raises(TimeoutError) as raised:
            await endpoints.wait_for(started.id, timeout=0.3)
        release.set()
    assert "no worker" not in str(raised.value)


def _injects(function: Any) -> Any:
    """A decorator whose wrapper takes (request, job) and passes a third argument."""

    @functools.wraps(function)
    def wrapper(request: Any, job: Any) -> Any:
        return function(request, job, "db")

    return wrapper


class _UnreadableSignature:
    """A hook whose signature cannot be read (as on Python 3.14 when an annotation names
    what is imported for type checking only)."""

    @property
    def __signature__(self) -> Any:
        raise NameError("name 'Principal' is not defined")

    def __call__(self, request: Any, job: Any) -> bool:
        return True


@pytest.mark.parametrize(
    "hook",
    [_injects(lambda request, job, db: True), _UnreadableSignature()],
    ids=["decorated", "unreadable-signature"],
)
def test_a_decorated_hook_or_one_whose_signature_cannot_be_read_is_accepted(hook: Any) -> None:
    """The hook's own signature is checked (a decorator's wrapper is what is called), and
    one that cannot be read at all is taken as it is rather than failing the app."""
    assert AsyncEndpoints(authorize=hook).settings.authorize is hook


def test_a_handler_annotated_to_return_a_response_is_refused_saying_a_result_is_data() -> None:
    """``-> JSONResponse`` (FastAPI's habit): refused at registration, saying a job's
    result is data and naming the settings that shape the answers (pydantic's long "no
    schema, set arbitrary_types_allowed" came through before); nothing registered."""

    async def answer(ctx: AsyncContext) -> JSONResponse:
        return JSONResponse({})

    endpoints = AsyncEndpoints(Starlette())
    with pytest.raises(ConfigurationError, match="return a JSONResponse") as refused:
        endpoints.map_async_post("/answers")(answer)
    assert "job_status_response" in str(refused.value)
    assert "arbitrary_types_allowed" not in str(refused.value)
    assert endpoints.handlers == {}
