"""`EventFanout`: the open event streams of one ``map_job_events`` route in this process,
and the one path by which a job's change reaches all of them.

Each watched job has one entry here and one listener in the store (`EventStore.watch_job`,
however many streams watch it). The store's listener only notes the change with the
streams it is for; one task per route (`EventFanout._run`) then encodes it once
(`Render`) and hands the same bytes to every stream of the job in one pass: each
stream's send is started right there and nearly always finishes at once (see
`async_endpoints._event_stream`), so no task per stream wakes up and nothing is encoded
per stream. The same task sends a keep-alive comment every `PING_INTERVAL` seconds to
the streams that sent nothing since the last round.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

from ._event_stream import EventStream, Render
from ._job_watch import JobNotice
from ._logs import job_id_extra
from ._store_features import EventStore

logger = logging.getLogger("async_endpoints")

#: Seconds between keep-alive comments on a quiet stream (proxies close silent ones).
PING_INTERVAL = 15.0


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
                        name = None if notice.job is None else notice.job.name
                        logger.exception(
                            "could not hand out a change of job %s",
                            entry.job_id,
                            extra=job_id_extra(entry.job_id, name),
                        )
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
        if notice.gone:
            for stream in streams:
                stream.gone(notice)
            return
        if job is None:
            event = render.progress(notice.progress)
            for stream in streams:
                stream.progress_notice(notice, event)
            return
        key = (job.status, job.last_updated_at)
        shared = render.status(job)
        for stream in streams:
            stream.status(notice, key, shared)
