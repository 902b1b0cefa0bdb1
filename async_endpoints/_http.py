"""The HTTP endpoints about one job: details (GET, long-polled with ``Prefer: wait``) and
cancel (POST), and what every endpoint shares (`JobService`, the default answers, what a
job keeps of a request); submissions are in `async_endpoints._submit_route`.

They depend on `JobService`, the few things of `AsyncEndpoints` they use, not on all of it.

Every answer the library itself produces is JSON without a stack trace: the store's own
failures are logged here and answered with a fixed message (503 when it is unreachable,
500 when it refused), so no host name, key or exception text reaches a client.
"""

# No `from __future__ import annotations` here: FastAPI reads these endpoints' annotations
# at runtime and must see real classes.

import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import NoMatchFound, compile_path

from ._app_handlers import refusal
from ._authorize import grants
from ._capture import (
    capture_headers,
    capture_query,
)
from ._disconnect import unless_disconnected
from ._errors import (
    JobStoreError,
    StoreClosedError,
    StoreUnavailableError,
)
from ._handlers import Handler
from ._job import Job, JobRequest, parse_job_id
from ._logs import job_id_extra
from ._options import AT_ONCE, Placement
from ._outage_log import STORE_OUTAGE
from ._prefer import applied, preferred_wait
from ._responses import call_maybe_async, error_response, job_response
from ._settings import Settings
from ._store import JobStore
from ._store_features import Idempotency

logger = logging.getLogger("async_endpoints")

Endpoint = Callable[[Request], Awaitable[Response]]

STORE_UNAVAILABLE = "the job store is unavailable; try again later"
STORE_FAILED = "the job store failed to carry out the request"
_PLACEHOLDER_ID = "00000000-0000-0000-0000-00000000cafe"


_SLASHES = re.compile("/{2,}")


class JobLocations:
    """A job's ``Location``: the path of the job-details route (if mapped) for its id.

    A details path with parameters besides ``{job_id}`` (``/tenants/{tenant}/jobs/{job_id}``)
    takes their values from the submission's own path parameters; a submission whose path
    lacks one gets no ``Location``.

    Attributes:
        route_name: The job-details route's name, set by `point_at`.
        others: The details path's parameters besides ``job_id``.
    """

    def __init__(self) -> None:
        self.route_name: str | None = None
        self.others: frozenset[str] = frozenset()
        self._templates: dict[int, str] = {}

    def point_at(self, route_name: str, path: str) -> None:
        """Name the job-details route, mapped at ``path``."""
        self.route_name = route_name
        self.others = frozenset(compile_path(path)[2]) - {"job_id"}
        self._templates.clear()

    def url(self, request: Request, job: Job) -> str | None:
        """The job-details path of ``job`` as seen by ``request``; None without the route
        (or, for a path with other parameters, when ``request``'s path lacks one)."""
        if self.route_name is None:
            return None
        # The root path comes decoded from a mount's own parameters: quoted again (a
        # percent sign kept, as a proxy's prefix may be given encoded already), and
        # without a trailing slash or a run of slashes (``--root-path /`` would give
        # ``//jobs/...``: a link to a host named jobs).
        raw = _SLASHES.sub("/", str(request.scope.get("root_path", ""))).rstrip("/")
        root = quote(raw, safe="/!$&'()*+,;=:@%~")
        if self.others:
            given = request.path_params
            if not self.others <= given.keys():
                return None
            # Path parameters come decoded: quoted again, so the header is the URL as sent.
            values = {name: _quoted(given[name]) for name in self.others}
            try:
                return root + str(
                    request.app.url_path_for(self.route_name, job_id=str(job.id), **values)
                )
            except (NoMatchFound, ValueError, AssertionError):
                # No such route on this app, or a value its convertor refuses (Starlette's
                # int convertor asserts its value is not negative).
                return None
        # Routing tables do not change once serving, so the route is looked up once per app
        # (a lookup walks every route) and the id is put into the cached path.
        app = request.app
        template = self._templates.get(id(app))
        if template is None:
            path = app.url_path_for(self.route_name, job_id=_PLACEHOLDER_ID)
            template = self._templates[id(app)] = str(path)
        return root + template.replace(_PLACEHOLDER_ID, str(job.id))


def _quoted(value: Any) -> Any:
    return quote(value, safe="") if isinstance(value, str) else value


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

    @property
    def store(self) -> JobStore:
        """The job store (its optional capabilities decide some answers)."""
        ...

    def warn_unless_started(self) -> None:
        """Log once when a job is accepted while the app's lifespan never ran."""
        ...

    async def enqueue_once(
        self,
        handler: Handler,
        request: JobRequest,
        placement: Placement = AT_ONCE,
        *,
        job_id: uuid.UUID | None = None,
        idempotency: Idempotency | None = None,
    ) -> tuple[Job, bool]:
        """Store a job for ``handler``; whether it repeats an earlier submission (see
        `AsyncEndpoints.enqueue_once`)."""
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


