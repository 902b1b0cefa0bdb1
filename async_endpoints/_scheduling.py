"""`CronScheduling`: cron schedules on `AsyncEndpoints` (a base of it): the `cron`
decorator, `upsert_schedule`, `remove_schedule`, `list_schedules`, and the scheduler's
lifetime beside the worker pool.

Schedules need a store that implements `ScheduleStore`; the others raise
`ConfigurationError` naming the capability. Everything is checked when a schedule is
defined (expression, time zone, handler, body, queue, tenant): a bad one raises and
nothing is stored.

The scheduler (`_scheduler`) runs in every process that runs workers on such a store,
whether or not it declares schedules, since any instance may upsert one at run time and
all must follow it; between schedules it costs two small store calls per second. Schedules
declared with `cron` are upserted when it starts (keeping the due time of an unchanged
one, so restarts neither skip nor repeat a cycle), and again whenever the store lost its
schedules (`ScheduleEpochStore`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ._cron import CronRule
from ._errors import ConfigurationError, JobValidationError, UnknownJobNameError
from ._events import EventKind, LifecycleEvent, LifecycleEvents
from ._handlers import Handler, HandlerFunction
from ._job import Job, JobRequest, NewJob, check_label, check_name, format_time
from ._schedule import Schedule
from ._scheduler import Scheduler
from ._settings import Settings, default_queue
from ._store import JobStore
from ._store_features import ScheduleStore
from ._tasks import cancel_and_wait
from ._webhook import WEBHOOK_JOB

F = TypeVar("F", bound=HandlerFunction)
logger = logging.getLogger("async_endpoints")


class CronScheduling:
    """Cron schedules: define, change, remove and list them, and the scheduler."""

    store: JobStore
    settings: Settings
    handlers: dict[str, Handler]
    events: LifecycleEvents

    if TYPE_CHECKING:

        def add_handler(
            self,
            function: HandlerFunction,
            *,
            name: str | None = None,
            queue: str | None = None,
            max_retries: int | None = None,
            job_timeout: float | None = None,
        ) -> Handler: ...

        def _queues(self, queue: str | None) -> tuple[str, ...]: ...

    def cron(
        self,
        expression: str,
        *,
        name: str | None = None,
        timezone: str = "UTC",
        unique: bool = True,
        queue: str | None = None,
        tenant: str | None = None,
        max_retries: int | None = None,
        job_timeout: float | None = None,
    ) -> Callable[[F], F]:
        """Decorator: run the handler on a cron schedule whose id is the job name.

        The handler is ``async def handler(ctx: AsyncContext) -> Result`` (its jobs have no
        body), registered as `add_handler` does. The schedule is stored when the
        scheduler starts, in each process that runs workers. The function is returned
        unchanged.

        Args:
            expression: Five fields, or six with seconds first (``"*/2 * * * * *"``).
            name: The job name and schedule id (default: the function's name).
            timezone: The IANA time zone the expression is read in.
            unique: Skip a cycle while the previous cycle's job is not terminal.
            queue: The queue of its jobs (default as for `add_handler`).
            tenant: The tenant of its jobs.
            max_retries: Retries of its jobs (default: the ``max_retries`` setting).
            job_timeout: Seconds one attempt may run (default: the ``job_timeout`` setting).

        Raises:
            ValueError: the expression or time zone is invalid (the message names the
                problem), ``unique`` is not a bool, or (when decorating) ``tenant`` or the
                name is not 1 to 255 characters that UTF-8 can encode.
            ConfigurationError: the decorator was written without its parentheses
                (``@endpoints.cron`` above the handler), or the scheduler of this process
                has started (it would never store the schedule).
            JobValidationError: the handler's body model does not accept no body.
            ConfigurationError: as `add_handler` raises it, or the store is not a
                `ScheduleStore`. Nothing is registered then.
        """
        if callable(expression):
            raise ConfigurationError(
                'cron takes the cron expression first: write @endpoints.cron("*/5 * * * *"), '
                "with its parentheses"
            )
        CronRule(expression, timezone)
        check_label(tenant, "tenant")
        if not isinstance(unique, bool):
            raise ValueError(f"unique must be True or False, not {unique!r}")
        self._schedules("define cron schedules")
        if self._running_schedulers:
            raise ConfigurationError(
                "the cron scheduler of this process has started, and @cron schedules are "
                "stored when it starts: declare them before the app starts (at import), or "
                "add one while it runs with await endpoints.upsert_schedule(...)"
            )

        def register(function: F) -> F:
            handler = self.add_handler(
                function, name=name, queue=queue, max_retries=max_retries, job_timeout=job_timeout
            )
            try:
                check_name(handler.name, "schedule_id")  # the schedule's id is the job name
                try:
                    _, body = handler.coerce_body(None)
                except JobValidationError as exc:
                    raise JobValidationError(
                        f"a cron handler's jobs have no body, and {handler.name}'s model needs"
                        f" one ({exc}): make it take AsyncContext[None], or leave it out of"
                        " @cron and give upsert_schedule a body",
                        exc.errors,
                    ) from None
            except Exception:
                del self.handlers[handler.name]
                raise
            schedule = Schedule(
                handler.name, handler.name, expression, timezone, unique, body=body, tenant=tenant
            )
            self._declared[handler.name] = schedule
            return function

        return register

    async def upsert_schedule(
        self,
        schedule_id: str,
        name: str,
        cron: str,
        *,
        body: Any = None,
        timezone: str = "UTC",
        unique: bool = True,
        queue: str | None = None,
        tenant: str | None = None,
    ) -> Schedule:
        """Create or replace the schedule ``schedule_id``: a job for handler ``name`` (with
        ``body``, validated against its model) at every time ``cron`` names in
        ``timezone``. Every instance follows it within a second. Redefining it with the
        same expression and zone keeps its next due time; its last job is always kept
        (so a unique schedule still waits for it).

        Raises:
            ValueError: ``schedule_id`` is not a string of 1 to 255 characters that
                UTF-8 can encode, the expression or time zone is invalid (the message
                names the problem), ``queue`` is not one of the ``queues`` setting, or
                ``tenant`` is not 1 to 255 such characters.
            UnknownJobNameError: no handler has that name.
            JobValidationError: ``body`` fails the handler's model.
            ConfigurationError: the store is not a `ScheduleStore`.
            StoreUnavailableError: the store cannot be reached.
        """
        store = self._schedules("upsert schedules")
        check_name(schedule_id, "schedule_id")
        rule = CronRule(cron, timezone)
        handler = self.handlers.get(name)
        if handler is None or name == WEBHOOK_JOB:  # deliveries come from their job only
            raise UnknownJobNameError(f"no job handler named {name!r}")
        if queue is not None:
            self._queues(queue)
        check_label(tenant, "tenant")
        if not isinstance(unique, bool):
            raise ValueError(f"unique must be True or False, not {unique!r}")
        _, body_json = handler.coerce_body(body)
        handler.check_query("")  # a schedule's jobs have no query string
        now = await store.schedule_time()
        schedule = Schedule(
            schedule_id,
            name,
            cron,
            timezone,
            unique,
            next_run_at=rule.next_after(now),
            body=body_json,
            queue=queue,
            tenant=tenant,
        )
        return self._stored(await store.upsert_schedule(schedule))

    async def remove_schedule(self, schedule_id: str) -> bool:
        """Delete the schedule (its jobs are left alone); False when there was none.

        Raises:
            ValueError: ``schedule_id`` is not a string of 1 to 255 characters that
                UTF-8 can encode.
            ConfigurationError: the store is not a `ScheduleStore`.
            StoreUnavailableError: the store cannot be reached.
        """
        store = self._schedules("remove schedules")
        check_name(schedule_id, "schedule_id")
        self._declared.pop(schedule_id, None)
        return await store.remove_schedule(schedule_id)

    async def list_schedules(self) -> list[Schedule]:
        """Every schedule of the store, by id.

        Raises:
            ConfigurationError: the store is not a `ScheduleStore`.
            StoreUnavailableError: the store cannot be reached.
        """
        return await self._schedules("list schedules").list_schedules()

    def scheduler(self) -> Scheduler | None:
        """A `Scheduler` for this store (None when it is not a `ScheduleStore`): what
        `scheduling` runs; tests call its ``tick`` themselves."""
        if not isinstance(self.store, ScheduleStore):
            return None
        declare = self.declare_schedules if self._declared else None
        return Scheduler(self.store, self._cycle_job, self._fired, declare)

    async def declare_schedules(self) -> int:
        """Store the schedules declared with `cron` (an unchanged one keeps its due time);
        return how many. The scheduler calls it when it starts, and again should the
        store lose its schedules.

        Raises:
            StoreUnavailableError: the store cannot be reached.
        """
        store = self._schedules("define cron schedules")
        now = await store.schedule_time()
        earlier = {schedule.id: schedule for schedule in await store.list_schedules()}
        stored = 0
        for schedule in list(self._declared.values()):
            if self._declared.get(schedule.id) is not schedule:
                continue  # removed (or redeclared) meanwhile: `remove_schedule` has the last word
            _tell_replaced(earlier.get(schedule.id), schedule)
            rule = CronRule(schedule.cron, schedule.timezone)
            self._stored(
                await store.upsert_schedule(schedule.replace(next_run_at=rule.next_after(now)))
            )
            stored += 1
        return stored

    @contextlib.asynccontextmanager
    async def scheduling(self) -> AsyncIterator[None]:
        """The scheduler's lifetime: it runs while this is entered (nothing without a
        `ScheduleStore`)."""
        scheduler = self.scheduler()
        if scheduler is None:
            yield
            return
        task = asyncio.create_task(scheduler.run_forever(), name="async-endpoints-cron")
        self._running_schedulers.append(scheduler)
        self._firing.append(task)
        try:
            yield
        finally:
            self._running_schedulers.remove(scheduler)
            if task in self._firing:
                self._firing.remove(task)
            await cancel_and_wait([task])

    async def stop_firing(self) -> None:
        """Stop this process's schedulers now, before their `scheduling` ends: the server
        is shutting down, and a process that takes no more jobs fires no more cycles
        (another process, or this one's successor, fires them: a cycle missed meanwhile
        is caught up with one job)."""
        stopping, self._firing[:] = list(self._firing), []
        await cancel_and_wait(stopping)

    def _stored(self, schedule: Schedule) -> Schedule:
        """``schedule`` as the store answered an upsert: the running schedulers of this
        process wake for its due time."""
        for scheduler in self._running_schedulers:
            scheduler.note_due(schedule.next_run_at)
        return schedule

    def _cycle_job(self, schedule: Schedule) -> NewJob:
        """The job one cycle of ``schedule`` enqueues (with defaults for a handler this
        process lacks: another process may have it). Its headers name the schedule
        (``x-schedule-id``) and the cycle's due time (``x-schedule-due``, ISO 8601 UTC)."""
        handler = self.handlers.get(schedule.name)
        retries = None if handler is None else handler.max_retries
        queue = schedule.queue
        if queue is None:
            queue = default_queue(self.settings.queues) if handler is None else handler.queue
        headers: tuple[tuple[str, str], ...] = (("x-schedule-id", schedule.id),)
        if schedule.next_run_at is not None:
            headers += (("x-schedule-due", format_time(schedule.next_run_at) or ""),)
        return NewJob(
            uuid.uuid4(),
            schedule.name,
            self.settings.max_retries if retries is None else retries,
            JobRequest(body=schedule.body, headers=headers, route_params=_path_params(handler)),
            queue=queue,
            tenant=schedule.tenant,
        )

    def _fired(self, job: Job) -> None:
        if self.events:
            self.events.emit(LifecycleEvent(EventKind.SUBMITTED, job))

    @property
    def _declared(self) -> dict[str, Schedule]:
        declared: dict[str, Schedule] = self.__dict__.setdefault("_declared_schedules", {})
        return declared

    @property
    def _firing(self) -> list[asyncio.Task[None]]:
        """The tasks of the schedulers `scheduling` runs now, until `stop_firing`."""
        firing: list[asyncio.Task[None]] = self.__dict__.setdefault("_scheduler_tasks", [])
        return firing

    @property
    def _running_schedulers(self) -> list[Scheduler]:
        """The schedulers `scheduling` runs now (one, or none)."""
        running: list[Scheduler] = self.__dict__.setdefault("_schedulers_running", [])
        return running

    def _schedules(self, doing: str) -> ScheduleStore:
        if not isinstance(self.store, ScheduleStore):
            name = type(self.store).__name__
            raise ConfigurationError(f"{name} cannot {doing}: it does not implement ScheduleStore")
        return self.store


def _path_params(handler: Handler | None) -> dict[str, str]:
    """A cycle's route parameters: each of its handler's route's read as ``""`` (as
    `submit` gives those it is not given)."""
    return {} if handler is None else dict.fromkeys(handler.path_params, "")


#: What a schedule's definition is (not its state: due time, last job).
_DEFINITION = ("name", "cron", "timezone", "unique", "body", "queue", "tenant")


def _tell_replaced(stored: Schedule | None, declared: Schedule) -> None:
    """Warn when ``declared`` replaces a stored definition that differs from it: a
    deploy that changed it, or processes running different code, which replace each
    other's at each start (the last to start wins)."""
    if stored is None:
        return
    changed = [
        f"{field} {getattr(stored, field)!r} -> {getattr(declared, field)!r}"
        for field in _DEFINITION
        if getattr(stored, field) != getattr(declared, field)
    ]
    if changed:
        logger.warning(
            "cron schedule %r: this process's @cron replaces the stored definition (%s): "
            "a deploy that changed it, or processes with different code, which replace "
            "each other's whenever one starts",
            declared.id,
            "; ".join(changed),
        )
