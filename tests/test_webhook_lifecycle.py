"""A webhook across its job's life, on the in-memory and Redis stores: deliveries are not
the clients' waiting work, a receiver never gets an unfinished job, and the job outlives
its retention while its delivery goes on."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    InMemoryJobStore,
    JobStatus,
    JobStore,
    QueueFullError,
)
from async_endpoints._job import JobError, WebhookStatus
from async_endpoints.testing import ManualClock
from tests.webhook_receiver import SECRET, answer_with, receiving, settled_webhook


def engine_with(store: JobStore, **settings: Any) -> AsyncEndpoints:
    """An engine (no app) whose handler ``note`` returns "done", without retries."""
    engine = AsyncEndpoints(store=store, webhook_secret=SECRET, retry_jitter=0.0, **settings)

    async def note(ctx: AsyncContext[None]) -> str:
        return "done"

    engine.add_handler(note, max_retries=0)
    return engine


async def test_pending_webhook_retries_do_not_refuse_new_submissions(store: JobStore) -> None:
    """A receiver that is down leaves Scheduled delivery retries behind; they are not the
    clients' waiting work, so max_queue_size never refuses a submission for them."""
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
            assert len(receiver.deliveries) == 2
            assert len((await engine.list_jobs(status=JobStatus.SCHEDULED)).jobs) == 2
            for _ in range(2):
                await engine.submit("note", None)
            with pytest.raises(QueueFullError):
                await engine.submit("note", None)


async def test_a_target_requeued_before_its_delivery_is_never_delivered_unfinished(
    store: JobStore,
) -> None:
    """A Failed job is requeued while its delivery waits: the delivery's attempt that
    finds it unfinished fails (retried), so the receiver gets only its final state."""
    async with receiving() as receiver:
        engine = engine_with(
            store,
            webhook_allowed_hosts=[receiver.host],
            webhook_retry_base_delay=0.05,
            max_concurrency=1,  # one job at a time, in the order they wait
        )
        async with engine.running(workers=False):
            job = await engine.submit("note", None, webhook_url=receiver.url)
            [claim] = await store.claim(1, lease=30)  # the job only: it fails for good
            await store.fail(claim, JobError("boom", "RuntimeError"), retry_in=None)
            await engine.requeue(job.id)  # retried by hand; its delivery waits ahead of it
            settled = await settled_webhook(engine, job)  # the delivery runs first
    assert settled.status is JobStatus.COMPLETED
    assert settled.webhook is not None and settled.webhook.status is WebhookStatus.DELIVERED
    assert settled.webhook.attempts == 2
    [delivered] = receiver.deliveries
    assert delivered.job["status"] == "Completed" and delivered.job["result"] == "done"


async def test_a_target_evicted_by_max_retained_keeps_its_webhook_until_delivered() -> None:
    """Other jobs push the target out of max_retained while its delivery waits for a
    retry: the retry still finds it and is sent; once delivered the target is gone."""
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
            held = await engine.get_job(job.id)
            assert held is not None and held.webhook is not None
            assert held.webhook.status is WebhookStatus.PENDING
            clock.advance(2.0)
            await engine.drain()  # the delivery's retry
            gone = await engine.get_job(job.id)
    assert len(receiver.deliveries) == 2
    assert receiver.deliveries[1].job["webhook"] == {"status": "Pending", "attempts": 2}
    assert gone is None


async def test_every_target_delivered_goes_when_its_retention_ends() -> None:
    """Many jobs with webhooks (more than the store's bookkeeping of deliveries holds
    before it prunes what has ended): once delivered and past their retention, every
    one of them is gone, none kept for a delivery believed still under way."""
    clock = ManualClock()
    store = InMemoryJobStore(clock=clock, retention=1.0)
    async with receiving() as receiver:
        engine = engine_with(store, webhook_allowed_hosts=[receiver.host])
        async with engine.running(workers=False):
            jobs = [await engine.submit("note", None, webhook_url=receiver.url) for _ in range(200)]
            await engine.drain()  # the jobs, then their deliveries
            delivered = await engine.get_job(jobs[-1].id)
            clock.advance(2.0)
            kept = [job.id for job in jobs if await engine.get_job(job.id) is not None]
    assert len(receiver.deliveries) == 200
    assert delivered is not None and delivered.webhook is not None
    assert delivered.webhook.status is WebhookStatus.DELIVERED
    assert kept == []