def job_details_endpoint(endpoints: JobService) -> Endpoint:
    """The GET endpoint answering a job's JSON, 404 for unknown or unauthorised ids; with
    ``Prefer: wait=N`` it answers once the job is terminal or N seconds have passed."""

    async def job_details(request: Request) -> Response:
        wait = preferred_wait(request, endpoints.settings.max_wait)
        try:
            job = await _authorized_job(endpoints, request)
            if job is not None and wait is not None and not job.status.is_terminal:
                job = await unless_disconnected(
                    request, endpoints.wait_until(job, wait.seconds), job
                )
        except JobStoreError as exc:
            return store_failure("read", exc, path_job_id(request))
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
                return refusal(request, 404, "job not found")
            if job.status.is_terminal:
                return _already_terminal(job, request)
            canceled, here = await endpoints.cancel_unfinished(job)
        except JobStoreError as exc:
            return store_failure("cancel", exc, path_job_id(request))
        if canceled is None:  # dropped meanwhile (its retention ended)
            return refusal(request, 404, "job not found")
        if not here:  # it ended, or another call cancelled it, meanwhile
            return _already_terminal(canceled, request)
        return job_response(canceled)

    return cancel_job


def _already_terminal(job: Job, request: Request) -> Response:
    message = f"the job is {job.status.value} already; it cannot be cancelled"
    return refusal(request, 409, message)


async def _authorized_job(endpoints: JobService, request: Request) -> Job | None:
    """The job named by the path's ``job_id``; None when unknown, not a UUID, or refused by
    ``authorize``."""
    job_id = path_job_id(request)
    job = None if job_id is None else await endpoints.get_job(job_id)
    if job is None or await may_see(endpoints.settings, request, job):
        return job
    return None


async def may_see(settings: Settings, request: Request, job: Job) -> bool:
    """Whether the ``authorize`` setting lets ``request`` be shown ``job`` (yes without
    one): the job routes, repeated submissions and event streams alike."""
    authorize = settings.authorize
    if authorize is None:
        return True
    return grants(await call_maybe_async(authorize, request, job), "the authorize setting")


async def submitted_response(endpoints: JobService, job: Job, request: Request) -> Response:
    """The app's ``job_submitted_response``, or 202 with the job JSON and ``Location``.

    The job is stored by then: when the app's hook raises or returns something that is
    not a ``Response``, the client still learns of its job (the default 202, the hook's
    failure logged as an error) rather than a 500 it would retry, submitting again."""
    factory = endpoints.settings.job_submitted_response
    if factory is not None:
        try:
            answer = await call_maybe_async(factory, job, request)
        except Exception:
            logger.exception(
                "job_submitted_response raised; answering the default 202 for job %s, "
                "which is stored",
                job.id,
                extra=job_id_extra(job.id, job.name),
            )
        else:
            if isinstance(answer, Response):
                return answer
            logger.error(
                "job_submitted_response returned %s, not a Response; answering the default "
                "202 for job %s, which is stored",
                type(answer).__name__,
                job.id,
                extra=job_id_extra(job.id, job.name),
            )
    location = endpoints.locations.url(request, job)
    return job_response(job, 202, None if location is None else {"Location": location})


async def status_response(endpoints: JobService, job: Job | None, request: Request) -> Response:
    """The app's ``job_status_response``, or 200 with the job JSON (404 when None)."""
    factory = endpoints.settings.job_status_response
    if factory is not None:
        return await call_maybe_async(factory, job, request)
    if job is None:
        return refusal(request, 404, "job not found")
    return job_response(job)


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
            settings.sensitive_query_params,  # type: ignore[arg-type]
        ),
        query_string=capture_query(
            query_string,
            settings.sensitive_query_params,  # type: ignore[arg-type]
        ),
        route_params=route_params,
        owner=owner,
    )


def store_failure(verb: str, exc: JobStoreError, job_id: uuid.UUID | None = None) -> Response:
    """The answer when the store failed to ``verb`` a job: 503 when unreachable or closed
    (the app's lifespan has ended), else 500; the details go to the log, never to the
    client. The record names the job ``job_id`` when it is known (a path's, a
    client-chosen one) and carries it as ``job_id`` (its name is not known without the
    store)."""
    # The exception's text names hosts, ports and keys: it goes to the log, not the client.
    doing, extra = f"{verb} a job", None
    if job_id is not None:
        doing, extra = f"{verb} job {job_id}", job_id_extra(job_id)
    if isinstance(exc, StoreUnavailableError):
        STORE_OUTAGE.warning("could not %s: %s", doing, exc, extra=extra)
        return error_response(503, STORE_UNAVAILABLE, retry_after=exc.retry_after)
    if isinstance(exc, StoreClosedError):
        logger.warning("could not %s: %s", doing, exc, extra=extra)
        return error_response(503, STORE_UNAVAILABLE, retry_after=1.0)
    logger.error("could not %s: %s: %s", doing, type(exc).__name__, exc, extra=extra)
    return error_response(500, STORE_FAILED)


def path_job_id(request: Request) -> uuid.UUID | None:
    """The job id in the request's path (``{job_id}``), or None when it is not a UUID."""
    return parse_job_id(request.path_params.get("job_id"))
