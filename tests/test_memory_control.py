"""What is particular to the in-memory store's control and listing (the contract suite
covers what every store shares): cancel listeners called in place, stale places in its
ordered structures, requeue out of the retained form, and cursors over structures that
are compacted as jobs come and go."""

from __future__ import annotations

import logging
import uuid

import pytest

from async_endpoints import InMemoryJobStore, JobError, JobRequest, JobStatus, NewJob
from async_endpoints._lifecycle import InvalidTransitionError
from async_endpoints._listing import encode_cursor, filters_of
from async_endpoints.testing import ManualClock

BOOM = JobError("boom", "RuntimeError")
REQUEST = JobRequest(
    body='{"a": 1}', headers=(("x-trace", "a"),), query_string="q=1", route_params={"t": "x"}
)


def new_job(queue: str = "default", delay: float = 0.0) -> NewJob:
    return NewJob(uuid.uuid4(), "Echo", 1, REQUEST, queue, delay)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def store(clock: ManualClock) -> InMemoryJobStore:
    store = InMemoryJobStore(clock=clock)
    await store.start()
    return store


async def test_cancel_listeners_hear_a_running_job_before_cancel_returns(
    store: InMemoryJobStore,
) -> None:
    """Listeners are called in place, with the job id, once per cancelled running job."""
    heard: list[uuid.UUID] = []
    store.add_cancel_listener(heard.append)
    job = await store.enqueue(new_job())
    await store.claim(1, lease=30)
    await store.cancel(job.id)
    assert heard == [job.id]
    await store.cancel(job.id)  # terminal now: nothing to push
    assert heard == [job.id]


