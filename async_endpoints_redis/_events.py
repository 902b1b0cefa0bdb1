"""`RedisEvents`: the `ProgressStore` and `EventStore` parts of `RedisJobStore`.

Progress is one token-checked script (``lua/progress.lua``) that stores the value's JSON in
the job's hash (field ``progress``). Events cost nothing for jobs nobody watches: a
process that watches a job adds its id to ``{p}:watched`` (``lua/watch.lua``, a watch
that lapses unless renewed: `WatchedJobs` renews this process's every `RENEW_EVERY`
seconds, for `WATCH_TTL`), and only the transitions of watched jobs publish on
``{p}:events`` (``tell_status`` in ``lua/_lib.lua``: one EXISTS per script when nothing is
watched). Terminal statuses come from the done channel, which every settlement
publishes anyway. Both channels reach the process through the store's one subscription
(`_notify`), and `WatchedJobs` hands each message to the listeners of its job: one
subscription and one decoded message per process, however many streams watch.

After the subscription was down, each watched job is read again once and told as it is
(what was published meanwhile is lost). A watched job found gone, by that read or by a
renewal of the watches (which names the ids whose job is not stored), is told gone once
(`JobNotice.gone`: its data was lost, a Redis restarted without persistence or flushed),
so that its event streams end rather than wait for an end that will never be told.
Every key and channel shares the store's hash tag, so this works the same on a Redis
Cluster (PUBLISH reaches every node).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from async_endpoints._errors import JobStoreError
from async_endpoints._job import Job
from async_endpoints._job_watch import JobListener, JobWatchers
from async_endpoints._logs import job_id_extra
from async_endpoints._store import Claim

from ._base import StoreBase
from ._codec import Reply, dump_json, job_from_text, terminal_job, text

logger = logging.getLogger("async_endpoints_redis")

#: Seconds a watch stands in Redis unless renewed.
WATCH_TTL = 30.0
#: Seconds between two renewals of this process's watches.
RENEW_EVERY = 10.0
_RENEW_BATCH = 1000  # ids per renewal call
_ID_LENGTH = 36


class WatchedJobs:
    """The jobs this process watches: their listeners, their watches in Redis, and the
    notices made of the subscription's messages.

    Args:
        read: Reads a job (a settlement announced without it, a reconnection).
        watch: Adds (or renews) the watches of these ids in Redis; returns those whose
            job is not stored.
    """

    def __init__(
        self,
        read: Callable[[uuid.UUID], Awaitable[Job | None]],
        watch: Callable[[list[str]], Awaitable[list[str]]],
    ) -> None:
        self.watchers = JobWatchers()
        self._read = read
        self._watch = watch
        self._reads: set[asyncio.Task[None]] = set()
        self._told_gone: set[uuid.UUID] = set()  # told once; told again if found after
        self._renewal: asyncio.Task[None] | None = None
        self._emptied: asyncio.Event | None = None

    async def add(self, job_id: uuid.UUID, listener: JobListener) -> Callable[[], None]:
        """Watch the job for ``listener``, live in Redis when this returns; returns the
        function that stops it."""
        unwatch = self.watchers.add(job_id, listener)
        if self._emptied is not None:
            self._emptied.clear()  # watched again before the renewal loop saw it empty
        try:
            await self._watch([str(job_id)])
        except BaseException:
            unwatch()
            raise
        if self._renewal is None:
            self._emptied = asyncio.Event()
            self._renewal = asyncio.create_task(self._renewing(), name="async-endpoints-watches")

        def stop() -> None:
            unwatch()
            if not self.watchers and self._emptied is not None:
                self._emptied.set()

        return stop

    async def _renewing(self) -> None:
        try:
            while self.watchers:
                assert self._emptied is not None
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(RENEW_EVERY):
                        await self._emptied.wait()
                watched = list(self.watchers.ids())
                self._told_gone.intersection_update(watched)
                ids = [str(job_id) for job_id in watched]
                for first in range(0, len(ids), _RENEW_BATCH):
                    try:
                        missing = await self._watch(ids[first : first + _RENEW_BATCH])
                    except JobStoreError as exc:
                        logger.warning("could not renew the watches of job events: %s", exc)
                        break
                    for job_id in missing:  # read again: told gone when it still is
                        self._read_soon(uuid.UUID(job_id))
        finally:
            self._renewal = None

    # The subscription's messages (see `_notify.JobEventsHook`)

    def changed(self, message: bytes | str) -> None:
        """A message of the events channel: ``s<id><hash JSON>`` or ``p<id><JSON>``."""
        if not self.watchers:
            return
        raw = text(message)
        try:
            job_id = uuid.UUID(raw[1 : _ID_LENGTH + 1])
        except ValueError:
            return
        if job_id not in self.watchers:
            return
        if raw[:1] == "p":
            try:
                value: Any = json.loads(raw[_ID_LENGTH + 1 :])
            except ValueError:
                message = "ignoring a malformed progress message of job %s"
                logger.warning(message, job_id, extra=job_id_extra(job_id))
                return
            self.watchers.progress(job_id, value)
        else:
            job, _ = job_from_text(raw[1:])
            if job is not None:
                self.watchers.status(job)
            else:
                self._read_soon(job_id)

    def settled(self, job_id: str, message: bytes | str) -> None:
        """A message of the done channel: the job, or only its id when large."""
        if not self.watchers:
            return
        try:
            parsed = uuid.UUID(job_id)
        except ValueError:
            return
        if parsed not in self.watchers:
            return
        job = terminal_job(job_id, message) if len(message) > _ID_LENGTH else None
        if job is not None:
            self.watchers.status(job)
        else:
            self._read_soon(parsed)

    def reconnected(self) -> None:
        """Read every watched job again: what was published meanwhile is lost."""
        for job_id in self.watchers.ids():
            self._read_soon(job_id)

    def _read_soon(self, job_id: uuid.UUID) -> None:
        task = asyncio.get_running_loop().create_task(self._tell_read(job_id))
        self._reads.add(task)
        task.add_done_callback(self._reads.discard)

    async def _tell_read(self, job_id: uuid.UUID) -> None:
        try:
            job = await self._read(job_id)
        except JobStoreError as exc:
            logger.warning(
                "could not read watched job %s: %s", job_id, exc, extra=job_id_extra(job_id)
            )
            return
        if job is not None:
            self._told_gone.discard(job_id)
            self.watchers.status(job)
        elif job_id in self.watchers and job_id not in self._told_gone:
            self._told_gone.add(job_id)
            self.watchers.gone(job_id)


class RedisEvents(StoreBase):
    """Progress and job watchers; see `async_endpoints.ProgressStore` and
    `async_endpoints.EventStore`."""

    _watched_jobs: WatchedJobs | None = None
    #: How a watched job is read again (a reconnection, a renewal that found it missing):
    #: the store's own `get`, or a sharded store's (set by it on each shard it watches
    #: through), so that a job this shard does not hold is looked for everywhere before
    #: it is told gone.
    _job_lookup: Callable[[uuid.UUID], Awaitable[Job | None]] | None = None

    if TYPE_CHECKING:

        async def get(self, job_id: uuid.UUID) -> Job | None: ...

    async def set_progress(self, claim: Claim, progress: Any) -> bool:
        """Store the claimed job's progress (token-checked, one round trip) and tell its
        watchers in every process; False when the claim is lost."""
        args = [str(claim.job.id), claim.token, dump_json(progress)]
        held = await self._run("progress", lambda s: s.call("progress", args))
        return bool(held)

    async def watch_job(self, job_id: uuid.UUID, listener: JobListener) -> Callable[[], None]:
        """Tell ``listener`` every status change and progress of the job, made by any
        process, from now on (one round trip to add the watch); see
        `EventStore.watch_job`."""
        watched = self._watched_jobs
        if watched is None:
            watched = self._watched_jobs = WatchedJobs(self._job_lookup or self.get, self._watch)
            self._notifications.job_events = watched
        return await watched.add(job_id, listener)

    async def _watch(self, ids: list[str]) -> list[str]:
        ttl = round(WATCH_TTL * 1000)
        missing: list[Reply] = await self._run("watch", lambda s: s.call("watch", [ttl, *ids]))
        return [text(one) for one in missing]
