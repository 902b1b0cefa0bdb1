"""The core contract (`JobStore`): enqueue, get, claim, renew, settle, recover, the waits."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from .._errors import DuplicateJobError, QueueFullError
from .._idempotency import IdempotentJobGoneError
from .._job import JobError, JobRequest, JobStatus, NewJob
from .._store_features import Idempotency, IdempotentStore
from ._contract_support import (
    BOOM,
    TICK,
    assert_in_group_order,
    claim_every,
    claim_ids,
    new_job,
    read,
    require,
)
from ._kit import StoreKit


class CoreContract:
    """What every `JobStore` promises, whatever its optional capabilities."""

    async def test_enqueue_stores_a_queued_job_with_its_request(self, kit: StoreKit) -> None:
        """An enqueued job reads back Queued, with its times set and its request intact."""
        request = JobRequest(
            body='{"data": "héllo ✓"}',
            headers=(("x-trace", "a"), ("x-trace", "b")),
            query_string="q=1&q=2",
            route_params={"tenant": "acme"},
        )
        spec = NewJob(uuid.uuid4(), "Echo", 2, request)
        stored = await kit.store.enqueue(spec)
        job = await read(kit.store, spec.id)
        assert job == stored
        assert (job.id, job.name, job.status, job.max_retries, job.queue) == (
            spec.id,
            "Echo",
            JobStatus.QUEUED,
            2,
            "default",
        )
        assert job.retry_count == 0 and job.started_at is None and job.completed_at is None
        assert job.run_at is None and job.result is None and job.error is None
        assert job.created_at.tzinfo is not None and job.last_updated_at == job.created_at
        assert job.request == request

    async def test_get_answers_none_for_an_unknown_id(self, kit: StoreKit) -> None:
        """No job with that id: None, not an error."""
        assert await kit.store.get(uuid.uuid4()) is None

    async def test_enqueue_refuses_a_duplicate_id_and_keeps_the_original(
        self, kit: StoreKit
    ) -> None:
        """A second job with the same id raises DuplicateJobError; the first is unchanged."""
        first = await kit.store.enqueue(new_job("First"))
        with pytest.raises(DuplicateJobError):
            await kit.store.enqueue(NewJob(first.id, "Second", 0))
        assert await kit.store.get(first.id) == first
        assert [c.job.id for c in await kit.store.claim(5, lease=kit.lease)] == [first.id]

    async def test_enqueue_of_the_very_same_job_again_is_idempotent(self, kit: StoreKit) -> None:
        """A resent enqueue (its first reply was lost) returns the stored job, queued once."""
        spec = new_job(body='{"a": 1}', route_params={"t": "x"})
        first = await kit.store.enqueue(spec)
        assert await kit.store.enqueue(spec) == first
        assert len(await kit.store.claim(5, lease=kit.lease)) == 1

    async def test_a_resent_enqueue_must_match_in_every_part(self, kit: StoreKit) -> None:
        """The same id with another queue or request is a DuplicateJobError; a delayed job
        sent again is returned as stored (still Scheduled, its run_at unchanged)."""
        spec = new_job(delay=kit.lease * 10, body='{"a": 1}')
        stored = await kit.store.enqueue(spec)
        await kit.advance(TICK)
        assert await kit.store.enqueue(spec) == stored
        for other in (
            NewJob(spec.id, spec.name, spec.max_retries, spec.request, "other", spec.delay),
            NewJob(spec.id, spec.name, spec.max_retries, JobRequest(body="{}"), delay=1.0),
        ):
            with pytest.raises(DuplicateJobError):
                await kit.store.enqueue(other)
        assert await kit.store.get(spec.id) == stored

    async def test_enqueue_refuses_when_max_waiting_jobs_wait(self, kit: StoreKit) -> None:
        """With max_waiting jobs waiting, enqueue raises QueueFullError and stores nothing."""
        for _ in range(2):
            await kit.store.enqueue(new_job(), max_waiting=2)
        refused = new_job()
        with pytest.raises(QueueFullError):
            await kit.store.enqueue(refused, max_waiting=2)
        assert await kit.store.get(refused.id) is None
        assert len(await kit.store.claim(5, lease=kit.lease)) == 2

    async def test_max_waiting_counts_waiting_jobs_of_every_queue_not_running_ones(
        self, kit: StoreKit
    ) -> None:
        """Queued and Scheduled jobs of all queues count against max_waiting; a claimed
        job no longer does."""
        await kit.store.enqueue(new_job(queue="high"), max_waiting=3)
        await kit.store.enqueue(new_job(queue="low", delay=kit.lease * 10), max_waiting=3)
        running = await kit.store.enqueue(new_job(), max_waiting=3)
        with pytest.raises(QueueFullError):
            await kit.store.enqueue(new_job(queue="other"), max_waiting=3)
        (claim,) = await kit.store.claim(1, lease=kit.lease)
        assert claim.job.id == running.id
        await kit.store.enqueue(new_job(queue="other"), max_waiting=3)

    async def test_claim_hands_out_the_oldest_jobs_first_up_to_the_limit(
        self, kit: StoreKit
    ) -> None:
        """Claims are FIFO (within each order group), at most `limit` at once, each
        InProgress with its own token; the next claim takes the rest."""
        jobs = [await kit.store.enqueue(new_job()) for _ in range(3)]
        claims = await claim_every(kit, 2, 2)
        assert_in_group_order(kit, [c.job for c in claims], jobs)
        assert all(c.job.status is JobStatus.IN_PROGRESS for c in claims)
        assert all(c.job.started_at is not None for c in claims)
        assert len({c.token for c in claims}) == 2
        assert (await read(kit.store, claims[0].job.id)).status is JobStatus.IN_PROGRESS
        rest = await claim_every(kit, 1, 5)
        assert_in_group_order(kit, [c.job for c in claims + rest], jobs)

    async def test_claim_answers_empty_when_nothing_is_due(self, kit: StoreKit) -> None:
        """An empty queue claims nothing."""
        assert await kit.store.claim(10, lease=kit.lease) == []

    async def test_concurrent_claims_never_hand_one_job_to_two_claimers(
        self, kit: StoreKit
    ) -> None:
        """Many claimers at once: every job is claimed exactly once. (A store of several
        order groups, a sharded one, may pass over a group that answered late, its calls
        undone: further claims take the rest, none twice.)"""
        ids = {(await kit.store.enqueue(new_job())).id for _ in range(60)}
        batches = await asyncio.gather(*(kit.store.claim(7, lease=kit.lease) for _ in range(12)))
        claimed = [c.job.id for batch in batches for c in batch]
        # A group that answers late is passed over for 4 s at most.
        deadline = time.monotonic() + max(kit.lease, 10.0)
        while kit.order_group is not None and set(claimed) != ids:
            assert time.monotonic() < deadline, f"{len(ids - set(claimed))} jobs never claimed"
            await kit.advance(TICK)
            claimed += [c.job.id for c in await kit.store.claim(7, lease=kit.lease)]
        assert sorted(claimed) == sorted(ids)

    async def test_complete_settles_the_job_with_its_result(self, kit: StoreKit) -> None:
        """Completing with the claim's token stores the result and completion time."""
        await kit.store.enqueue(new_job())
        (claim,) = await kit.store.claim(1, lease=kit.lease)
        result = {"text": "ünïcode", "n": [1, 2.5, None, True]}
        done = await kit.store.complete(claim, result)
        assert done is not None and done.status is JobStatus.COMPLETED
        assert done.result == result and done.completed_at is not None and done.error is None
        assert await kit.store.get(claim.job.id) == done
        assert await kit.store.claim(1, lease=kit.lease) == []

    async def test_a_settled_claim_cannot_settle_again(self, kit: StoreKit) -> None:
        """Once completed, the same claim can neither complete, fail nor renew again."""
        await kit.store.enqueue(new_job())
        (claim,) = await kit.store.claim(1, lease=kit.lease)
        done = await kit.store.complete(claim, 1)
        assert await kit.store.complete(claim, 2) is None
        assert await kit.store.fail(claim, BOOM, retry_in=0) is None
        assert await kit.store.renew([claim], lease=kit.lease) == {claim.token}
        assert await kit.store.get(claim.job.id) == done

    async def test_fail_with_a_delay_schedules_a_retry_due_later(self, kit: StoreKit) -> None:
        """A failed attempt with retries left is Scheduled and claimable only once due."""
        await kit.store.enqueue(new_job())
        (claim,) = await kit.store.claim(1, lease=kit.lease)
        scheduled = await kit.store.fail(claim, BOOM, retry_in=kit.lease)
        assert scheduled is not None and scheduled.status is JobStatus.SCHEDULED
        assert scheduled.retry_count == 1 and scheduled.error == BOOM
        assert scheduled.run_at is not None and scheduled.run_at > scheduled.last_updated_at
        assert await kit.store.claim(1, lease=kit.lease) == []
        await kit.advance(kit.lease * 1.2)
        (retry,) = await kit.store.claim(1, lease=kit.lease)
        assert retry.job.id == claim.job.id and retry.job.retry_count == 1
        assert retry.job.started_at == claim.job.started_at and retry.job.run_at is None

    async def test_fail_without_a_delay_queues_the_retry_at_once(self, kit: StoreKit) -> None:
        """retry_in <= 0 puts the job straight back in the queue."""
        await kit.store.enqueue(new_job())
        (claim,) = await kit.store.claim(1, lease=kit.lease)
        queued = await kit.store.fail(claim, BOOM, retry_in=0)
        assert queued is not None and queued.status is JobStatus.QUEUED
        (retry,) = await kit.store.claim(1, lease=kit.lease)
        assert retry.job.retry_count == 1

    async def test_fail_without_retry_is_final(self, kit: StoreKit) -> None:
        """retry_in=None makes the job Failed with the error kept."""
        await kit.store.enqueue(new_job())
        (claim,) = await kit.store.claim(1, lease=kit.lease)
        failed = await kit.store.fail(claim, BOOM, retry_in=None)
        assert failed is not None and failed.status is JobStatus.FAILED
        assert failed.error == BOOM and failed.completed_at is not None
        assert failed.retry_count == 0

    async def test_fail_is_final_once_retries_are_used_up(self, kit: StoreKit) -> None:
        """retry_count never exceeds max_retries: the last allowed attempt's failure is
        final."""
        await kit.store.enqueue(new_job(max_retries=1))
        (first,) = await kit.store.claim(1, lease=kit.lease)
        await kit.store.fail(first, BOOM, retry_in=0)
        (second,) = await kit.store.claim(1, lease=kit.lease)
        failed = await kit.store.fail(second, BOOM, retry_in=0)
        assert failed is not None and failed.status is JobStatus.FAILED
        assert failed.retry_count == 1

    async def test_a_renewed_claim_outlives_its_first_lease(self, kit: StoreKit) -> None:
        """Renewing pushes the lease deadline out, so recovery leaves the job alone."""
        await kit.store.enqueue(new_job())
        (claim,) = await kit.store.claim(1, lease=kit.lease)
        await kit.advance(kit.lease * 0.6)
        assert await kit.store.renew([claim], lease=kit.lease) == set()
        await kit.advance(kit.lease * 0.6)
        assert await kit.store.recover() == []
        assert await kit.store.complete(claim, "ok") is not None

    async def test_recover_requeues_an_expired_claim_as_a_used_attempt(self, kit: StoreKit) -> None:
        """An expired lease: the job is Queued again, retry_count + 1, error ClaimExpired."""
        await kit.store.enqueue(new_job())
        (claim,) = await kit.store.claim(1, lease=kit.lease)
        await kit.advance(kit.lease + 0.2)
        assert await kit.store.recover() == [claim.job.id]
        job = await read(kit.store, claim.job.id)
        assert job.status is JobStatus.QUEUED and job.retry_count == 1
        assert job.error is not None and job.error.type == "ClaimExpired"
        assert await kit.store.recover() == []
        (again,) = await kit.store.claim(1, lease=kit.lease)
        assert again.job.id == claim.job.id and again.token != claim.token

    async def test_a_superseded_claim_can_neither_settle_nor_renew(self, kit: StoreKit) -> None:
        """After recovery, the old worker's complete/fail/renew change nothing."""
        await kit.store.enqueue(new_job())
        (stale,) = await kit.store.claim(1, lease=kit.lease)
        await kit.advance(kit.lease + 0.2)
        await kit.store.recover()
        (fresh,) = await kit.store.claim(1, lease=kit.lease)
        assert await kit.store.complete(stale, "late") is None
        assert await kit.store.fail(stale, BOOM, retry_in=None) is None
        assert await kit.store.renew([stale, fresh], lease=kit.lease) == {stale.token}
        job = await read(kit.store, fresh.job.id)
        assert job.status is JobStatus.IN_PROGRESS and job.result is None
        done = await kit.store.complete(fresh, "fresh")
        assert done is not None and done.result == "fresh"

    async def test_recover_fails_an_expired_claim_without_retries_left(self, kit: StoreKit) -> None:
        """A lost attempt counts: with no retries left the job is Failed, not re-queued."""
        await kit.store.enqueue(new_job(max_retries=0))
        (claim,) = await kit.store.claim(1, lease=kit.lease)
        await kit.advance(kit.lease + 0.2)
        assert await kit.store.recover() == [claim.job.id]
        job = await read(kit.store, claim.job.id)
        assert job.status is JobStatus.FAILED
        assert job.error is not None and job.error.type == "ClaimExpired"
        assert await kit.store.claim(1, lease=kit.lease) == []

    async def test_recovery_run_by_two_processes_at_once_recovers_each_claim_once(
        self, kit: StoreKit
    ) -> None:
        """Each expired claim is named by one of the two passes, and counts one attempt."""
        for _ in range(6):
            await kit.store.enqueue(new_job())
        claims = await kit.store.claim(6, lease=kit.lease)
        await kit.advance(kit.lease + 0.2)
        here, there = await asyncio.gather(kit.store.recover(), kit.other.recover())
        assert sorted(here + there) == sorted(claim.job.id for claim in claims)
        for claim in claims:
            assert (await read(kit.store, claim.job.id)).retry_count == 1

    async def test_terminal_jobs_expire_after_the_retention(self, kit: StoreKit) -> None:
        """A finished job is dropped once its retention has passed (at the latest by the
        next recovery pass); unfinished jobs are kept."""
        running = await kit.store.enqueue(new_job())
        assert await claim_ids(kit) == [running.id]
        finished = await kit.store.enqueue(new_job())
        (claim,) = await claim_every(kit, 1)
        await kit.store.complete(claim, None)
        await kit.advance(kit.retention + 0.5)
        await kit.store.recover()
        assert await kit.store.get(finished.id) is None
        assert await kit.store.get(running.id) is not None

    async def test_an_idempotency_key_is_answered_by_its_job_and_never_stores_twice(
        self, kit: StoreKit
    ) -> None:
        """enqueue_once: a repeat of a key returns the first job with its fingerprint and
        stores nothing; once that job's retention has passed (the key's ttl has not), a
        repeat raises IdempotentJobGoneError naming it, and still stores nothing."""
        require(kit.store, IdempotentStore)
        store = kit.store
        assert isinstance(store, IdempotentStore)
        key = Idempotency("contract-key", "fp-1", ttl=kit.retention * 100)
        first, earlier = await store.enqueue_once(new_job(), key)
        assert earlier is None
        again = new_job()
        answered, earlier = await store.enqueue_once(again, key)
        assert (answered.id, earlier) == (first.id, "fp-1")
        assert await kit.store.get(again.id) is None
        (claim,) = await claim_every(kit, 1)
        await kit.store.complete(claim, None)
        await kit.advance(kit.retention + 0.5)
        await kit.store.recover()
        assert await kit.store.get(first.id) is None
        late = new_job()
        with pytest.raises(IdempotentJobGoneError) as raised:
            await store.enqueue_once(late, key)
        assert (raised.value.job_id, raised.value.fingerprint) == (first.id, "fp-1")
        assert await kit.store.get(late.id) is None

    async def test_an_idempotency_key_is_forgotten_once_its_ttl_has_passed(
        self, kit: StoreKit
    ) -> None:
        """enqueue_once: within the key's ttl a repeat is answered by the first job; past
        it (on the store's clock) the key stores a new job, recorded for a ttl again."""
        require(kit.store, IdempotentStore)
        store = kit.store
        assert isinstance(store, IdempotentStore)
        key = Idempotency("contract-ttl", "fp-1", ttl=kit.retention * 2)
        first, _ = await store.enqueue_once(new_job(), key)
        await kit.advance(kit.retention)
        answered, earlier = await store.enqueue_once(new_job(), key)
        assert (answered.id, earlier) == (first.id, "fp-1")
        await kit.advance(kit.retention * 1.5)
        later, earlier = await store.enqueue_once(new_job(), key)
        assert later.id != first.id and earlier is None
        again, earlier = await store.enqueue_once(new_job(), key)
        assert (again.id, earlier) == (later.id, "fp-1")

    async def test_the_owner_is_kept_with_the_job_through_claim_and_settlement(
        self, kit: StoreKit
    ) -> None:
        """job.owner reads back as enqueued, on the claimed job and on the settled one."""
        spec = new_job(owner="alice@example.com", body='{"data": "x"}')
        stored = await kit.store.enqueue(spec)
        assert stored.owner == "alice@example.com"
        assert (await read(kit.store, spec.id)).owner == "alice@example.com"
        (claim,) = await kit.store.claim(1, lease=kit.lease)
        assert claim.job.owner == "alice@example.com"
        done = await kit.store.complete(claim, None)
        assert done is not None and done.owner == "alice@example.com"
        assert (await read(kit.store, spec.id)).owner == "alice@example.com"

    async def test_text_with_a_lone_surrogate_is_stored_and_read_back_unchanged(
        self, kit: StoreKit
    ) -> None:
        """Route params, results and errors holding "\\ud800" (no UTF-8 form) round-trip."""
        spec = new_job(route_params={"tenant": "\ud800"})
        await kit.store.enqueue(spec)
        (claim,) = await kit.store.claim(1, lease=kit.lease)
        assert claim.job.request.route_params == {"tenant": "\ud800"}
        error = JobError("bad \udc80 input", "ValueError")
        failed = await kit.store.fail(claim, error, retry_in=0)
        assert failed is not None and failed.error == error
        (claim,) = await kit.store.claim(1, lease=kit.lease)
        await kit.store.complete(claim, {"echo": "\ud800"})
        assert (await read(kit.store, spec.id)).result == {"echo": "\ud800"}

    async def test_a_completed_job_keeps_only_the_owner_and_trace_context_of_its_request(
        self, kit: StoreKit
    ) -> None:
        """Completed jobs never run again: body, headers, query and route parameters are
        dropped (owner and W3C trace context kept: its spans stay in their trace); a Failed
        job keeps its whole request."""
        traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        request = JobRequest(
            body='{"data": "x"}',
            headers=(("x-trace", "a"),),
            query_string="q=1",
            route_params={"tenant": "acme"},
            owner="alice",
            trace_context=traceparent,
        )
        done_spec = NewJob(uuid.uuid4(), "Echo", 3, request)
        failed_spec = NewJob(uuid.uuid4(), "Echo", 3, request)
        await kit.store.enqueue(done_spec)
        await kit.store.enqueue(failed_spec)
        claims = {claim.job.id: claim for claim in await claim_every(kit, 2)}
        completed = await kit.store.complete(claims[done_spec.id], 1)
        await kit.store.fail(claims[failed_spec.id], BOOM, retry_in=None)
        assert completed is not None and completed.request == JobRequest(owner="alice")
        assert completed.request.trace_context == traceparent
        kept = (await read(kit.store, done_spec.id)).request
        assert (kept, kept.trace_context) == (JobRequest(owner="alice"), traceparent)
        failed = (await read(kit.store, failed_spec.id)).request
        assert (failed, failed.trace_context) == (request, traceparent)
