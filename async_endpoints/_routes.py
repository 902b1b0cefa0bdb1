"""Registering routes on Starlette and FastAPI apps, with OpenAPI metadata for FastAPI.

The endpoints read the request themselves (to refuse oversized bodies before reading them
whole and to answer 415), so FastAPI is told about the body and the 202 response through
``openapi_extra`` and ``responses`` rather than through parameters it would parse.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pydantic import Field, TypeAdapter, create_model
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path

from ._errors import ConfigurationError
from ._handlers import Handler
from ._responses import JobModel

Endpoint = Callable[[Request], Awaitable[Response]]

#: An error answer's body: ``{"detail": "<what went wrong>"}``.
_ERROR_SCHEMA = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
#: One item of a 422's ``detail`` list: as FastAPI writes a validation error.
_VALIDATION_ITEM = {
    "type": "object",
    "properties": {
        "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
        "msg": {"type": "string"},
        "type": {"type": "string"},
    },
    "required": ["loc", "msg", "type"],
}
#: A 422's body: the validation errors (as FastAPI's), or a sentence (an Idempotency-Key
#: used for another submission, a delay or webhook option a function refused).
_UNPROCESSABLE_SCHEMA = {
    "type": "object",
    "properties": {
        "detail": {"anyOf": [{"type": "array", "items": _VALIDATION_ITEM}, {"type": "string"}]}
    },
    "required": ["detail"],
}


# The request headers an async endpoint reads, as OpenAPI parameters.
_SUBMIT_HEADERS = [
    {
        "name": "X-Async-Request-Id",
        "in": "header",
        "required": False,
        "description": "A UUID to use as the job's id; a repeat of the same submission "
        "answers the existing job (409 once that job is no longer kept).",
        "schema": {"type": "string", "format": "uuid"},
    },
    {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "A key (1 to 255 characters) making the submission idempotent: a "
        "repeat with the same key, endpoint and owner within idempotency_ttl stores nothing "
        "and answers the original job (409 once that job is no longer kept); the same key "
        "with another request answers 422.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    },
    {
        "name": "Prefer",
        "in": "header",
        "required": False,
        "description": "wait=N: answer 200 with the finished job when it ends within N "
        "seconds (at most the max_wait setting), else 202.",
        "schema": {"type": "string"},
    },
]


# The request header the job-details route reads, as an OpenAPI parameter.
_LONG_POLL = [
    {
        "name": "Prefer",
        "in": "header",
        "required": False,
        "description": "wait=N: answer once the job is terminal, or after N seconds (at "
        "most the max_wait setting) with its current JSON: a long poll.",
        "schema": {"type": "string"},
    },
]


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
        raise ConfigurationError(message)
    if app is None:
        raise ConfigurationError(f"map_{what.replace('-', '_')} needs an app")
    return name or prefix + re.sub(r"\W+", "_", path).strip("_")


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
) -> None:
    """Register ``endpoint`` for ``method path`` (an async endpoint) on a Starlette or
    FastAPI app; in FastAPI's OpenAPI document its 202 and 200 (``Prefer: wait``) answers
    are the job JSON with ``result`` typed by the handler's return annotation. ``docs``
    are FastAPI's route options given with it (`_route_docs.route_docs`)."""
    name = handler.name
    docs = dict(docs or {})
    if not is_fastapi(app):
        schema = docs.get("include_in_schema", True)
        app.router.add_route(path, endpoint, methods=[method], name=name, include_in_schema=schema)
        return
    extra: dict[str, Any] = {"parameters": [*path_parameters(path), *_SUBMIT_HEADERS]}
    if handler.model is not None:
        extra["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": inline_schema(handler.model)}},
        }
    model = typed_job_model(handler)
    app.add_api_route(
        path,
        endpoint,
        methods=[method],
        name=name,
        operation_id=name if method == "POST" else f"{name}_{method.lower()}",
        summary=docs.pop("summary", None) or operation_summary(name),
        description=docs.pop("description", None) or inspect.getdoc(handler.function) or "",
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


def operation_summary(name: str) -> str:
    """The OpenAPI summary of a handler's route, from its name in words: ``ResizeImage``
    and ``resize_image`` both read "Resize Image" (FastAPI's own, from the name, would
    read "Resizeimage" for the first)."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name)
    return " ".join(word[:1].upper() + word[1:] for word in re.split(r"[\s_-]+", words) if word)


def typed_job_model(handler: Handler) -> type[JobModel]:
    """`JobModel` with ``result`` typed by ``handler``'s return annotation (JobModel itself
    when it has none)."""
    if handler.result_type is Any:
        return JobModel
    title = re.sub(r"\W+", "_", handler.name)
    model: type[JobModel] = create_model(
        f"{title}Job",
        __base__=JobModel,
        result=(
            handler.result_type | None,
            Field(description="The handler's return value once Completed."),
        ),
    )
    return model


def add_get_route(app: Any, path: str, endpoint: Endpoint, *, name: str) -> None:
    """Register ``endpoint`` for ``GET path`` (the job-details route)."""
    _add_job_route(app, path, endpoint, name=name, method="GET", answer="The job.", errors=())


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
    if not is_fastapi(app):
        app.router.add_route(path, endpoint, methods=[method], name=name)
        return
    app.add_api_route(
        path,
        endpoint,
        methods=[method],
        name=name,
        operation_id=name,
        response_model=None,
        responses={
            200: {"model": JobModel, "description": answer},
            **error_responses(404, *errors, 503),
        },
        openapi_extra={
            "parameters": [*path_parameters(path), *(_LONG_POLL if method == "GET" else [])]
        },
    )


def inline_schema(model: Any) -> dict[str, Any]:
    """The JSON schema of ``model`` with its ``$defs`` inlined (OpenAPI cannot see them).

    A recursive reference is replaced by an open schema rather than expanded forever.
    """
    schema = TypeAdapter(model).json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any, seen: frozenset[str]) -> Any:
        if isinstance(node, list):
            return [resolve(item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = ref.removeprefix("#/$defs/")
            if target in seen or target not in defs:
                return {}
            merged = {
                **copy.deepcopy(defs[target]),
                **{k: v for k, v in node.items() if k != "$ref"},
            }
            return resolve(merged, seen | {target})
        return {key: resolve(value, seen) for key, value in node.items()}

    resolved: dict[str, Any] = resolve(schema, frozenset())
    return resolved


def path_parameters(path: str) -> list[dict[str, Any]]:
    """The OpenAPI parameters of ``path``'s path parameters, typed by their convertors
    (a job's or batch's id as a UUID)."""
    _, _, convertors = compile_path(path)
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": _convertor_schema(convertor, uuid=name in ("job_id", "batch_id")),
        }
        for name, convertor in convertors.items()
    ]


def _convertor_schema(convertor: Any, *, uuid: bool = False) -> dict[str, str]:
    """The JSON schema of what a path convertor reads (``{n:int}`` an integer)."""
    kind = type(convertor).__name__
    if uuid and kind == "StringConvertor":
        return {"type": "string", "format": "uuid"}
    if kind == "IntegerConvertor":
        return {"type": "integer"}
    if kind == "FloatConvertor":
        return {"type": "number"}
    if kind == "UUIDConvertor":
        return {"type": "string", "format": "uuid"}
    return {"type": "string"}


def error_responses(
    *codes: int, described: dict[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI responses of error ``codes``: each a JSON body ``{"detail": ...}``, with
    its usual description unless ``described`` gives another."""
    descriptions = {
        400: "Malformed request (a body that is not JSON, an X-Async-Request-Id that is "
        "not a UUID, an Idempotency-Key that is empty or longer than 255 characters).",
        404: "No such job (or not visible to this caller).",
        409: "Conflict: the job was terminal already (cancel), the Idempotency-Key's or "
        "X-Async-Request-Id's job is no longer kept (nothing stored), or the X-Async-Request-Id "
        "belongs to another submission.",
        413: "The request body is larger than max_body_size.",
        415: "The body is not JSON.",
        422: "The body failed validation, or the Idempotency-Key was used before for "
        "another request.",
        503: "The queue is full or the store is unavailable; see Retry-After.",
    }
    return {
        code: {
            "description": (described or {}).get(code) or descriptions[code],
            "content": {
                "application/json": {
                    "schema": _UNPROCESSABLE_SCHEMA if code == 422 else _ERROR_SCHEMA
                }
            },
        }
        for code in codes
    }
