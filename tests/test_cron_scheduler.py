"""Cron schedules on `AsyncEndpoints`: defined (checked, nothing stored when bad), fired
once per cycle by the scheduler, unique, caught up with one job, and the scheduler's
lifetime beside the workers. Time is a `ManualClock` driven by the tests, which call the
scheduler's ``tick`` themselves."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    ConfigurationError,
    InMemoryJobStore,
    Job,
    JobStatus,
    JobValidationError,
    Schedule,
    StoreUnavailableError,
    UnknownJobNameError,
    _scheduler,
)
from async_endpoints._events import EventKind, LifecycleEvent
from async_endpoints._scheduler import BATCH, CAP, Scheduler
from async_endpoints.testing import ManualClock
from tests.call_counts import CallCount

START = datetime(2026, 1, 1, tzinfo=UTC)


class Cleanup(BaseModel):
    days: int


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START.timestamp())


@pytest.fixture
async def store(clock: ManualClock) -> InMemoryJobStore:
    store = InMemoryJobStore(clock=clock, retention=30 * 24 * 3600.0)
    await store.start()
    return store


@pytest.fixture
def endpoints(store: InMemoryJobStore) -> AsyncEndpoints:
    endpoints = AsyncEndpoints(store=store)

    @endpoints.add_handler
    async def cleanup(ctx: AsyncContext[Cleanup]) -> int:
        return ctx.request.days

    @endpoints.add_handler
    async def ping(ctx: AsyncContext[None]) -> str:
        return "pong"

    return endpoints


def scheduler_of(endpoints: AsyncEndpoints, clock: ManualClock | None = None) -> Scheduler:
    """The scheduler of ``endpoints``, measuring the time between its readings of the
    store's clock on ``clock``'s monotonic part (as a host's monotonic clock goes on
    through a step of its wall clock) when one is given."""
    scheduler = endpoints.scheduler()
    assert scheduler is not None
    if clock is not None:
        scheduler.monotonic = clock.monotonic
    return scheduler


async def fired_jobs(endpoints: AsyncEndpoints) -> list[Job]:
    """Every job, oldest first (all of them are the schedules' here)."""
    page = await endpoints.list_jobs(limit=500)
    return sorted(page.jobs, key=lambda job: job.created_at)


async def fired_dues(endpoints: AsyncEndpoints) -> list[str]:
    """The due time each fired job names (``x-schedule-due``), oldest job first."""
    return [dict(job.request.headers)["x-schedule-due"] for job in await fired_jobs(endpoints)]


async def test_the_cron_decorator_registers_the_handler_and_declares_its_schedule(
    endpoints: AsyncEndpoints,
) -> None:
    """The schedule's id is the job name; it is stored when declared, due at the next
    time the expression names."""

    @endpoints.cron("0 3 * * *", timezone="Europe/Berlin", tenant="ops")
    async def nightly(ctx: AsyncContext[None]) -> None:
        pass

    assert "nightly" in endpoints.handlers
    await endpoints.declare_schedules()
    (schedule,) = await endpoints.list_schedules()
    assert (schedule.id, schedule.name, schedule.cron) == ("nightly", "nightly", "0 3 * * *")
    assert (schedule.timezone, schedule.unique, schedule.tenant) == ("Europe/Berlin", True, "ops")
    assert schedule.next_run_at == datetime(2026, 1, 1, 2, tzinfo=UTC)  # 03:00 CET


async def test_each_cycle_enqueues_one_job_that_runs_the_handler(
    endpoints: AsyncEndpoints, clock: ManualClock
) -> None:
    """Ticks within a cycle enqueue nothing more; the next cycle enqueues the next job."""
    await endpoints.upsert_schedule("every-10s", "ping", "*/10 * * * * *")
    scheduler = scheduler_of(endpoints)
    await scheduler.tick()
    assert await fired_jobs(endpoints) == []
    clock.advance(10)
    await scheduler.tick()
    await scheduler.tick()
    assert await endpoints.drain() == 1
    clock.advance(10)
    await scheduler.tick()
    assert await endpoints.drain() == 1
    jobs = await fired_jobs(endpoints)
    assert [job.created_at - START for job in jobs] == [
        timedelta(seconds=10),
        timedelta(seconds=20),
    ]
    assert [job.result for job in jobs] == ["pong", "pong"]


async def test_a_cycle_job_names_its_schedule_and_its_due_time_in_headers(
    endpoints: AsyncEndpoints, clock: ManualClock
) -> None:
    """The handler reads which schedule and which cycle it runs for (``x-schedule-id``,
    ``x-schedule-due``); a cycle fired late still names its own due time."""
    seen: list[tuple[str | None, str | None]] = []

    @endpoints.add_handler
    async def report(ctx: AsyncContext[None]) -> None:
        seen.append((ctx.headers.get("x-schedule-id"), ctx.headers.get("x-schedule-due")))

    await endpoints.upsert_schedule("daily-report", "report", "0 6 * * *")
    clock.advance(6 * 3600 + 42.5)  # the scheduler comes 42.5 s after the cycle was due
    await scheduler_of(endpoints).tick()
    assert await endpoints.drain() == 1
    assert seen == [("daily-report", "2026-01-01T06:00:00.000Z")]
    (job,) = await fired_jobs(endpoints)
    assert job.created_at == START + timedelta(hours=6, seconds=42.5)


async def test_a_submission_cannot_pass_itself_off_as_a_cycle(
    endpoints: AsyncEndpoints,
) -> None:
    """The scheduler's headers are never captured from a submission (HTTP or `submit`),
    so a handler that reads them can trust them."""
    job = await endpoints.submit(
        "ping", headers={"X-Schedule-Due": "2026-01-01T06:00:00.000Z", "x-schedule-id": "s"}
    )
    stored = await endpoints.get_job(job.id)
    assert stored is not None and stored.request.headers == ()


async def test_missed_cycles_are_caught_up_with_one_job(
    endpoints: AsyncEndpoints, clock: ManualClock
) -> None:
    """A day without any scheduler (every minute: 1,440 cycles) brings one job, and the
    schedule is next due after now, not at the first missed cycle."""
    await endpoints.upsert_schedule("minutely", "ping", "* * * * *")
    clock.advance(24 * 3600 + 30)
    await scheduler_of(endpoints).tick()
    await scheduler_of(endpoints).tick()
    assert len(await fired_jobs(endpoints)) == 1
    (schedule,) = await endpoints.list_schedules()
    assert schedule.next_run_at == START + timedelta(days=1, minutes=1)


async def test_a_unique_schedule_skips_cycles_while_its_job_has_not_ended(
    endpoints: AsyncEndpoints, clock: ManualClock
) -> None:
    """With the first job still Queued, the next two cycles enqueue nothing; once it has
    run, the next cycle enqueues again."""
    await endpoints.upsert_schedule("s", "ping", "* * * * * *")
    scheduler = scheduler_of(endpoints)
    for _ in range(3):
        clock.advance(1)
        await scheduler.tick()
    assert len(await fired_jobs(endpoints)) == 1
    await endpoints.drain()
    clock.advance(1)
    await scheduler.tick()
    assert len(await fired_jobs(endpoints)) == 2


async def test_a_schedule_that_is_not_unique_fires_every_cycle(
    endpoints: AsyncEndpoints, clock: ManualClock
) -> None:
    """unique=False: one job per cycle even while the earlier ones wait."""
    await endpoints.upsert_schedule("s", "ping", "* * * * * *", unique=False)
    scheduler = scheduler_of(endpoints)
    for _ in range(3):
        clock.advance(1)
        await scheduler.tick()
    jobs = await fired_jobs(endpoints)
    assert [job.status for job in jobs] == [JobStatus.QUEUED] * 3


async def test_two_schedulers_on_one_store_fire_each_cycle_once(
    store: InMemoryJobStore, endpoints: AsyncEndpoints, clock: ManualClock
) -> None:
    """Two instances (two `AsyncEndpoints` on one store) tick at every cycle: one job per
    cycle."""
    other = AsyncEndpoints(store=store)
    await endpoints.upsert_schedule("s", "ping", "* * * * * *", unique=False)
    schedulers = [scheduler_of(endpoints), scheduler_of(other)]
    for _ in range(5):
        clock.advance(1)
        await asyncio.gather(*(scheduler.tick() for scheduler in schedulers))
    assert len(await fired_jobs(endpoints)) == 5


async def test_the_daily_job_across_spring_forward_runs_once_right_after_the_gap(
    endpoints: AsyncEndpoints, clock: ManualClock
) -> None:
    """02:30 Europe/Berlin, ticking every minute from 27 to 30 March 2026: one job per
    day, the one on the 29th at 03:00 CEST (01:00 UTC)."""
    clock.now = datetime(2026, 3, 27, 12, tzinfo=UTC).timestamp()
    await endpoints.upsert_schedule("s", "ping", "30 2 * * *", timezone="Europe/Berlin")
    await tick_every_minute(endpoints, clock, days=3)
    created = [job.created_at for job in await fired_jobs(endpoints)]
    assert created == [
        datetime(2026, 3, 28, 1, 30, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
    ]


async def test_the_daily_job_across_fall_back_runs_once_not_twice(
    endpoints: AsyncEndpoints, clock: ManualClock
) -> None:
    """02:30 Europe/Berlin from 24 to 26 October 2026: 02:30 happens twice on the 25th,
    the job runs once (at 02:30 CEST, 00:30 UTC)."""
    clock.now = datetime(2026, 10, 24, 12, tzinfo=UTC).timestamp()
    await endpoints.upsert_schedule("s", "ping", "30 2 * * *", timezone="Europe/Berlin")
    await tick_every_minute(endpoints, clock, days=2)
    created = [job.created_at for job in await fired_jobs(endpoints)]
    assert created == [
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        datetime(2026, 10, 26, 1, 30, tzinfo=UTC),
    ]


async def tick_every_minute(endpoints: AsyncEndpoints, clock: ManualClock, days: int) -> None:
    scheduler = scheduler_of(endpoints)
    for _ in range(days * 24 * 60):
        clock.advance(60)
        await scheduler.tick()
        await endpoints.drain()


async def test_a_schedule_body_is_validated_and_reaches_the_handler(
    endpoints: AsyncEndpoints, clock: ManualClock
) -> None:
    """The body is checked against the handler's model when the schedule is defined, and
    each cycle's job carries it, with the schedule's queue and tenant."""
    await endpoints.upsert_schedule(
        "purge", "cleanup", "* * * * *", body={"days": 30}, tenant="acme"
    )
    clock.advance(60)
    await scheduler_of(endpoints).tick()
    await endpoints.drain()
    (job,) = await fired_jobs(endpoints)
    assert (job.result, job.tenant) == (30, "acme")  # the body reached the handler


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"cron": "61 * * * *"}, ValueError, "minute"),
        ({"cron": "* * *"}, ValueError, "3 fields"),
        ({"timezone": "Mars/Olympus"}, ValueError, "unknown time zone 'Mars/Olympus'"),
        ({"name": "missing"}, UnknownJobNameError, "missing"),
        ({"body": {"days": "many"}}, JobValidationError, "request body"),
        ({"queue": "nowhere"}, ValueError, "unknown queue"),
        ({"tenant": ""}, ValueError, "tenant"),
        ({"schedule_id": ""}, ValueError, "schedule_id"),
        ({"schedule_id": None}, ValueError, "schedule_id"),
        ({"schedule_id": "purge\ud800"}, ValueError, "schedule_id"),
        ({"tenant": "acme\udcff"}, ValueError, "tenant"),
    ],
)
async def test_a_bad_schedule_raises_at_definition_and_stores_nothing(
    endpoints: AsyncEndpoints, arguments: dict[str, object], error: type[Exception], message: str
) -> None:
    """Expression, zone, handler, body, queue, tenant and id are checked first."""
    given: dict[str, object] = {
        "schedule_id": "purge",
        "name": "cleanup",
        "cron": "0 3 * * *",
        "body": {"days": 30},
        **arguments,
    }
    with pytest.raises(error, match=message):
        await endpoints.upsert_schedule(**given)  # type: ignore[arg-type]
    assert await endpoints.list_schedules() == []


