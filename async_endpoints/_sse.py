"""Job event streams: ``GET /jobs/{job_id}/events`` as Server-Sent Events (sse-starlette).

A stream watches its job in the store (`EventStore.watch_job`) *before* it reads it, so no
change between the read and the first notice is lost, then sends:

- ``event: status``, ``data`` the job JSON: at once (the current state, so a client that
  reconnects resumes from it), and at every status change after;
- ``event: progress``, ``data`` ``{"progress": value}``: at every progress reported;

and ends after the status event of a terminal status. Notices reach the stream through a
small queue of its own: the store keeps one subscription per process and one entry per
watched job, so an open stream costs its connection, its task and that queue. A notice
that repeats the status already sent (the store re-read the job after its subscription
was down) sends nothing, or only the progress if that changed.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import Receive, Scope, Send

from ._errors import JobStoreError
from ._http import store_failure
from ._job import Job, job_to_json, parse_job_id
from ._job_watch import JobNotice
from ._responses import call_maybe_async, error_response
from ._routes import is_fastapi
from ._settings import Settings
from ._store import JobStore
from ._store_features import EventStore

Endpoint = Callable[[Request], Awaitable[Response]]

#: Seconds between keep-alive comments on a quiet stream (proxies close silent ones).
PING_INTERVAL = 15.0


class EventService(Protocol):
    """What the events endpoint needs of `AsyncEndpoints`."""

    @property
    def settings(self) -> Settings:
        """The settings (``authorize``)."""
        ...

    @property
    def store(self) -> JobStore:
        """The job store (an `EventStore`)."""
        ...


class JobStream:
    """The notices of one job for one stream, queued until the stream sends them."""

    __slots__ = ("_notices", "_wake")

    def __init__(self) -> None:
        self._notices: deque[JobNotice] = deque()
        self._wake: asyncio.Future[None] | None = None

    def notice(self, notice: JobNotice) -> None:
        """Queue ``notice`` (the store's listener: quick, never blocks). A progress notice
        replaces one still queued right before it: a client slower than the reports gets
        the latest value rather than a growing backlog."""
        notices = self._notices
        if notice.job is None and notices and notices[-1].job is None:
            notices[-1] = notice
        else:
            notices.append(notice)
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def next(self) -> JobNotice:
        """The next notice, once there is one."""
        while not self._notices:
            self._wake = asyncio.get_running_loop().create_future()
            try:
                await self._wake
            finally:
                self._wake = None
        return self._notices.popleft()


def job_events_endpoint(endpoints: EventService) -> Endpoint:
    """The GET endpoint streaming a job's status and progress; 404 (JSON) for unknown,
    malformed or unauthorised ids, before any stream starts."""

    async def job_events(request: Request) -> Response:
        store = endpoints.store
        job_id = parse_job_id(request.path_params.get("job_id"))
        if job_id is None or not isinstance(store, EventStore):
            return error_response(404, "job not found")
        stream = JobStream()
        unwatch = await _watch(store, job_id, stream)
        if isinstance(unwatch, Response):
            return unwatch
        try:
            job = await store.get(job_id)
            if job is not None and not await _allowed(endpoints, request, job):
                job = None
        except JobStoreError as exc:
            unwatch()
            return store_failure("read a job", exc)
        except BaseException:
            unwatch()
            raise
        if job is None:
            unwatch()
            return error_response(404, "job not found")
        return _EventResponse(_events(job, stream, unwatch), unwatch)

    return job_events


class _EventResponse(EventSourceResponse):
    """The stream's response: it stops watching the job however it ends, even when the
    client went away before the first event (its generator then never starts)."""

    def __init__(self, events: AsyncIterator[ServerSentEvent | bytes], unwatch: Callable[[], None]):
        super().__init__(events, ping=PING_INTERVAL)
        self._unwatch = unwatch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._unwatch()


async def _allowed(endpoints: EventService, request: Request, job: Job) -> bool:
    """Whether ``authorize`` (the hook of job details) lets the caller see ``job``."""
    authorize = endpoints.settings.authorize
    return authorize is None or bool(await call_maybe_async(authorize, request, job))


async def _watch(
    store: EventStore, job_id: Any, stream: JobStream
) -> Callable[[], None] | Response:
    try:
        return await store.watch_job(job_id, stream.notice)
    except JobStoreError as exc:
        return store_failure("watch a job", exc)


# The last event encoded, with what it was made of (see `_status`).
_last_status: tuple[Job | None, bytes] = (None, b"")
_last_progress: tuple[JobNotice | None, bytes] = (None, b"")


async def _events(
    first: Job, stream: JobStream, unwatch: Callable[[], None]
) -> AsyncIterator[ServerSentEvent | bytes]:
    """The stream's events: ``first`` (the current state), then the notices."""
    try:
        yield _status(first)
        shown, progress = (first.status, first.last_updated_at), first.progress
        job = first
        while not job.status.is_terminal:
            notice = await stream.next()
            if notice.job is None:
                progress = notice.progress
                yield _progress_of(notice)
                continue
            job = notice.job
            if (job.status, job.last_updated_at) != shown:
                shown, progress = (job.status, job.last_updated_at), job.progress
                yield _status(job)
            elif job.progress != progress:
                progress = job.progress
                yield _progress(progress)
        # Closing a stream costs more than sending to it: let the other streams of the
        # job, woken by the same change, send the end first.
        await asyncio.sleep(0)
    finally:
        unwatch()


def _status(job: Job) -> bytes:
    """The status event of ``job``, encoded once for every stream that sends it: the
    streams of one job get the same `Job` object from the store's notice, one after the
    other, so the last one encoded is kept."""
    global _last_status
    last_job, encoded = _last_status
    if last_job is not job:
        event = ServerSentEvent(data=_json(job_to_json(job)), event="status")
        encoded = event.encode()
        _last_status = (job, encoded)
    return encoded


def _progress(value: Any) -> ServerSentEvent:
    return ServerSentEvent(data=_json({"progress": value}), event="progress")


def _progress_of(notice: JobNotice) -> bytes:
    """The progress event of ``notice``, encoded once for all the streams of its job."""
    global _last_progress
    last_notice, encoded = _last_progress
    if last_notice is not notice:
        encoded = _progress(notice.progress).encode()
        _last_progress = (notice, encoded)
    return encoded


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def add_events_route(app: Any, path: str, endpoint: Endpoint, *, name: str) -> None:
    """Register ``endpoint`` for ``GET path`` (``text/event-stream``) on a Starlette or
    FastAPI app."""
    if not is_fastapi(app):
        app.router.add_route(path, endpoint, methods=["GET"], name=name)
        return
    stream = {
        "description": "Server-Sent Events: `status` (the job JSON) at once and at every "
        'status change, `progress` (`{"progress": value}`) at every progress reported; '
        "the stream ends after the terminal status.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
    not_found = {
        "description": "No such job (or not visible to this caller).",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
    app.add_api_route(
        path,
        endpoint,
        methods=["GET"],
        name=name,
        operation_id=name,
        response_model=None,
        responses={200: stream, 404: not_found},
        openapi_extra={"parameters": _path_parameters(path)},
    )


def _path_parameters(path: str) -> list[dict[str, Any]]:
    _, _, convertors = compile_path(path)
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in convertors
    ]
