"""Job event streams: ``GET /jobs/{job_id}/events`` as Server-Sent Events (sse-starlette).

A stream watches its job in the store (through the route's `EventFanout`) *before* it
reads it, so no change between the read and the first notice is lost, then sends:

- ``event: status``, ``data`` the job JSON exactly as ``GET /jobs/{id}`` serves it (the
  app's ``job_status_response`` included): at once (the current state, so a client that
  reconnects resumes from it), and at every status change after;
- ``event: progress``, ``data`` ``{"progress": value}``: at every progress reported;

and ends after the status event of a terminal status. sse-starlette frames the events
and runs each response (its start, a ``HEAD``, the client going away, the server shutting
down, the end); the events after the first reach the streams through the fan-out, which
encodes each change once and writes it to every stream of the job in one pass (see
`async_endpoints._event_fanout`). Without ``job_status_response`` a status event is the
same bytes for every stream; with it, each stream calls it with its own request.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ._app_handlers import refusal
from ._errors import JobStoreError
from ._event_fanout import EventFanout
from ._event_stream import EventStream, Render, json_data
from ._http import may_see, store_failure
from ._job import Job, job_to_json, parse_job_id
from ._logs import job_extra
from ._openapi import error_responses, path_parameters
from ._responses import call_maybe_async, dumps
from ._routes import fixed_operation_id, is_fastapi, refuse_shadowed
from ._settings import Settings
from ._store import JobStore
from ._store_features import EventStore

Endpoint = Callable[[Request], Awaitable[Response]]
logger = logging.getLogger("async_endpoints")


class EventService(Protocol):
    """What the events endpoint needs of `AsyncEndpoints`."""

    @property
    def settings(self) -> Settings:
        """The settings (``authorize``, ``job_status_response``)."""
        ...

    @property
    def store(self) -> JobStore:
        """The job store (an `EventStore`)."""
        ...


def job_events_endpoint(endpoints: EventService) -> Endpoint:
    """The GET endpoint streaming a job's status and progress; 404 (JSON) for unknown,
    malformed or unauthorised ids, before any stream starts."""
    render = JobRender(endpoints.settings)
    fanouts: dict[int, EventFanout] = {}  # by store: the app's store is read at each call

    async def job_events(request: Request) -> Response:
        store = endpoints.store
        job_id = parse_job_id(request.path_params.get("job_id"))
        if job_id is None or not isinstance(store, EventStore):
            return refusal(request, 404, "job not found")
        fanout = fanouts.get(id(store))
        if fanout is None:
            fanout = fanouts[id(store)] = EventFanout(store, render)
        stream = EventStream(render, request)
        try:
            leave = await fanout.watch(job_id, stream)
        except JobStoreError as exc:
            return store_failure("watch", exc, job_id)
        try:
            job = await store.get(job_id)
            stream.read()
            if job is not None and not await may_see(endpoints.settings, request, job):
                job = None
            first = None if job is None else await render.first(job, request)
        except JobStoreError as exc:
            leave()
            return store_failure("read", exc, job_id)
        except BaseException:
            leave()
            raise
        if job is None or first is None:
            leave()
            return refusal(request, 404, "job not found")
        return _EventResponse(_events(job, first, stream, leave), stream, leave)

    return job_events


class JobRender(Render):
    """The route's events: the status event's data is the job JSON as ``GET
    /jobs/{id}`` serves it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._last: tuple[Job | None, bytes] = (None, b"")

    def status(self, job: Job) -> bytes | None:
        """The status event of ``job``, the same for every stream (None when the app's
        ``job_status_response`` renders it per request). Encoded once: the streams of a
        job get the same `Job` object from the store's notice, so the last one is kept."""
        if self._settings.job_status_response is not None:
            return None
        last, encoded = self._last
        if last is not job:
            encoded = _status_event(dumps(job_to_json(job)), is_json=True)
            self._last = (job, encoded)
        return encoded

    async def status_for(self, job: Job, request: Any) -> bytes:
        """The status event of ``job`` for ``request``: the body the app's
        ``job_status_response`` answers (the default job JSON when it answers none)."""
        factory = self._settings.job_status_response
        if factory is None:
            shared = self.status(job)
            assert shared is not None
            return shared
        response = await call_maybe_async(factory, job, request)
        body = getattr(response, "body", None)
        if not isinstance(body, bytes):
            logger.warning(
                "job %s: job_status_response gave no body for an event; sent the job JSON",
                job.id,
                extra=job_extra(job),
            )
            return _status_event(dumps(job_to_json(job)), is_json=True)
        headers = getattr(response, "headers", None)
        content_type = "" if headers is None else headers.get("content-type", "")
        return _status_event(body, is_json="json" in content_type)

    async def first(self, job: Job, request: Any) -> bytes:
        """The stream's first event."""
        return self.status(job) or await self.status_for(job, request)


def _status_event(body: bytes, *, is_json: bool) -> bytes:
    data = body.decode(errors="replace")
    return ServerSentEvent(data=json_data(data) if is_json else data, event="status").encode()


class _EventResponse(EventSourceResponse):
    """The stream's response: sse-starlette runs it (without pings of its own: the fan-out
    sends them); it hands its ``send`` to the stream and stops watching the job however
    it ends, even when the client went away before the first event (its generator then
    never starts)."""

    def __init__(
        self, events: AsyncIterator[bytes], stream: EventStream, leave: Callable[[], None]
    ) -> None:
        super().__init__(events, ping=0)
        self._stream, self._leave = stream, leave

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._stream.attach(send)
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._leave()


async def _events(
    job: Job, first: bytes, stream: EventStream, leave: Callable[[], None]
) -> AsyncIterator[bytes]:
    """The first event (``job`` as read); then the fan-out sends the rest to the stream,
    and this ends with it."""
    try:
        yield first
        stream.opened(job)
        await stream.ended
    finally:
        leave()


class _EventStream(Response):
    """What the events route answers, for its OpenAPI document (FastAPI would otherwise
    list JSON as its 200's media type too)."""

    media_type = "text/event-stream"


def add_events_route(app: Any, path: str, endpoint: Endpoint, *, name: str) -> None:
    """Register ``endpoint`` for ``GET path`` (``text/event-stream``) on a Starlette or
    FastAPI app."""
    refuse_shadowed(app, path, ["GET"])
    if not is_fastapi(app):
        app.router.add_route(path, endpoint, methods=["GET"], name=name)
        return
    stream = {
        "description": "Server-Sent Events: `status` (the job JSON) at once and at every "
        'status change, `progress` (`{"progress": value}`) at every progress reported; '
        "the stream ends after the terminal status.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
    app.add_api_route(
        path,
        endpoint,
        methods=["GET"],
        name=name,
        operation_id=fixed_operation_id(app, name),
        response_model=None,
        response_class=_EventStream,
        responses={
            200: stream,
            **error_responses(
                404, 503, described={503: "The store is unavailable; see Retry-After."}
            ),
        },
        openapi_extra={"parameters": path_parameters(path)},
    )