async def test_a_bad_cron_decorator_raises_when_decorating_and_registers_nothing(
    endpoints: AsyncEndpoints,
) -> None:
    """An invalid expression or zone, a handler whose model needs a body, or a name no
    schedule id can have."""
    with pytest.raises(ValueError, match="hour"):

        @endpoints.cron("0 24 * * *")
        async def late(ctx: AsyncContext[None]) -> None:
            pass

    with pytest.raises(ValueError, match="unknown time zone"):

        @endpoints.cron("0 3 * * *", timezone="Nowhere/City")
        async def lost(ctx: AsyncContext[None]) -> None:
            pass

    with pytest.raises(JobValidationError):

        @endpoints.cron("0 3 * * *")
        async def needs_a_body(ctx: AsyncContext[Cleanup]) -> None:
            pass

    with pytest.raises(ValueError, match="schedule_id"):

        @endpoints.cron("0 3 * * *", name="n" * 256)
        async def too_long(ctx: AsyncContext[None]) -> None:
            pass

    for unique in ("no", 0, None):  # "no" would have read as a truthy unique
        with pytest.raises(ValueError, match="unique must be True or False"):

            @endpoints.cron("0 3 * * *", unique=unique)  # type: ignore[arg-type]
            async def unsure(ctx: AsyncContext[None]) -> None:
                pass

    with pytest.raises(ConfigurationError, match=r'write @endpoints.cron\("\*/5 \* \* \* \*"\)'):

        @endpoints.cron  # type: ignore[arg-type]
        async def bare(ctx: AsyncContext[None]) -> None:
            pass

    assert not {"late", "lost", "needs_a_body", "n" * 256, "unsure", "bare"} & set(
        endpoints.handlers
    )
    await endpoints.declare_schedules()
    assert await endpoints.list_schedules() == []


