"""The HTTP endpoints: submit (POST, PUT, PATCH or DELETE → 202, or 200 with the finished
job for ``Prefer: wait``), job details (GET, long-polled with ``Prefer: wait``) and cancel
(POST).

They depend on `JobService`, the few things of `AsyncEndpoints` they use, not on all of it.

Every answer the library itself produces is JSON without a stack trace: the store's own
failures are logged here and answered with a fixed message (503 when it is unreachable,
500 when it refused), so no host name, key or exception text reaches a client.
"""

# No `from __future__ import annotations` here: FastAPI reads these endpoints' annotations
# at runtime and must see real classes.

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from ._capture import (
    RequestRejected,
    capture_headers,
    capture_query,
    is_json,
    raw_headers,
    read_body,
)
from ._errors import (
    DuplicateJobError,
    JobStoreError,
    JobValidationError,
    QueueFullError,
    StoreUnavailableError,
)
from ._handlers import Handler
from ._job import Job, JobRequest, JobStatus, parse_job_id
from ._logs import job_extra
from ._options import AT_ONCE, Placement
from ._prefer import applied, preferred_wait
from ._responses import call_maybe_async, error_response, job_response
from ._settings import Settings

logger = logging.getLogger("async_endpoints")

Endpoint = Callable[[Request], Awaitable[Response]]

STORE_UNAVAILABLE = "the job store is unavailable; try again later"
STORE_FAILED = "the job store failed to carry out the request"
_PLACEHOLDER_ID = "00000000-0000-0000-0000-00000000cafe"


class JobLocations:
    """A job's ``Location``: the path of the job-details route (if mapped) for its id.

    Attributes:
        route_name: The job-details route's name, set by ``map_job_details``.
    """

    def __init__(self) -> None:
        self.route_name: str | None = None
        self._templates: dict[int, str] = {}

    def url(self, request: Request, job: Job) -> str | None:
        """The job-details path of ``job`` as seen by ``request``; None without the route."""
        if self.route_name is None:
            return None
        # Routing tables do not change once serving, so the route is looked up once per app
        # (a lookup walks every route) and the id is put into the cached path.
        app = request.app
        template = self._templates.get(id(app))
        if template is None:
            path = app.url_path_for(self.route_name, job_id=_PLACEHOLDER_ID)
            template = self._templates[id(app)] = str(path)
        path = template.replace(_PLACEHOLDER_ID, str(job.id))
        return str(request.scope.get("root_path", "")) + path


class JobService(Protocol):
    """What the HTTP endpoints need of `AsyncEndpoints`."""

    @property
    def settings(self) -> Settings:
        """The settings (hooks, limits, capture rules)."""
        ...

    @property
    def locations(self) -> JobLocations:
        """Where the job-details route is, for ``Location``."""
        ...

    async def enqueue(
        self,
        handler: Handler,
        request: JobRequest,
        placement: Placement = AT_ONCE,
        *,
        job_id: uuid.UUID | None = None,
    ) -> Job:
        """Store a job for ``handler`` (see `AsyncEndpoints.enqueue`)."""
        ...

    async def wait_until(self, job: Job, seconds: float) -> Job:
        """``job`` once terminal, or as it is after ``seconds`` (see
        `AsyncEndpoints.wait_until`)."""
        ...

    async def get_job(self, job_id: Any) -> Job | None:
        """The stored job, or None (see `AsyncEndpoints.get_job`)."""
        ...

    async def cancel_unfinished(self, job: Job) -> tuple[Job | None, bool]:
        """Cancel a job that was not terminal (see `AsyncEndpoints.cancel_unfinished`)."""
        ...


#: The header naming a client-chosen job id (as the .NET library reads it).
REQUEST_ID_HEADER = "x-async-request-id"


def submit_endpoint(endpoints: JobService, handler: Handler) -> Endpoint:
    """The submit endpoint of ``handler``: validate, capture, queue, answer 202 (or 200
    with the finished job when ``Prefer: wait`` was honoured in time)."""

    async def submit(request: Request) -> Response:
        try:
            job_id = _requested_id(request)
            body, body_json = await _read_validated_body(request, handler, endpoints)
        except RequestRejected as rejected:
            return error_response(rejected.status_code, rejected.detail)
        if handler.validator is not None:
            refusal = await call_maybe_async(handler.validator, request, body)
            if refusal is not None:
                return refusal  # type: ignore[no-any-return]
        try:
            placement = await handler.placement(request, body)
        except ValueError as exc:
            return error_response(422, str(exc))
        job_request = await _capture(endpoints, request, body_json)
        try:
            job = await _store_once(endpoints, handler, job_request, placement, job_id)
        except QueueFullError as exc:
            return error_response(503, str(exc), retry_after=exc.retry_after)
        except JobStoreError as exc:
            return _store_failure("queue a job", exc)
        if job is None:
            return error_response(409, f"job id {job_id} is taken by another submission")
        return await _accepted(endpoints, job, request)

    submit.__name__ = f"submit_{handler.name}"
    return submit


