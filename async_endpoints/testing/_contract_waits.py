"""The core contract's waits: `wait_for_work` (with the optional hand-over) and
`wait_until_terminal`."""

from __future__ import annotations

import asyncio
import uuid

from .._job import JobStatus
from ._contract_support import assert_in_group_order, claim_every, new_job, read
from ._kit import StoreKit

#: How long a test lets a waiter settle into its wait before it acts. Never a condition
#: of the test passing: a waiter that was not waiting yet finds the work at once instead.
SETTLE = 0.05
#: The longest a test waits for what should come at once: far beyond any healthy store.
PROMPTLY = 5.0


class WaitContract:
    """Waiting for work and for a job's end, woken by events rather than by polling."""

    async def test_wait_for_work_returns_promptly_after_an_enqueue(self, kit: StoreKit) -> None:
        """An idle waiter is woken by a submission, long before its timeout."""
        await kit.store.claim(1, lease=kit.lease)
        waiter = asyncio.create_task(kit.store.wait_for_work(30))
        await asyncio.sleep(SETTLE)
        assert not waiter.done()
        await kit.store.enqueue(new_job())
        async with asyncio.timeout(PROMPTLY):
            await waiter

    async def test_wait_for_work_returns_at_once_for_work_enqueued_before_it(
        self, kit: StoreKit
    ) -> None:
        """A job enqueued after the last claim began is never slept through."""
        await kit.store.claim(1, lease=kit.lease)
        await kit.store.enqueue(new_job())
        async with asyncio.timeout(PROMPTLY):
            await kit.store.wait_for_work(30)

    async def test_wait_for_work_gives_up_after_its_timeout(self, kit: StoreKit) -> None:
        """With nothing to do, the wait ends at its timeout."""
        await kit.store.claim(1, lease=kit.lease)
        async with asyncio.timeout(PROMPTLY):
            await kit.store.wait_for_work(0.05)

    async def test_wait_for_work_returns_when_a_scheduled_job_falls_due(
        self, kit: StoreKit
    ) -> None:
        """A waiter does not sleep through a delayed job: it returns once the job is due,
        long before its own timeout, and the job is claimable then."""
        job = await kit.store.enqueue(new_job(delay=0.2))
        assert await kit.store.claim(1, lease=kit.lease) == []
        waiter = asyncio.create_task(kit.store.wait_for_work(30))
        await kit.advance(0.25)
        async with asyncio.timeout(PROMPTLY):
            await waiter
        assert [c.job.id for c in await kit.store.claim(1, lease=kit.lease)] == [job.id]

    async def test_a_job_submitted_to_an_idle_waiter_runs_exactly_once(self, kit: StoreKit) -> None:
        """A waiter offering slots gets the new job handed over (claimed, ready to settle)
        or, from stores that do not hand over, can claim it next; never both."""
        await kit.store.claim(2, lease=kit.lease)
        waiter = asyncio.create_task(kit.store.wait_for_work(30, take=2, lease=kit.lease))
        await asyncio.sleep(SETTLE)
        job = await kit.store.enqueue(new_job())
        async with asyncio.timeout(PROMPTLY):
            handed = await waiter
        claims = handed + await kit.store.claim(2, lease=kit.lease)
        assert [claim.job.id for claim in claims] == [job.id]
        assert claims[0].job.status is JobStatus.IN_PROGRESS
        assert await kit.store.complete(claims[0], "once") is not None
        assert await kit.store.claim(2, lease=kit.lease) == []

    async def test_a_job_handed_to_a_waiter_that_gave_up_goes_back_to_the_head(
        self, kit: StoreKit
    ) -> None:
        """A waiter cancelled while a job is being handed to it: the job is claimed next,
        ahead of later jobs, its attempt not counted."""
        await kit.store.claim(2, lease=kit.lease)
        waiter = asyncio.create_task(kit.store.wait_for_work(30, take=2, lease=kit.lease))
        await asyncio.sleep(SETTLE)
        job = await kit.store.enqueue(new_job())
        waiter.cancel()
        try:
            handed = await waiter
        except asyncio.CancelledError:
            handed = []
        later = await kit.store.enqueue(new_job())
        claims = handed + await claim_every(kit, 2 - len(handed), 5)
        assert_in_group_order(kit, [c.job for c in claims], [job, later])
        assert len(claims) == 2 and [c.job.retry_count for c in claims] == [0, 0]

    async def test_a_waiter_is_handed_only_jobs_of_its_queues(self, kit: StoreKit) -> None:
        """A waiter serving "high" is never handed a "low" job, which stays Queued for a
        worker of "low"; every job still runs exactly once."""
        await kit.store.claim(2, queues=("high", "low"), lease=kit.lease)
        waiter = asyncio.create_task(
            kit.store.wait_for_work(30, take=2, lease=kit.lease, queues=("high",))
        )
        await asyncio.sleep(SETTLE)
        low = await kit.store.enqueue(new_job(queue="low"))
        high = await kit.store.enqueue(new_job(queue="high"))
        async with asyncio.timeout(PROMPTLY):
            handed = await waiter
        assert [claim.job.id for claim in handed] in ([], [high.id])
        assert (await read(kit.store, low.id)).status is JobStatus.QUEUED
        claims = handed + await kit.store.claim(5, queues=("high", "low"), lease=kit.lease)
        assert sorted(claim.job.id for claim in claims) == sorted([high.id, low.id])

    async def test_wait_until_terminal_is_woken_by_completion(self, kit: StoreKit) -> None:
        """A waiter gets the completed job as soon as it is settled."""
        job = await kit.store.enqueue(new_job())
        waiter = asyncio.create_task(kit.store.wait_until_terminal(job.id, 30))
        (claim,) = await kit.store.claim(1, lease=kit.lease)
        await asyncio.sleep(SETTLE)
        assert not waiter.done()
        await kit.store.complete(claim, {"ok": True})
        async with asyncio.timeout(PROMPTLY):
            done = await waiter
        assert done is not None and done.status is JobStatus.COMPLETED
        assert done.result == {"ok": True}

    async def test_wait_until_terminal_answers_the_current_job_after_its_timeout(
        self, kit: StoreKit
    ) -> None:
        """Not terminal in time: the job as it is; an unknown id: None."""
        job = await kit.store.enqueue(new_job())
        async with asyncio.timeout(PROMPTLY):
            current = await kit.store.wait_until_terminal(job.id, 0.05)
            assert current is not None and current.status is JobStatus.QUEUED
            assert await kit.store.wait_until_terminal(uuid.uuid4(), 0.05) is None