async def test_redeclaring_an_unchanged_schedule_keeps_its_due_cycle(
    endpoints: AsyncEndpoints, clock: ManualClock
) -> None:
    """A restart (declaring again, later) neither skips the cycle due nor repeats one."""

    @endpoints.cron("0 * * * *")
    async def hourly(ctx: AsyncContext[None]) -> None:
        pass

    await endpoints.declare_schedules()
    clock.advance(3600 + 600)  # the 01:00 cycle is due; nobody fired it
    await endpoints.declare_schedules()
    (schedule,) = await endpoints.list_schedules()
    assert schedule.next_run_at == START + timedelta(hours=1)
    await scheduler_of(endpoints).tick()
    assert len(await fired_jobs(endpoints)) == 1


async def test_a_removed_schedule_fires_no_more(
    endpoints: AsyncEndpoints, clock: ManualClock
) -> None:
    """remove_schedule says whether there was one (an id no schedule can have is a
    ValueError); its jobs stay."""
    await endpoints.upsert_schedule("s", "ping", "* * * * * *")
    clock.advance(1)
    await scheduler_of(endpoints).tick()
    assert await endpoints.remove_schedule("s") is True
    assert await endpoints.remove_schedule("s") is False
    with pytest.raises(ValueError, match="schedule_id"):
        await endpoints.remove_schedule(None)  # type: ignore[arg-type]
    clock.advance(5)
    await endpoints.drain()
    await scheduler_of(endpoints).tick()
    assert len(await fired_jobs(endpoints)) == 1


