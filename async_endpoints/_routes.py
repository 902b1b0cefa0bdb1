"""Registering routes on Starlette and FastAPI apps, with OpenAPI metadata for FastAPI.

The endpoints read the request themselves (to refuse oversized bodies before reading them
whole and to answer 415), so FastAPI is told about the body and the 202 response through
``openapi_extra`` and ``responses`` rather than through parameters it would parse.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path

from ._any_method_route import AnyMethodRoute
from ._errors import ConfigurationError
from ._handlers import Handler
from ._openapi import (
    LONG_POLL,
    SUBMIT_HEADERS,
    error_responses,
    inline_schema,
    operation_summary,
    path_parameters,
    query_parameters,
    typed_job_model,
)
from ._openapi_document import BODY_MARK
from ._responses import JobModel

Endpoint = Callable[[Request], Awaitable[Response]]


def resource_route(
    app: Any, path: str, *, holds: str, what: str, name: str | None, prefix: str
) -> str:
    """Check a route about one resource before it is registered, and give its name.

    ``path`` must start with ``/`` and hold ``{holds}``; ``app`` must be an app. The name
    is ``name``, or ``prefix`` and the path's words (so several `AsyncEndpoints` on one
    app each get their own).

    Raises:
        ConfigurationError: a bad path, or no app (``what`` names the method).
    """
    if f"{{{holds}}}" not in path or not path.startswith("/"):
        message = f"the {what} path must start with '/' and hold {{{holds}}}: {path!r}"
        if re.search(rf"{{{holds}:[^}}]*}}", path):
            message += f" (no convertor: the library reads and checks the {holds} itself)"
        raise ConfigurationError(message)
    if app is None:
        raise ConfigurationError(f"map_{what.replace('-', '_')} needs an app")
    return name or prefix + re.sub(r"\W+", "_", path).strip("_")


def refuse_shadowed(target: Any, path: str, methods: Iterable[str], prefix: str = "") -> None:
    """Refuse to route ``methods path`` on ``target`` (an app or a FastAPI ``APIRouter``,
    whose ``prefix`` is given) when a route there already answers one of those methods on
    that path (the same pattern, whatever its parameters are named): the new route would
    never be reached (the same path mapped twice, two `AsyncEndpoints` mapping one path on
    one app, or the app's own route there first).

    Raises:
        ConfigurationError: as said, naming the route there first.
    """
    pattern = _unnamed(compile_path(prefix + path)[0].pattern)
    wanted = set(methods)
    for route in getattr(target, "routes", ()):
        regex = getattr(route, "path_regex", None)
        if regex is None or _unnamed(regex.pattern) != pattern or not hasattr(route, "methods"):
            continue  # another path, or not an HTTP route (a mount, a websocket)
        taken = (
            wanted
            if route.methods is None or isinstance(route, AnyMethodRoute)
            else wanted & set(route.methods)
        )
        if taken:
            said = "/".join(sorted(taken))
            raise ConfigurationError(
                f"{said} {prefix + path} is routed already (to {route.name!r}): "
                "a second route there would never be reached"
            )


def _unnamed(pattern: str) -> str:
    """A route's path pattern with its parameters' names left out (``/jobs/{id}`` and
    ``/jobs/{job_id}`` match the same requests)."""
    return re.sub(r"\(\?P<\w+>", "(", pattern)


def is_fastapi(app: Any) -> bool:
    """True when ``app`` is a FastAPI application (FastAPI need not be installed)."""
    return any(cls.__module__.startswith("fastapi") for cls in type(app).__mro__)


def add_submit_route(
    app: Any,
    method: str,
    path: str,
    endpoint: Endpoint,
    handler: Handler,
    docs: Mapping[str, Any] | None = None,
    body_mark: str = "",
    whole_app: Any = None,
) -> None:
    """Register ``endpoint`` for ``method path`` (an async endpoint) on a Starlette or
    FastAPI app; in FastAPI's OpenAPI document its 202 and 200 (``Prefer: wait``) answers
    are the job JSON with ``result`` typed by the handler's return annotation. ``docs``
    are FastAPI's route options given with it (`_route_docs.route_docs`). Its request body
    is inlined here; the app's ``openapi()`` names it (`_openapi_document`), finding the
    operation by ``body_mark``. ``whole_app`` is the app when ``app`` is a router of it
    (its ``generate_unique_id_function`` counts too)."""
    refuse_shadowed(app, path, [method], getattr(app, "prefix", ""))
    name = handler.name
    docs = dict(docs or {})
    if not is_fastapi(app):
        schema = docs.get("include_in_schema", True)
        app.router.add_route(path, endpoint, methods=[method], name=name, include_in_schema=schema)
        return
    parameters = [*path_parameters(path), *query_parameters(handler.query), *SUBMIT_HEADERS]
    extra: dict[str, Any] = {"parameters": parameters}
    if handler.model is not None:
        extra["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": inline_schema(handler.model)}},
        }
        extra[BODY_MARK] = body_mark
    model = typed_job_model(handler)
    if "operation_id" not in docs and not any(map(_own_unique_ids, (app, whole_app))):
        base = name if method == "POST" else f"{name}_{method.lower()}"
        docs["generate_unique_id_function"] = operation_ids(base, hasattr(app, "prefix"))
    app.add_api_route(
        path,
        endpoint,
        methods=[method],
        name=name,
        summary=docs.pop("summary", None) or operation_summary(name),
        description=docs.pop("description", None) or inspect.cleandoc(handler.doc or ""),
        status_code=202,
        response_model=None,
        responses={
            202: {"model": model, "description": "The job was accepted and queued."},
            200: {
                "model": model,
                "description": "With Prefer: wait=N, the job finished within N seconds.",
            },
            **error_responses(400, 409, 413, 415, 422, 503),
        },
        openapi_extra=extra,
        **docs,
    )


def operation_ids(base: str, on_router: bool) -> Callable[[Any], str]:
    """The ``generate_unique_id_function`` of an async endpoint: its operation id is
    ``base`` (the job name), and where its router is included more than once (``/v1``
    and ``/v2`` of one router) each further path's is ``base`` and that path's words, so
    that the ids stay unique. FastAPI asks once per route it makes: ``on_router``, the
    first ask is the router's own route, made when the route is mapped and never served
    as it is (so a router included once, with a prefix or without, keeps ``base``); then
    one per path served; a path asked again gets the same id."""
    given: dict[str, str] = {}
    unasked = [on_router]  # the router's own route is still to ask

    def unique_id(route: Any) -> str:
        if unasked[0]:
            unasked[0] = False
            return base
        path = str(route.path_format)
        if path not in given:
            words = re.sub(r"\W+", "_", path).strip("_")
            given[path] = f"{base}_{words}" if given else base
        return given[path]

    return unique_id


def fixed_operation_id(app: Any, name: str) -> str | None:
    """The operation id of a route of the library's about jobs (details, cancel, events,
    a batch): its name, unless the app has a ``generate_unique_id_function`` of its own,
    which then names it (None)."""
    return None if _own_unique_ids(app) else name


def _own_unique_ids(target: Any) -> bool:
    """Whether the FastAPI app or router ``target`` was given a
    ``generate_unique_id_function`` of the app's own (the route's ids are then left to
    it)."""
    if target is None:
        return False
    router = getattr(target, "router", target)
    chosen = getattr(router, "generate_unique_id_function", None)
    if chosen is None or type(chosen).__name__ == "DefaultPlaceholder":
        return False
    return getattr(chosen, "__module__", "") != "fastapi.utils"


def add_get_route(app: Any, path: str, endpoint: Endpoint, *, name: str) -> None:
    """Register ``endpoint`` for ``GET path`` (the job-details route), and for ``HEAD``
    (Starlette's routes take it with GET; FastAPI's do not: a hidden route of its own, so
    that ``curl -I`` and uptime probes get the GET's status and headers, not 405)."""
    _add_job_route(app, path, endpoint, name=name, method="GET", answer="The job.", errors=())
    if is_fastapi(app):
        app.add_api_route(path, endpoint, methods=["HEAD"], name=name, include_in_schema=False)


def add_cancel_route(app: Any, path: str, endpoint: Endpoint, *, name: str) -> None:
    """Register ``endpoint`` for ``POST path`` (the cancel route)."""
    answer = "The job, now Canceled."
    _add_job_route(app, path, endpoint, name=name, method="POST", answer=answer, errors=(409,))


def _add_job_route(
    app: Any,
    path: str,
    endpoint: Endpoint,
    *,
    name: str,
    method: str,
    answer: str,
    errors: tuple[int, ...],
) -> None:
    """A route about one job (``path`` holds ``{job_id}``): 200 with the job JSON, 404 for
    an unknown job, 503 while the store is unreachable, and ``errors``."""
    refuse_shadowed(app, path, [method, "HEAD"] if method == "GET" else [method])
    if not is_fastapi(app):
        app.router.add_route(path, endpoint, methods=[method], name=name)
        return
    app.add_api_route(
        path,
        endpoint,
        methods=[method],
        name=name,
        operation_id=fixed_operation_id(app, name),
        response_model=None,
        responses={
            200: {"model": JobModel, "description": answer},
            **error_responses(404, *errors, 503),
        },
        openapi_extra={
            "parameters": [*path_parameters(path), *(LONG_POLL if method == "GET" else [])]
        },
    )
