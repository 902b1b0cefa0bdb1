"""The inspection contract's counts: `count_waiting` and `queue_stats`."""

from __future__ import annotations

from .._listing import QueueStats
from ._contract_support import BOOM, FAR, control, inspection, new_job
from ._kit import StoreKit


class StatsContract:
    """Counts of waiting jobs, and per queue and status, that follow every transition."""

    async def test_count_waiting_counts_queued_and_scheduled_jobs_of_every_queue(
        self, kit: StoreKit
    ) -> None:
        """Queued and Scheduled jobs wait, whatever their queue; InProgress and terminal
        ones do not."""
        store = inspection(kit)
        for _ in range(3):
            await kit.store.enqueue(new_job())
        await kit.store.enqueue(new_job(queue="low", delay=FAR))
        await kit.store.enqueue(new_job(queue="high"))
        assert await store.count_waiting() == 5
        first, second = await kit.store.claim(2, lease=kit.lease)
        assert await store.count_waiting() == 3
        await kit.store.fail(first, BOOM, retry_in=FAR)
        await kit.store.complete(second, None)
        assert await store.count_waiting() == 4

    async def test_queue_stats_counts_each_queue_by_status(self, kit: StoreKit) -> None:
        """One entry per queue asked for, in that order; a queue without jobs counts
        zeros."""
        store = inspection(kit)
        for queue in ("a", "a", "a", "a", "b", "b"):
            await kit.store.enqueue(new_job(queue=queue))
        await kit.store.enqueue(new_job(queue="b", delay=FAR))
        _, done, failed = await kit.store.claim(3, queues=("a",), lease=kit.lease)
        await kit.store.complete(done, None)
        await kit.store.fail(failed, BOOM, retry_in=None)
        (retried,) = await kit.store.claim(1, queues=("b",), lease=kit.lease)
        await kit.store.fail(retried, BOOM, retry_in=FAR)
        assert await store.queue_stats(["b", "empty", "a"]) == [
            QueueStats("b", queued=1, scheduled=2),
            QueueStats("empty"),
            QueueStats("a", queued=1, in_progress=1, completed=1, failed=1),
        ]

    async def test_queue_stats_follow_recovery_and_retention(self, kit: StoreKit) -> None:
        """A recovered job counts as Queued again, or Failed without retries left; a
        finished job whose retention has passed is no longer counted."""
        store = inspection(kit)
        await kit.store.enqueue(new_job(queue="a", max_retries=1))
        await kit.store.enqueue(new_job(queue="a", max_retries=0))
        await kit.store.claim(2, queues=("a",), lease=kit.lease)
        await kit.store.enqueue(new_job(queue="b"))
        (old,) = await kit.store.claim(1, queues=("b",), lease=kit.lease)
        await kit.store.complete(old, None)
        assert await store.queue_stats(["a", "b"]) == [
            QueueStats("a", in_progress=2),
            QueueStats("b", completed=1),
        ]
        await kit.advance(max(kit.lease, kit.retention) + 0.2)
        assert len(await kit.store.recover()) == 2
        await kit.store.enqueue(new_job(queue="b"))
        (new,) = await kit.store.claim(1, queues=("b",), lease=kit.lease)
        await kit.store.complete(new, None)
        assert await store.queue_stats(["a", "b"]) == [
            QueueStats("a", queued=1, failed=1),
            QueueStats("b", completed=1),
        ]

    async def test_queue_stats_follow_cancel_requeue_and_pause(self, kit: StoreKit) -> None:
        """Cancelled jobs count as Canceled, whatever they were; requeued ones as Queued;
        a paused queue says so, with or without jobs."""
        store, steering = inspection(kit), control(kit)
        queued = [(await kit.store.enqueue(new_job(queue="x"))).id for _ in range(2)]
        scheduled = await kit.store.enqueue(new_job(queue="x", delay=FAR))
        for _ in range(2):
            await kit.store.enqueue(new_job(queue="y"))
        running, failing = await kit.store.claim(2, queues=("y",), lease=kit.lease)
        await kit.store.fail(failing, BOOM, retry_in=None)
        for job_id in (queued[0], scheduled.id, running.job.id):
            await steering.cancel(job_id)
        await steering.requeue(queued[0])
        await steering.requeue(failing.job.id)
        await steering.pause(["y", "z"])
        assert await store.queue_stats(["x", "y", "z"]) == [
            QueueStats("x", queued=2, canceled=1),
            QueueStats("y", paused=True, queued=1, canceled=1),
            QueueStats("z", paused=True),
        ]
        assert await store.count_waiting() == 3
        await steering.resume(["y"])
        (stats,) = await store.queue_stats(["y"])
        assert not stats.paused