async def test_after_the_clock_is_set_back_a_schedule_by_the_clock_keeps_its_pace(
    endpoints: AsyncEndpoints, clock: ManualClock
) -> None:
    """An hour's step back of the store's clock: a schedule with a wildcard (every 10 s)
    is re-armed from the new time at the next tick and fires 10 s later, not an hour
    later; a daily 00:00:10 schedule that ran is not run again when the clock passes
    00:00:10 a second time (it waits for tomorrow, as Debian's cron does)."""
    await endpoints.upsert_schedule("pace", "ping", "*/10 * * * * *", unique=False)
    await endpoints.upsert_schedule("daily", "ping", "10 0 0 * * *", unique=False)
    scheduler = scheduler_of(endpoints, clock)
    clock.advance(10)
    await scheduler.tick()
    assert len(await fired_jobs(endpoints)) == 2
    clock.step_wall(-3600)
    await scheduler.tick()  # sees the step, re-arms
    clock.advance(10)
    await scheduler.tick()
    clock.advance(3600 - 10)
    await scheduler.tick()
    by_id = {schedule.id: schedule for schedule in await endpoints.list_schedules()}
    assert by_id["daily"].next_run_at == START + timedelta(days=1, seconds=10)
    assert sorted(await fired_dues(endpoints)) == [
        "2025-12-31T23:00:20.000Z",  # pace, 10 s after the step
        "2025-12-31T23:00:30.000Z",  # pace, the cycle due when the hour was let pass
        "2026-01-01T00:00:10.000Z",  # pace and daily, before the step; daily not again
        "2026-01-01T00:00:10.000Z",
    ]


async def test_a_step_back_by_whole_periods_loses_no_cycle(
    endpoints: AsyncEndpoints, clock: ManualClock
) -> None:
    """Every 2 s, fired at 00:00:02; 2 s later (the tick that wakes for 00:00:04) the
    clock has stepped back exactly an hour, so the tick reads 23:00:04 and a little: the
    cycle due at 23:00:04 (the pace's next, on the new time) fires at once, not 4 s after
    the last one."""
    await endpoints.upsert_schedule("pace", "ping", "*/2 * * * * *", unique=False)
    scheduler = scheduler_of(endpoints, clock)
    clock.advance(2)
    await scheduler.tick()
    clock.advance(2.001)
    clock.step_wall(-3600)
    await scheduler.tick()  # sees the step, re-arms to a cycle already due: fires it
    assert sorted(await fired_dues(endpoints)) == [
        "2025-12-31T23:00:04.000Z",
        "2026-01-01T00:00:02.000Z",
    ]
    clock.advance(2)
    await scheduler.tick()
    assert len(await fired_dues(endpoints)) == 3
    assert min(await fired_dues(endpoints)) == "2025-12-31T23:00:04.000Z"
    assert "2025-12-31T23:00:06.000Z" in await fired_dues(endpoints)


async def test_a_cycle_another_scheduler_fired_after_this_ones_reading_is_not_re_armed(
    endpoints: AsyncEndpoints, clock: ManualClock
) -> None:
    """Hourly; B reads the clock at 00:59:59.5, A fires 01:00, and the clock steps back
    two hours: B, first to see the step, re-arms to 00:00 on the new time (02:00 on the
    old), not to 23:00, which is the 01:00 cycle A fired; A, seeing it next, keeps it."""
    await endpoints.upsert_schedule("hourly", "ping", "0 * * * *", unique=False)
    a, b = scheduler_of(endpoints, clock), scheduler_of(endpoints, clock)
    clock.advance(3599.5)
    await b.tick()
    clock.advance(0.5)
    await a.tick()
    clock.advance(0.1)
    clock.step_wall(-2 * 3600)
    clock.advance(0.4)
    for scheduler in (b, a, b):
        await scheduler.tick()
    (schedule,) = await endpoints.list_schedules()
    assert schedule.next_run_at == START
    clock.advance(3600)
    await a.tick()
    assert sorted(await fired_dues(endpoints)) == [
        "2026-01-01T00:00:00.000Z",  # 02:00 on the old time
        "2026-01-01T01:00:00.000Z",
    ]


