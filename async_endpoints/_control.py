"""`JobControl`: steering stored jobs (cancel, requeue, pause, resume) and reading them
(listing, per-queue counts), the programmatic half of `AsyncEndpoints`.

These need the optional capabilities of a store (`ControlStore`, `InspectionStore`); a
store without them raises `ConfigurationError` naming the capability it lacks.
"""

from __future__ import annotations

import uuid
from typing import Any

from ._errors import ConfigurationError
from ._events import EventKind, LifecycleEvent, LifecycleEvents
from ._job import Job, JobStatus, check_label, parse_job_id
from ._listing import JobPage, QueueStats, check_limit
from ._settings import Settings
from ._store import ControlStore, InspectionStore, JobStore


class JobControl:
    """Cancel, requeue, pause, resume, list and count jobs (a base of `AsyncEndpoints`)."""

    store: JobStore
    settings: Settings
    #: Lifecycle events of this process (see `async_endpoints._events`).
    events: LifecycleEvents

    async def cancel(self, job_id: uuid.UUID | str) -> Job | None:
        """Cancel a job; return it as it is then, or None when unknown (or not a UUID).

        A ``Queued`` or ``Scheduled`` job becomes ``Canceled`` at once and never runs. An
        ``InProgress`` one becomes ``Canceled`` at once; its handler, in whatever process
        runs it, has its task cancelled (`asyncio.CancelledError`), whatever it returns
        afterwards is discarded, and it is not retried. A terminal job is returned
        unchanged. Cancelling twice, or from two instances at once, is no error.

        Raises:
            ConfigurationError: the store is not a `ControlStore`.
            StoreUnavailableError: the store cannot be reached.
            JobStoreError: the store refused the operation.
        """
        store = self._control("cancel jobs")
        parsed = parse_job_id(job_id)
        if parsed is None:
            return None
        if not self.events:  # one store call: the store returns a terminal job unchanged
            return await store.cancel(parsed)
        # Listeners hear of a job cancelled once, not at every repeated cancel: read first.
        job = await self.store.get(parsed)
        if job is None or job.status.is_terminal:
            return job
        canceled, _ = await self.cancel_unfinished(job)
        return canceled

    async def cancel_unfinished(self, job: Job) -> tuple[Job | None, bool]:
        """Cancel ``job``, read as not terminal a moment ago (see `cancel`); return it as it
        is then (``Canceled``, or terminal otherwise when it finished meanwhile), and
        whether this call cancelled it (False when another call, or the job's end, came
        first). Listeners hear of each cancelled job once, from the call that cancelled it."""
        canceled, here = await self._control("cancel jobs").try_cancel(job.id)
        if here and canceled is not None and self.events:
            self.events.emit(LifecycleEvent(EventKind.CANCELLED, canceled))
        return canceled, here

    async def requeue(self, job_id: uuid.UUID | str) -> Job | None:
        """Queue a ``Failed`` or ``Canceled`` job again (at the tail of its queue), with
        ``retry_count`` 0 and its error kept until it next runs; None when unknown.

        Raises:
            InvalidTransitionError: the job is neither Failed nor Canceled (a `ValueError`).
            ConfigurationError: the store is not a `ControlStore`.
            StoreUnavailableError: the store cannot be reached.
            JobStoreError: the store refused the operation.
        """
        store = self._control("requeue jobs")
        parsed = parse_job_id(job_id)
        return None if parsed is None else await store.requeue(parsed)

    async def pause(self, queue: str | None = None) -> None:
        """Hold back the jobs of ``queue`` (None: of every queue) from every worker of the
        store, in any process, until `resume`; running jobs finish, submissions are still
        accepted.

        Raises:
            ValueError: ``queue`` is not one of the ``queues`` setting.
            ConfigurationError: the store is not a `ControlStore`.
            StoreUnavailableError: the store cannot be reached.
        """
        store = self._control("pause queues")
        await store.pause(self._queues(queue))

    async def resume(self, queue: str | None = None) -> None:
        """Let workers take the jobs of ``queue`` (None: of every queue) again.

        Raises:
            ValueError: ``queue`` is not one of the ``queues`` setting.
            ConfigurationError: the store is not a `ControlStore`.
            StoreUnavailableError: the store cannot be reached.
        """
        store = self._control("resume queues")
        await store.resume(self._queues(queue))

    async def queue_stats(self) -> list[QueueStats]:
        """What each queue holds now, one `QueueStats` per queue, highest priority first.

        Raises:
            ConfigurationError: the store is not an `InspectionStore`.
            StoreUnavailableError: the store cannot be reached.
        """
        return await self._inspection("count jobs per queue").queue_stats(self.settings.queues)

    async def list_jobs(
        self,
        *,
        status: JobStatus | str | None = None,
        queue: str | None = None,
        tenant: str | None = None,
        batch_id: uuid.UUID | str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        """One page of the stored jobs that match; pass its ``next_cursor`` as ``cursor``
        for the next one (None on the last page).

        ``tenant`` keeps one tenant's jobs, ``batch_id`` one batch's (its continuations
        included). Order: ``Queued`` by queue priority, then in the order they became due
        there (submitted, delay or backoff over, retried, requeued: the claim order, but for
        tenants taking turns and jobs waiting behind their partition key), ``Scheduled``
        by ``run_at``, ``InProgress`` by ``started_at``, terminal statuses newest
        ``completed_at`` first, no status newest ``created_at`` first. Paging visits every
        matching job once while nothing changes.

        Raises:
            ValueError: an unknown status or queue, a ``tenant`` that is not a string of 1
                to 255 characters, a ``batch_id`` that is not a UUID, ``limit`` outside 1
                to 1000, or a ``cursor`` made for another listing (or tampered with).
            ConfigurationError: the store is not an `InspectionStore`.
            StoreUnavailableError: the store cannot be reached.
        """
        store = self._inspection("list jobs")
        wanted = None if status is None else _status(status)
        if queue is not None:
            self._queues(queue)
        # Only a tenant or batch filter is passed on: a store written before they existed
        # keeps serving the other listings.
        filters: dict[str, Any] = {}
        if tenant is not None:
            filters["tenant"] = check_label(tenant, "tenant")
        if batch_id is not None:
            parsed = parse_job_id(batch_id)
            if parsed is None:
                raise ValueError(f"batch_id must be a UUID, not {batch_id!r}")
            filters["batch_id"] = parsed
        return await store.list_jobs(
            status=wanted,
            queue=queue,
            **filters,
            limit=check_limit(limit),
            cursor=cursor,
            queues=self.settings.queues,
        )

    def _queues(self, queue: str | None) -> tuple[str, ...]:
        if queue is None:
            return tuple(self.settings.queues)
        if queue not in self.settings.queues:
            known = ", ".join(self.settings.queues)
            raise ValueError(f"unknown queue {queue!r} (the queues setting has: {known})")
        return (queue,)

    def _control(self, doing: str) -> ControlStore:
        if not isinstance(self.store, ControlStore):
            raise ConfigurationError(_lacks(self.store, doing, "ControlStore"))
        return self.store

    def _inspection(self, doing: str) -> InspectionStore:
        if not isinstance(self.store, InspectionStore):
            raise ConfigurationError(_lacks(self.store, doing, "InspectionStore"))
        return self.store


def _lacks(store: JobStore, doing: str, capability: str) -> str:
    return f"{type(store).__name__} cannot {doing}: it does not implement {capability}"


def _status(status: JobStatus | str) -> JobStatus:
    """``status`` as a `JobStatus`, or a `ValueError` naming the statuses there are."""
    try:
        return JobStatus(status)
    except ValueError:
        known = ", ".join(member.value for member in JobStatus)
        raise ValueError(f"unknown status {status!r} (one of: {known})") from None
