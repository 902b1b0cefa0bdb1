"""`EventStream`: one open event stream, as the fan-out (`async_endpoints._event_fanout`)
sees it, and `Render`, how a route encodes its events.

A stream's events go straight to its response's ASGI ``send``: the send is *started* by
the caller (the fan-out's one task) and, as it nearly always does (uvicorn writes to the
socket and returns), finishes at once; no task of the stream's wakes up. A send that
cannot finish at once (a client that reads slowly, so the server waits for the socket to
drain, or a middleware that hands the message on through a queue) goes on in a task of
the stream's own (`_Resumed`), which then sends what came meanwhile, in order; progress
queued there is replaced by newer progress. Until the stream's first event went out,
what comes is held, then judged against that event: a status notice no newer than it,
and progress up to the value it showed, send nothing; a terminal status is the last event.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import Awaitable, Coroutine, Generator
from datetime import datetime
from types import CoroutineType
from typing import Any

from sse_starlette import ServerSentEvent
from starlette.types import Message, Send

from ._job import Job, JobStatus
from ._job_watch import JobNotice
from ._responses import dumps

logger = logging.getLogger("async_endpoints")

#: The keep-alive comment.
PING = ServerSentEvent(comment="ping").encode()

#: Characters that are text in JSON but end a line for many SSE clients (Python's
#: ``str.splitlines``, which httpx's line reader follows), with their JSON escapes.
_LINE_ENDS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def json_data(text: str) -> str:
    """The JSON ``text`` as an event's data: the same JSON, with U+0085, U+2028 and
    U+2029 (which only occur inside its strings) escaped, so that a client that splits
    lines as ``str.splitlines`` does still reads one line of data. Only JSON may be given:
    the escapes are JSON's."""
    if text.isascii():
        return text
    for char, escape in _LINE_ENDS.items():
        text = text.replace(char, escape)
    return text


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
        data = json_data(dumps({"progress": value}).decode())
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
        "_read_at",
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
        self._read_at: int | None = None  # how many were held when the first was read
        self._queue: deque[tuple[bool, bytes | Job]] = deque()  # (is progress, event)
        self._busy = False
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def read(self) -> None:
        """The job was read for the first event: what is held from now on came after."""
        if self._held is not None:
            self._read_at = len(self._held)

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
        # Notices held before the job was read (`read`) came before or after the read: a
        # status notice not newer than the first event told nothing new (its progress may
        # be older than the event's, as progress leaves lastUpdatedAt alone; a terminal
        # status at the same millisecond is newer), and progress up to the last one of the
        # value the event showed came before it. What was held after the read is newer.
        unsure = len(held) if self._read_at is None else self._read_at
        told = max(
            (
                at
                for at, notice in enumerate(held[:unsure])
                if notice.is_progress and notice.progress == first.progress
            ),
            default=-1,
        )
        for at, notice in enumerate(held):
            if notice.gone:
                if at >= unsure:  # gone after the read that found it
                    self.gone(notice)
            elif notice.job is None:
                if at > told:
                    self.progress_notice(notice, self.render.progress(notice.progress))
            elif at >= unsure or _newer(notice.job, first):
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
            self._last_sent()

    def gone(self, notice: JobNotice) -> None:
        """The store no longer has the job (`JobNotice.gone`): the stream ends, with no
        terminal status event (a client opening it again gets a 404)."""
        if self._held is not None:
            self._held.append(notice)
            return
        if not self._closing:
            self._last_sent()

    def _last_sent(self) -> None:
        """Nothing more is sent: the stream ends once what is queued went out."""
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
            self.push(False, PING)
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


def _newer(job: Job, first: Job) -> bool:
    """Whether ``job`` (a notice held while ``first`` was read) is a later state than
    ``first``: updated later, or ended at the same millisecond (times are whole
    milliseconds on Redis)."""
    if job.last_updated_at != first.last_updated_at:
        return job.last_updated_at > first.last_updated_at
    return job.status.is_terminal and job.status is not first.status