async def test_a_scheduler_stalled_for_long_re_arms_after_the_cycles_fired_meanwhile(
    endpoints: AsyncEndpoints, clock: ManualClock
) -> None:
    """Every minute; B read the clock at 00:00:00.5 and then stalled (its store calls
    failing) while A fired ten cycles; the clock steps back 150 s at 00:10:30. B re-arms
    from A's last cycle (00:10, which is 00:07:30 on the new time), not from its own
    reading ten minutes back: the one cycle it fires is 00:08:00 on the new time, 30 s
    after A's last, at the schedule's pace."""
    await endpoints.upsert_schedule("minutely", "ping", "* * * * *", unique=False)
    a, b = scheduler_of(endpoints, clock), scheduler_of(endpoints, clock)
    clock.advance(0.5)
    await b.tick()
    for _ in range(10):
        clock.advance(60)
        await a.tick()
    clock.advance(30)
    fired_by_a = Counter(await fired_dues(endpoints))
    clock.step_wall(-150)
    await b.tick()
    await b.tick()
    fired_by_b = Counter(await fired_dues(endpoints)) - fired_by_a
    assert fired_by_b == Counter(["2026-01-01T00:08:00.000Z"])
    (schedule,) = await endpoints.list_schedules()
    assert schedule.next_run_at == START + timedelta(minutes=9)


async def test_a_scheduler_that_starts_after_a_step_back_re_arms_at_its_first_tick(
    endpoints: AsyncEndpoints, clock: ManualClock
) -> None:
    """The clock was set back while no scheduler ran: the first tick of a new one
    re-arms the schedules that run by the clock; without a step nothing moves."""
    await endpoints.upsert_schedule("pace", "ping", "* * * * *", unique=False)
    clock.advance(60)
    await scheduler_of(endpoints, clock).tick()
    (before,) = await endpoints.list_schedules()
    await scheduler_of(endpoints, clock).tick()
    assert await endpoints.list_schedules() == [before]
    clock.step_wall(-2 * 3600)
    await scheduler_of(endpoints, clock).tick()
    (after,) = await endpoints.list_schedules()
    assert after.next_run_at == START - timedelta(hours=2) + timedelta(minutes=2)


async def test_a_small_step_back_is_waited_out_and_no_cycle_runs_twice(
    endpoints: AsyncEndpoints, clock: ManualClock
) -> None:
    """Every minute, fired at 00:01:00; the clock steps back 2.5 s (an NTP correction):
    the schedule keeps its due time (00:02:00, 62.5 s later in real time) rather than
    running the 00:01:00 cycle again."""
    await endpoints.upsert_schedule("minutely", "ping", "* * * * *", unique=False)
    scheduler = scheduler_of(endpoints, clock)
    clock.advance(60)
    await scheduler.tick()
    clock.advance(0.5)
    clock.step_wall(-2.5)
    await scheduler.tick()
    clock.advance(62.5)
    await scheduler.tick()
    assert await fired_dues(endpoints) == ["2026-01-01T00:01:00.000Z", "2026-01-01T00:02:00.000Z"]


async def test_an_idle_scheduler_notices_a_step_back_too(
    endpoints: AsyncEndpoints, clock: ManualClock
) -> None:
    """A scheduler that has fired nothing yet (an hourly schedule, fired elsewhere): a
    2 h step back is seen at its next tick (the store's clock is read every tick) and
    re-arms the schedule to the first hour after the new time."""
    await endpoints.upsert_schedule("hourly", "ping", "0 * * * *", unique=False)
    clock.advance(3600)
    await scheduler_of(endpoints, clock).tick()  # another scheduler fires 01:00
    idle = scheduler_of(endpoints, clock)
    await idle.tick()
    clock.advance(30 * 60)
    clock.step_wall(-2 * 3600)  # 01:30 -> 23:30 the day before
    await idle.tick()
    (schedule,) = await endpoints.list_schedules()
    assert schedule.next_run_at == START


async def test_a_first_tick_never_moves_back_a_cycle_another_scheduler_just_fired(
    endpoints: AsyncEndpoints, store: InMemoryJobStore, clock: ManualClock
) -> None:
    """A new scheduler reads the clock, then the list; another fires the cycle due in
    between: the cycle is not taken for one pushed ahead by a step (fired once)."""
    await endpoints.upsert_schedule("pace", "ping", "* * * * * *", unique=False)
    clock.advance(0.5)
    other = scheduler_of(endpoints)
    await other.tick()
    listed = store.list_schedules

    async def list_after_the_other_fired() -> list[Schedule]:
        clock.advance(0.6)
        await other.tick()  # fires the cycle due at START + 1 s
        return await listed()

    store.list_schedules = list_after_the_other_fired  # type: ignore[method-assign]
    await scheduler_of(endpoints).tick()
    store.list_schedules = listed  # type: ignore[method-assign]
    (schedule,) = await endpoints.list_schedules()
    assert schedule.next_run_at == START + timedelta(seconds=2)
    clock.advance(1)
    await other.tick()
    assert await fired_dues(endpoints) == ["2026-01-01T00:00:01.000Z", "2026-01-01T00:00:02.000Z"]


async def test_the_scheduler_sleeps_until_the_next_cycle_and_at_most_a_second(
    endpoints: AsyncEndpoints, clock: ManualClock
) -> None:
    """After firing, a tick returns the time to the next cycle it knows; with none known
    (or none soon), `CAP`; with a backlog of due schedules, 0 (no sleep), and never 0
    otherwise (no spinning)."""
    scheduler = scheduler_of(endpoints)
    assert await scheduler.tick() == CAP
    await endpoints.upsert_schedule("s", "ping", "*/10 * * * * *", unique=False)
    clock.advance(10.75)
    assert await scheduler.tick() == CAP  # next cycle in 9.25 s
    clock.advance(9)
    assert 0 < await scheduler.tick() <= 0.25
    for n in range(BATCH + 1):
        await endpoints.upsert_schedule(f"many-{n}", "ping", "0 0 1 1 *")
    clock.advance(366 * 24 * 3600)
    assert await scheduler.tick() == 0.0
    assert 0 < await scheduler.tick() <= CAP


