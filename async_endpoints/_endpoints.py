"""`AsyncEndpoints`: lifespan wiring and the job routes; the rest comes from its bases,
`RouteMapping` (async endpoints and handlers), `JobSubmission` (submit, read, wait) and
`JobControl` (cancel, pause, list...)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any, Unpack

from starlette.requests import Request

from . import _server_exit as server_exit
from ._app import Lifespan, join_app
from ._batches import JobBatches
from ._error_describer import ErrorDescriber
from ._errors import ConfigurationError, StoreUnavailableError
from ._events import LifecycleEvents
from ._handlers import Handler
from ._http import (
    JobLocations,
    job_cancel_endpoint,
    job_details_endpoint,
)
from ._job import Job
from ._mapping import RouteMapping
from ._memory import InMemoryJobStore
from ._observability import Observability
from ._retry import RetryPolicy
from ._routes import add_cancel_route, add_get_route, resource_route
from ._runner import WorkerPool
from ._running_blocks import RunningBlocks
from ._scheduling import CronScheduling
from ._settings import Settings, SettingsOptions, default_queue, queue_names
from ._sse import add_events_route, job_events_endpoint
from ._store import JobStore
from ._store_closes import begin_close, closed_first
from ._store_features import EventStore
from ._submission import JobSubmission
from ._tasks import cancel_and_wait
from ._unknown_names import unknown_names
from ._webhook import WEBHOOK_JOB, WebhookSender
from ._worker import AttemptRunner

logger = logging.getLogger("async_endpoints")

#: How many `AsyncEndpoints.running` blocks use each store object now, by its id, and the
#: event loop they run in (a store's connections serve one loop).
_STORE_USERS: dict[int, int] = {}
_STORE_LOOPS: dict[int, asyncio.AbstractEventLoop] = {}


class AsyncEndpoints(RouteMapping, JobSubmission, JobBatches, CronScheduling, Observability):
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

    def __init__(
        self,
        app: Any = None,
        *,
        store: JobStore | None = None,
        **settings: Unpack[SettingsOptions],
    ) -> None:
        unknown = set(settings) - Settings.names()
        if unknown:
            raise ConfigurationError(unknown_names("setting(s)", unknown, Settings.names()))
        self.settings = Settings(**settings)
        self.store: JobStore = store if store is not None else InMemoryJobStore()
        self.app = app
        self.handlers: dict[str, Handler] = {}
        self.locations = JobLocations()
        #: Lifecycle events of this process: ``events.subscribe(listener)``.
        self.events = LifecycleEvents()
        self._app_lifespan: Lifespan | None = None
        self._started = False  # a `running` block is open (the app's lifespan runs)
        # The event loop `running` runs in now, and how many of its blocks are open (one
        # in another loop at once is refused: the store and the pool belong to one).
        self._running_in: asyncio.AbstractEventLoop | None = None
        self._runs = 0
        self._told_unstarted = False
        self._runs_ended = False  # a `running` block has ended here before
        s = self.settings
        policy = RetryPolicy(s.max_retries, s.retry_base_delay, s.retry_max_delay, s.retry_jitter)
        attempts = AttemptRunner(
            self.store,
            self.handlers,
            policy,
            s.job_timeout,
            s.include_tracebacks,
            errors=ErrorDescriber(_sensitive_names(s), s.error_message),
            # Past the lease a result is refused, but the store may be back before recovery
            # ran: keep trying at least as long as the lease, and no less than 30 s.
            settle_patience=max(s.claim_timeout, 30.0),
            events=self.events,
        )
        self.pool = WorkerPool(self.store, attempts, s)
        self._blocks = RunningBlocks(self.pool, self.scheduling, tuple(s.queues))
        self.exiting: asyncio.Event | None = None
        #: Sends webhooks when ``webhook_secret`` is set (its handler is registered).
        self.webhooks: WebhookSender | None = None
        if s.webhook_secret is not None:
            self.webhooks = WebhookSender(s, self.store, app)
            self.handlers[WEBHOOK_JOB] = self.webhooks.handler(default_queue(s.queues))
        _check_store(self.store)
        if app is not None:
            self._app_lifespan = join_app(app, self._served, self.keep_lifespan_state)

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
        route_name = resource_route(
            self.app, path, holds="job_id", what="job-details", name=name, prefix="get_"
        )
        add_get_route(self.app, path, job_details_endpoint(self), name=route_name)
        self.locations.point_at(route_name, path)

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
        route_name = resource_route(
            self.app, path, holds="job_id", what="job-cancel", name=name, prefix="cancel_"
        )
        self._control("cancel jobs")
        add_cancel_route(self.app, path, job_cancel_endpoint(self), name=route_name)

    def map_job_events(
        self, path: str = "/jobs/{job_id}/events", *, name: str | None = None
    ) -> None:
        """Register ``GET path`` streaming the job's status and progress as Server-Sent
        Events (``path`` holds ``{job_id}``): ``event: status`` with the job JSON at once
        and at every status change, ``event: progress`` with ``{"progress": value}`` at
        every progress reported, ending after the terminal status; ``404`` (JSON) when
        unknown, not a UUID, or refused by ``authorize``. See `async_endpoints._sse`.

        Args:
            path: The route path.
            name: The route name (and FastAPI operation id); default derived from ``path``.

        Raises:
            ConfigurationError: ``path`` lacks ``{job_id}`` or a leading ``/``, there is no
                app, or the store is not an `EventStore`.
        """
        route_name = resource_route(
            self.app, path, holds="job_id", what="job-events", name=name, prefix="events_"
        )
        if not isinstance(self.store, EventStore):
            kind = type(self.store).__name__
            raise ConfigurationError(f"map_job_events needs an EventStore; {kind} is not one")
        add_events_route(self.app, path, job_events_endpoint(self), name=route_name)

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

        The pool serves ``queues`` in that order (default: the ``queues`` setting). Blocks
        entered while one holds the pool (nested, or in other tasks) share it; when the
        last of them ends it stops claiming and drains within ``shutdown_grace_period``.

        Raises:
            ValueError: ``queues`` names a queue the ``queues`` setting lacks, repeats one
                or is empty.
            RuntimeError: it is running already in another event loop (entered again
                before it ended).
        """
        loop = asyncio.get_running_loop()
        store = self.store
        self._check_loop(loop)
        block = self._blocks.enter(self.serving(queues), asked=queues is not None)
        self._started = True
        self._running_in, self._runs = loop, self._runs + 1
        _STORE_LOOPS[id(store)] = loop
        _STORE_USERS[id(store)] = _STORE_USERS.get(id(store), 0) + 1
        wanted = workers if workers is not None else self.settings.run_workers
        joined = False
        try:
            try:
                await closed_first(store)
                await store.start()
            except StoreUnavailableError as exc:
                # The app still starts: requests answer 503 until the store is reachable,
                # and the store connects by itself on first use; the pool keeps retrying.
                logger.warning("job store unavailable at startup, carrying on: %s", exc)
            if wanted:
                await self._blocks.join(block)
                joined = True
            yield self
        finally:
            try:
                await self._blocks.leave(block, joined=joined)
            finally:  # the counts come down however the pool's stop ended
                await self._ended_run(store)

    async def _ended_run(self, store: JobStore) -> None:
        """A `running` block has ended (its pool's part done): the last one in the loop
        closes the webhook client; a store shared by several AsyncEndpoints of this
        process closes with the last of them (the others go on using it), and whatever
        its start did."""
        self._runs -= 1
        last = not self._runs
        if last:
            self._running_in = None
            self._started = self._told_unstarted = False  # a later job is warned about
            self._runs_ended = True
        users = _STORE_USERS.pop(id(store), 1) - 1
        closing = None
        if users:
            _STORE_USERS[id(store)] = users
        else:
            _STORE_LOOPS.pop(id(store), None)
            closing = begin_close(store)  # before any await: a block entering waits for it
        try:
            if last and self.webhooks is not None:
                await self.webhooks.aclose()
        finally:
            if closing is not None:
                await asyncio.shield(closing)  # a cancel here leaves it going to its end

    def _check_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Refuse `running` in ``loop`` while this object, or its store, runs in another
        (a store's connections serve one loop); what a loop closed while running left
        is forgotten.

        Raises:
            RuntimeError: as said.
        """
        store_key = id(self.store)
        if self._running_in is not None and self._running_in.is_closed():
            self._running_in, self._runs = None, 0  # left by a loop closed while running
            self._blocks.forget()
        held = _STORE_LOOPS.get(store_key)
        if held is not None and held.is_closed():
            del _STORE_LOOPS[store_key]
            _STORE_USERS.pop(store_key, None)
            held = None
        if self._running_in not in (None, loop):
            raise RuntimeError(
                "this AsyncEndpoints is running already, in another event loop: its app's "
                "lifespan was entered again before the first one ended, as two TestClient "
                "blocks open at once on one app do (each runs its own loop); end the first, "
                "or share one client"
            )
        if held not in (None, loop):
            raise RuntimeError(
                "this store object is in use in another event loop (by another running "
                "AsyncEndpoints): a store's connections serve one loop; give each loop a "
                "store of its own, or run both in one loop"
            )

    @asynccontextmanager
    async def _served(self) -> AsyncIterator[AsyncEndpoints]:
        """`running`, as the app's lifespan runs it under a web server: from the moment
        the server starts shutting down (`_server_exit`), before the lifespan hears of it,
        the pool takes no more jobs and held requests are answered as their jobs are."""
        server = server_exit.current_server(self.app)
        async with self.running() as running:
            if server is None:
                yield running
                return
            if not self.settings.run_workers and isinstance(self.store, InMemoryJobStore):
                logger.warning(
                    "run_workers=False with an in-memory store: no process can run the "
                    "jobs this one accepts (give the app a shared store, RedisJobStore)"
                )
            self.exiting = asyncio.Event()  # of this loop: made while the lifespan runs
            watching = server_exit.watch(server, self._server_exiting)
            watcher = asyncio.create_task(watching, name="async-endpoints-server-exit")
            try:
                yield running
            finally:
                await cancel_and_wait([watcher])
                self.exiting = None

    async def _server_exiting(self) -> None:
        logger.info(
            "the server is shutting down: this process takes no more jobs and fires no more"
            " cron cycles, its running jobs go on, and requests waiting for a job are"
            " answered now"
        )
        if self.exiting is not None:
            self.exiting.set()
        await self.stop_firing()
        await self.pool.stop_claiming()

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

    def warn_unless_started(self) -> None:
        """Log once when a route accepts a job while no `running` block is open here (the
        app's lifespan did not run: a Starlette or FastAPI app mounted under another does
        not run its own; or it has ended: a test client used without its ``with`` block
        after another's), so no worker of this process will run it. Once again after
        each lifespan's end."""
        if self._started or self._told_unstarted or not self.settings.run_workers:
            return
        self._told_unstarted = True
        if self._runs_ended:
            logger.warning(
                "a job was accepted, but this app's lifespan has ended, so no worker of this "
                "process runs jobs (a test client used without its `with` block runs no "
                "lifespan of its own)"
            )
            return
        logger.warning(
            "a job was accepted, but this app's lifespan has not run, so no worker of this "
            "process runs jobs (an app mounted under another does not run its own lifespan: "
            "run it from the parent's, see the README's 'Mounted under another app')"
        )

    def keep_lifespan_state(self, state: Any) -> None:
        """Make ``state`` (what the app's lifespan yielded: a mapping, or None) the
        ``ctx.state`` of the jobs this process runs from now on."""
        kept = self.pool.attempts.state
        kept.clear()
        if isinstance(state, Mapping):
            kept.update(state)

    def app_lifespan(self) -> AbstractAsyncContextManager[Any]:
        """The app's own lifespan (without the workers), for processes that serve no HTTP."""
        if self._app_lifespan is None:
            return nullcontext()
        return self._app_lifespan(self.app)

    def job_url(self, request: Request, job: Job) -> str | None:
        """The job-details path of ``job`` for the ``Location`` header, if the route exists."""
        return self.locations.url(request, job)


def _sensitive_names(settings: Settings) -> frozenset[str]:
    """The names whose values a job's error masks: the sensitive query parameters and
    headers alike (an exception may quote a URL's query, a header line or a mapping)."""
    return frozenset(settings.sensitive_query_params) | frozenset(settings.sensitive_headers)


def _check_store(store: object) -> None:
    """``store`` is a store object (not a URL, not a store class).

    Raises:
        ConfigurationError: it is not a `JobStore`.
    """
    if isinstance(store, JobStore) and not isinstance(store, type):
        return
    hint = ""
    if isinstance(store, str):
        hint = " (for Redis: store=RedisJobStore(url), from async_endpoints_redis)"
    elif isinstance(store, type):
        hint = f" (an instance: store={store.__name__}(...))"
    raise ConfigurationError(f"store must be a JobStore, not {store!r}{hint}")
