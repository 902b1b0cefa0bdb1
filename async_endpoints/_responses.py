"""Default responses (202 submitted, job details, JSON errors) and the response factories."""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Literal, TypeVar

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from ._job import Job, job_to_json

T = TypeVar("T")


class JobErrorModel(BaseModel):
    """The ``error`` object of the job JSON."""

    message: str
    type: str


class WebhookModel(BaseModel):
    """The ``webhook`` object of the job JSON."""

    status: Literal["Pending", "Delivered", "Failed"]
    attempts: int = Field(description="Delivery attempts started so far.")


class JobModel(BaseModel):
    """The job JSON's schema, for OpenAPI documents and for clients that parse it."""

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(description="The job id, a UUID.")
    name: str = Field(description="The job (handler) name.")
    status: Literal["Queued", "Scheduled", "InProgress", "Completed", "Failed", "Canceled"]
    retry_count: int = Field(alias="retryCount", description="Retries so far.")
    max_retries: int = Field(alias="maxRetries")
    created_at: datetime = Field(alias="createdAt")
    started_at: datetime | None = Field(alias="startedAt")
    completed_at: datetime | None = Field(alias="completedAt")
    last_updated_at: datetime = Field(alias="lastUpdatedAt")
    result: Any = Field(description="The handler's return value once Completed.")
    error: JobErrorModel | None = Field(description="The last failure, if any.")
    queue: str = Field(description="The queue the job waits in.")
    run_at: datetime | None = Field(
        alias="runAt", description="When a Scheduled job becomes due; null otherwise."
    )
    partition_key: str | None = Field(alias="partitionKey", description="Its partition key.")
    tenant: str | None = Field(description="The tenant it belongs to.")
    batch_id: str | None = Field(
        alias="batchId", description="The batch it belongs to (or continues)."
    )
    progress: Any = Field(description="The last progress the handler reported.")
    webhook: WebhookModel | None = Field(
        description="Its webhook delivery; null without a webhook."
    )


def dumps(data: Any) -> bytes:
    """Compact UTF-8 JSON.

    Text with a lone surrogate (an error message quoting odd input, say) has no UTF-8
    form: such a document is written with ASCII escapes (``\\ud800``), which JSON
    readers accept, rather than failing the response.
    """
    try:
        return pydantic_core.to_json(data)
    except pydantic_core.PydanticSerializationError:
        return json.dumps(data, separators=(",", ":")).encode()


def json_response(
    data: Any, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response without re-validating ``data``."""
    return Response(dumps(data), status_code, headers, media_type="application/json")


#: A job's JSON is one owner's (its result included): no cache between the app and its
#: clients keeps it for another (a shared cache may store a GET authenticated otherwise
#: than with Authorization or a cookie).
_NOT_STORED = {"Cache-Control": "no-store"}


def job_response(
    job: Job, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """The job JSON of ``job``, with ``Cache-Control: no-store``."""
    return json_response(job_to_json(job), status_code, {**_NOT_STORED, **(headers or {})})


def error_response(
    status_code: int,
    detail: Any,
    *,
    retry_after: float | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """A JSON error in FastAPI's shape: ``{"detail": message-or-error-list}`` (with
    ``Retry-After`` when ``retry_after`` is given, and ``headers``)."""
    headers = dict(headers or {})
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return json_response({"detail": detail}, status_code, headers or None)


async def call_maybe_async(function: Callable[..., T | Awaitable[T]], *args: Any) -> T:
    """Call a sync or async user hook and return its value."""
    value = function(*args)
    if inspect.isawaitable(value):
        return await value
    return value