async def _accepted(endpoints: JobService, job: Job, request: Request) -> Response:
    """The answer to a stored submission: 202, or with ``Prefer: wait=N`` the finished
    job (200) once it is terminal within N seconds (202 as it is then otherwise)."""
    wait = preferred_wait(request, endpoints.settings.max_wait)
    if wait is None:
        return await submitted_response(endpoints, job, request)
    try:
        job = await endpoints.wait_until(job, wait)
    except JobStoreError as exc:  # the job is stored: answer as without the wait
        logger.warning("could not wait for job %s: %s", job.id, exc, extra=job_extra(job))
    if job.status.is_terminal:
        response = await status_response(endpoints, job, request)
    else:
        response = await submitted_response(endpoints, job, request)
    response.headers.update(applied(wait))
    return response


async def _store_once(
    endpoints: JobService,
    handler: Handler,
    job_request: JobRequest,
    placement: Placement,
    job_id: uuid.UUID | None,
) -> Job | None:
    """The job this submission stored, or the job a repeat of it (same client-chosen id)
    stored before; None when that id belongs to a different submission."""
    for _ in range(2):
        try:
            return await endpoints.enqueue(handler, job_request, placement, job_id=job_id)
        except DuplicateJobError:
            assert job_id is not None
            existing = await endpoints.get_job(job_id)
            if existing is not None:
                return existing if _repeats(existing, handler, job_request) else None
            # Dropped between the two calls (its retention ended): store it afresh.
    return None


def _repeats(job: Job, handler: Handler, request: JobRequest) -> bool:
    """Whether ``request`` for ``handler`` repeats the submission that stored ``job``: the
    same endpoint and owner, and the same body while the job still keeps it (a completed
    job keeps only its owner)."""
    kept = job.request
    same_body = job.status is JobStatus.COMPLETED or kept.body == request.body
    return job.name == handler.name and kept.owner == request.owner and same_body


def _requested_id(request: Request) -> uuid.UUID | None:
    """The job id the client chose with ``X-Async-Request-Id``, or None.

    Raises:
        RequestRejected: 400, the value is not a UUID.
    """
    value = request.headers.get(REQUEST_ID_HEADER)
    if value is None:
        return None
    job_id = parse_job_id(value.strip())
    if job_id is None:
        raise RequestRejected(400, "X-Async-Request-Id must be a UUID")
    return job_id


def job_details_endpoint(endpoints: JobService) -> Endpoint:
    """The GET endpoint answering a job's JSON, 404 for unknown or unauthorised ids; with
    ``Prefer: wait=N`` it answers once the job is terminal or N seconds have passed."""

    async def job_details(request: Request) -> Response:
        wait = preferred_wait(request, endpoints.settings.max_wait)
        try:
            job = await _authorized_job(endpoints, request)
            if job is not None and wait is not None and not job.status.is_terminal:
                job = await endpoints.wait_until(job, wait)
        except JobStoreError as exc:
            return _store_failure("read a job", exc)
        response = await status_response(endpoints, job, request)
        if wait is not None and job is not None:
            response.headers.update(applied(wait))
        return response

    return job_details


def job_cancel_endpoint(endpoints: JobService) -> Endpoint:
    """The POST endpoint cancelling a job: 200 with the job JSON once ``Canceled``, 409
    when it was terminal already, 404 for unknown or unauthorised ids."""

    async def cancel_job(request: Request) -> Response:
        try:
            job = await _authorized_job(endpoints, request)
            if job is None:
                return error_response(404, "job not found")
            if job.status.is_terminal:
                return _already_terminal(job)
            canceled, here = await endpoints.cancel_unfinished(job)
        except JobStoreError as exc:
            return _store_failure("cancel a job", exc)
        if canceled is None:  # dropped meanwhile (its retention ended)
            return error_response(404, "job not found")
        if not here:  # it ended, or another call cancelled it, meanwhile
            return _already_terminal(canceled)
        return job_response(canceled)

    return cancel_job


