"""The batch-details route: ``GET /batches/{batch_id}`` answering the batch JSON."""

# No `from __future__ import annotations`: FastAPI reads the endpoint's annotations.

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from ._app_handlers import refusal
from ._authorize import grants
from ._batch import Batch
from ._errors import JobStoreError, StoreUnavailableError
from ._job import parse_job_id
from ._openapi import error_responses, path_parameters
from ._outage_log import STORE_OUTAGE
from ._responses import call_maybe_async, error_response, json_response
from ._routes import fixed_operation_id, is_fastapi, refuse_shadowed

logger = logging.getLogger("async_endpoints")

Endpoint = Callable[[Request], Awaitable[Response]]
#: Who may read a batch over HTTP: ``fn(request, batch) -> bool``, sync or async.
BatchAuthorize = Callable[[Request, Batch], bool | Awaitable[bool]]


class BatchModel(BaseModel):
    """The batch JSON's schema, for OpenAPI documents and clients."""

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(description="The batch id, a UUID.")
    tenant: str | None = Field(description="Its tenant.")
    status: Literal["Running", "Finished", "Canceled"]
    total: int = Field(description="Jobs in the batch (continuations not counted).")
    queued: int
    scheduled: int
    in_progress: int = Field(alias="inProgress")
    completed: int
    failed: int
    canceled: int
    created_at: datetime = Field(alias="createdAt")
    finished_at: datetime | None = Field(alias="finishedAt")
    continuation_ids: list[str] = Field(alias="continuationIds")


class BatchReader(Protocol):
    """What the batch route needs of `AsyncEndpoints`."""

    async def get_batch(self, batch_id: Any) -> Batch | None:
        """The batch, or None (see `AsyncEndpoints.get_batch`)."""
        ...


#: How a batch route's hook is named in the log.
_HOOK = "the batch route's authorize"


def batch_details_endpoint(
    batches: BatchReader, authorize: BatchAuthorize | None = None
) -> Endpoint:
    """The GET endpoint answering a batch's JSON, 404 for unknown ids and for a batch
    ``authorize`` refuses (exactly as for an unknown id)."""

    async def batch_details(request: Request) -> Response:
        batch_id = parse_job_id(request.path_params.get("batch_id"))
        try:
            batch = None if batch_id is None else await batches.get_batch(batch_id)
        except StoreUnavailableError as exc:
            STORE_OUTAGE.warning("could not read a batch: %s", exc)
            return error_response(
                503, "the job store is unavailable; try again later", retry_after=exc.retry_after
            )
        except JobStoreError as exc:
            logger.error("could not read a batch: %s: %s", type(exc).__name__, exc)
            return error_response(500, "the job store failed to carry out the request")
        if batch is None or (
            authorize is not None
            and not grants(await call_maybe_async(authorize, request, batch), _HOOK)
        ):
            return refusal(request, 404, "batch not found")
        return json_response(batch.to_json())

    return batch_details


def add_batch_route(app: Any, path: str, endpoint: Endpoint, *, name: str) -> None:
    """Register ``endpoint`` for ``GET path`` (``path`` holds ``{batch_id}``)."""
    refuse_shadowed(app, path, ["GET"])
    if not is_fastapi(app):
        app.router.add_route(path, endpoint, methods=["GET"], name=name)
        return
    app.add_api_route(
        path,
        endpoint,
        methods=["GET"],
        name=name,
        operation_id=fixed_operation_id(app, name),
        response_model=None,
        responses={
            200: {"model": BatchModel, "description": "The batch."},
            **error_responses(
                404,
                503,
                described={
                    404: "No such batch.",
                    503: "The store is unavailable; see Retry-After.",
                },
            ),
        },
        openapi_extra={"parameters": path_parameters(path)},
    )
