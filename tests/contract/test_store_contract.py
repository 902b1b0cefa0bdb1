"""The `JobStore` contract, run against every store (see conftest.py for the kits)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from async_endpoints import (
    DuplicateJobError,
    JobError,
    JobRequest,
    JobStatus,
    NewJob,
    QueueFullError,
)

from .conftest import RETENTION, StoreKit

BOOM = JobError("boom", "RuntimeError")


def new_job(name: str = "Echo", max_retries: int = 3, **request: object) -> NewJob:
    return NewJob(uuid.uuid4(), name, max_retries, JobRequest(**request))  # type: ignore[arg-type]


async def test_enqueue_stores_a_queued_job_with_its_request(kit: StoreKit) -> None:
    """An enqueued job reads back Queued, with its times set and its request intact."""
    request = JobRequest(
        body='{"data": "héllo ✓"}',
        headers=(("x-trace", "a"), ("x-trace", "b")),
        query_string="q=1&q=2",
        route_params={"tenant": "acme"},
    )
    spec = NewJob(uuid.uuid4(), "Echo", 2, request)
    stored = await kit.store.enqueue(spec)
    read = await kit.store.get(spec.id)
    assert read == stored
    assert (read.id, read.name, read.status, read.max_retries) == (
        spec.id,
        "Echo",
        JobStatus.QUEUED,
        2,
    )
    assert read.retry_count == 0 and read.started_at is None and read.completed_at is None
    assert read.created_at.tzinfo is not None and read.last_updated_at == read.created_at
    assert read.request == request


async def test_get_answers_none_for_an_unknown_id(kit: StoreKit) -> None:
    """No job with that id: None, not an error."""
    assert await kit.store.get(uuid.uuid4()) is None


async def test_enqueue_refuses_a_duplicate_id_and_keeps_the_original(kit: StoreKit) -> None:
    """A second job with the same id raises DuplicateJobError; the first is unchanged."""
    first = await kit.store.enqueue(new_job("First"))
    with pytest.raises(DuplicateJobError):
        await kit.store.enqueue(NewJob(first.id, "Second", 0))
    assert await kit.store.get(first.id) == first
    assert await kit.store.count_waiting() == 1


async def test_enqueue_of_the_very_same_job_again_is_idempotent(kit: StoreKit) -> None:
    """A resent enqueue (its first reply was lost) returns the stored job, queued once."""
    spec = new_job(body='{"a": 1}', route_params={"t": "x"})
    first = await kit.store.enqueue(spec)
    assert await kit.store.enqueue(spec) == first
    assert await kit.store.count_waiting() == 1
    assert len(await kit.store.claim(5, lease=kit.lease)) == 1


async def test_enqueue_refuses_when_max_waiting_jobs_wait(kit: StoreKit) -> None:
    """With max_waiting jobs waiting, enqueue raises QueueFullError and stores nothing."""
    for _ in range(2):
        await kit.store.enqueue(new_job(), max_waiting=2)
    refused = new_job()
    with pytest.raises(QueueFullError):
        await kit.store.enqueue(refused, max_waiting=2)
    assert await kit.store.get(refused.id) is None
    assert await kit.store.count_waiting() == 2


async def test_claim_hands_out_the_oldest_jobs_first_up_to_the_limit(kit: StoreKit) -> None:
    """Claims are FIFO, at most `limit` at once, each InProgress with its own token."""
    ids = [(await kit.store.enqueue(new_job())).id for _ in range(3)]
    claims = await kit.store.claim(2, lease=kit.lease)
    assert [c.job.id for c in claims] == ids[:2]
    assert all(c.job.status is JobStatus.IN_PROGRESS for c in claims)
    assert all(c.job.started_at is not None for c in claims)
    assert len({c.token for c in claims}) == 2
    assert (await kit.store.get(ids[0])).status is JobStatus.IN_PROGRESS
    assert [c.job.id for c in await kit.store.claim(5, lease=kit.lease)] == ids[2:]


async def test_claim_answers_empty_when_nothing_is_due(kit: StoreKit) -> None:
    """An empty queue claims nothing."""
    assert await kit.store.claim(10, lease=kit.lease) == []


async def test_concurrent_claims_never_hand_one_job_to_two_claimers(kit: StoreKit) -> None:
    """Many claimers at once: every job is claimed exactly once."""
    ids = {(await kit.store.enqueue(new_job())).id for _ in range(60)}
    batches = await asyncio.gather(*(kit.store.claim(7, lease=kit.lease) for _ in range(12)))
    claimed = [c.job.id for batch in batches for c in batch]
    assert sorted(claimed) == sorted(ids)


async def test_complete_settles_the_job_with_its_result(kit: StoreKit) -> None:
    """Completing with the claim's token stores the result and completion time."""
    await kit.store.enqueue(new_job())
    (claim,) = await kit.store.claim(1, lease=kit.lease)
    result = {"text": "ünïcode", "n": [1, 2.5, None, True]}
    done = await kit.store.complete(claim, result)
    assert done is not None and done.status is JobStatus.COMPLETED
    assert done.result == result and done.completed_at is not None and done.error is None
    assert await kit.store.get(claim.job.id) == done
    assert await kit.store.count_waiting() == 0


