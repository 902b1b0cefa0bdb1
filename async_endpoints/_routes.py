"""Registering routes on Starlette and FastAPI apps, with OpenAPI metadata for FastAPI.

The endpoints read the request themselves (to refuse oversized bodies before reading them
whole and to answer 415), so FastAPI is told about the body and the 202 response through
``openapi_extra`` and ``responses`` rather than through parameters it would parse.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import TypeAdapter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path

from ._responses import JobModel

Endpoint = Callable[[Request], Awaitable[Response]]

_ERROR_SCHEMA = {
    "type": "object",
    "properties": {"detail": {}},
    "required": ["detail"],
}


def is_fastapi(app: Any) -> bool:
    """True when ``app`` is a FastAPI application (FastAPI need not be installed)."""
    return any(cls.__module__.startswith("fastapi") for cls in type(app).__mro__)


def add_post_route(app: Any, path: str, endpoint: Endpoint, *, name: str, model: Any) -> None:
    """Register ``endpoint`` for ``POST path`` on a Starlette or FastAPI app."""
    if not is_fastapi(app):
        app.router.add_route(path, endpoint, methods=["POST"], name=name)
        return
    extra: dict[str, Any] = {"parameters": _path_parameters(path)}
    if model is not None:
        extra["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": inline_schema(model)}},
        }
    app.add_api_route(
        path,
        endpoint,
        methods=["POST"],
        name=name,
        operation_id=name,
        status_code=202,
        response_model=None,
        responses={
            202: {"model": JobModel, "description": "The job was accepted and queued."},
            **_error_responses(400, 413, 415, 422, 503),
        },
        openapi_extra=extra,
    )


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
            **_error_responses(404, *errors, 503),
        },
        openapi_extra={"parameters": _path_parameters(path)},
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


def _path_parameters(path: str) -> list[dict[str, Any]]:
    _, _, convertors = compile_path(path)
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in convertors
    ]


def _error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "Malformed request (for example, a body that is not JSON).",
        404: "No such job (or not visible to this caller).",
        409: "The job was terminal already.",
        413: "The request body is larger than max_body_size.",
        415: "The body is not JSON.",
        422: "The body failed validation.",
        503: "The queue is full or the store is unavailable; see Retry-After.",
    }
    return {
        code: {
            "description": descriptions[code],
            "content": {"application/json": {"schema": _ERROR_SCHEMA}},
        }
        for code in codes
    }
