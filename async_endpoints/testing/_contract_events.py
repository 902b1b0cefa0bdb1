"""The progress and events contract: `ProgressStore.set_progress` and
`EventStore.watch_job`."""

from __future__ import annotations

import asyncio
from typing import Any

from .._job import JobStatus
from .._job_watch import JobNotice
from .._store import JobStore
from .._store_features import EventStore, ProgressStore
from ._contract_support import BOOM, forged, new_job, read, require
from ._kit import StoreKit

#: Seconds a notice may take to arrive (through a server's pub/sub, say).
_NOTICE_WAIT = 10.0


def progress_store(store: JobStore) -> ProgressStore:
    """``store`` as a `ProgressStore`, or skip the test when it is not one."""
    require(store, ProgressStore)
    assert isinstance(store, ProgressStore)
    return store


def event_store(store: JobStore) -> EventStore:
    """``store`` as an `EventStore`, or skip the test when it is not one."""
    require(store, EventStore)
    assert isinstance(store, EventStore)
    return store


class Notices:
    """A listener that keeps what it is told, and waits for a status."""

    def __init__(self) -> None:
        self.seen: list[JobNotice] = []
        self._changed = asyncio.Event()

    def __call__(self, notice: JobNotice) -> None:
        self.seen.append(notice)
        self._changed.set()

    async def until(self, status: JobStatus) -> None:
        """Wait until a status notice says ``status``."""
        async with asyncio.timeout(_NOTICE_WAIT):
            while not any(n.job is not None and n.job.status is status for n in self.seen):
                self._changed.clear()
                await self._changed.wait()

    def told(self) -> list[Any]:
        """Statuses (each once in a row) and progress values, in the order told."""
        told: list[Any] = []
        for notice in self.seen:
            item: Any = notice.progress if notice.job is None else notice.job.status
            if not told or told[-1] != item or notice.job is None:
                told.append(item)
        return told


class EventsContract:
    """Progress is written while the claim is held; watchers are told every change."""

    async def test_progress_is_kept_while_the_claim_is_held(self, kit: StoreKit) -> None:
        """The value becomes the job's progress, stays through the job's end, and a claim
        that is not held (forged, or settled already) writes nothing."""
        store = progress_store(kit.store)
        job = await kit.store.enqueue(new_job())
        (claim,) = await kit.store.claim(1, lease=kit.lease)
        assert await store.set_progress(claim, {"done": 1, "of": 2})
        assert (await read(kit.store, job.id)).progress == {"done": 1, "of": 2}
        assert not await store.set_progress(forged(claim.job), "forged")
        await kit.store.complete(claim, "ok")
        assert not await store.set_progress(claim, "too late")
        done = await read(kit.store, job.id)
        assert done.status is JobStatus.COMPLETED and done.progress == {"done": 1, "of": 2}

    async def test_progress_stays_through_a_retry(self, kit: StoreKit) -> None:
        store = progress_store(kit.store)
        job = await kit.store.enqueue(new_job())
        (claim,) = await kit.store.claim(1, lease=kit.lease)
        assert await store.set_progress(claim, 40)
        await kit.store.fail(claim, BOOM, retry_in=0)
        assert (await read(kit.store, job.id)).progress == 40

    async def test_a_watcher_is_told_each_change_in_order(self, kit: StoreKit) -> None:
        """Claimed, progress, retried, claimed again, completed: told in that order, to a
        watcher of another client of the same store (peer) too."""
        progress = progress_store(kit.store)
        job = await kit.store.enqueue(new_job())
        here, there = Notices(), Notices()
        stops = [
            await event_store(kit.store).watch_job(job.id, here),
            await event_store(kit.other).watch_job(job.id, there),
        ]
        try:
            (claim,) = await kit.store.claim(1, lease=kit.lease)
            await progress.set_progress(claim, 1)
            await kit.store.fail(claim, BOOM, retry_in=0)
            (claim,) = await kit.store.claim(1, lease=kit.lease)
            await progress.set_progress(claim, 2)
            await kit.store.complete(claim, "ok")
            for notices in (here, there):
                await notices.until(JobStatus.COMPLETED)
                assert notices.told() == [
                    JobStatus.IN_PROGRESS,
                    1,
                    JobStatus.QUEUED,
                    JobStatus.IN_PROGRESS,
                    2,
                    JobStatus.COMPLETED,
                ]
                final = notices.seen[-1].job
                assert final is not None and final.result == "ok" and final.progress == 2
        finally:
            for stop in stops:
                stop()

    async def test_a_watch_that_stopped_is_told_nothing(self, kit: StoreKit) -> None:
        job = await kit.store.enqueue(new_job())
        stopped, kept = Notices(), Notices()
        stop = await event_store(kit.store).watch_job(job.id, stopped)
        stop_kept = await event_store(kit.store).watch_job(job.id, kept)
        stop()
        stop()  # idempotent
        try:
            (claim,) = await kit.store.claim(1, lease=kit.lease)
            await kit.store.complete(claim, None)
            await kept.until(JobStatus.COMPLETED)
            assert stopped.seen == []
        finally:
            stop_kept()
