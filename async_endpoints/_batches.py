"""`JobBatches`: submitting many jobs as one batch, with continuations (a base of
`AsyncEndpoints`); the store keeps the counts and runs the continuations once."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ._batch import Batch, BatchPage, BatchStatus, ContinueWhen, NewBatch
from ._batch_http import BatchAuthorize, add_batch_route, batch_details_endpoint
from ._errors import ConfigurationError, UnknownJobNameError
from ._events import EventKind, LifecycleEvent, LifecycleEvents
from ._handlers import Handler
from ._hook_shape import check_hook
from ._http import job_request
from ._job import Job, JobStatus, NewJob, check_label, check_owner, parse_job_id
from ._listing import check_limit
from ._routes import resource_route
from ._settings import Settings
from ._spec import JobSpec
from ._store import InspectionStore, JobStore
from ._store_features import BatchStore
from ._tracing import batch_span
from ._webhook import WEBHOOK_JOB

logger = logging.getLogger("async_endpoints")

#: The most jobs (continuations included) one `submit_batch` or `append_to_batch` call
#: stores. A store writes a call's jobs in one atomic step: on Redis one script, during
#: which the server answers no other client (about 0.1 ms a job), in memory one stretch of
#: the event loop. A bigger batch is created with part of its jobs and grown with
#: `append_to_batch` calls, each atomic on its own.
MAX_BATCH_JOBS = 10_000


class JobBatches:
    """Batches of jobs and their continuations."""

    app: Any
    store: JobStore
    settings: Settings
    handlers: dict[str, Handler]
    events: LifecycleEvents

    async def submit_batch(
        self,
        specs: Sequence[JobSpec],
        *,
        continue_with: Sequence[JobSpec] = (),
        continue_when: str = "all_terminal",
        tenant: str | None = None,
        owner: str | None = None,
    ) -> Batch:
        """Store ``specs`` as one batch, atomically: every job is stored or none is.

        Once every job of the batch is terminal, the jobs of ``continue_with`` are queued,
        exactly once, whatever dies meanwhile; with ``continue_when="all_completed"`` they
        are stored ``Canceled`` instead when a job failed or was cancelled. The jobs (and
        continuations) take ``tenant`` unless their spec names one; each has ``batch_id``,
        and ``owner`` as its `Job.owner` (as `submit` gives it: for ``authorize``, so that
        the caller who made the batch may read its jobs over HTTP).

        Raises:
            ValueError: no specs, more than `MAX_BATCH_JOBS` jobs and continuations,
                something that is not a `JobSpec`, a continuation with ``run_at`` (its
                ``delay`` counts from the batch's end), an unknown handler name
                (`UnknownJobNameError`), an unknown queue, a bad ``continue_when`` or
                ``tenant``, an ``owner`` that is not text.
            JobValidationError: a body fails its handler's model.
            QueueFullError: the waiting jobs plus the batch's would pass
                ``max_queue_size`` (nothing stored).
            ConfigurationError: the store is not a `BatchStore`.
            StoreUnavailableError: the store cannot be reached (nothing stored).
        """
        store = self._batch_store("submit batches")
        when = _continue_when(continue_when)
        tenant = check_label(tenant, "tenant")
        if not specs:
            raise ValueError("a batch needs at least one job")
        _check_size(len(specs) + len(continue_with), "submit_batch")
        check_owner(owner)
        batch_id = uuid.uuid4()
        jobs = [self._spec_job(spec, batch_id, tenant, owner) for spec in specs]
        for spec in continue_with:
            if isinstance(spec, JobSpec) and spec.run_at is not None:
                # The store queues a continuation when its batch ends, counting its delay
                # from then: a moment given in advance would come late by the batch's time.
                raise ValueError(
                    "a continuation runs when its batch ends: give it a delay (counted from"
                    " then), not run_at"
                )
        continuations = [self._spec_job(spec, batch_id, tenant, owner) for spec in continue_with]
        with batch_span(batch_id, len(jobs) + len(continuations)) as carried:
            new_batch = NewBatch(
                batch_id, _carrying(jobs, carried), _carrying(continuations, carried), when, tenant
            )
            batch = await store.create_batch(new_batch, max_waiting=self.settings.max_queue_size)
        self._submitted(new_batch.jobs)
        return batch

    async def append_to_batch(
        self, batch_id: uuid.UUID | str, specs: Sequence[JobSpec], *, owner: str | None = None
    ) -> Batch:
        """Add ``specs`` to a batch that is still running, atomically (all or none); they
        take the batch's tenant unless their spec names one, and ``owner`` (a batch keeps
        no owner: give the one `submit_batch` was given).

        Raises:
            ValueError: the batch is finished or cancelled (its continuations never run
                twice), unknown, more than `MAX_BATCH_JOBS` specs, or a spec is invalid
                as for `submit_batch`.
            JobValidationError, QueueFullError, ConfigurationError,
            StoreUnavailableError: as for `submit_batch`.
        """
        store = self._batch_store("append to batches")
        parsed = _batch_id(batch_id)
        if not specs:
            raise ValueError("nothing to append")
        _check_size(len(specs), "append_to_batch")
        check_owner(owner)
        current = await store.get_batch(parsed)
        if current is None:
            raise ValueError(f"no batch {batch_id}")
        if current.status is not BatchStatus.RUNNING:  # said first: the store checks it too
            raise ValueError(f"batch {batch_id} is {current.status.value}: it takes no more jobs")
        jobs = [self._spec_job(spec, parsed, current.tenant, owner) for spec in specs]
        with batch_span(parsed, len(jobs)) as carried:
            jobs = _carrying(jobs, carried)
            batch = await store.append_to_batch(
                parsed, jobs, max_waiting=self.settings.max_queue_size
            )
        if batch is None:
            raise ValueError(f"no batch {batch_id}")
        self._submitted(jobs)
        return batch

    async def cancel_batch(self, batch_id: uuid.UUID | str) -> Batch | None:
        """Cancel every job of the batch that is not terminal (running ones within a
        second, in whatever process runs them) and its continuations not yet run; return
        the batch (``Canceled``; one that had finished already, unchanged), None when
        unknown (or not a UUID).

        Lifecycle listeners (metrics, logs) hear of each job this cancelled as they do
        from `cancel`: the batch's unfinished jobs are listed before (when someone
        listens and the store is an `InspectionStore`), and those found ``Canceled``
        after are announced.

        Raises:
            ConfigurationError: the store is not a `BatchStore`.
            StoreUnavailableError: the store cannot be reached.
        """
        store = self._batch_store("cancel batches")
        parsed = parse_job_id(batch_id)
        if parsed is None:
            return None
        if not self.events or not isinstance(store, InspectionStore):
            return await store.cancel_batch(parsed)
        unfinished = {
            job.id for job in await self._batch_jobs(store, parsed) if not job.status.is_terminal
        }
        canceled = await store.cancel_batch(parsed)
        if canceled is not None and unfinished:
            for job in await self._batch_jobs(store, parsed):
                if job.id in unfinished and job.status is JobStatus.CANCELED:
                    self.events.emit(LifecycleEvent(EventKind.CANCELLED, job))
        return canceled

    async def _batch_jobs(self, store: InspectionStore, batch_id: uuid.UUID) -> list[Job]:
        """Every job of the batch, its stored continuations included (pages of 1000)."""
        jobs: list[Job] = []
        cursor = None
        while True:
            page = await store.list_jobs(
                batch_id=batch_id, limit=1000, cursor=cursor, queues=self.settings.queues
            )
            jobs += page.jobs
            cursor = page.next_cursor
            if cursor is None:
                return jobs

    async def get_batch(self, batch_id: uuid.UUID | str) -> Batch | None:
        """The batch, None when unknown (or not a UUID, or no longer retained).

        Raises:
            ConfigurationError: the store is not a `BatchStore`.
            StoreUnavailableError: the store cannot be reached.
        """
        store = self._batch_store("read batches")
        parsed = parse_job_id(batch_id)
        return None if parsed is None else await store.get_batch(parsed)

    async def list_batches(
        self, *, tenant: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> BatchPage:
        """One page of batches, newest first; pass its ``next_cursor`` as ``cursor`` for
        the next one (None on the last page).

        Raises:
            ValueError: a bad ``tenant``, ``limit`` outside 1 to 1000, or a ``cursor``
                made for another listing.
            ConfigurationError: the store is not a `BatchStore`.
            StoreUnavailableError: the store cannot be reached.
        """
        store = self._batch_store("list batches")
        return await store.list_batches(
            tenant=check_label(tenant, "tenant"), limit=check_limit(limit), cursor=cursor
        )

    def map_batch_details(
        self,
        path: str = "/batches/{batch_id}",
        *,
        name: str | None = None,
        authorize: BatchAuthorize | None = None,
    ) -> None:
        """Register ``GET path`` answering the batch JSON (``path`` holds ``{batch_id}``):
        ``200`` with ``id``, ``tenant``, ``status``, the counts, ``createdAt``,
        ``finishedAt`` and ``continuationIds``; ``404`` when unknown or not a UUID.

        ``authorize``: ``fn(request, batch) -> bool`` (sync or async) asked before a batch
        is shown; False answers 404 like an unknown id (default None: everyone may read,
        with a warning when the jobs themselves are guarded by the ``authorize`` setting,
        which a batch cannot be given to: it has no owner).

        Raises:
            ConfigurationError: ``path`` lacks ``{batch_id}`` or a leading ``/``, there is
                no app, or the store is not a `BatchStore`.
        """
        route_name = resource_route(
            self.app, path, holds="batch_id", what="batch-details", name=name, prefix="get_"
        )
        self._batch_store("read batches")
        if authorize is not None:
            check_hook(authorize, "map_batch_details' authorize", "request, batch")
        if authorize is None and self.settings.authorize is not None:
            logger.warning(
                "map_batch_details(%r) serves every batch to every caller, although jobs"
                " are guarded by the authorize setting: pass authorize=fn(request, batch)"
                " to restrict it",
                path,
            )
        add_batch_route(self.app, path, batch_details_endpoint(self, authorize), name=route_name)

    def _spec_job(
        self, spec: JobSpec, batch_id: uuid.UUID, tenant: str | None, owner: str | None
    ) -> NewJob:
        if not isinstance(spec, JobSpec):
            raise ValueError(f"a batch takes JobSpec items, not {type(spec).__name__}")
        handler = self.handlers.get(spec.name)
        if handler is None or spec.name == WEBHOOK_JOB:  # deliveries come from their job only
            raise UnknownJobNameError(f"no job handler named {spec.name!r}")
        if spec.queue is not None and spec.queue not in self.settings.queues:
            known = ", ".join(self.settings.queues)
            raise ValueError(f"unknown queue {spec.queue!r} (the queues setting has: {known})")
        _, body_json = handler.coerce_body(spec.body)
        handler.check_query("")  # a batch's jobs have no query string
        placement = spec.placement()
        max_retries = handler.max_retries
        return NewJob(
            uuid.uuid4(),
            handler.name,
            self.settings.max_retries if max_retries is None else max_retries,
            job_request(self.settings, body_json, (), b"", _no_path_params(handler), owner),
            queue=handler.queue if placement.queue is None else placement.queue,
            delay=placement.delay,
            partition_key=placement.partition_key,
            tenant=tenant if placement.tenant is None else placement.tenant,
            batch_id=batch_id,
        )

    def _submitted(self, jobs: Sequence[NewJob]) -> None:
        if not self.events:
            return
        for new_job in jobs:
            # The stored jobs are what the new ones say, stored now (the store's own
            # created_at is not worth a read per job here).
            self.events.emit(LifecycleEvent(EventKind.SUBMITTED, _as_stored(new_job)))

    def _batch_store(self, doing: str) -> BatchStore:
        if not isinstance(self.store, BatchStore):
            name = type(self.store).__name__
            raise ConfigurationError(f"{name} cannot {doing}: it does not implement BatchStore")
        return self.store


def _carrying(jobs: list[NewJob], carried: str | None) -> list[NewJob]:
    """``jobs`` carrying the trace context ``carried`` (the batch's submit span's; as
    they are when there is none)."""
    if carried is None:
        return jobs
    return [
        dataclasses.replace(job, request=dataclasses.replace(job.request, trace_context=carried))
        for job in jobs
    ]


def _as_stored(new_job: NewJob) -> Job:
    return new_job.stored(datetime.now(UTC))


def _continue_when(value: object) -> ContinueWhen:
    try:
        return ContinueWhen(str(value) if isinstance(value, str) else "")
    except ValueError:
        allowed = ", ".join(repr(v.value) for v in ContinueWhen)
        raise ValueError(f"continue_when must be one of {allowed}, not {value!r}") from None


def _batch_id(value: uuid.UUID | str) -> uuid.UUID:
    parsed = parse_job_id(value)
    if parsed is None:
        raise ValueError(f"a batch id must be a UUID, not {value!r}")
    return parsed


def _check_size(count: int, call: str) -> None:
    """Refuse a call of more than `MAX_BATCH_JOBS` jobs, before anything is stored."""
    if count > MAX_BATCH_JOBS:
        taken = "jobs and continuations" if call == "submit_batch" else "jobs"
        raise ValueError(
            f"{call} takes at most {MAX_BATCH_JOBS:,} {taken} per call, not "
            f"{count:,}: create the batch with part of them and add the rest with "
            "append_to_batch (each call is atomic on its own)"
        )


def _no_path_params(handler: Handler) -> dict[str, str]:
    """A batch job's route parameters: each of its route's read as ``""`` (as `submit`
    gives those it is not given), so a handler written for the route runs."""
    return dict.fromkeys(handler.path_params, "")
