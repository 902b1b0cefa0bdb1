"""The control contract's pause and resume: stored, and obeyed by claims and hand-overs."""

from __future__ import annotations

import asyncio

from .._job import JobStatus
from ._contract_support import control, new_job, peer_control, read
from ._contract_waits import PROMPTLY, SETTLE
from ._kit import StoreKit

PRIORITY = ("high", "default", "low")


class PauseContract:
    """Pause: no job of a paused queue is claimed or handed over until it is resumed."""

    async def test_claims_skip_a_paused_queue_until_it_is_resumed(self, kit: StoreKit) -> None:
        """With "high" paused, a claim goes on to the next queues; once resumed, "high"
        comes first again."""
        store = control(kit)
        high = await kit.store.enqueue(new_job(queue="high"))
        default = await kit.store.enqueue(new_job())
        await store.pause(["high"])
        claims = await kit.store.claim(5, queues=PRIORITY, lease=kit.lease)
        assert [c.job.id for c in claims] == [default.id]
        assert (await read(kit.store, high.id)).status is JobStatus.QUEUED
        await store.resume(["high"])
        claims = await kit.store.claim(5, queues=PRIORITY, lease=kit.lease)
        assert [c.job.id for c in claims] == [high.id]

    async def test_paused_queues_names_the_queues_paused_now(self, kit: StoreKit) -> None:
        """pause and resume take several queues, are idempotent, and touch only the
        queues they name."""
        store = control(kit)
        assert await store.paused_queues() == frozenset()
        await store.pause(["high", "low"])
        await store.pause(["low"])
        assert await store.paused_queues() == {"high", "low"}
        await store.resume(["low", "never-paused"])
        assert await store.paused_queues() == {"high"}
        await store.resume([])
        await store.pause([])
        assert await store.paused_queues() == {"high"}

    async def test_a_paused_queue_takes_submissions_and_lets_running_jobs_finish(
        self, kit: StoreKit
    ) -> None:
        """Jobs are still stored (Queued, or Scheduled) in a paused queue; a job running
        when the pause came renews and settles as usual."""
        store = control(kit)
        await kit.store.enqueue(new_job())
        (claim,) = await kit.store.claim(1, lease=kit.lease)
        await store.pause(["default"])
        queued = await kit.store.enqueue(new_job())
        scheduled = await kit.store.enqueue(new_job(delay=kit.lease * 10))
        assert (await read(kit.store, queued.id)).status is JobStatus.QUEUED
        assert (await read(kit.store, scheduled.id)).status is JobStatus.SCHEDULED
        assert await kit.store.renew([claim], lease=kit.lease) == set()
        assert await kit.store.complete(claim, "finished") is not None
        assert await kit.store.claim(5, lease=kit.lease) == []

    async def test_a_due_job_of_a_paused_queue_waits_for_the_resume(self, kit: StoreKit) -> None:
        """A delayed job whose time comes while its queue is paused is not claimed until
        the queue is resumed."""
        store = control(kit)
        job = await kit.store.enqueue(new_job(delay=kit.lease * 0.5))
        await store.pause(["default"])
        await kit.advance(kit.lease * 0.7)
        assert await kit.store.claim(5, lease=kit.lease) == []
        await store.resume(["default"])
        assert [c.job.id for c in await kit.store.claim(5, lease=kit.lease)] == [job.id]

    async def test_a_paused_queue_is_never_handed_over(self, kit: StoreKit) -> None:
        """An idle waiter is not handed a job submitted to a paused queue it serves; the
        job waits for the resume."""
        store = control(kit)
        await store.pause(["default"])
        await kit.store.claim(2, lease=kit.lease)
        waiter = asyncio.create_task(kit.store.wait_for_work(0.5, take=2, lease=kit.lease))
        await asyncio.sleep(SETTLE)
        job = await kit.store.enqueue(new_job())
        async with asyncio.timeout(PROMPTLY):
            assert await waiter == []
        assert (await read(kit.store, job.id)).status is JobStatus.QUEUED
        assert await kit.store.claim(2, lease=kit.lease) == []
        await store.resume(["default"])
        assert [c.job.id for c in await kit.store.claim(2, lease=kit.lease)] == [job.id]

    async def test_resume_wakes_an_idle_waiter(self, kit: StoreKit) -> None:
        """A worker waiting for work while its queue is paused is woken by the resume and
        the waiting job runs exactly once."""
        store = control(kit)
        await store.pause(["default"])
        job = await kit.store.enqueue(new_job())
        assert await kit.store.claim(2, lease=kit.lease) == []
        waiter = asyncio.create_task(kit.store.wait_for_work(30, take=2, lease=kit.lease))
        await asyncio.sleep(SETTLE)
        await store.resume(["default"])
        async with asyncio.timeout(PROMPTLY):
            handed = await waiter
        claims = handed + await kit.store.claim(2, lease=kit.lease)
        assert [c.job.id for c in claims] == [job.id]

    async def test_a_pause_is_obeyed_by_every_process(self, kit: StoreKit) -> None:
        """A queue paused through one process is skipped by the claims of another, and
        resumed through either."""
        store, peer = control(kit), peer_control(kit)
        job = await kit.store.enqueue(new_job())
        await peer.pause(["default"])
        assert await store.paused_queues() == {"default"}
        assert await kit.store.claim(5, lease=kit.lease) == []
        await store.resume(["default"])
        assert await peer.paused_queues() == frozenset()
        assert [c.job.id for c in await kit.store.claim(5, lease=kit.lease)] == [job.id]
