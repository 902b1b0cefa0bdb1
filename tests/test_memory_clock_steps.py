"""Steps of the wall clock on the in-memory store: durations are measured on the monotonic
clock, so a step of an hour either way re-runs nothing, stretches nothing and drops nothing
early; the wall clock only stamps the job's times."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

import pytest

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    InMemoryJobStore,
    JobError,
    JobStatus,
    NewJob,
)
from async_endpoints.testing import ManualClock

HOUR = 3600.0
STEPS = [pytest.param(HOUR, id="forward 1 h"), pytest.param(-HOUR, id="back 1 h")]
BOOM = JobError("boom", "RuntimeError")


def new_job() -> NewJob:
    return NewJob(uuid.uuid4(), "Echo", 3)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def test_a_manual_clock_steps_its_wall_part_alone_and_advances_both() -> None:
    """step_wall moves the wall clock only (either way); advance moves both, forward only."""
    clock = ManualClock(start=1000.0)
    clock.step_wall(-HOUR)
    assert (clock(), clock.monotonic()) == (1000.0 - HOUR, 0.0)
    clock.advance(2)
    assert (clock(), clock.monotonic()) == (1002.0 - HOUR, 2.0)
    with pytest.raises(ValueError):
        clock.advance(-1)


@pytest.mark.parametrize("step", STEPS)
async def test_a_wall_step_while_a_handler_runs_keeps_its_lease(
    clock: ManualClock, step: float
) -> None:
    """The claim is neither recovered (no second run, no retry used) nor lost at renewal."""
    store = InMemoryJobStore(clock=clock)
    await store.enqueue(new_job())
    (claim,) = await store.claim(1, lease=30)
    clock.step_wall(step)
    clock.advance(20)
    assert await store.recover() == []
    assert await store.renew([claim], lease=30) == set()
    clock.advance(20)  # 40 s after the claim, 20 s after the renewal
    assert await store.recover() == []
    done = await store.complete(claim, "once")
    assert done is not None and (done.status, done.retry_count) == (JobStatus.COMPLETED, 0)


@pytest.mark.parametrize("step", STEPS)
async def test_a_wall_step_while_a_retry_waits_neither_stretches_nor_shortens_its_delay(
    clock: ManualClock, step: float
) -> None:
    """A retry due in 2 s is due 2 s later whatever the wall clock did meanwhile."""
    store = InMemoryJobStore(clock=clock)
    await store.enqueue(new_job())
    (claim,) = await store.claim(1, lease=30)
    scheduled = await store.fail(claim, BOOM, retry_in=2)
    assert scheduled.run_at == scheduled.last_updated_at + timedelta(seconds=2)
    clock.step_wall(step)
    clock.advance(1.9)
    assert await store.claim(1, lease=30) == []
    clock.advance(0.1)
    (retry,) = await store.claim(1, lease=30)
    assert retry.job.id == claim.job.id and retry.job.retry_count == 1


@pytest.mark.parametrize("step", STEPS)
async def test_a_wall_step_while_a_delayed_job_waits_neither_stretches_nor_shortens_it(
    clock: ManualClock, step: float
) -> None:
    """A job submitted with a 2 s delay is due 2 s later whatever the wall clock did."""
    store = InMemoryJobStore(clock=clock)
    job = await store.enqueue(NewJob(uuid.uuid4(), "Echo", 3, delay=2))
    assert job.run_at == job.created_at + timedelta(seconds=2)
    clock.step_wall(step)
    clock.advance(1.9)
    assert await store.claim(1, lease=30) == []
    clock.advance(0.1)
    assert [claim.job.id for claim in await store.claim(1, lease=30)] == [job.id]


async def test_an_idle_worker_is_woken_when_a_retry_is_due_despite_a_step_back(
    clock: ManualClock,
) -> None:
    """wait_for_work returns once the retry is due, not an hour of wall clock later."""
    store = InMemoryJobStore(clock=clock)
    await store.start()
    await store.enqueue(new_job())
    (claim,) = await store.claim(1, lease=30)
    await store.fail(claim, BOOM, retry_in=2)
    assert await store.claim(1, lease=30) == []  # not due yet; the wake-up is consumed
    clock.step_wall(-HOUR)
    clock.advance(2)
    async with asyncio.timeout(5):  # due by the manual clock: no real wait at all
        await store.wait_for_work(60)
    assert len(await store.claim(1, lease=30)) == 1


@pytest.mark.parametrize("step", [HOUR, 25 * HOUR, -HOUR])
async def test_a_wall_step_right_after_completion_drops_the_job_only_after_its_retention(
    clock: ManualClock, step: float
) -> None:
    """A finished job stays readable for its whole retention, and no longer."""
    store = InMemoryJobStore(retention=60, clock=clock)
    job = await store.enqueue(new_job())
    (claim,) = await store.claim(1, lease=30)
    await store.complete(claim, "kept")
    clock.step_wall(step)
    await store.recover()
    assert (await store.get(job.id)).result == "kept"
    clock.advance(59)
    assert (await store.get(job.id)).result == "kept"
    clock.advance(1)
    await store.recover()
    assert await store.get(job.id) is None


async def test_the_job_times_follow_the_wall_clock(clock: ManualClock) -> None:
    """created_at and the other times are wall-clock times, steps included."""
    store = InMemoryJobStore(clock=clock)
    before = await store.enqueue(new_job())
    clock.step_wall(-HOUR)
    after = await store.enqueue(new_job())
    assert after.created_at - before.created_at == timedelta(hours=-1)


class SteppedWallClock:
    """The host's monotonic clock, and a wall clock a test can step (as NTP would)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic()


async def test_a_live_handler_longer_than_claim_timeout_runs_once_across_wall_steps() -> None:
    """The real pool: +1 h then -1 h steps while a 3.5 s handler runs (claim_timeout 1 s)."""
    wall = SteppedWallClock()
    engine = AsyncEndpoints(
        store=InMemoryJobStore(clock=wall), claim_timeout=1.0, recovery_interval=0.1
    )
    runs = 0
    started = asyncio.Event()

    async def slow(ctx: AsyncContext[None]) -> str:
        nonlocal runs
        runs += 1
        started.set()
        await asyncio.sleep(3.5)
        return "once"

    engine.add_handler(slow)
    async with engine.running():
        job = await engine.submit("slow")
        async with asyncio.timeout(5):
            await started.wait()
        wall.offset = HOUR
        await asyncio.sleep(1.2)  # renewals and recovery passes after the step forward
        wall.offset = -HOUR
        done = await engine.wait_for(job.id, timeout=10)
    assert (done.status, done.result, done.retry_count, runs) == (JobStatus.COMPLETED, "once", 0, 1)
