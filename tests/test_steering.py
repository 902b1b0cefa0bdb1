"""Pause and resume, requeue of the dead letter, listing and per-queue counts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    InMemoryJobStore,
    InvalidTransitionError,
    Job,
    JobStatus,
    QueueStats,
)
from async_endpoints.testing import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def endpoints(clock: ManualClock) -> AsyncIterator[AsyncEndpoints]:
    engine = AsyncEndpoints(
        store=InMemoryJobStore(clock=clock), queues=("high", "low"), max_retries=0
    )

    async def echo(ctx: AsyncContext[Any]) -> Any:
        return ctx.request

    async def fail(ctx: AsyncContext[None]) -> None:
        raise RuntimeError("always")

    engine.add_handler(echo)
    engine.add_handler(fail)
    async with engine.running(workers=False):
        yield engine


# ---------------------------------------------------------------------------------------
# Pause and resume
# ---------------------------------------------------------------------------------------


async def test_no_job_of_a_paused_queue_starts_and_submissions_are_still_accepted(
    endpoints: AsyncEndpoints,
) -> None:
    """pause("low"): its jobs wait (submit still stores them), "high" runs on; resume
    lets them run."""
    await endpoints.pause("low")
    held = await endpoints.submit("echo", 1, queue="low")
    runs = await endpoints.submit("echo", 2, queue="high")
    assert held.status is JobStatus.QUEUED
    assert await endpoints.drain() == 1
    assert (await endpoints.get_job(runs.id)).status is JobStatus.COMPLETED
    assert (await endpoints.get_job(held.id)).status is JobStatus.QUEUED
    await endpoints.resume("low")
    assert await endpoints.drain() == 1
    assert (await endpoints.get_job(held.id)).status is JobStatus.COMPLETED


async def test_pause_without_a_queue_pauses_every_queue(endpoints: AsyncEndpoints) -> None:
    """pause() holds every queue; resume() releases them all."""
    await endpoints.pause()
    for queue in ("high", "low"):
        await endpoints.submit("echo", queue, queue=queue)
    assert await endpoints.drain() == 0
    assert [stats.paused for stats in await endpoints.queue_stats()] == [True, True]
    await endpoints.resume()
    assert await endpoints.drain() == 2


async def test_a_running_pool_starts_nothing_while_paused_and_wakes_on_resume() -> None:
    """With the pool running: a job submitted to a paused queue waits (202 is still the
    answer), and runs as soon as the queue is resumed, not at the next polling tick."""
    engine = AsyncEndpoints(polling_interval=60.0)
    started = asyncio.Event()

    async def work(ctx: AsyncContext[None]) -> str:
        started.set()
        return "ran"

    engine.add_handler(work)
    async with engine.running():
        await engine.pause()
        job = await engine.submit("work")
        for _ in range(20):  # the pool gets turns to claim (it must not)
            await asyncio.sleep(0)
        assert not started.is_set()
        assert (await engine.get_job(job.id)).status is JobStatus.QUEUED
        await engine.resume()
        done = await engine.wait_for(job.id, timeout=5)
    assert done.result == "ran"


@pytest.mark.parametrize("call", ["pause", "resume"])
async def test_pausing_an_unknown_queue_is_a_value_error(
    endpoints: AsyncEndpoints, call: str
) -> None:
    """A queue the queues setting lacks: ValueError, nothing paused."""
    with pytest.raises(ValueError, match="unknown queue"):
        await getattr(endpoints, call)("default")
    assert not any(stats.paused for stats in await endpoints.queue_stats())


# ---------------------------------------------------------------------------------------
# Requeue
# ---------------------------------------------------------------------------------------


async def test_a_failed_job_requeued_runs_again_from_retry_count_zero(
    endpoints: AsyncEndpoints,
) -> None:
    """Failed (the dead letter) -> requeue -> Queued, retryCount 0, its error kept until
    it runs again."""
    job = await endpoints.submit("fail")
    await endpoints.drain()
    failed = await endpoints.get_job(job.id)
    requeued = await endpoints.requeue(job.id)
    assert failed.status is JobStatus.FAILED
    assert requeued.status is JobStatus.QUEUED and requeued.retry_count == 0
    assert requeued.error == failed.error and requeued.completed_at is None
    assert await endpoints.drain() == 1


async def test_a_canceled_job_requeued_runs(endpoints: AsyncEndpoints) -> None:
    """Canceled jobs keep their request: requeued, they run with it."""
    job = await endpoints.submit("echo", {"kept": True})
    await endpoints.cancel(job.id)
    await endpoints.requeue(job.id)
    await endpoints.drain()
    assert (await endpoints.get_job(job.id)).result == {"kept": True}


async def test_requeue_of_a_job_that_is_not_failed_or_canceled_is_a_value_error(
    endpoints: AsyncEndpoints,
) -> None:
    """Queued and Completed jobs cannot be requeued: InvalidTransitionError (ValueError)."""
    job = await endpoints.submit("echo", 1)
    with pytest.raises(InvalidTransitionError):
        await endpoints.requeue(job.id)
    await endpoints.drain()
    with pytest.raises(ValueError, match="requeue"):
        await endpoints.requeue(job.id)


@pytest.mark.parametrize("job_id", ["00000000-0000-0000-0000-000000000000", "nope"])
async def test_requeue_of_an_unknown_id_returns_none(
    endpoints: AsyncEndpoints, job_id: str
) -> None:
    """Unknown ids and non-UUIDs: None."""
    assert await endpoints.requeue(job_id) is None


# ---------------------------------------------------------------------------------------
# Listing and counts
# ---------------------------------------------------------------------------------------


async def test_queue_stats_counts_each_status_per_queue_in_priority_order(
    endpoints: AsyncEndpoints,
) -> None:
    """One QueueStats per queue, highest priority first, counting every status."""
    await endpoints.submit("echo", 1, queue="low")
    await endpoints.submit("fail", queue="low")
    await endpoints.drain()
    await endpoints.submit("echo", 2, queue="low", delay=60)
    canceled = await endpoints.submit("echo", 3, queue="high")
    await endpoints.cancel(canceled.id)
    await endpoints.submit("echo", 4, queue="high")
    await endpoints.pause("low")
    assert await endpoints.queue_stats() == [
        QueueStats("high", paused=False, queued=1, canceled=1),
        QueueStats("low", paused=True, scheduled=1, completed=1, failed=1),
    ]


async def test_list_jobs_pages_through_every_match_once(
    endpoints: AsyncEndpoints, clock: ManualClock
) -> None:
    """Queued jobs listed by queue priority, then oldest first, two per page, each once."""

    async def submitted(i: int, queue: str) -> Job:
        clock.advance(0.001)
        return await endpoints.submit("echo", i, queue=queue)

    low = [await submitted(i, "low") for i in range(3)]
    high = [await submitted(i, "high") for i in range(2)]
    seen, cursor = [], None
    while True:
        page = await endpoints.list_jobs(status="Queued", limit=2, cursor=cursor)
        seen += [job.id for job in page.jobs]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [job.id for job in high + low]


async def test_list_jobs_filters_by_queue_and_status(endpoints: AsyncEndpoints) -> None:
    """queue= and status= narrow the listing; the failed jobs are the dead letter."""
    await endpoints.submit("fail", queue="low")
    await endpoints.submit("echo", 1, queue="low")
    await endpoints.submit("fail", queue="high")
    await endpoints.drain()
    dead = await endpoints.list_jobs(status=JobStatus.FAILED, queue="low")
    assert [(job.name, job.queue) for job in dead.jobs] == [("fail", "low")]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"status": "Lost"}, "Lost"),
        ({"queue": "default"}, "unknown queue"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"cursor": "not a cursor"}, "cursor"),
    ],
)
async def test_bad_listing_arguments_are_value_errors(
    endpoints: AsyncEndpoints, options: dict[str, Any], message: str
) -> None:
    """An unknown status or queue, a limit out of range, a malformed cursor: ValueError."""
    with pytest.raises(ValueError, match=message):
        await endpoints.list_jobs(**options)


async def test_a_cursor_of_another_listing_is_refused(endpoints: AsyncEndpoints) -> None:
    """A cursor made for status=Queued cannot page another listing (no widening)."""
    for i in range(3):
        await endpoints.submit("echo", i)
    page = await endpoints.list_jobs(status="Queued", limit=1)
    with pytest.raises(ValueError, match="cursor"):
        await endpoints.list_jobs(status="Failed", cursor=page.next_cursor)


async def test_a_post_to_a_paused_queue_answers_202_and_the_job_waits(http_client_for) -> None:
    """Over HTTP: paused, a POST is still accepted (202, Queued); resumed, it runs."""
    app = FastAPI()
    engine = AsyncEndpoints(app, polling_interval=60.0)

    @engine.map_async_post("/work")
    async def work(ctx: AsyncContext) -> str:
        return "ran"

    async with http_client_for(app) as client:
        await engine.pause()
        response = await client.post("/work")
        for _ in range(20):  # the pool gets turns to claim (it must not)
            await asyncio.sleep(0)
        waiting = await engine.get_job(response.json()["id"])
        await engine.resume()
        done = await engine.wait_for(waiting.id, timeout=5)
    assert response.status_code == 202 and response.json()["status"] == "Queued"
    assert waiting.status is JobStatus.QUEUED and done.result == "ran"