async def test_a_due_time_noted_by_this_process_is_slept_to_not_the_cap(
    endpoints: AsyncEndpoints, clock: ManualClock
) -> None:
    """A schedule this process stored (`note_due`) is known to the scheduler: its next
    tick comes at that schedule's due time, not `CAP` later."""
    scheduler = scheduler_of(endpoints)
    assert await scheduler.tick() == CAP
    scheduler.note_due(datetime.fromtimestamp(clock(), UTC) + timedelta(seconds=0.3))
    assert 0 < await scheduler.tick() <= 0.3


async def test_a_due_time_passing_during_a_tick_is_not_taken_for_fired_elsewhere(
    endpoints: AsyncEndpoints, store: InMemoryJobStore, clock: ManualClock
) -> None:
    """A scheduler wakes at the due time it knows a hair early: the store finds nothing due
    yet, and the due time passes before the tick's other read. That cycle was not fired
    elsewhere: the next tick comes at once, not `CAP` later (with every process waking at
    that moment, all of them would wait, and the cycle fire a second late)."""
    stored = await endpoints.upsert_schedule("s", "ping", "*/10 * * * * *", unique=False)
    assert stored.next_run_at is not None
    scheduler = scheduler_of(endpoints)
    await scheduler.tick()  # the first tick (it realigns)
    scheduler.note_due(stored.next_run_at)
    to_due = (stored.next_run_at - datetime.fromtimestamp(clock(), UTC)).total_seconds()
    clock.advance(to_due - 0.001)  # a hair before the due time
    due_schedules = store.due_schedules

    async def time_passes(limit: int) -> list[Schedule]:
        found = await due_schedules(limit)
        clock.advance(0.002)  # the due time passes meanwhile
        return found

    store.due_schedules = time_passes  # type: ignore[method-assign]
    assert await scheduler.tick() < CAP
    store.due_schedules = due_schedules  # type: ignore[method-assign]
    assert await scheduler.tick() > 0
    assert len(await fired_jobs(endpoints)) == 1


async def test_a_schedule_upserted_while_the_scheduler_sleeps_wakes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With real time and a scheduler sleeping its longest (made 30 s here), a schedule
    upserted in this process runs its first cycle on time: the upsert wakes the loop."""
    monkeypatch.setattr(_scheduler, "CAP", 30.0)
    store = InMemoryJobStore()
    endpoints = AsyncEndpoints(store=store)
    ran, looked = asyncio.Event(), asyncio.Event()
    due_schedules = store.due_schedules

    async def noting(limit: int) -> list[Schedule]:
        found = await due_schedules(limit)
        looked.set()
        return found

    store.due_schedules = noting  # type: ignore[method-assign]

    @endpoints.add_handler
    async def ping(ctx: AsyncContext[None]) -> None:
        ran.set()

    async with endpoints.running(workers=True):
        await asyncio.wait_for(looked.wait(), timeout=10)  # the first tick: it sleeps 30 s
        await asyncio.sleep(0)
        await endpoints.upsert_schedule("s", "ping", "* * * * * *")
        await asyncio.wait_for(ran.wait(), timeout=10)


async def test_fired_jobs_are_announced_as_submitted(
    endpoints: AsyncEndpoints, clock: ManualClock
) -> None:
    """Lifecycle listeners hear of each cycle's job as of any submission."""
    heard: list[LifecycleEvent] = []
    endpoints.events.subscribe(heard.append)
    await endpoints.upsert_schedule("s", "ping", "* * * * * *")
    clock.advance(1)
    await scheduler_of(endpoints).tick()
    assert [event.kind for event in heard] == [EventKind.SUBMITTED]


async def test_running_workers_runs_the_scheduler() -> None:
    """With workers (real time here), a schedule declared with ``cron`` runs by itself;
    without workers there is no scheduler."""
    endpoints = AsyncEndpoints(store=InMemoryJobStore())
    ran = asyncio.Event()

    @endpoints.cron("* * * * * *")
    async def every_second(ctx: AsyncContext[None]) -> None:
        ran.set()

    async with endpoints.running(workers=False):
        assert await endpoints.list_schedules() == []
    async with endpoints.running(workers=True):
        await asyncio.wait_for(ran.wait(), timeout=10)


SCHEDULE_METHODS = {
    "upsert_schedule",
    "remove_schedule",
    "list_schedules",
    "schedule_time",
    "due_schedules",
}


