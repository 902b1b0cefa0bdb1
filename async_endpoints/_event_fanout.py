"""`EventFanout`: the open event streams of one ``map_job_events`` route in this process,
and the one path by which a job's change reaches all of them.

Each watched job has one entry here and one listener in the store (`EventStore.watch_job`,
however many streams watch it). A change the store tells is encoded once (`Render`) and
its bytes handed to every stream of the job in one pass, in one task: each stream's ASGI
``send`` is *started* right there and, as it nearly always does (uvicorn writes to the
socket and returns), finishes at once. No stream wakes a task of its own, and nothing is
encoded per stream. A send that cannot finish at once (the client reads slowly and the
server waits for the socket to drain, or a middleware hands the message on through a
queue) goes on in a task of its stream's own, which also sends whatever comes for that
stream meanwhile, in order; only that stream waits.

A stream follows the rules of `async_endpoints._sse`: what reaches it before it sent its
first event (the job as read after the watch started) is held and judged against that
event once sent; a status already shown sends nothing (or only the progress, if that
changed); a terminal status is the last event, after which the stream ends; progress
still queued behind a slow send is replaced by newer progress. Keep-alive comments go
every `PING_INTERVAL` seconds to the streams that sent nothing since the last round, from
the same task.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from datetime import datetime
from types import CoroutineType
from typing import Any

from sse_starlette import ServerSentEvent
from starlette.types import Message, Send

from ._job import Job, JobStatus
from ._job_watch import JobNotice
from ._responses import dumps
from ._store_features import EventStore

logger = logging.getLogger("async_endpoints")

#: Seconds between keep-alive comments on a quiet stream (proxies close silent ones).
PING_INTERVAL = 15.0
_PING = ServerSentEvent(comment="ping").encode()


class Render:
    """How a route encodes its events (each at most once per change, shared by the
    streams of the job)."""

    def status(self, job: Job) -> bytes | None:
        """The ``status`` event of ``job`` for every stream, or None when each stream
        renders its own (`status_for`)."""
        raise NotImplementedError

    async def status_for(self, job: Job, request: Any) -> bytes:
        """The ``status`` event of ``job`` for the stream answering ``request``."""
        raise NotImplementedError

    def progress(self, value: Any) -> bytes:
        """The ``progress`` event of ``value``."""
        data = dumps({"progress": value}).decode()
        return ServerSentEvent(data=data, event="progress").encode()


class EventStream:
    """One open stream: its ASGI ``send``, what it has shown, what waits to be sent.

    Args:
        render: How its events are encoded.
        request: The request it answers (for `Render.status_for`).
    """

    __slots__ = (
        "_busy",
        "_closing",
        "_context",
        "_held",
        "_queue",
        "_send",
        "_task",
        "ended",
        "progress",
        "quiet",
        "render",
        "request",
        "shown",
    )

    def __init__(self, render: Render, request: Any = None) -> None:
        self.render, self.request = render, request
        self.shown: tuple[JobStatus, datetime] | None = None
        self.progress: Any = None
        self.quiet = True  # nothing sent since the last keep-alive round
        #: Done once the stream sent its last event (or its connection failed).
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._send: Send | None = None
        self._context: contextvars.Context | None = None
        self._held: list[JobNotice] | None = []  # notices before the first event went
        self._queue: deque[tuple[bool, bytes | Job]] = deque()  # (is progress, event)
        self._busy = False
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def attach(self, send: Send) -> None:
        """The ASGI ``send`` of the stream's response."""
        self._send = send

    def opened(self, first: Job) -> None:
        """The first event (``first``) went out: from now on events go straight to the
        response's ``send``, the notices held meanwhile first."""
        self.shown = (first.status, first.last_updated_at)
        self.progress = first.progress
        self._context = contextvars.copy_context()
        held, self._held = self._held or [], None
        if first.status.is_terminal:
            self._end()
            return
        for notice in held:
            if notice.job is None:
                self.progress_notice(notice, self.render.progress(notice.progress))
            else:
                key = (notice.job.status, notice.job.last_updated_at)
                self.status(notice, key, self.render.status(notice.job))

    def stop(self) -> None:
        """The response is over (ended, or the client went away): drop what is pending."""
        self._closing = True
        self._queue.clear()
        task = self._task
        if task is not None and not task.done():
            task.cancel()
        self._end()

    # What the fan-out hands over

    def status(
        self, notice: JobNotice, key: tuple[JobStatus, datetime], event: bytes | None
    ) -> None:
        """A status notice, with its shared encoding (None: render per stream)."""
        if self._held is not None:
            self._held.append(notice)
            return
        job = notice.job
        assert job is not None
        if self._closing:
            return
        if key == self.shown:
            if job.progress != self.progress:
                self.progress = job.progress
                self.push(True, self.render.progress(job.progress))
            return
        self.shown, self.progress = key, job.progress
        self.push(False, job if event is None else event)
        if key[0].is_terminal:
            self._closing = True
            if not self._busy:
                self._end()

    def progress_notice(self, notice: JobNotice, event: bytes) -> None:
        """A progress notice, with its encoding."""
        if self._held is not None:
            self._held.append(notice)
            return
        if self._closing:
            return
        self.progress = notice.progress
        self.push(True, event)

    def push(self, is_progress: bool, event: bytes | Job) -> None:
        """Send ``event`` (bytes, or a job to render for this stream) after whatever is
        queued; at once when nothing is."""
        if self._busy:
            queue = self._queue
            if is_progress and queue and queue[-1][0]:
                queue[-1] = (True, event)
            else:
                queue.append((is_progress, event))
            return
        if isinstance(event, bytes):
            self._send_now(event)
        else:
            self._go_on(None, event)

    def _send_now(self, body: bytes) -> None:
        """Start the send of ``body`` here; if it has to wait, it goes on in a task."""
        assert self._send is not None and self._context is not None
        try:
            sending = self._send(_body(body))
            if type(sending) is not CoroutineType:  # an awaitable of another kind
                self._go_on(sending, None)
                return
            waiting = self._context.run(sending.send, None)
        except StopIteration:
            self.quiet = False
            return
        except Exception as exc:
            self._failed(exc)
            return
        self._go_on(_Resumed(sending, waiting), None)

    def _go_on(self, sending: Awaitable[None] | None, job: Job | None) -> None:
        self._busy = True
        self._task = asyncio.get_running_loop().create_task(
            self._sending(sending, job), context=self._context
        )

    async def _sending(self, sending: Awaitable[None] | None, job: Job | None) -> None:
        """Finish the send started elsewhere (or render ``job``), then send the queue."""
        assert self._send is not None
        try:
            if sending is not None:
                await sending
            if job is not None:
                await self._send(_body(await self._render(job)))
            while self._queue:
                _, event = self._queue.popleft()
                body = event if isinstance(event, bytes) else await self._render(event)
                await self._send(_body(body))
        except Exception as exc:
            self._failed(exc)
            return
        finally:
            self._busy = False
            self._task = None
        self.quiet = False
        if self._closing:
            self._end()

    async def _render(self, job: Job) -> bytes:
        return await self.render.status_for(job, self.request)

    def _failed(self, exc: Exception) -> None:
        logger.debug("an event stream's send failed: %s: %s", type(exc).__name__, exc)
        self.stop()

    def _end(self) -> None:
        if not self.ended.done():
            self.ended.set_result(None)

    def ping(self) -> None:
        """A keep-alive comment, unless the stream sent something since the last one."""
        if self._held is None and not self._closing and self.quiet and not self._busy:
            self.push(False, _PING)
        self.quiet = True