async def test_a_settled_claim_cannot_settle_again(kit: StoreKit) -> None:
    """Once completed, the same claim can neither complete, fail nor renew again."""
    await kit.store.enqueue(new_job())
    (claim,) = await kit.store.claim(1, lease=kit.lease)
    done = await kit.store.complete(claim, 1)
    assert await kit.store.complete(claim, 2) is None
    assert await kit.store.fail(claim, BOOM, retry_in=0) is None
    assert await kit.store.renew([claim], lease=kit.lease) == {claim.token}
    assert await kit.store.get(claim.job.id) == done


async def test_fail_with_a_delay_schedules_a_retry_due_later(kit: StoreKit) -> None:
    """A failed attempt with retries left is Scheduled and claimable only once due."""
    await kit.store.enqueue(new_job())
    (claim,) = await kit.store.claim(1, lease=kit.lease)
    scheduled = await kit.store.fail(claim, BOOM, retry_in=1.0)
    assert scheduled is not None and scheduled.status is JobStatus.SCHEDULED
    assert scheduled.retry_count == 1 and scheduled.error == BOOM
    assert await kit.store.count_waiting() == 1
    assert await kit.store.claim(1, lease=kit.lease) == []
    await kit.advance(1.2)
    (retry,) = await kit.store.claim(1, lease=kit.lease)
    assert retry.job.id == claim.job.id and retry.job.retry_count == 1
    assert retry.job.started_at == claim.job.started_at


async def test_fail_without_a_delay_queues_the_retry_at_once(kit: StoreKit) -> None:
    """retry_in <= 0 puts the job straight back in the queue."""
    await kit.store.enqueue(new_job())
    (claim,) = await kit.store.claim(1, lease=kit.lease)
    queued = await kit.store.fail(claim, BOOM, retry_in=0)
    assert queued is not None and queued.status is JobStatus.QUEUED
    (retry,) = await kit.store.claim(1, lease=kit.lease)
    assert retry.job.retry_count == 1


async def test_fail_without_retry_is_final(kit: StoreKit) -> None:
    """retry_in=None makes the job Failed with the error kept."""
    await kit.store.enqueue(new_job())
    (claim,) = await kit.store.claim(1, lease=kit.lease)
    failed = await kit.store.fail(claim, BOOM, retry_in=None)
    assert failed is not None and failed.status is JobStatus.FAILED
    assert failed.error == BOOM and failed.completed_at is not None and failed.retry_count == 0


async def test_fail_is_final_once_retries_are_used_up(kit: StoreKit) -> None:
    """retry_count never exceeds max_retries: the last allowed attempt's failure is final."""
    await kit.store.enqueue(new_job(max_retries=1))
    (first,) = await kit.store.claim(1, lease=kit.lease)
    await kit.store.fail(first, BOOM, retry_in=0)
    (second,) = await kit.store.claim(1, lease=kit.lease)
    failed = await kit.store.fail(second, BOOM, retry_in=0)
    assert failed is not None and failed.status is JobStatus.FAILED and failed.retry_count == 1


async def test_a_renewed_claim_outlives_its_first_lease(kit: StoreKit) -> None:
    """Renewing pushes the lease deadline out, so recovery leaves the job alone."""
    await kit.store.enqueue(new_job())
    (claim,) = await kit.store.claim(1, lease=kit.lease)
    await kit.advance(kit.lease * 0.6)
    assert await kit.store.renew([claim], lease=kit.lease) == set()
    await kit.advance(kit.lease * 0.6)
    assert await kit.store.recover() == []
    assert await kit.store.complete(claim, "ok") is not None