async def test_schedules_need_a_schedule_store() -> None:
    """A store without the capability: ConfigurationError naming it."""

    class Bare:  # a JobStore without the schedule methods
        def __init__(self) -> None:
            self._inner = InMemoryJobStore()

        def __getattr__(self, name: str) -> Any:
            if name in SCHEDULE_METHODS:
                raise AttributeError(name)
            return getattr(self._inner, name)

    endpoints = AsyncEndpoints(store=Bare())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="ScheduleStore"):
        await endpoints.list_schedules()
    with pytest.raises(ConfigurationError, match="ScheduleStore"):

        @endpoints.cron("0 3 * * *")
        async def nightly(ctx: AsyncContext[None]) -> None:
            pass

    assert endpoints.scheduler() is None


class FlakyStore(InMemoryJobStore):
    """Unreachable for its first ``outages`` schedule calls."""

    def __init__(self, outages: int) -> None:
        super().__init__()
        self.outages = outages

    def _maybe_down(self) -> None:
        if self.outages > 0:
            self.outages -= 1
            raise StoreUnavailableError("down for the test")

    async def upsert_schedule(self, schedule: Schedule) -> Schedule:
        self._maybe_down()
        return await super().upsert_schedule(schedule)

    async def due_schedules(self, limit: int) -> list[Schedule]:
        self._maybe_down()
        return await super().due_schedules(limit)


async def test_schedules_are_declared_and_fired_once_the_store_is_back() -> None:
    """A store unreachable when the workers start: the declared schedule is stored as
    soon as it answers, and the scheduler, which backs off meanwhile, fires it."""
    store = FlakyStore(outages=2)
    endpoints = AsyncEndpoints(store=store)
    ran = asyncio.Event()

    @endpoints.cron("* * * * * *")
    async def every_second(ctx: AsyncContext[None]) -> None:
        ran.set()

    async with endpoints.running(workers=True):
        await asyncio.wait_for(ran.wait(), timeout=15)
    assert store.outages == 0


async def test_a_unique_schedule_whose_job_failed_for_good_goes_on(
    endpoints: AsyncEndpoints, clock: ManualClock
) -> None:
    """A cycle's job that ran out of retries (Failed: dead-lettered) is terminal: the next
    cycle fires (a dead job never stops a unique schedule)."""

    async def broken(ctx: AsyncContext[None]) -> None:
        raise RuntimeError("always")

    endpoints.add_handler(broken, max_retries=0)
    await endpoints.upsert_schedule("s", "broken", "* * * * * *")
    scheduler = scheduler_of(endpoints)
    clock.advance(1)
    await scheduler.tick()
    await endpoints.drain()
    clock.advance(1)
    await scheduler.tick()
    jobs = await fired_jobs(endpoints)
    assert [job.status for job in jobs] == [JobStatus.FAILED, JobStatus.QUEUED]


class ForgetfulStore(InMemoryJobStore):
    """An in-memory store that can lose its schedules, as a Redis restarted empty does,
    and says so with a new epoch (a `ScheduleEpochStore`)."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock=clock)
        self.epoch = "first"

    async def schedule_epoch(self) -> str:
        return self.epoch

    def lose_schedules(self) -> None:
        for schedule_id in list(self._schedule_book.schedules):
            self._schedule_book.remove(schedule_id)
        self.epoch = "after a loss"


@pytest.fixture
def forgetful(clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> AsyncEndpoints:
    """Endpoints on a `ForgetfulStore` declaring ``nightly``; every tick reads the epoch."""
    monkeypatch.setattr(_scheduler, "EPOCH_EVERY", 0.0)
    endpoints = AsyncEndpoints(store=ForgetfulStore(clock))

    @endpoints.cron("0 3 * * *")
    async def nightly(ctx: AsyncContext[None]) -> None:
        pass

    return endpoints


async def test_the_first_tick_declares_and_a_changed_epoch_declares_again(
    forgetful: AsyncEndpoints, caplog: pytest.LogCaptureFixture
) -> None:
    """The scheduler stores the declared schedules at its first tick, not again while the
    store's epoch stays (a removal at run time sticks), and again once it changed (the
    store lost its schedules), with a warning."""
    store = forgetful.store
    assert isinstance(store, ForgetfulStore)
    scheduler = scheduler_of(forgetful)
    await scheduler.tick()
    assert [s.id for s in await forgetful.list_schedules()] == ["nightly"]
    await store.remove_schedule("nightly")
    await scheduler.tick()
    assert await forgetful.list_schedules() == []
    store.lose_schedules()
    await scheduler.tick()
    assert [s.id for s in await forgetful.list_schedules()] == ["nightly"]
    assert "1 declared schedule(s) stored again" in caplog.text


async def test_a_store_that_cannot_lose_its_schedules_is_declared_to_once(
    endpoints: AsyncEndpoints, store: InMemoryJobStore
) -> None:
    """Without an epoch (the in-memory store) the first tick declares and no later one:
    a removal at run time sticks."""

    @endpoints.cron("0 3 * * *")
    async def nightly(ctx: AsyncContext[None]) -> None:
        pass

    scheduler = scheduler_of(endpoints)
    await scheduler.tick()
    await store.remove_schedule("nightly")
    await scheduler.tick()
    assert await endpoints.list_schedules() == []


async def test_an_epoch_that_cannot_be_read_stops_no_firing(
    forgetful: AsyncEndpoints,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A store whose epoch read fails (other than by being unreachable): logged, and the
    tick still fires what is due."""
    store = forgetful.store

    async def broken() -> str:
        raise RuntimeError("no epoch here")

    monkeypatch.setattr(store, "schedule_epoch", broken)
    await forgetful.upsert_schedule("ping-often", "nightly", "* * * * * *")
    clock.advance(1)
    await scheduler_of(forgetful).tick()
    assert len(await fired_jobs(forgetful)) == 1
    assert "could not be stored" in caplog.text


