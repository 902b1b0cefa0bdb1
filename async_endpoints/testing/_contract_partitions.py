"""The core contract's partition keys: the jobs of one key run one at a time, in the order
they were submitted, and a busy key holds up no other (the policy of
`async_endpoints._lifecycle`)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from .._job import MAX_LABEL_LENGTH, Job, JobStatus
from .._store import InspectionStore
from ._contract_support import (
    BOOM,
    TICK,
    assert_in_group_order,
    claim_every,
    claim_ids,
    new_job,
    read,
)
from ._kit import StoreKit

KEY = "account-1"
OTHER = "account-2"
PRIORITY = ("high", "default", "low")
#: Labels a store must keep as they are: separators, braces (a Redis hash tag), non-ASCII.
ODD_LABELS = ("acct:{42} ü", "a b/c\\d", "*", "ℵ" * MAX_LABEL_LENGTH)
BAD_LABELS: tuple[Any, ...] = ("", "k" * (MAX_LABEL_LENGTH + 1), 5, b"key", ["k"])


async def submitted(kit: StoreKit, count: int, key: str = KEY, **options: Any) -> list[Job]:
    """``count`` jobs of ``key`` enqueued one after the other, as stored."""
    jobs = []
    for _ in range(count):
        jobs.append(await kit.store.enqueue(new_job(partition_key=key, **options)))
        await kit.advance(TICK)
    return jobs


class PartitionContract:
    """One lane per key: only its first job is claimable, and it holds the key until it
    is terminal."""

    async def test_the_jobs_of_one_key_are_claimed_one_at_a_time_in_submission_order(
        self, kit: StoreKit
    ) -> None:
        """However many jobs a claim asks for, it takes only a key's first job; the next
        one is claimable once that one completed, never before."""
        jobs = await submitted(kit, 4)
        for job in jobs:
            (claim,) = await kit.store.claim(10, lease=kit.lease)
            assert claim.job.id == job.id and claim.job.partition_key == KEY
            assert await claim_ids(kit) == []
            done = await kit.store.complete(claim, None)
            assert done is not None and done.partition_key == KEY
        assert await claim_ids(kit) == []

    async def test_a_busy_key_holds_up_no_other_job_and_no_claim_puts_a_job_back(
        self, kit: StoreKit
    ) -> None:
        """A claim skips the jobs waiting behind a busy key and takes the others (other
        keys, no key); the waiting job is never touched: it reads back exactly as it was
        stored, claim after claim."""
        first, second = await submitted(kit, 2)
        other = await kit.store.enqueue(new_job(partition_key=OTHER))
        plain = await kit.store.enqueue(new_job())
        claims = await claim_every(kit, 3)
        assert_in_group_order(kit, [claim.job for claim in claims], [first, other, plain])
        assert await read(kit.store, second.id) == second
        later = await kit.store.enqueue(new_job())
        assert [claim.job.id for claim in await claim_every(kit, 1)] == [later.id]
        assert await claim_ids(kit) == []
        assert await read(kit.store, second.id) == second

    async def test_each_key_has_a_lane_of_its_own(self, kit: StoreKit) -> None:
        """With three jobs on each of five keys, submitted in turns, a claim takes the
        first job of every key, oldest first (in each order group); their completions
        free the second ones."""
        keys = [f"key-{n}" for n in range(5)]
        lanes: dict[str, list[Job]] = {key: [] for key in keys}
        for _ in range(3):
            for key in keys:
                lanes[key] += await submitted(kit, 1, key)
        for turn in range(3):
            claims = await claim_every(kit, len(keys), 100)
            taken = [claim.job for claim in claims]
            expected = [lanes[key][turn] for key in keys]
            if turn == 0:
                assert_in_group_order(kit, taken, expected)
            assert sorted(job.id for job in taken) == sorted(job.id for job in expected)
            for claim in claims:
                await kit.store.complete(claim, None)
        assert await claim_ids(kit, 100) == []

    async def test_one_key_is_one_lane_across_queues(self, kit: StoreKit) -> None:
        """A key's later job in a higher-priority queue still waits for its earlier one."""
        first = await kit.store.enqueue(new_job(partition_key=KEY, queue="low"))
        second = await kit.store.enqueue(new_job(partition_key=KEY, queue="high"))
        (claim,) = await kit.store.claim(10, queues=PRIORITY, lease=kit.lease)
        assert claim.job.id == first.id
        assert await claim_ids(kit, queues=PRIORITY) == []
        await kit.store.complete(claim, None)
        assert await claim_ids(kit, queues=PRIORITY) == [second.id]

    @pytest.mark.parametrize("backoff", [0.0, 1.0], ids=["retry-at-once", "retry-later"])
    async def test_a_key_is_held_through_the_retries_of_its_job(
        self, kit: StoreKit, backoff: float
    ) -> None:
        """A failed attempt with retries left keeps the key: during the backoff nothing
        of the key is claimable, then the same job runs again, and only its completion
        frees the next."""
        first, second = await submitted(kit, 2)
        (claim,) = await kit.store.claim(10, lease=kit.lease)
        retried = await kit.store.fail(claim, BOOM, retry_in=backoff * kit.lease)
        assert retried is not None and retried.retry_count == 1
        if backoff:
            assert retried.status is JobStatus.SCHEDULED
            assert await claim_ids(kit) == []
            await kit.advance(kit.lease * 1.2)
        (again,) = await kit.store.claim(10, lease=kit.lease)
        assert again.job.id == first.id and again.job.retry_count == 1
        assert await claim_ids(kit) == []
        await kit.store.complete(again, None)
        assert await claim_ids(kit) == [second.id]

    async def test_a_key_is_held_through_the_recovery_of_its_job(self, kit: StoreKit) -> None:
        """A job whose worker died is recovered as its key's first job: it runs again
        before the next one, which waits until it completes."""
        first, second = await submitted(kit, 2)
        await kit.store.claim(10, lease=kit.lease)
        await kit.advance(kit.lease + 0.2)
        assert await kit.store.recover() == [first.id]
        (again,) = await kit.store.claim(10, lease=kit.lease)
        assert again.job.id == first.id and again.job.retry_count == 1
        assert await claim_ids(kit) == []
        await kit.store.complete(again, None)
        assert await claim_ids(kit) == [second.id]

    async def test_a_recovered_job_without_retries_left_frees_its_key(self, kit: StoreKit) -> None:
        """Recovery that makes the first job Failed lets the next one run."""
        (first,) = await submitted(kit, 1, max_retries=0)
        (second,) = await submitted(kit, 1)
        await kit.store.claim(10, lease=kit.lease)
        await kit.advance(kit.lease + 0.2)
        assert await kit.store.recover() == [first.id]
        assert (await read(kit.store, first.id)).status is JobStatus.FAILED
        assert await claim_ids(kit) == [second.id]

    @pytest.mark.parametrize("final", ["completed", "dead"])
    async def test_the_end_of_a_keys_first_job_makes_the_next_claimable(
        self, kit: StoreKit, final: str
    ) -> None:
        """Completed, or Failed with no retry: the next job of the key is claimable at
        once (same step), and only it."""
        first, second, _ = await submitted(kit, 3)
        (claim,) = await kit.store.claim(10, lease=kit.lease)
        if final == "completed":
            assert await kit.store.complete(claim, None) is not None
        else:
            assert await kit.store.fail(claim, BOOM, retry_in=None) is not None
        assert (await read(kit.store, first.id)).status.is_terminal
        assert await claim_ids(kit) == [second.id]

    async def test_a_delayed_first_job_holds_the_later_ones(self, kit: StoreKit) -> None:
        """The later jobs of a key wait, Queued, for a Scheduled first job to be due,
        claimed and finished."""
        (first,) = await submitted(kit, 1, delay=kit.lease)
        (second,) = await submitted(kit, 1)
        assert await claim_ids(kit) == []
        assert await read(kit.store, second.id) == second
        await kit.advance(kit.lease * 1.2)
        (claim,) = await kit.store.claim(10, lease=kit.lease)
        assert claim.job.id == first.id
        assert await claim_ids(kit) == []
        await kit.store.complete(claim, None)
        assert await claim_ids(kit) == [second.id]

    async def test_a_later_delayed_job_waits_for_its_turn_and_for_its_time(
        self, kit: StoreKit
    ) -> None:
        """Behind a running job, a later Scheduled job stays Scheduled even once due, and
        runs when the first ends; freed before it is due, it runs when due."""
        first = (await submitted(kit, 1))[0]
        (due,) = await submitted(kit, 1, delay=kit.lease * 0.5)
        (claim,) = await kit.store.claim(10, lease=kit.lease * 10)
        assert claim.job.id == first.id
        await kit.advance(kit.lease * 0.7)
        assert await claim_ids(kit) == []
        assert (await read(kit.store, due.id)).status is JobStatus.SCHEDULED
        (not_due,) = await submitted(kit, 1, delay=kit.lease * 2)
        await kit.store.complete(claim, None)
        (claim,) = await kit.store.claim(10, lease=kit.lease * 10)
        assert claim.job.id == due.id
        await kit.store.complete(claim, None)
        assert await claim_ids(kit) == []
        await kit.advance(kit.lease * 2.2)
        assert await claim_ids(kit) == [not_due.id]

    async def test_a_resent_enqueue_does_not_join_the_lane_twice(self, kit: StoreKit) -> None:
        """The same job enqueued again (a reply lost) is stored once and runs once."""
        resent = new_job(partition_key=KEY)
        first = await kit.store.enqueue(resent)
        assert await kit.store.enqueue(resent) == first
        (second,) = await submitted(kit, 1)
        (claim,) = await kit.store.claim(10, lease=kit.lease)
        assert claim.job.id == first.id
        await kit.store.complete(claim, None)
        (claim,) = await kit.store.claim(10, lease=kit.lease)
        assert claim.job.id == second.id
        await kit.store.complete(claim, None)
        assert await claim_ids(kit) == []

    async def test_two_processes_claiming_at_once_take_one_job_of_a_key(
        self, kit: StoreKit
    ) -> None:
        """Concurrent claims from two clients of the same data take the key's first job
        once between them, and nothing else of the key."""
        first, _, _ = await submitted(kit, 3)
        mine, theirs = await asyncio.gather(
            kit.store.claim(5, lease=kit.lease), kit.other.claim(5, lease=kit.lease)
        )
        assert [claim.job.id for claim in mine + theirs] == [first.id]

    @pytest.mark.parametrize("label", ODD_LABELS, ids=["braces", "separators", "star", "long"])
    async def test_a_key_and_a_tenant_are_kept_as_given(self, kit: StoreKit, label: str) -> None:
        """Any string of 1 to 255 characters is a key and a tenant, read back unchanged
        from enqueue, get, claim and settlement; jobs of another key run beside it."""
        job = await kit.store.enqueue(new_job(partition_key=label, tenant=label))
        other_key = label[:-1] + "#"
        other = await kit.store.enqueue(new_job(partition_key=other_key, tenant=label))
        assert (job.partition_key, job.tenant) == (label, label)
        assert await read(kit.store, job.id) == job
        first, second = await kit.store.claim(10, lease=kit.lease)
        assert (first.job.id, second.job.id) == (job.id, other.id)
        assert (first.job.partition_key, first.job.tenant) == (label, label)
        done = await kit.store.complete(first, None)
        assert done is not None and (done.partition_key, done.tenant) == (label, label)

    @pytest.mark.parametrize("field", ["partition_key", "tenant"])
    @pytest.mark.parametrize("label", BAD_LABELS, ids=["empty", "256", "int", "bytes", "list"])
    async def test_a_bad_key_or_tenant_is_a_value_error_and_stores_nothing(
        self, kit: StoreKit, field: str, label: Any
    ) -> None:
        """Empty, longer than 255 characters, or not a string: `ValueError` when the
        job is made, before any store sees it."""
        with pytest.raises(ValueError):
            await kit.store.enqueue(new_job(**{field: label}))
        assert await claim_ids(kit) == []
        if isinstance(kit.store, InspectionStore):
            assert await kit.store.count_waiting() == 0
