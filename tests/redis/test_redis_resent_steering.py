"""A cancel or a requeue whose reply was lost, resent (redis-py sends a command once
more on a fresh connection): the resend answers as the first send did, and changes
nothing more, however the job moved in between."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis import exceptions as redis_errors
from redis.asyncio import RedisCluster
from redis.asyncio.retry import Retry

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    AttemptOutcome,
    EventKind,
    JobError,
    JobStatus,
    NewJob,
)
from async_endpoints_redis import RedisJobStore
from async_endpoints_redis._client import RESENT, NotingBackoff

Call = Callable[[Any], Awaitable[Any]]


def resend(
    store: RedisJobStore,
    monkeypatch: pytest.MonkeyPatch,
    operation: str,
    between: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """The next ``operation`` call of ``store`` is carried out, its reply lost, and sent
    again (after ``between``, what other processes do meanwhile), noted as redis-py's
    resend is (`NotingBackoff`)."""
    run = store._run
    pending = [operation]

    async def twice(name: str, call: Call) -> Any:
        if name in pending:
            pending.remove(name)
            await run(name, call)  # carried out; its reply is "lost"
            if between is not None:
                await between()
            RESENT.set(True)
        return await run(name, call)

    monkeypatch.setattr(store, "_run", twice)


async def test_a_resent_cancel_tells_its_caller_it_cancelled_the_job(
    store: RedisJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not "Canceled already" (a 409 to the very request that cancelled it)."""
    job = await store.enqueue(NewJob(uuid.uuid4(), "Job", max_retries=3))
    resend(store, monkeypatch, "cancel")
    canceled, cancelled_here = await store.try_cancel(job.id)
    assert canceled is not None and canceled.status is JobStatus.CANCELED
    assert cancelled_here is True
    monkeypatch.undo()
    assert await store.try_cancel(job.id) == (canceled, False)  # another call: it was


async def test_a_resent_requeue_answers_the_requeued_job_without_an_error(
    store: RedisJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = await store.enqueue(NewJob(uuid.uuid4(), "Job", max_retries=3))
    await store.cancel(job.id)
    resend(store, monkeypatch, "requeue")
    requeued = await store.requeue(job.id)
    assert requeued is not None and requeued.status is JobStatus.QUEUED
    assert len(await store.claim(10, lease=30)) == 1


async def test_a_requeue_resent_after_the_job_failed_again_requeues_it_once(
    store: RedisJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the two sends the requeued job runs and fails for good again: the resend
    leaves it Failed (a second requeue would run it a second time for one request)."""
    job = await store.enqueue(NewJob(uuid.uuid4(), "Job", max_retries=0))
    (claim,) = await store.claim(1, lease=30)
    await store.fail(claim, JobError("boom", "RuntimeError"), retry_in=None)

    async def runs_and_fails_again() -> None:
        (again,) = await store.claim(1, lease=30)
        await store.fail(again, JobError("boom again", "RuntimeError"), retry_in=None)

    resend(store, monkeypatch, "requeue", between=runs_and_fails_again)
    await store.requeue(job.id)
    stored = await store.get(job.id)
    assert stored is not None and stored.status is JobStatus.FAILED
    assert stored.error is not None and stored.error.message == "boom again"
    assert await store.claim(10, lease=30) == []


@pytest.mark.parametrize("operation", ["complete", "fail"])
async def test_an_outcome_resent_after_it_landed_counts_as_recorded_not_lost(
    store: RedisJobStore,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    operation: str,
) -> None:
    """The first send of a completion (or a failure) settles the job and its reply is
    lost; the resend finds the claim gone. The attempt is what it was, completed (or
    failed), not a claim lost before settling."""
    engine = AsyncEndpoints(store=store, max_retries=0)
    outcomes: list[AttemptOutcome | None] = []
    engine.events.subscribe(
        lambda event: outcomes.append(event.outcome) if event.kind is EventKind.FINISHED else None
    )

    @engine.add_handler
    async def work(ctx: AsyncContext[None]) -> str:
        if operation == "fail":
            raise RuntimeError("boom")
        return "done"

    resend(store, monkeypatch, operation)
    async with engine.running():
        job = await engine.submit("work")
        settled = await engine.wait_for(job.id, timeout=10)
    expected = AttemptOutcome.COMPLETED if operation == "complete" else AttemptOutcome.FAILED
    assert settled.status is (JobStatus.COMPLETED if operation == "complete" else JobStatus.FAILED)
    assert outcomes == [expected]
    assert "claim lost before settling" not in caplog.text
    if operation == "fail":  # the failure is told, as when its first send is answered
        assert "attempt 1 failed: RuntimeError: boom (no retries left: Failed)" in caplog.text


async def test_redis_pys_resend_of_a_command_is_noted_in_the_calling_task() -> None:
    """The store's clients' backoff (`NotingBackoff`): a command whose first send failed
    (a connection dropped) and that was sent again, by a client's retry or by a cluster
    client's own loop, leaves `RESENT` set for its caller; one sent once does not."""
    retry = Retry(NotingBackoff(cap=0.01, base=0.001), retries=1)
    sends: list[int] = []

    async def do() -> str:
        sends.append(1)
        if len(sends) == 1:
            raise redis_errors.ConnectionError("dropped")
        return "OK"

    async def fail(error: Exception) -> None:
        pass

    RESENT.set(False)
    assert await retry.call_with_retry(lambda: do(), fail) == "OK"
    assert RESENT.get() is True and len(sends) == 2
    RESENT.set(False)
    assert await retry.call_with_retry(lambda: do(), fail) == "OK"
    assert RESENT.get() is False
    RedisCluster._retry_backoff_delay(retry, 1)  # the pause before a cluster's resend
    assert RESENT.get() is True
