"""`AsyncEndpoints`: lifespan wiring and route mapping; the programmatic API comes from its
bases, `JobSubmission` (submit, read, wait) and `JobControl` (cancel, pause, list...)."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any, TypeVar

from starlette.requests import Request

from ._app import Lifespan, join_app
from ._errors import ConfigurationError, StoreUnavailableError
from ._events import LifecycleEvents
from ._handlers import Handler, HandlerFunction, Validator
from ._http import (
    JobLocations,
    job_cancel_endpoint,
    job_details_endpoint,
    submit_endpoint,
)
from ._job import Job
from ._memory import InMemoryJobStore
from ._options import DelayOption, LabelOption
from ._redact import ErrorDescriber
from ._retry import RetryPolicy
from ._routes import add_cancel_route, add_get_route, add_post_route
from ._runner import WorkerPool
from ._settings import Settings, default_queue, queue_names
from ._store import JobStore
from ._submission import JobSubmission
from ._worker import AttemptRunner

F = TypeVar("F", bound=HandlerFunction)
logger = logging.getLogger("async_endpoints")


class AsyncEndpoints(JobSubmission):
    """Async job endpoints for one Starlette or FastAPI app.

    Args:
        app: The Starlette or FastAPI app; its lifespan is joined (an existing lifespan is
            kept and runs first, so handlers can use what it sets up), and `QueueFullError`
            and `StoreUnavailableError` raised in any of its routes answer 503 with
            ``Retry-After`` (unless the app handles them itself). None for use without
            HTTP, as in a worker script.
        store: Where jobs live; defaults to a new `InMemoryJobStore`.
        **settings: The fields of `Settings` (``max_concurrency=8``, ``run_workers=False``…).

    Raises:
        ConfigurationError: a setting is unknown, out of range or of the wrong type, or
            ``app`` is not a Starlette (or FastAPI) app.
    """

    def __init__(self, app: Any = None, *, store: JobStore | None = None, **settings: Any) -> None:
        unknown = set(settings) - Settings.names()
        if unknown:
            raise ConfigurationError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        self.settings = Settings(**settings)
        self.store: JobStore = store if store is not None else InMemoryJobStore()
        self.app = app
        self.handlers: dict[str, Handler] = {}
        self.locations = JobLocations()
        #: Lifecycle events of this process: ``events.subscribe(listener)``.
        self.events = LifecycleEvents()
        self._app_lifespan: Lifespan | None = None
        s = self.settings
        policy = RetryPolicy(s.max_retries, s.retry_base_delay, s.retry_max_delay, s.retry_jitter)
        attempts = AttemptRunner(
            self.store,
            self.handlers,
            policy,
            s.job_timeout,
            s.include_tracebacks,
            errors=ErrorDescriber(frozenset(s.sensitive_query_params), s.error_message),
            # Past the lease a result is refused, but the store may be back before recovery
            # ran: keep trying at least as long as the lease, and no less than 30 s.
            settle_patience=max(s.claim_timeout, 30.0),
            events=self.events,
        )
        self.pool = WorkerPool(self.store, attempts, s)
        if app is not None:
            self._app_lifespan = join_app(app, self.running)

    def map_async_post(
        self,
        path: str,
        *,
        name: str | None = None,
        validator: Validator | None = None,
        queue: str | None = None,
        partition_key: LabelOption | None = None,
        tenant: LabelOption | None = None,
        delay: DelayOption | None = None,
        max_retries: int | None = None,
        job_timeout: float | None = None,
    ) -> Callable[[F], F]:
        """Decorator: ``POST path`` queues a job for the decorated handler.

        The handler is ``async def handler(ctx: AsyncContext[Model]) -> Result``; see
        `add_async_post` for the options. The function is returned unchanged.

        Raises:
            ConfigurationError: when decorating, as `add_async_post` raises it.
        """

        def register(function: F) -> F:
            self.add_async_post(
                path,
                function,
                name=name,
                validator=validator,
                queue=queue,
                partition_key=partition_key,
                tenant=tenant,
                delay=delay,
                max_retries=max_retries,
                job_timeout=job_timeout,
            )
            return function

        return register

    def add_async_post(
        self,
        path: str,
        function: HandlerFunction,
        *,
        name: str | None = None,
        validator: Validator | None = None,
        queue: str | None = None,
        partition_key: LabelOption | None = None,
        tenant: LabelOption | None = None,
        delay: DelayOption | None = None,
        max_retries: int | None = None,
        job_timeout: float | None = None,
    ) -> Handler:
        """Register ``function`` as the handler of jobs named ``name`` and route ``POST path``.

        Args:
            path: The route path (Starlette syntax, path parameters allowed).
            function: The async handler; its first parameter is an ``AsyncContext[T]``.
            name: The job name (default: the function's name); unique per endpoints object.
            validator: ``validator(request, body)`` (sync or async) run before queuing; a
                ``Response`` it returns is sent as is and nothing is queued.
            queue: The queue its jobs wait in (default: ``"default"`` when it is one of
                ``queues``, else the last of them).
            partition_key: A partition key for every POSTed job, or ``fn(request, body)``
                (sync or async) giving one (or None) per POST: jobs with the same key run
                one at a time, in submission order. A value that is not a string of 1 to
                255 characters answers 422 (a constant one: `ConfigurationError`).
            tenant: The tenant of every POSTed job, or ``fn(request, body)`` giving it per
                POST (checked as ``partition_key`` is): a queue's tenants take turns.
            delay: Seconds a POSTed job waits before it is due (``Scheduled``), or
                ``fn(request, body)`` (sync or async) giving them (or None) per POST, after
                the validator and before anything is stored; a value that is not a finite
                number >= 0 answers 422. POSTs only: `submit` takes its own ``delay``.
            max_retries: Retries of its jobs (default: the ``max_retries`` setting).
            job_timeout: Seconds one attempt may run (default: the ``job_timeout`` setting).

        Raises:
            ConfigurationError: there is no app, ``path`` does not start with ``/``, the
                name is taken, the handler's signature is unusable, ``queue`` is not one of
                the ``queues`` setting, or an option is out of range. Nothing is registered
                then.
        """
        if self.app is None:
            raise ConfigurationError("add_async_post needs an app; use add_handler without one")
        if not path.startswith("/"):
            raise ConfigurationError(f"a route path must start with '/': {path!r}")
        handler = self._new_handler(
            function,
            name=name,
            validator=validator,
            queue=queue,
            delay=delay,
            max_retries=max_retries,
            job_timeout=job_timeout,
            partition_key=partition_key,
            tenant=tenant,
        )
        endpoint = submit_endpoint(self, handler)
        add_post_route(self.app, path, endpoint, name=handler.name, model=handler.model)
        self.handlers[handler.name] = handler
        return handler

    def add_handler(
        self,
        function: HandlerFunction,
        *,
        name: str | None = None,
        validator: Validator | None = None,
        queue: str | None = None,
        max_retries: int | None = None,
        job_timeout: float | None = None,
    ) -> Handler:
        """Register a job handler without a route (jobs come from `submit` only).

        ``queue``, ``max_retries`` and ``job_timeout`` are as for `add_async_post`.

        Raises:
            ConfigurationError: the name is taken, the handler's signature is unusable,
                ``queue`` is not one of the ``queues`` setting, or an option is out of range.
        """
        handler = self._new_handler(
            function,
            name=name,
            validator=validator,
            queue=queue,
            max_retries=max_retries,
            job_timeout=job_timeout,
        )
        self.handlers[handler.name] = handler
        return handler

    def _new_handler(
        self,
        function: HandlerFunction,
        *,
        name: str | None,
        validator: Validator | None,
        queue: str | None,
        max_retries: int | None,
        job_timeout: float | None,
        delay: DelayOption | None = None,
        partition_key: LabelOption | None = None,
        tenant: LabelOption | None = None,
    ) -> Handler:
        queues = self.settings.queues
        if queue is not None and queue not in queues:
            known = ", ".join(queues)
            raise ConfigurationError(f"unknown queue {queue!r} (the queues setting has: {known})")
        handler = Handler.from_function(
            function,
            name=name,
            validator=validator,
            max_result_size=self.settings.max_result_size,
            queue=default_queue(queues) if queue is None else queue,
            max_retries=max_retries,
            job_timeout=job_timeout,
            delay=delay,
            partition_key=partition_key,
            tenant=tenant,
        )
        if handler.name in self.handlers:
            raise ConfigurationError(f"a job handler named {handler.name!r} exists already")
        return handler

    def map_job_details(self, path: str = "/jobs/{job_id}", *, name: str | None = None) -> None:
        """Register ``GET path`` answering the job JSON (``path`` holds ``{job_id}``).

        Args:
            path: The route path.
            name: The route name (and FastAPI operation id); default derived from ``path``,
                so several `AsyncEndpoints` on one app each point ``Location`` at their own.

        Raises:
            ConfigurationError: ``path`` lacks ``{job_id}`` or a leading ``/``, or there is
                no app.
        """
        if "{job_id}" not in path or not path.startswith("/"):
            message = f"the job-details path must start with '/' and hold {{job_id}}: {path!r}"
            raise ConfigurationError(message)
        if self.app is None:
            raise ConfigurationError("map_job_details needs an app")
        route_name = name or "get_" + re.sub(r"\W+", "_", path).strip("_")
        add_get_route(self.app, path, job_details_endpoint(self), name=route_name)
        self.locations.route_name = route_name

    def map_job_cancel(
        self, path: str = "/jobs/{job_id}/cancel", *, name: str | None = None
    ) -> None:
        """Register ``POST path`` cancelling a job as `cancel` does (``path`` holds
        ``{job_id}``): ``200`` with the job JSON (status ``Canceled``), ``409`` when the
        job was terminal already, ``404`` when unknown, not a UUID, or refused by
        ``authorize``.

        Args:
            path: The route path.
            name: The route name (and FastAPI operation id); default derived from ``path``.

        Raises:
            ConfigurationError: ``path`` lacks ``{job_id}`` or a leading ``/``, there is no
                app, or the store is not a `ControlStore`.
        """
        if "{job_id}" not in path or not path.startswith("/"):
            message = f"the job-cancel path must start with '/' and hold {{job_id}}: {path!r}"
            raise ConfigurationError(message)
        if self.app is None:
            raise ConfigurationError("map_job_cancel needs an app")
        self._control("cancel jobs")
        route_name = name or "cancel_" + re.sub(r"\W+", "_", path).strip("_")
        add_cancel_route(self.app, path, job_cancel_endpoint(self), name=route_name)

    async def drain(self) -> int:
        """Run due jobs in this task until none is due; return the attempts run (for tests).

        Raises:
            StoreUnavailableError: the store cannot be reached (to claim, or to record an
                outcome within the settling patience).
            JobStoreError: the store refused an operation.
        """
        return await self.pool.drain()

    @asynccontextmanager
    async def running(
        self, *, workers: bool | None = None, queues: Sequence[str] | None = None
    ) -> AsyncIterator[AsyncEndpoints]:
        """Start the store and, when ``workers`` (default: ``run_workers``), the pool.

        The pool serves ``queues`` in that order (default: the ``queues`` setting). On exit
        it stops claiming and drains within ``shutdown_grace_period``.

        Raises:
            ValueError: ``queues`` names a queue the ``queues`` setting lacks, repeats one
                or is empty.
        """
        self.pool.queues = self.serving(queues)
        try:
            await self.store.start()
        except StoreUnavailableError as exc:
            # The app still starts: requests answer 503 until the store is reachable, and
            # the store connects by itself on first use; the pool keeps retrying.
            logger.warning("job store unavailable at startup, carrying on: %s", exc)
        try:
            if workers if workers is not None else self.settings.run_workers:
                async with self.pool:
                    yield self
            else:
                yield self
        finally:
            await self.store.aclose()

    def serving(self, queues: Sequence[str] | None) -> tuple[str, ...]:
        """``queues`` checked against the ``queues`` setting (None: all of them, in order).

        Raises:
            ValueError: an unknown, repeated or missing queue name.
        """
        if queues is None:
            return tuple(self.settings.queues)
        names = queue_names(queues)
        for queue in names:
            self._queues(queue)
        return names

    def app_lifespan(self) -> AbstractAsyncContextManager[Any]:
        """The app's own lifespan (without the workers), for processes that serve no HTTP."""
        if self._app_lifespan is None:
            return nullcontext()
        return self._app_lifespan(self.app)

    def job_url(self, request: Request, job: Job) -> str | None:
        """The job-details path of ``job`` for the ``Location`` header, if the route exists."""
        return self.locations.url(request, job)
