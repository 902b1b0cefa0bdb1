"""Reviewer's reproducers for the webhooks feature (issue 13 item 6). Each test states the
rule the reviewer expects and is marked xfail(strict) while the finding stands: once it is
fixed the test passes, strict xfail turns that into a failure, and the mark is removed."""

from __future__ import annotations

import pytest
from starlette.requests import Request
from starlette.responses import Response

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    InMemoryJobStore,
    JobStatus,
    QueueFullError,
)
from async_endpoints._job import JobError
from async_endpoints.testing import ManualClock
from tests.webhook_receiver import SECRET, answer_with, receiving


def engine_with(store: InMemoryJobStore, fail: bool = False, **settings: object) -> AsyncEndpoints:
    engine = AsyncEndpoints(store=store, webhook_secret=SECRET, retry_jitter=0.0, **settings)

    async def note(ctx: AsyncContext[None]) -> str:
        if fail:
            raise RuntimeError("boom")
        return "done"

    engine.add_handler(note, max_retries=0)
    return engine


@pytest.mark.xfail(strict=True, reason="review: delivery reads the job when it runs")
async def test_a_target_requeued_before_its_delivery_is_not_delivered_unfinished() -> None:
    """A Failed job is requeued while its delivery still waits: the receiver must never
    get the job in a non-terminal status (the webhook is 'POSTed once the job is
    terminal'), and the re-run's end must reach the receiver too."""
    store = InMemoryJobStore()
    async with receiving() as receiver:
        engine = engine_with(store, webhook_allowed_hosts=[receiver.host])
        async with engine.running(workers=False):
            job = await engine.submit("note", None, webhook_url=receiver.url)
            [claim] = await store.claim(1, lease=30)  # the job only: it fails for good
            await store.fail(claim, JobError("boom", "RuntimeError"), retry_in=None)
            await store.requeue(job.id)  # the operator retries it; its delivery waits
            await engine.drain()  # runs the delivery and the job again
            final = await engine.get_job(job.id)
    assert final is not None and final.status is JobStatus.COMPLETED
    statuses = [delivery.job["status"] for delivery in receiver.deliveries]
    assert all(s in {"Completed", "Failed", "Canceled"} for s in statuses), statuses
    assert statuses[-1] == "Completed", statuses


async def test_pending_webhook_retries_do_not_refuse_new_submissions() -> None:
    """A receiver that is down leaves Scheduled delivery retries behind; they are not
    the clients' waiting work, so they must not make max_queue_size refuse submissions."""
    clock = ManualClock()
    store = InMemoryJobStore(clock=clock)
    async with receiving(answer_with(500)) as receiver:
        engine = engine_with(
            store,
            webhook_allowed_hosts=[receiver.host],
            max_queue_size=2,
            webhook_retry_base_delay=60.0,
        )
        async with engine.running(workers=False):
            for _ in range(2):
                await engine.submit("note", None, webhook_url=receiver.url)
            await engine.drain()  # both complete; each delivery fails once, Scheduled
            waiting_user_jobs = [
                j
                for j in (await engine.list_jobs(status=JobStatus.QUEUED)).jobs
                if j.name == "note"
            ]
            assert waiting_user_jobs == []
            try:
                await engine.submit("note", None)
            except QueueFullError as exc:
                pytest.fail(f"refused by webhook retries alone: {exc}")


@pytest.mark.xfail(strict=True, reason="review: target dropped before its retry")
async def test_a_target_evicted_by_max_retained_loses_its_webhook() -> None:
    """The delivery reads the job when it runs: a target dropped from retention
    (max_retained) before a retry makes the delivery fail at once, never delivered."""
    clock = ManualClock()
    store = InMemoryJobStore(clock=clock, max_retained=2)

    def answer(number: int, _request: Request) -> Response:
        return Response(status_code=503 if number == 1 else 204)

    async with receiving(answer) as receiver:
        engine = engine_with(
            store, webhook_allowed_hosts=[receiver.host], webhook_retry_base_delay=1.0
        )
        async with engine.running(workers=False):
            job = await engine.submit("note", None, webhook_url=receiver.url)
            await engine.drain()  # job Completed; its delivery fails once (503)
            for _ in range(3):  # other work ends meanwhile
                await engine.submit("note", None)
            await engine.drain()
            clock.advance(2.0)
            await engine.drain()  # the delivery's retry
            target = await engine.get_job(job.id)
    assert len(receiver.deliveries) == 2, f"the retry was never sent; the job is {target}"