def _body(body: bytes) -> Message:
    return {"type": "http.response.body", "body": body, "more_body": True}


class _Resumed:
    """A coroutine started elsewhere that stopped to wait for ``waiting`` (a future, or
    None for a bare yield): awaiting this goes on with it in the awaiting task, as if
    that task had run it from the start (what it waits for, cancellation included)."""

    __slots__ = ("_coroutine", "_waiting")

    def __init__(self, coroutine: Coroutine[Any, Any, Any], waiting: Any) -> None:
        self._coroutine, self._waiting = coroutine, waiting

    def __await__(self) -> Generator[Any, Any, None]:
        coroutine, waiting = self._coroutine, self._waiting
        while True:
            try:
                received = yield waiting
            except BaseException as exc:  # cancellation: it goes to the coroutine
                try:
                    waiting = coroutine.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    waiting = coroutine.send(received)
                except StopIteration:
                    return


class _Job:
    """The streams of one watched job and its listener in the store."""

    __slots__ = ("job_id", "notices", "streams", "unwatch", "watching")

    def __init__(self, job_id: uuid.UUID) -> None:
        self.job_id = job_id
        self.streams: dict[EventStream, None] = {}
        self.notices: list[tuple[JobNotice, list[EventStream]]] = []
        self.watching: asyncio.Task[Callable[[], None]] | None = None
        self.unwatch: Callable[[], None] | None = None


