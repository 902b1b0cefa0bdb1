"""`Scheduler`: the loop that fires due cron schedules, one per process that runs workers.

There is no leader: every process asks the store for the schedules that are due, computes
each one's next due time from the cron expression and fires it with `fire_schedule`, a
compare-and-set on the due time, so each cycle enqueues one job however many processes
see it (the others find it moved and carry on). A process that dies stalls nothing.

Catch-up: the next due time is computed from *now* (the store's clock), not from the
missed cycle, so cycles missed while no process ran are caught up with one job.

Clock set back: a schedule fired before a backward step of the store's clock waits for
a due time computed on the old time. At its first tick, and whenever the store's clock
reads more than `STEP_BACK` earlier than its last reading plus the time elapsed since,
the scheduler re-arms the schedules that run by the clock whose wait the step stretched
by more than their period and a minute (`rearmed`); others wait the step out, and a
fixed-time schedule never runs a cycle twice.

Data lost: on a store that can lose its schedules (a `ScheduleEpochStore`: Redis
restarted without persistence, or flushed), schedules declared with ``cron`` are stored
again when its `schedule_epoch` changes: the scheduler reads it before it first declares
them and at most once every `EPOCH_EVERY` seconds after. Schedules upserted at run time
are not known here and stay lost; so is a store rolled back to a snapshot that holds the
epoch but not the latest declarations.

Between ticks the loop sleeps until the soonest due time it knows (those it computed:
every process computes the same ones, and those of the schedules this process stored,
`note_due`, which also end the sleep), at most `CAP` seconds, so that schedules upserted
by another process, or fired there, are followed within that time. A tick costs two store
calls (the due schedules and the store's clock), a third at most once a second in a
process that declares schedules on a `ScheduleEpochStore`, plus one per due schedule: O(log n +
due), whatever the number of schedules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from ._cron import cron_rule
from ._errors import StoreUnavailableError
from ._job import Job, NewJob
from ._logs import job_extra
from ._outage_log import LoopOutage, failed_again
from ._schedule import Schedule
from ._store_features import ScheduleEpochStore, ScheduleStore

logger = logging.getLogger("async_endpoints")

#: The longest sleep between two looks at the store, in seconds.
CAP = 1.0
#: Due schedules fired per store call (a longer backlog is worked through at once).
BATCH = 100
_MAX_BACKOFF = 1.0
#: How far back the store's clock must go between two readings to count as set back.
STEP_BACK = timedelta(seconds=1)
#: Seconds between two reads of the store's `schedule_epoch`, at least.
EPOCH_EVERY = 1.0
#: A step back that a schedule waits out rather than re-arming, at least (see `rearmed`).
REARM_AFTER = timedelta(seconds=60)


class Scheduler:
    """Fires the due schedules of ``store``.

    Args:
        store: The store keeping the schedules.
        new_job: The job a cycle of a schedule enqueues (a fresh id each call).
        fired: Called with each job a cycle enqueued here.
        declare: Stores this process's declared schedules (returns how many): called at
            the first tick and, on a `ScheduleEpochStore`, whenever its epoch changed;
            None when the process declares none.
        monotonic: The process's monotonic clock, in seconds (default: the running event
            loop's), which tells how much time passed between two readings of the store's.
    """

    def __init__(
        self,
        store: ScheduleStore,
        new_job: Callable[[Schedule], NewJob],
        fired: Callable[[Job], None] = lambda job: None,
        declare: Callable[[], Awaitable[int]] | None = None,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        self.store = store
        self.monotonic = monotonic or (lambda: asyncio.get_running_loop().time())
        self.new_job = new_job
        self.fired = fired
        self.declare = declare
        self._epochs = store if isinstance(store, ScheduleEpochStore) else None
        self._epoch: str | None = None  # the store's epoch when this process last declared
        self._epoch_check = -math.inf  # when to read it next (this process's loop clock)
        self._next: datetime | None = None  # the soonest due time known, store clock
        self._woken = asyncio.Event()  # a due time was noted: the sleep ends early
        # The store's clock at the last reading, and this process's monotonic clock as it
        # was asked and as it answered.
        self._seen: tuple[datetime, float, float] | None = None

    async def tick(self) -> float:
        """Fire every schedule due now; return the seconds to sleep until the next tick
        (0 when more may be due, at most `CAP`).

        Raises:
            StoreUnavailableError: the store cannot be reached.
        """
        began = self.monotonic()
        if self.declare is not None and began >= self._epoch_check:
            self._epoch_check = began + EPOCH_EVERY
            await self._keep_declared()
        # The clock first: a schedule due by ``now`` is then among those found due, so one
        # known due by ``now`` but not found was fired (or moved) elsewhere. Read after,
        # a due time passing between the two reads would look fired elsewhere and wait
        # `CAP` (every process that knew it woke at that moment: all of them).
        now = await self.store.schedule_time()
        answered = self.monotonic()
        due = await self.store.due_schedules(BATCH)
        if self._set_back(now, began) and await self._realign():
            due = await self.store.due_schedules(BATCH)  # with any re-armed to a due cycle
        self._seen = (now, began, answered)
        if not due and self._next is None:
            return CAP  # idle
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
        wait = (self._next - now).total_seconds() - (self.monotonic() - began)
        return min(CAP, max(0.0, wait))

    def note_due(self, when: datetime | None) -> None:
        """A schedule of this process's was stored due at ``when`` (store clock): the loop
        wakes for it rather than finding it at its next look, up to `CAP` later."""
        if when is not None and (self._next is None or when < self._next):
            self._next = when
            self._woken.set()

    async def _keep_declared(self) -> None:
        """Declare the schedules at the first tick and, on a store that can lose them (a
        `ScheduleEpochStore`), again when its epoch changed since. The epoch is read
        first: a loss after the read shows as a new epoch at the next read. A failure
        other than the store's being unreachable is logged, and the tick goes on to fire
        what is due (the declaration is tried again at the next check)."""
        assert self.declare is not None
        if self._epochs is None and self._epoch is not None:
            return  # declared; this store cannot lose its schedules
        try:
            epoch = "" if self._epochs is None else await self._epochs.schedule_epoch()
            if epoch == self._epoch:
                return
            stored = await self.declare()
        except StoreUnavailableError:
            raise
        except Exception:
            logger.exception("cron schedules declared with cron could not be stored")
            return
        if self._epoch is not None:
            logger.warning(
                "the store lost its cron schedules (its data was reset): %d declared "
                "schedule(s) stored again; schedules upserted at run time are gone",
                stored,
            )
        self._epoch = epoch

    def _set_back(self, now: datetime, began: float) -> bool:
        """Whether the store's clock reads more than `STEP_BACK` earlier than the last
        reading plus the time elapsed since (this process's monotonic clock); True at the
        first tick, which may follow a step made while no scheduler ran."""
        if self._seen is None:
            return True
        seen, at, _ = self._seen
        return now < seen + timedelta(seconds=began - at) - STEP_BACK

    async def _realign(self) -> int:
        """Re-arm, without firing, the schedules a backward step of the store's clock left
        waiting too long (`rearmed`); return how many. O(number of schedules), at the first
        tick and after a step only."""
        schedules = await self.store.list_schedules()
        # Read after the list: a cycle another process fired before the list was read is
        # then due before ``now`` and never looks pushed ahead (moving it back would fire
        # that cycle again).
        asked = self.monotonic()
        now = await self.store.schedule_time()
        # The last reading before the step, and where it falls on the new time: a cycle
        # due since then was never looked at (a step by whole periods lands a tick just
        # past a due time). Counted from that reading's answer to this one's question, so
        # never earlier than that reading was: a cycle it found due is not taken again.
        before = None
        if self._seen is not None:
            seen, _, answered = self._seen
            before = (seen, now - timedelta(seconds=max(0.0, asked - answered)))
        moved = 0
        for schedule in schedules:
            following = rearmed(schedule, now, before)
            if following is None:
                continue
            try:
                moved += await self.store.move_schedule(schedule, following)
            except StoreUnavailableError:
                raise
            except Exception:
                logger.exception("cron schedule %r could not be re-armed", schedule.id)
                continue
            if self._next is None or following < self._next:
                self._next = following
        if moved:
            logger.warning(
                "the store's clock was set back (it reads %s): %d cron schedule(s) that run "
                "by the clock re-armed from it",
                now.isoformat(),
                moved,
            )
        return moved

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
        failures = refusals = 0  # in a row: all of them, and those that are no outage
        outage = LoopOutage(logger, "cron scheduler")
        while True:
            try:
                wait = await self.tick()
            except StoreUnavailableError as exc:
                failures += 1
                wait = min(_MAX_BACKOFF, 0.05 * 2 ** min(failures, 8))
                outage.failed(exc, wait)
            except Exception as exc:
                failures += 1
                refusals += 1
                wait = min(_MAX_BACKOFF, 0.05 * 2 ** min(failures, 8))
                failed_again(logger, "cron scheduler tick", refusals, exc, wait)
            else:
                failures = refusals = 0
                outage.succeeded()
            self._woken.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._woken.wait()


def rearmed(
    schedule: Schedule, now: datetime, before: tuple[datetime, datetime] | None = None
) -> datetime | None:
    """The due time ``schedule`` gets after a backward step of the clock to ``now``, or
    None to keep it.

    A schedule is re-armed when it runs by the clock (a wildcard in its seconds, minute
    or hour field, as Debian's cron tells them apart) and the clock is behind the cycle
    it last passed by more than that cycle's period and more than `REARM_AFTER`: waiting
    would leave a long silence. A smaller step is waited out (the next cycle comes that
    much later, no cycle runs twice), and so is any step for a schedule at a fixed time,
    so that a cycle that ran is never run again (as Debian's cron does for steps back
    under 3 h).

    It is re-armed to the first time its expression names after ``now``, or, given
    ``before`` (the scheduler's last reading before the step, and where that reading
    falls on the new time), after the later of that reading and the cycle it last passed
    (fired here or elsewhere since), both on the new time: a cycle due since is due at
    once, so a step by whole periods, which lands a tick just past a due time, loses no
    cycle, and none that ran runs again.
    """
    due_at = schedule.next_run_at
    if due_at is None or due_at <= now:
        return None
    try:
        rule = cron_rule(schedule.cron, schedule.timezone)
        if not rule.runs_by_the_clock:
            return None
        passed = rule.previous_before(due_at)  # fired (or skipped) before the step
        start = now
        if before is not None:
            seen, looked = before
            start = min(now, looked + max(timedelta(0), passed - seen))
        following = rule.next_after(start)
        if following >= due_at:
            return None  # no cycle between now and the due time: nothing to wait out
    except ValueError:
        return None
    behind = passed - now  # at least the step
    return following if behind > max(due_at - passed, REARM_AFTER) else None
