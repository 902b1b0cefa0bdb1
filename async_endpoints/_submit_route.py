"""The submit endpoint of an async route (POST, PUT, PATCH or DELETE): validate, capture,
store once, answer ``202`` (or ``200`` with the finished job for ``Prefer: wait``).

A submission is stored once per ``Idempotency-Key`` (scoped to the endpoint and the
owner) and once per client-chosen ``X-Async-Request-Id``: a repeat answers the job the
first one stored, a clash (another body, endpoint or owner) answers ``422`` / ``409``.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoint's annotations
# at runtime and must see real classes.

import logging
import uuid
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response

from ._app_handlers import refusal
from ._capture import (
    RequestRejected,
    capture_query,
    is_json,
    names_a_non_finite_number,
    raw_headers,
    read_body,
    skip_body,
)
from ._disconnect import unless_disconnected
from ._errors import DuplicateJobError, JobStoreError, JobValidationError, QueueFullError
from ._handlers import Handler
from ._http import (
    Endpoint,
    JobService,
    job_request,
    may_see,
    status_response,
    store_failure,
    submitted_response,
)
from ._idempotency import (
    KEY_CONFLICT,
    IdempotencyConflictError,
    IdempotentJobGoneError,
    by_key,
    by_request_id,
    canonical_body,
    check_key,
    fingerprint,
    gone_message,
    query_pairs,
)
from ._job import MAX_LABEL_LENGTH, Job, JobRequest, JobStatus, parse_job_id
from ._logs import job_extra
from ._options import Placement
from ._prefer import applied, preferred_wait
from ._responses import call_maybe_async, error_response
from ._store_features import Idempotency, IdempotentStore

logger = logging.getLogger("async_endpoints")

#: The header naming a client-chosen job id (as the .NET library reads it).
REQUEST_ID_HEADER = "X-Async-Request-Id"
#: The header making a submission idempotent (the IETF Idempotency-Key draft).
IDEMPOTENCY_HEADER = "Idempotency-Key"
#: How a submission was known as a repeat: by the record of its key or id ("recorded"),
#: or by comparing it with the job that holds the id it chose ("id taken"; a key sent
#: with it was new).
Repeat = Literal["recorded", "id taken"]


def submit_endpoint(endpoints: JobService, handler: Handler) -> Endpoint:
    """The submit endpoint of ``handler``: validate, capture, queue, answer 202 (or 200
    with the finished job when ``Prefer: wait`` was honoured in time)."""

    async def submit(request: Request) -> Response:
        try:
            job_id = _requested_id(request)
            key = _idempotency_key(request)
            body, body_json = await _read_validated_body(request, handler, endpoints)
            _check_query(request, handler, endpoints)
        except RequestRejected as rejected:
            return refusal(request, rejected.status_code, rejected.detail, rejected.headers)
        if handler.validator is not None:
            said = await call_maybe_async(handler.validator, request, body)
            if said is not None:
                return _checked_refusal(handler, said)
        try:
            placement = await handler.placement(request, body)
        except ValueError as exc:
            return refusal(request, 422, str(exc))
        job_request = await _capture(endpoints, request, body_json)
        idempotency = _idempotency(endpoints, handler, job_request, key, job_id)
        try:
            stored = await _store_once(
                endpoints, handler, job_request, placement, job_id, idempotency
            )
        except (IdempotencyConflictError, IdempotentJobGoneError, JobStoreError) as exc:
            return _refused(request, exc, by_key=key is not None, job_id=job_id)
        if stored is None:
            return _id_taken(request, job_id)
        job, repeat = stored
        # A repeat shows an earlier submission's job: only to whom may see it.
        if repeat is not None and not await may_see(endpoints.settings, request, job):
            return _as_another_submission(request, repeat, key, job_id)
        return await _accepted(endpoints, job, request)

    submit.__name__ = f"submit_{handler.name}"
    # Starlette's SchemaGenerator reads a route's OpenAPI entry from its endpoint's
    # docstring (YAML after "---"): the handler's is the route's.
    submit.__doc__ = handler.doc
    return submit


def _as_another_submission(
    request: Request, repeat: Repeat, key: str | None, job_id: uuid.UUID | None
) -> Response:
    """The answer to a repeat whose job the caller may not see: the one a different
    submission with that key or id gets, so that it does not even tell that this very
    submission was made."""
    if repeat == "id taken":
        return _id_taken(request, job_id)
    if key is not None:
        return refusal(request, 422, KEY_CONFLICT)
    return _id_taken(request, job_id)


def _id_taken(request: Request, job_id: uuid.UUID | None) -> Response:
    """The answer to a submission whose client-chosen id a different submission took:
    the same words whether the store remembers that submission's fingerprint or only its
    job (they would tell another caller whether the id was chosen by its client lately)."""
    return refusal(request, 409, f"job id {job_id} is taken by another submission")


def _refused(
    request: Request, exc: Exception, *, by_key: bool, job_id: uuid.UUID | None
) -> Response:
    """The answer to a submission the store did not take: a key (``by_key``) or a
    client-chosen id used by another submission (422 for a key, 409 for an id), or by
    this one for a job no longer kept (409); a full queue (503); a store failure (logged
    with the client-chosen ``job_id``, if any). A key used by another submission never
    names that submission's job: a key may be guessed, and the id would lead to the job
    (one no longer kept is named: it cannot be read, and the repeat was this very
    submission's)."""
    if isinstance(exc, IdempotencyConflictError):
        return refusal(request, 422, KEY_CONFLICT) if by_key else _id_taken(request, job_id)
    if isinstance(exc, IdempotentJobGoneError):
        what = "Idempotency-Key" if by_key else "X-Async-Request-Id"
        return refusal(request, 409, gone_message(exc.job_id, what))
    if isinstance(exc, QueueFullError):
        return error_response(503, str(exc), retry_after=exc.retry_after)
    assert isinstance(exc, JobStoreError)
    return store_failure("queue", exc, job_id)


def _checked_refusal(handler: Handler, refusal: object) -> Response:
    """The validator's refusal, which must be a Response.

    Raises:
        TypeError: it is something else (``False``, a dict...): sent on, FastAPI would
            make it a 202 body with no job behind it.
    """
    if not isinstance(refusal, Response):
        validator = getattr(handler.validator, "__qualname__", repr(handler.validator))
        raise TypeError(
            f"the validator {validator} of {handler.name!r} must return None (queue the job) "
            f"or a Response (sent instead), not {refusal!r}"
        )
    return refusal


async def _accepted(endpoints: JobService, job: Job, request: Request) -> Response:
    """The answer to a stored submission: 202, or with ``Prefer: wait=N`` the finished
    job (200) once it is terminal within N seconds (202 as it is then otherwise)."""
    endpoints.warn_unless_started()
    wait = preferred_wait(request, endpoints.settings.max_wait)
    if wait is None:
        return await submitted_response(endpoints, job, request)
    try:
        job = await unless_disconnected(request, endpoints.wait_until(job, wait.seconds), job)
    except JobStoreError as exc:  # the job is stored: answer as without the wait
        logger.warning("could not wait for job %s: %s", job.id, exc, extra=job_extra(job))
    if job.status.is_terminal:
        response = await status_response(endpoints, job, request)
        location = endpoints.locations.url(request, job)
        if location is not None and endpoints.settings.job_status_response is None:
            response.headers["Content-Location"] = location  # the job JSON's own URL
    else:
        response = await submitted_response(endpoints, job, request)
    response.headers.update(applied(wait))
    return response


def _idempotency(
    endpoints: JobService,
    handler: Handler,
    job_request: JobRequest,
    key: str | None,
    job_id: uuid.UUID | None,
) -> Idempotency | None:
    """How this submission is made once: by its ``Idempotency-Key``, else by its
    client-chosen id (when the store keeps idempotency keys), else not at all (then its
    fingerprint is not computed: plain submissions pay nothing for this)."""
    by_id = job_id is not None and isinstance(endpoints.store, IdempotentStore)
    if key is None and not by_id:
        return None
    owner, ttl = job_request.owner, endpoints.settings.idempotency_ttl
    body = canonical_body(handler, job_request.body)
    if key is not None:  # the id the client chose is part of what the key stands for
        content = fingerprint(handler.name, owner, body, job_request, job_id)
        return by_key(key, handler.name, owner, content, ttl)
    assert job_id is not None
    return by_request_id(job_id, fingerprint(handler.name, owner, body, job_request), ttl)


async def _store_once(
    endpoints: JobService,
    handler: Handler,
    job_request: JobRequest,
    placement: Placement,
    job_id: uuid.UUID | None,
    idempotency: Idempotency | None,
) -> tuple[Job, Repeat | None] | None:
    """The job this submission stored, or the job a repeat of it stored before, and how
    the repeat was known (None: the job is this submission's); None when its client-chosen
    id belongs to a different submission.

    Raises:
        IdempotencyConflictError: its key (or id) was used by a different submission.
        IdempotentJobGoneError: its key (or id) was used by this submission, whose job is
            no longer kept.
    """
    for _ in range(2):
        try:
            job, repeat = await endpoints.enqueue_once(
                handler, job_request, placement, job_id=job_id, idempotency=idempotency
            )
            return job, "recorded" if repeat else None
        except DuplicateJobError:
            # The id is taken by a job whose idempotency key has expired (or by a store
            # without keys): compare what the job still keeps.
            assert job_id is not None
            existing = await endpoints.get_job(job_id)
            if existing is not None:
                repeats = _repeats(existing, handler, job_request)
                return (existing, "id taken") if repeats else None
            # Dropped between the two calls (its retention ended): store it afresh.
    return None


def _repeats(job: Job, handler: Handler, request: JobRequest) -> bool:
    """Whether ``request`` for ``handler`` repeats the submission that stored ``job`` (whose
    id is taken and whose fingerprint the store does not remember): the same endpoint,
    owner, body (as `canonical_body` compares it), route and query parameters. Never for
    a Completed job: it no longer keeps
    its request (a store that keeps a hash of it answers an identical resend in the enqueue
    itself), so nothing shows this request was its submission (the id may have been chosen
    by the server and learnt from a ``Location``), and answering it would hand one
    submission's result to another."""
    kept = job.request
    return (
        job.status is not JobStatus.COMPLETED
        and job.name == handler.name
        and kept.owner == request.owner
        and canonical_body(handler, kept.body) == canonical_body(handler, request.body)
        and kept.route_params == request.route_params
        and query_pairs(kept.query_string) == query_pairs(request.query_string)
    )


def _requested_id(request: Request) -> uuid.UUID | None:
    """The job id the client chose with ``X-Async-Request-Id``, or None.

    Raises:
        RequestRejected: 400, the value is not a UUID.
    """
    value = _single(request, REQUEST_ID_HEADER)
    if value is None:
        return None
    job_id = parse_job_id(value.strip())
    if job_id is None:
        raise RequestRejected(400, "X-Async-Request-Id must be a UUID")
    return job_id


def _idempotency_key(request: Request) -> str | None:
    """The ``Idempotency-Key`` the client sent, or None.

    Raises:
        RequestRejected: 400, the key is empty or longer than 255 characters.
    """
    value = _single(request, IDEMPOTENCY_HEADER)
    if value is None:
        return None
    if len(value) > MAX_LABEL_LENGTH:
        # A header's text is its bytes (latin-1, as HTTP has it): a key of 86 "☃" is 258
        # of them, and counting characters would tell the client a number it never sent.
        message = f"Idempotency-Key must be 1 to {MAX_LABEL_LENGTH} bytes, not {len(value)}"
        raise RequestRejected(400, message)
    try:
        return check_key(value)
    except ValueError as exc:
        raise RequestRejected(400, f"Idempotency-Key: {exc}") from None


def _single(request: Request, name: str) -> str | None:
    """The value of header ``name``, sent at most once (or repeated alike).

    Raises:
        RequestRejected: 400, it came on lines with different values (one of them would
            be a guess: two lines mean their values joined by a comma, which no id or key
            reads as).
    """
    values = request.headers.getlist(name)
    if len(set(values)) > 1:  # the same line twice (as some proxies repeat it) is one value
        raise RequestRejected(400, f"{name} must be sent once, not {len(values)} times")
    return values[0] if values else None


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


def _check_query(request: Request, handler: Handler, endpoints: JobService) -> None:
    """Refuse (422, FastAPI's shape) a query that fails the route's declared query model,
    read as the job will keep it (its sensitive parameters left out)."""
    if handler.query is None:
        return
    denied = endpoints.settings.sensitive_query_params
    kept = capture_query(request.scope.get("query_string", b""), denied)  # type: ignore[arg-type]
    try:
        handler.check_query(kept)
    except JobValidationError as exc:
        raise RequestRejected(422, exc.errors) from None


async def _read_validated_body(
    request: Request, handler: Handler, endpoints: JobService
) -> tuple[Any, str | None]:
    if handler.model is None:
        await skip_body(request, endpoints.settings.max_body_size)
        return None, None
    # Lines that disagree are refused as for the id headers: reading the first would let
    # a proxy or a server that reads the last see another body type than this one did
    # (lines that all name JSON agree, however they spell it).
    types = request.headers.getlist("content-type")
    if len(set(types)) > 1 and not all(is_json(value) for value in types):
        raise RequestRejected(400, f"Content-Type must be sent once, not {len(types)} times")
    content_type = types[0] if types else None
    if content_type is not None and not is_json(content_type):
        raise RequestRejected(415, "expected a JSON body (application/json)")
    _check_not_encoded(request)
    raw = await read_body(request, endpoints.settings.max_body_size)
    if not raw.strip():
        missing = [{"loc": ["body"], "msg": "a JSON request body is required", "type": "missing"}]
        raise RequestRejected(422, missing)
    if content_type is None:
        raise RequestRejected(415, "expected a JSON body: set Content-Type: application/json")
    try:
        text = raw.decode("utf-8")
        if names_a_non_finite_number(text):  # before the model: 400 whatever it takes
            raise RequestRejected(
                400, "request body is not valid JSON (NaN and Infinity are not JSON)"
            )
        return handler.parse_body(text), text
    except UnicodeDecodeError:
        raise RequestRejected(400, "request body is not UTF-8") from None
    except JobValidationError as exc:
        malformed = _malformed(exc.errors)
        if malformed is not None:
            raise RequestRejected(400, malformed) from None
        located = [{**error, "loc": ["body", *error["loc"]]} for error in exc.errors]
        raise RequestRejected(422, located) from None


def _check_not_encoded(request: Request) -> None:
    """Refuse (415, RFC 9110) a body sent compressed: it is read as sent, so a
    ``Content-Encoding`` other than ``identity`` would be parsed as the bytes it is."""
    codings = [
        coding.strip()
        for line in request.headers.getlist("content-encoding")
        for coding in line.split(",")
        if coding.strip()
    ]
    encoded = [coding for coding in codings if coding.lower() != "identity"]
    if encoded:
        named = encoded[-1] if len(encoded[-1]) <= 40 else encoded[-1][:40] + "…"
        raise RequestRejected(
            415,
            f"request bodies are read uncompressed: Content-Encoding {named!r} is not "
            "supported (send the JSON as it is)",
            {"Accept-Encoding": "identity"},
        )


def _malformed(errors: list[Any]) -> str | None:
    """The 400's detail when the body is not JSON the parser reads (None: it is): the
    parser's reason and place, never the body's text."""
    for error in errors:
        if error["type"] == "json_invalid":
            reason = str(error.get("msg", "")).removeprefix("Invalid JSON: ")
            if reason.startswith("recursion limit exceeded"):  # JSON, but too deep to read
                return f"request body nests arrays and objects too deeply: {reason}"
            return "request body is not valid JSON" + (f": {reason}" if reason else "")
    return None
