"""`Scheduler`: the loop that fires due cron schedules, one per process that runs workers.

There is no leader: every process asks the store for the schedules that are due, computes
each one's next due time from the cron expression and fires it with `fire_schedule`, a
compare-and-set on the due time, so each cycle enqueues one job however many processes
see it (the others find it moved and carry on). A process that dies stalls nothing.

Catch-up: the next due time is computed from *now* (the store's clock), not from the
missed cycle, so cycles missed while no process ran are caught up with one job.

Clock set back: a schedule fired before a backward step of the store's clock waits for
a due time computed on the old time. At its first tick, and whenever the store's clock
reads more than `STEP_BACK` earlier than at the tick before, the scheduler re-arms the
schedules that run by the clock (`_realign`); fixed-time ones wait, and never run a
cycle twice.

Between ticks the loop sleeps until the soonest due time it knows (those it computed:
every process computes the same ones), at most `CAP` seconds, so that schedules upserted
by another process, or fired there, are followed within that time. A tick costs one store
call when nothing is due or known, else two plus one per due schedule: O(log n + due),
whatever the number of schedules.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from ._cron import cron_rule
from ._errors import StoreUnavailableError
from ._job import Job, NewJob
from ._logs import job_extra
from ._schedule import Schedule
from ._store_features import ScheduleStore

logger = logging.getLogger("async_endpoints")

#: The longest sleep between two looks at the store, in seconds.
CAP = 1.0
#: Due schedules fired per store call (a longer backlog is worked through at once).
BATCH = 100
_MAX_BACKOFF = 1.0
#: How far back the store's clock must go between two readings to count as set back.
STEP_BACK = timedelta(seconds=1)


class Scheduler:
    """Fires the due schedules of ``store``.

    Args:
        store: The store keeping the schedules.
        new_job: The job a cycle of a schedule enqueues (a fresh id each call).
        fired: Called with each job a cycle enqueued here.
    """

    def __init__(
        self,
        store: ScheduleStore,
        new_job: Callable[[Schedule], NewJob],
        fired: Callable[[Job], None] = lambda job: None,
    ) -> None:
        self.store = store
        self.new_job = new_job
        self.fired = fired
        self._next: datetime | None = None  # the soonest due time known, store clock
        self._seen: datetime | None = None  # the store's clock at the last reading

    async def tick(self) -> float:
        """Fire every schedule due now; return the seconds to sleep until the next tick
        (0 when more may be due, at most `CAP`).

        Raises:
            StoreUnavailableError: the store cannot be reached.
        """
        loop = asyncio.get_running_loop()
        began = loop.time()
        due = await self.store.due_schedules(BATCH)
        if not due and self._next is None and self._seen is not None:
            return CAP  # idle: one store call per tick
        now = await self.store.schedule_time()
        if self._seen is None or now < self._seen - STEP_BACK:
            await self._realign(self._seen)
        self._seen = now
        if self._next is not None and self._next <= now:
            self._next = None  # fired elsewhere, or removed: it was due by now
        moved = 0
        for schedule in due:
            following = await self._fire(schedule, now)
            if following is not None:
                moved += 1
                if self._next is None or following < self._next:
                    self._next = following
        if len(due) >= BATCH and moved:
            return 0.0  # more may be due (never 0 for a batch of unfireable ones: no spin)
        if self._next is None:
            return CAP
        wait = (self._next - now).total_seconds() - (loop.time() - began)
        return min(CAP, max(0.0, wait))

    async def _realign(self, seen: datetime | None) -> None:
        """Re-arm, without firing, each schedule that runs by the clock (a wildcard in its
        seconds, minute or hour field) and waits for a later time than the first its
        expression names after now: the store's clock was set back (``seen`` is the
        reading before; None at this scheduler's first tick, which may follow a step while
        no process ran). Schedules at a fixed time keep their due time, so a cycle that
        ran is never run again (as Debian's cron does for steps back under 3 hours).
        O(number of schedules), only then."""
        moved = 0
        schedules = await self.store.list_schedules()
        # Read after the list: a cycle another process fired before the list was read is
        # then due before ``now`` and never looks pushed ahead (moving it back would fire
        # that cycle again).
        now = await self.store.schedule_time()
        for schedule in schedules:
            due_at = schedule.next_run_at
            try:
                rule = cron_rule(schedule.cron, schedule.timezone)
                following = rule.next_after(now)
            except ValueError:
                continue
            if due_at is None or not rule.runs_by_the_clock or following >= due_at:
                continue
            if await self.store.move_schedule(schedule, following):
                moved += 1
            if self._next is None or following < self._next:
                self._next = following
        if moved:
            stepped = "" if seen is None else f" (it read {seen.isoformat()} before)"
            logger.warning(
                "the store's clock is %s%s: %d cron schedule(s) running by the clock "
                "re-armed from it",
                now.isoformat(),
                stepped,
                moved,
            )

    async def _fire(self, schedule: Schedule, now: datetime) -> datetime | None:
        """Fire one due schedule; its next due time, or None when it has no valid one."""
        due_at = schedule.next_run_at
        if due_at is None:
            return None
        try:
            following = cron_rule(schedule.cron, schedule.timezone).next_after(max(now, due_at))
        except ValueError as exc:
            logger.error("cron schedule %r cannot be fired: %s", schedule.id, exc)
            return None
        try:
            job = await self.store.fire_schedule(schedule, following, self.new_job(schedule))
        except StoreUnavailableError:
            raise
        except Exception:
            logger.exception("cron schedule %r could not be fired", schedule.id)
            return following
        if job is not None:
            logger.debug(
                "cron schedule %r enqueued job %s", schedule.id, job.id, extra=job_extra(job)
            )
            self.fired(job)
        return following

    async def run_forever(self) -> None:
        """Tick until cancelled; no store failure ends the loop (it backs off, up to
        `_MAX_BACKOFF` seconds, and goes on)."""
        failures = 0
        while True:
            try:
                wait = await self.tick()
            except StoreUnavailableError as exc:
                failures += 1
                wait = min(_MAX_BACKOFF, 0.05 * 2 ** min(failures, 8))
                logger.warning("cron scheduler paused %.2f s, store unavailable: %s", wait, exc)
            except Exception:
                failures += 1
                wait = min(_MAX_BACKOFF, 0.05 * 2 ** min(failures, 8))
                logger.exception("cron scheduler tick failed; trying again in %.2f s", wait)
            else:
                failures = 0
            await asyncio.sleep(wait)
