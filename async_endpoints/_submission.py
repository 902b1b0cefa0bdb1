"""`JobSubmission`: queuing jobs from code and reading them back (`submit`, `get_job`,
`wait_for`), and the one path every submission takes into the store (`enqueue`)."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import math
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from ._control import JobControl
from ._errors import ConfigurationError, DuplicateJobError, UnknownJobNameError
from ._events import EventKind, LifecycleEvent
from ._handlers import Handler
from ._http import job_request
from ._idempotency import (
    CONFLICT,
    IdempotencyConflictError,
    IdempotentJobGoneError,
    by_key,
    canonical_given_body,
    check_key,
    fingerprint,
    is_by_request_id,
    legacy_fingerprint,
)
from ._job import Job, JobRequest, NewJob, check_label, check_owner, parse_job_id
from ._options import AT_ONCE, Placement, submission_delay
from ._store_features import Idempotency, IdempotentStore, PendingContinuationStore
from ._tracing import mark_repeat, submit_span
from ._webhook import WEBHOOK_JOB, delivery_job
from ._webhook_urls import AllowedHosts, check_url

if TYPE_CHECKING:
    from ._runner import WorkerPool


class JobSubmission(JobControl):
    """Submit, read and wait for jobs (a base of `AsyncEndpoints`)."""

    #: The registered handlers, by job name.
    handlers: dict[str, Handler]
    #: This process's worker pool.
    pool: WorkerPool
    #: While the app's lifespan runs under a web server this library can watch (uvicorn):
    #: set once that server is shutting down, when held requests are answered at once
    #: (`wait_until`). None otherwise.
    exiting: asyncio.Event | None

    async def submit(
        self,
        name: str,
        body: Any = None,
        *,
        delay: float | None = None,
        run_at: datetime | None = None,
        queue: str | None = None,
        partition_key: str | None = None,
        tenant: str | None = None,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        query_string: str = "",
        route_params: Mapping[str, str] | None = None,
        owner: str | None = None,
        idempotency_key: str | None = None,
        webhook_url: str | None = None,
    ) -> Job:
        """Queue a job for handler ``name`` as a POST would; return it (status Queued, or
        Scheduled with ``run_at`` when delayed).

        ``body`` is a model instance or plain data validated against the handler's model.
        ``delay`` (seconds) or ``run_at`` (an aware `datetime`; one in the past is due at
        once) makes the job wait before it is due. ``queue`` overrides the handler's.
        Jobs with the same ``partition_key`` run one at a time, in submission order;
        ``tenant`` makes the job take turns with other tenants' jobs of its queue.
        ``headers`` and ``query_string`` are captured by the same rules as a POST's (the
        sensitive ones left out), and ``route_params`` too; a path parameter of the
        handler's route that ``route_params`` does not give reads as ``""`` (a handler
        written for the route runs as for a POST). ``owner`` becomes ``job.owner``, for
        ``authorize``.
        With ``idempotency_key``, a repeat with the same key, handler and owner within
        ``idempotency_ttl`` stores nothing and returns the first job (as it is now).
        With ``webhook_url``, the job JSON is POSTed there, signed, once the job is
        terminal (see *Webhooks* in the README).

        Raises:
            ValueError: ``delay`` is negative, not finite or not a number; ``run_at`` is
                naive; both are given; ``queue`` is not one of the ``queues`` setting;
                ``partition_key`` or ``tenant`` is not a string of 1 to 255 characters;
                ``idempotency_key`` is empty or longer than 255 characters; ``headers`` are
                not (name, value) pairs of latin-1 text; ``route_params`` does not map text
                to text (or to what a path convertor gives: int, float, UUID); ``owner``
                or ``query_string`` is not text; ``webhook_url`` is not an absolute
                http(s) URL, holds credentials or names a host outside
                ``webhook_allowed_hosts``.
            IdempotencyConflictError: ``idempotency_key`` was used with another body (a
                ``ValueError``).
            IdempotentJobGoneError: ``idempotency_key`` was used within
                ``idempotency_ttl`` for a job that is no longer kept (nothing stored).
            ConfigurationError: ``webhook_url`` without the ``webhook_secret`` and
                ``webhook_allowed_hosts`` settings.
            UnknownJobNameError: no handler has that name.
            JobValidationError: ``body`` fails the handler's model or has no JSON form.
            QueueFullError: ``max_queue_size`` jobs are waiting.
            StoreUnavailableError: the store cannot be reached.
            JobStoreError: the store refused the write (a Redis permission error, say).
        """
        handler = self.handlers.get(name)
        if handler is None or name == WEBHOOK_JOB:  # deliveries come from their job only
            raise UnknownJobNameError(f"no job handler named {name!r}")
        placement = Placement(
            submission_delay(delay, run_at),
            queue,
            check_label(partition_key, "partition_key"),
            check_label(tenant, "tenant"),
            self._webhook_url(webhook_url),
        )
        if queue is not None:
            self._queues(queue)
        value, body_json = handler.coerce_body(body)
        pairs, query, params = _request_parts(headers, query_string, route_params, owner)
        # As a POST's, every path parameter of the route is there: "" when not given.
        params = dict.fromkeys(handler.path_params, "") | params
        request = job_request(self.settings, body_json, pairs, query, params, owner)
        handler.check_query(request.query_string)
        idempotency = None
        if idempotency_key is not None:
            given = canonical_given_body(handler, body, value)
            content = fingerprint(name, owner, given, request)
            key, ttl = check_key(idempotency_key), self.settings.idempotency_ttl
            idempotency = by_key(key, name, owner, content, ttl)
        job, _ = await self.enqueue_once(handler, request, placement, idempotency=idempotency)
        return job

    async def enqueue_once(
        self,
        handler: Handler,
        request: JobRequest,
        placement: Placement = AT_ONCE,
        *,
        job_id: uuid.UUID | None = None,
        idempotency: Idempotency | None = None,
    ) -> tuple[Job, bool]:
        """Store a job for ``handler`` from an already validated request (every POST and
        `submit` come here); ``placement`` checked by the caller; ``job_id`` a
        client-chosen id (default: a fresh uuid4). With ``idempotency``, a repeat of a
        submission stored under the same key returns that job and stores nothing. Returns
        the job, and whether it is an earlier submission's (a repeat: nothing stored).

        Raises:
            DuplicateJobError: ``job_id`` belongs to another job already.
            IdempotencyConflictError: the key was used by a different submission.
            IdempotentJobGoneError: the key was used by this submission, whose job is no
                longer kept (nothing stored).
            ConfigurationError: ``idempotency`` with a store that is not an
                `IdempotentStore`.
        """
        max_retries = handler.max_retries
        server_chose = job_id is None
        chosen = job_id  # the client's choice, if any
        job_id = uuid.uuid4() if job_id is None else job_id
        queue = handler.queue if placement.queue is None else placement.queue
        with submit_span(handler.name, job_id) as trace_context:
            if trace_context is not None:
                request = dataclasses.replace(request, trace_context=trace_context)
            follow_up = None
            if placement.webhook_url is not None:
                # In the submission's trace too: a failing delivery is traced to its job.
                follow_up = delivery_job(
                    job_id,
                    placement.webhook_url,
                    queue=queue,
                    tenant=placement.tenant,
                    retries=self.settings.webhook_retries,
                    owner=request.owner,
                    trace_context=trace_context,
                )
            new_job = NewJob(
                job_id,
                handler.name,
                self.settings.max_retries if max_retries is None else max_retries,
                request,
                queue=queue,
                delay=placement.delay,
                partition_key=placement.partition_key,
                tenant=placement.tenant,
                follow_up=follow_up,
            )
            try:
                if idempotency is None:
                    job = await self.store.enqueue(
                        new_job, max_waiting=self.settings.max_queue_size
                    )
                else:
                    try:
                        job, earlier = await self._enqueue_once(new_job, idempotency)
                    except IdempotentJobGoneError as gone:
                        _check_same(
                            idempotency, gone.job_id, gone.fingerprint, handler, request, chosen
                        )
                        raise
                    if earlier is not None:
                        _check_same(idempotency, job.id, earlier, handler, request, chosen)
                        mark_repeat(job.id)
                        return job, True
            except DuplicateJobError:
                if not server_chose:
                    raise
                # A fresh random id found taken can only be this very job: the store's
                # client resent the enqueue after its reply was lost, and the first send
                # had stored it (a worker may even have finished it since, so that the
                # store could not tell the resend from a clash by what the job keeps).
                stored = await self.store.get(job_id)
                if stored is None:
                    raise
                job = stored
        if self.events:
            self.events.emit(LifecycleEvent(EventKind.SUBMITTED, job))
        return job, False

    def _webhook_url(self, url: str | None) -> str | None:
        """``submit``'s ``webhook_url`` checked against the allow-list."""
        if url is None:
            return None
        settings = self.settings
        allowed = cast(AllowedHosts, settings.webhook_allowed_hosts)
        if settings.webhook_secret is None or not allowed:
            raise ConfigurationError(
                "webhook_url needs the webhook_secret and webhook_allowed_hosts settings"
            )
        return check_url(url, allowed)

    async def _enqueue_once(
        self, new_job: NewJob, idempotency: Idempotency
    ) -> tuple[Job, str | None]:
        if not isinstance(self.store, IdempotentStore):
            name = type(self.store).__name__
            raise ConfigurationError(
                f"{name} cannot take idempotency keys: it does not implement IdempotentStore"
            )
        return await self.store.enqueue_once(
            new_job, idempotency, max_waiting=self.settings.max_queue_size
        )

    async def wait_until(self, job: Job, seconds: float) -> Job:
        """``job`` as soon as it is terminal, or as it is after ``seconds`` (woken by its
        settlement, not polled), or as it is when the web server starts shutting down
        (`exiting`: a held request does not hold up the exit); ``job`` itself when it is
        gone meanwhile.

        Raises:
            StoreUnavailableError: the store cannot be reached.
            JobStoreError: the store refused the read.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not job.status.is_terminal:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            exiting = self.exiting
            if exiting is None:
                latest = await self.store.wait_until_terminal(job.id, remaining)
            elif exiting.is_set():  # the job as it is now
                return await self.store.get(job.id) or job
            else:
                waiting = functools.partial(self.store.wait_until_terminal, job.id, remaining)
                exited, latest = await _unless_set(exiting, waiting)
                if exited:
                    return await self.store.get(job.id) or job
            if latest is None:
                break
            job = latest
        return job

    async def get_job(self, job_id: uuid.UUID | str) -> Job | None:
        """The job with this id, or None when unknown (or not a UUID).

        Raises:
            StoreUnavailableError: the store cannot be reached.
            JobStoreError: the store refused the read.
        """
        parsed = parse_job_id(job_id)
        return None if parsed is None else await self.store.get(parsed)

    async def wait_for(self, job_id: uuid.UUID | str, timeout: float | None = None) -> Job:
        """The job once it is terminal, woken by its settlement rather than polled.

        A batch's continuation not stored yet (its id is in the batch's
        ``continuation_ids`` from the start) is waited for too: looked for every
        `CONTINUATION_POLL` seconds until its batch's end stores it (on a store with
        `PendingContinuationStore`).

        Raises:
            TimeoutError: the job is not terminal after ``timeout`` seconds (it runs on).
            KeyError: no job has this id (or it is not a UUID).
            ValueError: ``timeout`` is not a number of seconds (NaN, say).
            StoreUnavailableError: the store cannot be reached.
            JobStoreError: the store refused the read.
        """
        if timeout is not None and math.isnan(timeout):  # no deadline would ever pass
            raise ValueError(f"timeout must be a number of seconds or None, not {timeout!r}")
        parsed = parse_job_id(job_id)
        if parsed is None:
            raise KeyError(f"no job has the id {job_id!r} (not a UUID)")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            remaining = 3600.0 if deadline is None else max(0.0, deadline - loop.time())
            job = await self.store.wait_until_terminal(parsed, remaining)
            if job is None:
                if not await self._pending_continuation(parsed):
                    if await self.store.get(parsed) is None:  # not stored just now either
                        raise KeyError(f"no job has the id {parsed} (or it is gone)")
                    continue
                if deadline is not None and loop.time() >= deadline:
                    raise TimeoutError(f"job {job_id} is a continuation not queued yet")
                await asyncio.sleep(min(CONTINUATION_POLL, remaining))
                continue
            if job.status.is_terminal:
                return job
            if deadline is not None and loop.time() >= deadline:
                raise TimeoutError(self._still(job, timeout))

    def _still(self, job: Job, timeout: float | None) -> str:
        """What `wait_for` says of a job not terminal in time: its status, and that no
        worker runs in this process when none does and the job waits."""
        message = f"job {job.id} is still {job.status} after {timeout} s"
        if job.status.is_waiting and not self.pool.serving:
            message += (
                " (no worker runs in this process: run the app's lifespan or `async with"
                " endpoints.running()`, or a worker process on a shared store)"
            )
        return message

    async def _pending_continuation(self, job_id: uuid.UUID) -> bool:
        store = self.store
        return isinstance(store, PendingContinuationStore) and (
            await store.pending_continuation(job_id)
        )


#: Seconds between two looks for a batch's continuation not stored yet (`wait_for`).
CONTINUATION_POLL = 0.1

#: The types of the path parameters Starlette's convertors give (text, or these as text).
_PATH_VALUES = (str, int, float, uuid.UUID)


def _request_parts(
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None,
    query_string: str,
    route_params: Mapping[str, str] | None,
    owner: str | None,
) -> tuple[list[tuple[str, str]], bytes, dict[str, str]]:
    """``submit``'s request parts checked to be what a handler's context is rebuilt from:
    the header pairs, the query string's bytes and the route parameters.

    Raises:
        ValueError: a part is not text, or a header is not latin-1 (as HTTP headers are).
    """
    given: Any = headers.items() if isinstance(headers, Mapping) else (headers or ())
    if isinstance(given, str | bytes):
        raise ValueError(f"headers must be a mapping or (name, value) pairs, not {headers!r}")
    pairs = [tuple(pair) for pair in given]
    for pair in pairs:
        if len(pair) != 2 or not all(_is_latin_1_text(part) for part in pair):
            raise ValueError(f"headers must be (name, value) pairs of latin-1 text, not {pair!r}")
    given_params = dict(route_params or {})
    if not all(isinstance(name, str) for name in given_params) or not all(
        isinstance(value, _PATH_VALUES) and not isinstance(value, bool)
        for value in given_params.values()
    ):
        raise ValueError(f"route_params must map text to text, not {given_params!r}")
    # As a POST's: what Starlette's path convertors give (int, float, UUID) as text.
    params = {name: str(value) for name, value in given_params.items()}
    check_owner(owner)
    if not isinstance(query_string, str):
        raise ValueError(f"query_string must be text, not {query_string!r}")
    return cast(list[tuple[str, str]], pairs), query_string.encode(), params


def _is_latin_1_text(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _check_same(
    idempotency: Idempotency,
    job_id: uuid.UUID,
    earlier: str,
    handler: Handler,
    request: JobRequest,
    chosen_id: uuid.UUID | None,
) -> None:
    """Refuse a repeat whose content differs from what job ``job_id`` was first stored
    with under the same key (fingerprint ``earlier``, which an older version may have
    written: `legacy_fingerprint`; never compared for an ``Idempotency-Key`` sent with a
    ``chosen_id``, which older versions left out of a key's fingerprint: it would answer
    under an id the client did not choose).

    Raises:
        IdempotencyConflictError: the fingerprints differ.
    """
    if earlier == idempotency.fingerprint:
        return
    keyed_with_id = chosen_id is not None and not is_by_request_id(idempotency, chosen_id)
    if not keyed_with_id and earlier == legacy_fingerprint(handler, request):
        return
    raise IdempotencyConflictError(f"job {job_id} {CONFLICT}")


async def _unless_set(
    event: asyncio.Event, waiting: Callable[[], Awaitable[Job | None]]
) -> tuple[bool, Job | None]:
    """Whether ``event`` was set before ``waiting()`` gave a result (the wait is then
    cancelled, and the caller reads the job as it is), and that result."""
    task = asyncio.ensure_future(waiting())
    stop = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait((task, stop), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        return True, None
    return False, task.result()