async def test_recover_requeues_an_expired_claim_as_a_used_attempt(kit: StoreKit) -> None:
    """An expired lease: the job is Queued again, retry_count + 1, error ClaimExpired."""
    await kit.store.enqueue(new_job())
    (claim,) = await kit.store.claim(1, lease=kit.lease)
    await kit.advance(kit.lease + 0.2)
    assert await kit.store.recover() == [claim.job.id]
    job = await kit.store.get(claim.job.id)
    assert job.status is JobStatus.QUEUED and job.retry_count == 1
    assert job.error is not None and job.error.type == "ClaimExpired"
    assert await kit.store.recover() == []
    (again,) = await kit.store.claim(1, lease=kit.lease)
    assert again.job.id == claim.job.id and again.token != claim.token


async def test_a_superseded_claim_can_neither_settle_nor_renew(kit: StoreKit) -> None:
    """After recovery, the old worker's complete/fail/renew change nothing."""
    await kit.store.enqueue(new_job())
    (stale,) = await kit.store.claim(1, lease=kit.lease)
    await kit.advance(kit.lease + 0.2)
    await kit.store.recover()
    (fresh,) = await kit.store.claim(1, lease=kit.lease)
    assert await kit.store.complete(stale, "late") is None
    assert await kit.store.fail(stale, BOOM, retry_in=None) is None
    assert await kit.store.renew([stale, fresh], lease=kit.lease) == {stale.token}
    job = await kit.store.get(fresh.job.id)
    assert job.status is JobStatus.IN_PROGRESS and job.result is None
    assert (await kit.store.complete(fresh, "fresh")).result == "fresh"


async def test_recover_fails_an_expired_claim_without_retries_left(kit: StoreKit) -> None:
    """A lost attempt counts: with no retries left the job is Failed, not re-queued."""
    await kit.store.enqueue(new_job(max_retries=0))
    (claim,) = await kit.store.claim(1, lease=kit.lease)
    await kit.advance(kit.lease + 0.2)
    assert await kit.store.recover() == [claim.job.id]
    job = await kit.store.get(claim.job.id)
    assert job.status is JobStatus.FAILED and job.error.type == "ClaimExpired"
    assert await kit.store.claim(1, lease=kit.lease) == []


async def test_count_waiting_counts_queued_and_scheduled_jobs(kit: StoreKit) -> None:
    """Queued and Scheduled jobs wait; InProgress and terminal ones do not."""
    for _ in range(3):
        await kit.store.enqueue(new_job())
    first, second = await kit.store.claim(2, lease=kit.lease)
    await kit.store.fail(first, BOOM, retry_in=30)
    await kit.store.complete(second, None)
    assert await kit.store.count_waiting() == 2


async def test_wait_for_work_returns_promptly_after_an_enqueue(kit: StoreKit) -> None:
    """An idle waiter is woken by a submission, long before its timeout."""
    await kit.store.claim(1, lease=kit.lease)
    waiter = asyncio.create_task(kit.store.wait_for_work(30))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await kit.store.enqueue(new_job())
    async with asyncio.timeout(5):
        await waiter


async def test_wait_for_work_returns_at_once_for_work_enqueued_before_it(kit: StoreKit) -> None:
    """A job enqueued after the last claim began is never slept through."""
    await kit.store.claim(1, lease=kit.lease)
    await kit.store.enqueue(new_job())
    async with asyncio.timeout(5):
        await kit.store.wait_for_work(30)


async def test_wait_for_work_gives_up_after_its_timeout(kit: StoreKit) -> None:
    """With nothing to do, the wait ends at its timeout."""
    await kit.store.claim(1, lease=kit.lease)
    async with asyncio.timeout(5):
        await kit.store.wait_for_work(0.05)


async def test_a_job_submitted_to_an_idle_waiter_runs_exactly_once(kit: StoreKit) -> None:
    """A waiter offering slots gets the new job handed over (claimed, ready to settle) or,
    from stores that do not hand over, can claim it next; never both."""
    await kit.store.claim(2, lease=kit.lease)
    waiter = asyncio.create_task(kit.store.wait_for_work(30, take=2, lease=kit.lease))
    await asyncio.sleep(0.05)
    job = await kit.store.enqueue(new_job())
    async with asyncio.timeout(5):
        handed = await waiter
    claims = handed + await kit.store.claim(2, lease=kit.lease)
    assert [claim.job.id for claim in claims] == [job.id]
    assert claims[0].job.status is JobStatus.IN_PROGRESS
    assert await kit.store.complete(claims[0], "once") is not None
    assert await kit.store.claim(2, lease=kit.lease) == []