class EventFanout:
    """The open streams of one route in this process, by job; see the module docstring.

    Args:
        store: The store telling the changes.
        render: How events are encoded.
    """

    def __init__(self, store: EventStore, render: Render) -> None:
        self._store = store
        self._render = render
        self._jobs: dict[uuid.UUID, _Job] = {}
        self._due: list[_Job] = []
        self._wake: asyncio.Future[None] | None = None
        self._runner: asyncio.Task[None] | None = None

    async def watch(self, job_id: uuid.UUID, stream: EventStream) -> Callable[[], None]:
        """Tell ``stream`` the job's changes from now on (once this returns, the store's
        watch is live); returns the function that stops it (idempotent).

        Raises:
            JobStoreError: the store could not watch the job.
        """
        entry = self._jobs.get(job_id)
        if entry is None:
            entry = self._jobs[job_id] = _Job(job_id)
            entry.watching = asyncio.get_running_loop().create_task(
                self._store.watch_job(job_id, lambda notice: self._noticed(entry, notice))
            )
            entry.watching.add_done_callback(lambda _: self._watched(entry))
        entry.streams[stream] = None
        leave = self._leaver(entry, stream)
        self._awake()
        try:
            assert entry.watching is not None
            await asyncio.shield(entry.watching)
        except BaseException:
            leave()
            raise
        return leave

    def _watched(self, entry: _Job) -> None:
        watching = entry.watching
        assert watching is not None
        if watching.cancelled() or watching.exception() is not None:
            if self._jobs.get(entry.job_id) is entry:
                del self._jobs[entry.job_id]
            return
        entry.unwatch = watching.result()
        if not entry.streams:
            self._drop(entry)

    def _leaver(self, entry: _Job, stream: EventStream) -> Callable[[], None]:
        def leave() -> None:
            stream.stop()
            if entry.streams.pop(stream, False) is None and not entry.streams:
                self._drop(entry)

        return leave

    def _drop(self, entry: _Job) -> None:
        """The job's last stream is gone: stop watching it (once the watch is live)."""
        if entry.unwatch is None:
            return  # `_watched` drops it when the watch is live
        if self._jobs.get(entry.job_id) is entry:
            del self._jobs[entry.job_id]
        entry.unwatch()

    def _noticed(self, entry: _Job, notice: JobNotice) -> None:
        """The store's listener: note the change and the streams it is for, and wake the
        fan-out (quick, never blocks)."""
        if not entry.streams:
            return
        if not entry.notices:
            self._due.append(entry)
        entry.notices.append((notice, list(entry.streams)))
        self._awake()

    def _awake(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)
        loop = asyncio.get_running_loop()
        runner = self._runner
        if runner is None or runner.done() or runner.get_loop() is not loop:
            self._runner = loop.create_task(self._run(), name="async-endpoints-event-fanout")

    async def _run(self) -> None:
        """Hand out the changes as they come, and a keep-alive round every
        `PING_INTERVAL` seconds (to the streams that sent nothing since the last one)."""
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + PING_INTERVAL
        while self._jobs:
            due, self._due = self._due, []
            for entry in due:
                notices, entry.notices = entry.notices, []
                for notice, streams in notices:
                    try:
                        self._hand_out(notice, streams)
                    except Exception:  # a bug: the other changes and streams go on
                        logger.exception("could not hand out a change of job %s", entry.job_id)
            if loop.time() >= next_ping:
                next_ping = loop.time() + PING_INTERVAL
                for entry in list(self._jobs.values()):
                    for stream in list(entry.streams):
                        stream.ping()
            if self._due:
                continue
            self._wake = loop.create_future()
            try:
                async with asyncio.timeout_at(next_ping):
                    await self._wake
            except TimeoutError:
                pass
            finally:
                self._wake = None

    def _hand_out(self, notice: JobNotice, streams: list[EventStream]) -> None:
        render = self._render
        job = notice.job
        if job is None:
            event = render.progress(notice.progress)
            for stream in streams:
                stream.progress_notice(notice, event)
            return
        key = (job.status, job.last_updated_at)
        shared = render.status(job)
        for stream in streams:
            stream.status(notice, key, shared)