async def test_a_failing_cancel_listener_is_logged_and_the_others_still_hear(
    store: InMemoryJobStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A listener that raises neither breaks the cancel nor keeps the next listener deaf."""
    heard: list[uuid.UUID] = []

    def broken(job_id: uuid.UUID) -> None:
        raise RuntimeError("listener bug")

    store.add_cancel_listener(broken)
    store.add_cancel_listener(heard.append)
    job = await store.enqueue(new_job())
    await store.claim(1, lease=30)
    with caplog.at_level(logging.ERROR, logger="async_endpoints"):
        canceled = await store.cancel(job.id)
    assert canceled is not None and canceled.status is JobStatus.CANCELED
    assert heard == [job.id] and "listener bug" in caplog.text


async def test_cancel_listeners_hear_nothing_of_waiting_jobs(store: InMemoryJobStore) -> None:
    """Cancelling a Queued or Scheduled job has no running handler to stop."""
    heard: list[uuid.UUID] = []
    store.add_cancel_listener(heard.append)
    for spec in (new_job(), new_job(delay=60)):
        await store.cancel((await store.enqueue(spec)).id)
    assert heard == []


async def test_a_job_cancelled_and_requeued_while_waiting_is_claimed_from_the_tail(
    store: InMemoryJobStore,
) -> None:
    """The place a cancelled job left in its queue is never used again."""
    first, second = [await store.enqueue(new_job()) for _ in range(2)]
    await store.cancel(first.id)
    await store.requeue(first.id)
    claims = await store.claim(5, lease=30)
    assert [claim.job.id for claim in claims] == [second.id, first.id]


async def test_a_requeued_job_is_not_promoted_early_by_its_old_schedule_entry(
    store: InMemoryJobStore, clock: ManualClock
) -> None:
    """Cancelled while delayed 10 s, requeued, then retried in 100 s: due at 100 s, not 10."""
    job = await store.enqueue(new_job(delay=10))
    await store.cancel(job.id)
    await store.requeue(job.id)
    (claim,) = await store.claim(1, lease=30)
    await store.fail(claim, BOOM, retry_in=100)
    clock.advance(10)
    assert await store.claim(1, lease=30) == []
    clock.advance(90)
    assert [claim.job.id for claim in await store.claim(1, lease=30)] == [job.id]


async def test_a_job_with_an_old_and_a_new_timer_entry_for_the_same_moment_runs_once(
    store: InMemoryJobStore, clock: ManualClock
) -> None:
    """Delayed 10 s, cancelled, requeued, claimed and retried in 10 s without time passing:
    both entries are due at 10 s, and the job is promoted and claimed once."""
    other = await store.enqueue(new_job(delay=3600))  # keeps the old entry on the timer
    job = await store.enqueue(new_job(delay=10))
    await store.cancel(job.id)
    await store.requeue(job.id)
    (claim,) = await store.claim(1, lease=30)
    await store.fail(claim, BOOM, retry_in=10)
    clock.advance(10)
    assert [claim.job.id for claim in await store.claim(5, lease=30)] == [job.id]
    assert await store.claim(5, lease=30) == []
    assert await store.count_waiting() == 1  # the other job, still due in an hour
    assert (await store.get(other.id)).status is JobStatus.SCHEDULED


async def test_requeue_takes_a_failed_job_out_of_the_retained_jobs_whole(
    store: InMemoryJobStore,
) -> None:
    """The retained form gives back the whole request, queue and times; the job is live
    again and no longer counted as Failed."""
    spec = new_job(queue="low")
    await store.enqueue(spec)
    (claim,) = await store.claim(1, lease=30, queues=["low"])
    failed = await store.fail(claim, BOOM, retry_in=None)
    again = await store.requeue(spec.id)
    assert again is not None and again.status is JobStatus.QUEUED
    assert (again.request, again.queue, again.error) == (REQUEST, "low", BOOM)
    assert (again.created_at, again.started_at) == (failed.created_at, failed.started_at)
    assert (again.retry_count, again.completed_at) == (0, None)
    (stats,) = await store.queue_stats(["low"])
    assert (stats.queued, stats.failed) == (1, 0)
    assert (await store.list_jobs(status=JobStatus.FAILED)).jobs == []


async def test_requeue_of_a_completed_job_is_refused_and_leaves_it_retained(
    store: InMemoryJobStore,
) -> None:
    """A Completed job kept only its owner: it cannot run again, and stays as it was."""
    job = await store.enqueue(new_job())
    (claim,) = await store.claim(1, lease=30)
    done = await store.complete(claim, "ok")
    with pytest.raises(InvalidTransitionError):
        await store.requeue(job.id)
    assert await store.get(job.id) == done


async def test_a_requeued_jobs_old_retained_place_does_not_drop_it_early(
    clock: ManualClock,
) -> None:
    """max_retained=2: A fails, B completes, A is requeued, C completes, A fails again:
    B is dropped (A's first failure was older, but that place is no longer A's)."""
    store = InMemoryJobStore(max_retained=2, clock=clock)

    async def settle_next(*, fail: bool) -> None:
        (claim,) = await store.claim(1, lease=30)
        if fail:
            await store.fail(claim, BOOM, retry_in=None)
        else:
            await store.complete(claim, "ok")
        clock.advance(1)

    a, b, c = new_job(), new_job(), new_job()
    for spec in (a, b, c):
        await store.enqueue(spec)
    await settle_next(fail=True)  # A
    await settle_next(fail=False)  # B
    await store.requeue(a.id)
    await settle_next(fail=False)  # C
    await settle_next(fail=True)  # A again: C and A are the newest two
    statuses = [getattr(await store.get(spec.id), "status", None) for spec in (a, b, c)]
    assert statuses == [JobStatus.FAILED, None, JobStatus.COMPLETED]
    failed = await store.list_jobs(status=JobStatus.FAILED)
    assert [job.id for job in failed.jobs] == [a.id]


async def test_queue_stats_forget_jobs_dropped_to_honour_max_retained(
    clock: ManualClock,
) -> None:
    """Terminal counts are of the jobs still kept."""
    store = InMemoryJobStore(max_retained=3, clock=clock)
    for _ in range(5):
        await store.enqueue(new_job())
    for claim in await store.claim(5, lease=30):
        await store.complete(claim, None)
    (stats,) = await store.queue_stats(["default"])
    assert stats.completed == 3


async def test_paging_finished_jobs_survives_older_ones_leaving(clock: ManualClock) -> None:
    """A cursor names a place in the finish order, which stays valid while older jobs are
    dropped and the log is compacted: the next page goes on after the last job seen."""
    store = InMemoryJobStore(max_retained=6000, clock=clock)

    async def finish(count: int) -> None:
        for _ in range(count):
            await store.enqueue(new_job())
        for claim in await store.claim(count, lease=30):
            await store.complete(claim, None)

    await finish(100)
    first = await store.list_jobs(status=JobStatus.COMPLETED, limit=50)
    await finish(5950)  # drops 50 of the oldest and compacts the log
    rest = await store.list_jobs(status=JobStatus.COMPLETED, limit=100, cursor=first.next_cursor)
    seen = [job.id for job in first.jobs]
    assert len(rest.jobs) == 0 or rest.jobs[0].completed_at <= first.jobs[-1].completed_at
    assert not {job.id for job in rest.jobs} & set(seen)
    assert len(rest.jobs) == 0 and rest.next_cursor is None  # the 50 older ones are gone


async def test_listing_all_jobs_skips_the_ones_no_longer_kept(clock: ManualClock) -> None:
    """With thousands of jobs dropped around one that waits all along, listing without a
    status gives the kept ones only, newest first."""
    store = InMemoryJobStore(max_retained=10, clock=clock)
    held = await store.enqueue(new_job(queue="held"))
    for _ in range(3000):
        await store.enqueue(new_job())
        (claim,) = await store.claim(1, lease=30)
        await store.complete(claim, None)
    waiting = await store.enqueue(new_job())
    page = await store.list_jobs(limit=1000)
    assert len(page.jobs) == 12 and page.next_cursor is None
    assert (page.jobs[0].id, page.jobs[-1].id) == (waiting.id, held.id)


async def test_scheduled_jobs_are_listed_in_the_order_they_fall_due_across_a_wall_step(
    store: InMemoryJobStore, clock: ManualClock
) -> None:
    """A due in 5 s, then the wall clock steps back an hour, then B due in 10 s: A comes
    first (and is claimed first) although B's run_at reads earlier."""
    a = await store.enqueue(new_job(delay=5))
    clock.step_wall(-3600)
    b = await store.enqueue(new_job(delay=10))
    assert b.run_at < a.run_at
    page = await store.list_jobs(status=JobStatus.SCHEDULED)
    assert [job.id for job in page.jobs] == [a.id, b.id]


async def test_finished_jobs_are_listed_in_the_order_they_finished_across_a_wall_step(
    store: InMemoryJobStore, clock: ManualClock
) -> None:
    """A completes, the wall clock steps back an hour, B completes: B is listed first (it
    finished last, and leaves retention last) although its completed_at reads earlier."""
    for _ in range(2):
        await store.enqueue(new_job())
    first, second = await store.claim(2, lease=30)
    a = await store.complete(first, None)
    clock.step_wall(-3600)
    b = await store.complete(second, None)
    assert b.completed_at < a.completed_at
    page = await store.list_jobs(status=JobStatus.COMPLETED)
    assert [job.id for job in page.jobs] == [b.id, a.id]


async def test_running_jobs_are_listed_by_started_at_even_across_a_wall_step(
    store: InMemoryJobStore, clock: ManualClock
) -> None:
    """Running jobs are indexed by started_at (then id), so their order is started_at's
    whatever the wall clock did, page after page."""
    for _ in range(2):
        await store.enqueue(new_job())
    (a,) = await store.claim(1, lease=30)
    clock.step_wall(-3600)
    (b,) = await store.claim(1, lease=30)
    page = await store.list_jobs(status=JobStatus.IN_PROGRESS, limit=1)
    rest = await store.list_jobs(status=JobStatus.IN_PROGRESS, cursor=page.next_cursor)
    assert [job.id for job in page.jobs + rest.jobs] == [b.job.id, a.job.id]


@pytest.mark.parametrize(
    ("status", "position"),
    [
        (None, [-1]),
        (None, ["1"]),
        (None, [True]),
        (None, [1, 2]),
        (JobStatus.QUEUED, ["nowhere", 0]),
        (JobStatus.QUEUED, ["default"]),
        (JobStatus.SCHEDULED, [float("inf"), 0]),
        (JobStatus.SCHEDULED, ["soon", 0]),
        (JobStatus.IN_PROGRESS, [0.0, "not a uuid"]),
        (JobStatus.FAILED, [10**9]),
        (JobStatus.CANCELED, [None]),
    ],
)
async def test_a_cursor_with_a_position_this_store_cannot_have_made_is_refused(
    store: InMemoryJobStore, status: JobStatus | None, position: list[object]
) -> None:
    """Well-formed cursors for the right filters, with positions out of range or of the
    wrong shape: ValueError."""
    await store.enqueue(new_job())
    cursor = encode_cursor(filters_of(status, None), position)
    with pytest.raises(ValueError):
        await store.list_jobs(status=status, cursor=cursor)


async def test_a_delay_that_is_not_finite_is_refused(store: InMemoryJobStore) -> None:
    """An infinite or NaN delay would never be due: ValueError, nothing stored."""
    for delay in (float("inf"), float("nan")):
        with pytest.raises(ValueError):
            await store.enqueue(new_job(delay=delay))
    assert await store.count_waiting() == 0


async def test_pause_refuses_one_name_given_as_a_str(store: InMemoryJobStore) -> None:
    """pause("default") would pause the queues "d", "e", "f"...: a TypeError instead."""
    with pytest.raises(TypeError):
        await store.pause("default")
    assert await store.paused_queues() == frozenset()