async def test_a_process_that_declares_nothing_never_reads_the_epoch(
    clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No declared schedule, no epoch reads: an idle tick stays two store calls."""
    store = ForgetfulStore(clock)
    reads = CallCount(monkeypatch, store, "schedule_epoch")
    await scheduler_of(AsyncEndpoints(store=store)).tick()
    assert reads.count == 0


async def test_a_schedule_removed_while_the_declaration_runs_stays_removed(
    endpoints: AsyncEndpoints, store: InMemoryJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`remove_schedule` has the last word over a declaration under way: a declared
    schedule removed while an earlier one is being stored is not stored after it."""

    @endpoints.cron("0 3 * * *")
    async def first(ctx: AsyncContext[None]) -> None:
        pass

    @endpoints.cron("0 4 * * *")
    async def second(ctx: AsyncContext[None]) -> None:
        pass

    upsert = store.upsert_schedule

    async def remove_second_meanwhile(schedule: Schedule) -> Schedule:
        if schedule.id == "first":
            await endpoints.remove_schedule("second")
        return await upsert(schedule)

    monkeypatch.setattr(store, "upsert_schedule", remove_second_meanwhile)
    assert await endpoints.declare_schedules() == 1
    assert [s.id for s in await endpoints.list_schedules()] == ["first"]


async def test_a_schedule_first_stored_in_the_repeated_hour_waits_for_its_next_day() -> None:
    """Declared at 02:05 CET on 2027-10-31, the second 02:05 of Europe/Berlin's night
    (02:30 CEST has gone by): no job that night however often the scheduler ticks, and
    the next run is 02:30 CET the next day (the scheduler once found such a schedule due
    at every tick, for up to an hour)."""
    clock = ManualClock(datetime(2027, 10, 31, 1, 5, tzinfo=UTC).timestamp())
    store = InMemoryJobStore(clock=clock)
    endpoints = AsyncEndpoints(store=store)

    @endpoints.cron("30 2 * * *", name="Nightly", timezone="Europe/Berlin", unique=False)
    async def nightly(ctx: AsyncContext[None]) -> None:
        return None

    async with endpoints.running(workers=False):
        await endpoints.declare_schedules()
        scheduler = endpoints.scheduler()
        assert scheduler is not None
        waits = []
        for _ in range(5):
            waits.append(await scheduler.tick())
            clock.advance(1)
        [schedule] = await endpoints.list_schedules()
        assert (await endpoints.list_jobs()).jobs == []
    assert schedule.next_run_at == datetime(2027, 11, 1, 1, 30, tzinfo=UTC)
    assert all(wait > 0 for wait in waits)


async def test_a_cron_declared_once_the_scheduler_runs_is_refused_naming_upsert_schedule(
    endpoints: AsyncEndpoints,
) -> None:
    """``@endpoints.cron`` while this process's scheduler runs would never be stored (the
    scheduler stores the declared schedules when it starts): a ConfigurationError says so
    and names ``upsert_schedule``; nothing is registered. Once it stopped, it is taken."""

    async def hourly(ctx: AsyncContext[None]) -> None:
        return None

    async with endpoints.running():
        with pytest.raises(ConfigurationError, match="upsert_schedule"):
            endpoints.cron("0 * * * *")(hourly)
        assert "hourly" not in endpoints.handlers
    endpoints.cron("0 * * * *")(hourly)
    assert "hourly" in endpoints.handlers


async def test_a_declaration_replacing_another_definition_warns_naming_what_changed(
    store: InMemoryJobStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Two processes' code declaring one schedule differently replace each other's at
    each start: the one that replaces a different stored definition warns, naming the
    fields changed; declaring the same definition again says nothing."""
    first, second = AsyncEndpoints(store=store), AsyncEndpoints(store=store)

    async def tick(ctx: AsyncContext[None]) -> None:
        return None

    first.cron("* * * * * *")(tick)
    second.cron("*/5 * * * * *", timezone="Europe/Berlin")(tick)
    caplog.set_level(logging.WARNING, logger="async_endpoints")
    await first.declare_schedules()
    await first.declare_schedules()
    assert "replaces the stored definition" not in caplog.text
    await second.declare_schedules()
    [warned] = [r for r in caplog.records if "replaces the stored definition" in r.getMessage()]
    assert "cron '* * * * * *' -> '*/5 * * * * *'" in warned.getMessage()
    assert "timezone 'UTC' -> 'Europe/Berlin'" in warned.getMessage()
    [schedule] = await second.list_schedules()
    assert schedule.cron == "*/5 * * * * *"