def _already_terminal(job: Job) -> Response:
    return error_response(409, f"the job is {job.status.value} already; it cannot be cancelled")


async def _authorized_job(endpoints: JobService, request: Request) -> Job | None:
    """The job named by the path's ``job_id``; None when unknown, not a UUID, or refused by
    ``authorize``."""
    job_id = parse_job_id(request.path_params.get("job_id"))
    job = None if job_id is None else await endpoints.get_job(job_id)
    authorize = endpoints.settings.authorize
    if job is None or authorize is None or await call_maybe_async(authorize, request, job):
        return job
    return None


async def submitted_response(endpoints: JobService, job: Job, request: Request) -> Response:
    """The app's ``job_submitted_response``, or 202 with the job JSON and ``Location``."""
    factory = endpoints.settings.job_submitted_response
    if factory is not None:
        return await call_maybe_async(factory, job, request)
    location = endpoints.locations.url(request, job)
    return job_response(job, 202, None if location is None else {"Location": location})


async def status_response(endpoints: JobService, job: Job | None, request: Request) -> Response:
    """The app's ``job_status_response``, or 200 with the job JSON (404 when None)."""
    factory = endpoints.settings.job_status_response
    if factory is not None:
        return await call_maybe_async(factory, job, request)
    if job is None:
        return error_response(404, "job not found")
    return job_response(job)


async def _capture(endpoints: JobService, request: Request, body_json: str | None) -> JobRequest:
    """What the job keeps of ``request``: sensitive headers and query parameters left out."""
    settings = endpoints.settings
    owner = None
    if settings.owner is not None:
        owner = await call_maybe_async(settings.owner, request)
        if owner is not None and not isinstance(owner, str):
            raise TypeError(f"the owner hook must return a str or None, not {type(owner)!r}")
    return job_request(
        settings,
        body_json,
        raw_headers(request),
        request.scope.get("query_string", b""),
        {key: str(value) for key, value in request.path_params.items()},
        owner,
    )


def job_request(
    settings: Settings,
    body_json: str | None,
    headers: Iterable[tuple[str, str]],
    query_string: bytes,
    route_params: dict[str, str],
    owner: str | None,
) -> JobRequest:
    """What a job keeps of a submission: sensitive headers and query parameters left out."""
    return JobRequest(
        body=body_json,
        headers=capture_headers(
            headers,
            settings.capture_headers,  # type: ignore[arg-type]
            settings.sensitive_headers,  # type: ignore[arg-type]
        ),
        query_string=capture_query(
            query_string,
            settings.sensitive_query_params,  # type: ignore[arg-type]
        ),
        route_params=route_params,
        owner=owner,
    )


def _store_failure(doing: str, exc: JobStoreError) -> Response:
    # The exception's text names hosts, ports and keys: it goes to the log, not the client.
    if isinstance(exc, StoreUnavailableError):
        logger.warning("could not %s: %s", doing, exc)
        return error_response(503, STORE_UNAVAILABLE, retry_after=exc.retry_after)
    logger.error("could not %s: %s: %s", doing, type(exc).__name__, exc)
    return error_response(500, STORE_FAILED)


async def _read_validated_body(
    request: Request, handler: Handler, endpoints: JobService
) -> tuple[Any, str | None]:
    if handler.model is None:
        return None, None
    content_type = request.headers.get("content-type")
    if content_type is not None and not is_json(content_type):
        raise RequestRejected(415, "expected a JSON body (application/json)")
    raw = await read_body(request, endpoints.settings.max_body_size)
    if not raw.strip():
        missing = [{"loc": ["body"], "msg": "a JSON request body is required", "type": "missing"}]
        raise RequestRejected(422, missing)
    if content_type is None:
        raise RequestRejected(415, "expected a JSON body: set Content-Type: application/json")
    try:
        text = raw.decode("utf-8")
        return handler.parse_body(text), text
    except UnicodeDecodeError:
        raise RequestRejected(400, "request body is not UTF-8") from None
    except JobValidationError as exc:
        malformed = any(error["type"] == "json_invalid" for error in exc.errors)
        if malformed:
            raise RequestRejected(400, "request body is not valid JSON") from None
        located = [{**error, "loc": ["body", *error["loc"]]} for error in exc.errors]
        raise RequestRejected(422, located) from None
