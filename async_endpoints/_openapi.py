"""The OpenAPI pieces of the library's routes, for FastAPI's document: the error bodies,
the request headers an async endpoint reads, path parameters typed by their convertors,
a route's summary from its handler's name, the job model with ``result`` typed by the
handler, and request bodies' schemas with their definitions inlined (what a document
built other than by the app's ``openapi()`` shows: `_openapi_document` names them)."""

from __future__ import annotations

import copy
import re
from typing import Any

from pydantic import Field, TypeAdapter, create_model
from starlette.routing import compile_path

from ._handlers import Handler
from ._query_model import QueryModel
from ._responses import JobModel

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
SUBMIT_HEADERS = [
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
LONG_POLL = [
    {
        "name": "Prefer",
        "in": "header",
        "required": False,
        "description": "wait=N: answer once the job is terminal, or after N seconds (at "
        "most the max_wait setting) with its current JSON: a long poll.",
        "schema": {"type": "string"},
    },
]


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


def query_parameters(query: QueryModel | None) -> list[dict[str, Any]]:
    """The OpenAPI entries of a handler's declared query parameters (``in: query``), their
    schemas with definitions inlined; none without a query model."""
    if query is None:
        return []
    schema = inline_schema(query.model)
    required = set(schema.get("required", []))
    entries = []
    for key, field_schema in schema.get("properties", {}).items():
        entry: dict[str, Any] = {
            "name": key,
            "in": "query",
            "required": key in required,
            "schema": field_schema,
        }
        if "description" in field_schema:
            entry["description"] = field_schema["description"]
        if key in query.many:
            entry.update(style="form", explode=True)
        entries.append(entry)
    return entries


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