async def test_wait_until_terminal_is_woken_by_completion(kit: StoreKit) -> None:
    """A waiter gets the completed job as soon as it is settled."""
    job = await kit.store.enqueue(new_job())
    waiter = asyncio.create_task(kit.store.wait_until_terminal(job.id, 30))
    (claim,) = await kit.store.claim(1, lease=kit.lease)
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await kit.store.complete(claim, {"ok": True})
    async with asyncio.timeout(5):
        done = await waiter
    assert done.status is JobStatus.COMPLETED and done.result == {"ok": True}


async def test_wait_until_terminal_answers_the_current_job_after_its_timeout(
    kit: StoreKit,
) -> None:
    """Not terminal in time: the job as it is; an unknown id: None."""
    job = await kit.store.enqueue(new_job())
    async with asyncio.timeout(5):
        current = await kit.store.wait_until_terminal(job.id, 0.05)
        assert current.status is JobStatus.QUEUED
        assert await kit.store.wait_until_terminal(uuid.uuid4(), 0.05) is None


async def test_terminal_jobs_expire_after_the_retention(kit: StoreKit) -> None:
    """A finished job is dropped once its retention has passed (at the latest by the next
    recovery pass); unfinished jobs are kept."""
    running = await kit.store.enqueue(new_job())
    finished = await kit.store.enqueue(new_job())
    await kit.store.claim(1, lease=kit.lease)
    (claim,) = await kit.store.claim(1, lease=kit.lease)
    await kit.store.complete(claim, None)
    await kit.advance(RETENTION + 0.5)
    await kit.store.recover()
    assert await kit.store.get(finished.id) is None
    assert await kit.store.get(running.id) is not None


async def test_the_owner_is_kept_with_the_job_through_claim_and_settlement(kit: StoreKit) -> None:
    """job.owner reads back as enqueued, on the claimed job and on the settled one."""
    spec = new_job(owner="alice@example.com", body='{"data": "x"}')
    stored = await kit.store.enqueue(spec)
    assert stored.owner == "alice@example.com"
    assert (await kit.store.get(spec.id)).owner == "alice@example.com"
    (claim,) = await kit.store.claim(1, lease=kit.lease)
    assert claim.job.owner == "alice@example.com"
    done = await kit.store.complete(claim, None)
    assert done.owner == "alice@example.com"
    assert (await kit.store.get(spec.id)).owner == "alice@example.com"


async def test_text_with_a_lone_surrogate_is_stored_and_read_back_unchanged(
    kit: StoreKit,
) -> None:
    """Route params, results and errors holding "\\ud800" (no UTF-8 form) round-trip."""
    spec = new_job(route_params={"tenant": "\ud800"})
    await kit.store.enqueue(spec)
    (claim,) = await kit.store.claim(1, lease=kit.lease)
    assert claim.job.request.route_params == {"tenant": "\ud800"}
    failed = await kit.store.fail(claim, JobError("bad \udc80 input", "ValueError"), retry_in=0)
    assert failed.error == JobError("bad \udc80 input", "ValueError")
    (claim,) = await kit.store.claim(1, lease=kit.lease)
    await kit.store.complete(claim, {"echo": "\ud800"})
    assert (await kit.store.get(spec.id)).result == {"echo": "\ud800"}


async def test_a_completed_job_keeps_only_the_owner_of_its_request(kit: StoreKit) -> None:
    """Completed jobs never run again: body, headers, query and route parameters are
    dropped (owner kept); a Failed job keeps its whole request."""
    captured = {
        "body": '{"data": "x"}',
        "headers": (("x-trace", "a"),),
        "query_string": "q=1",
        "route_params": {"tenant": "acme"},
        "owner": "alice",
    }
    done_spec, failed_spec = new_job(**captured), new_job(**captured)
    await kit.store.enqueue(done_spec)
    await kit.store.enqueue(failed_spec)
    first, second = await kit.store.claim(2, lease=kit.lease)
    completed = await kit.store.complete(first, 1)
    await kit.store.fail(second, BOOM, retry_in=None)
    assert completed.request == JobRequest(owner="alice")
    assert (await kit.store.get(done_spec.id)).request == JobRequest(owner="alice")
    assert (await kit.store.get(failed_spec.id)).request == failed_spec.request
