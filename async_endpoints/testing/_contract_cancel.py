"""The control contract's cancel (`ControlStore.cancel` and its listeners)."""

from __future__ import annotations

import asyncio
import uuid

from .._job import JobRequest, JobStatus
from .._store import Claim
from .._store_features import ClaimCancelStore
from ._contract_support import BOOM, control, new_job, peer_control, read, require
from ._contract_waits import PROMPTLY, SETTLE
from ._kit import StoreKit


class Heard:
    """A cancel listener that remembers the ids it was called with."""

    def __init__(self) -> None:
        self.ids: list[uuid.UUID] = []
        self.tokens: list[str | None] = []
        self._called = asyncio.Event()

    def __call__(self, job_id: uuid.UUID, token: str | None = None) -> None:
        self.ids.append(job_id)
        self.tokens.append(token)
        self._called.set()

    async def until(self, job_id: uuid.UUID) -> None:
        """Return once called with ``job_id``; fail after `PROMPTLY` seconds."""
        async with asyncio.timeout(PROMPTLY):
            while job_id not in self.ids:
                self._called.clear()
                await self._called.wait()


async def _running(kit: StoreKit, body: str | None = None) -> Claim:
    await kit.store.enqueue(new_job(body=body))
    (claim,) = await kit.store.claim(1, lease=kit.lease)
    return claim


class CancelContract:
    """Cancel: waiting jobs never run, a running job's claim is dropped and its process is
    told; terminal jobs are left alone; twice or concurrently is one cancel."""

    async def test_cancel_of_a_queued_job_makes_it_canceled_and_it_never_runs(
        self, kit: StoreKit
    ) -> None:
        """A Queued job becomes Canceled (completed_at set) and is never claimed; it keeps
        its whole request, since a requeue may run it again."""
        store = control(kit)
        spec = new_job(body='{"a": 1}', route_params={"t": "x"}, owner="alice")
        await kit.store.enqueue(spec)
        canceled = await store.cancel(spec.id)
        assert canceled is not None and canceled.status is JobStatus.CANCELED
        assert canceled.completed_at is not None and canceled.run_at is None
        assert canceled.request == spec.request
        assert await kit.store.get(spec.id) == canceled
        assert await kit.store.claim(5, lease=kit.lease) == []

    async def test_cancel_of_a_scheduled_job_makes_it_canceled_and_it_never_runs(
        self, kit: StoreKit
    ) -> None:
        """A Scheduled job becomes Canceled at once, its run_at cleared, and is not
        claimed when its time comes."""
        store = control(kit)
        # Due before the Canceled job's retention runs out, to read it then.
        job = await kit.store.enqueue(new_job(delay=kit.retention * 0.5))
        canceled = await store.cancel(job.id)
        assert canceled is not None and canceled.status is JobStatus.CANCELED
        assert canceled.run_at is None and canceled.completed_at is not None
        await kit.advance(kit.retention * 0.7)
        assert await kit.store.claim(5, lease=kit.lease) == []
        assert await kit.store.get(job.id) == canceled

    async def test_a_canceled_job_no_longer_counts_against_max_waiting(self, kit: StoreKit) -> None:
        """Only Queued and Scheduled jobs wait: cancelling one makes room."""
        store = control(kit)
        job = await kit.store.enqueue(new_job(), max_waiting=1)
        await store.cancel(job.id)
        await kit.store.enqueue(new_job(), max_waiting=1)

    async def test_cancel_of_a_running_job_drops_its_claim(self, kit: StoreKit) -> None:
        """An InProgress job is Canceled at once; its worker can neither renew, complete
        nor fail it afterwards (a late result is refused)."""
        store = control(kit)
        claim = await _running(kit, body='{"a": 1}')
        canceled = await store.cancel(claim.job.id)
        assert canceled is not None and canceled.status is JobStatus.CANCELED
        assert canceled.completed_at is not None
        assert await kit.store.renew([claim], lease=kit.lease) == {claim.token}
        assert await kit.store.complete(claim, "late") is None
        assert await kit.store.fail(claim, BOOM, retry_in=0) is None
        job = await read(kit.store, claim.job.id)
        assert job == canceled and job.result is None
        assert job.request == JobRequest(body='{"a": 1}')

    async def test_cancel_of_a_running_job_is_pushed_to_every_process(self, kit: StoreKit) -> None:
        """The cancel listeners of this process and of another one on the same store are
        called with the job's id."""
        store, peer = control(kit), peer_control(kit)
        here, there = Heard(), Heard()
        store.add_cancel_listener(here)
        peer.add_cancel_listener(there)
        claim = await _running(kit)
        await peer.cancel(claim.job.id)
        await here.until(claim.job.id)
        await there.until(claim.job.id)

    async def test_cancel_of_a_running_job_tells_claim_listeners_the_claim_it_dropped(
        self, kit: StoreKit
    ) -> None:
        """Claim cancel listeners (`ClaimCancelStore`) of this process and of another one
        are called with the job's id and the token of the cancelled claim, once."""
        store, peer = control(kit), peer_control(kit)
        require(kit.store, ClaimCancelStore)
        require(kit.other, ClaimCancelStore)
        assert isinstance(kit.store, ClaimCancelStore)
        assert isinstance(kit.other, ClaimCancelStore)
        here, there = Heard(), Heard()
        kit.store.add_claim_cancel_listener(here)
        kit.other.add_claim_cancel_listener(there)
        claim = await _running(kit)
        await peer.cancel(claim.job.id)
        await here.until(claim.job.id)
        await there.until(claim.job.id)
        await store.cancel(claim.job.id)  # terminal now: nothing more is pushed
        await asyncio.sleep(SETTLE)
        assert here.tokens == [claim.token] == there.tokens

    async def test_cancel_wakes_the_waiters_of_the_job(self, kit: StoreKit) -> None:
        """wait_until_terminal returns the Canceled job as soon as it is cancelled, for a
        running job and for a queued one."""
        store = control(kit)
        claim = await _running(kit)
        queued = await kit.store.enqueue(new_job())
        waiters = [
            asyncio.create_task(kit.store.wait_until_terminal(job_id, 30))
            for job_id in (claim.job.id, queued.id)
        ]
        await asyncio.sleep(SETTLE)
        await store.cancel(claim.job.id)
        await store.cancel(queued.id)
        async with asyncio.timeout(PROMPTLY):
            woken = await asyncio.gather(*waiters)
        assert [job.status if job else None for job in woken] == [JobStatus.CANCELED] * 2

    async def test_a_job_canceled_while_running_is_never_run_again(self, kit: StoreKit) -> None:
        """Its lease running out later recovers nothing: the job stays Canceled."""
        store = control(kit)
        claim = await _running(kit)
        canceled = await store.cancel(claim.job.id)
        await kit.advance(kit.lease + 0.2)
        assert claim.job.id not in await kit.store.recover()
        assert await kit.store.claim(5, lease=kit.lease) == []
        assert await kit.store.get(claim.job.id) in (canceled, None)  # None: retention passed

    async def test_cancel_of_a_terminal_job_returns_it_unchanged(self, kit: StoreKit) -> None:
        """Completed and Failed jobs stay as they are."""
        store = control(kit)
        await kit.store.enqueue(new_job())
        await kit.store.enqueue(new_job())
        first, second = await kit.store.claim(2, lease=kit.lease)
        completed = await kit.store.complete(first, "done")
        failed = await kit.store.fail(second, BOOM, retry_in=None)
        for job in (completed, failed):
            assert job is not None
            assert await store.cancel(job.id) == job
            assert await kit.store.get(job.id) == job

    async def test_cancel_of_an_unknown_id_answers_none(self, kit: StoreKit) -> None:
        """No job with that id: None, not an error."""
        assert await control(kit).cancel(uuid.uuid4()) is None

    async def test_cancelling_twice_ends_with_one_canceled_job(self, kit: StoreKit) -> None:
        """The second cancel returns the Canceled job unchanged."""
        store = control(kit)
        claim = await _running(kit)
        first = await store.cancel(claim.job.id)
        assert first is not None and first.status is JobStatus.CANCELED
        assert await store.cancel(claim.job.id) == first
        assert await kit.store.get(claim.job.id) == first

    async def test_concurrent_cancels_from_two_processes_end_with_one_canceled_job(
        self, kit: StoreKit
    ) -> None:
        """Two processes cancelling the same jobs at once both get the one Canceled job,
        without an error, for a running job and for a queued one."""
        store, peer = control(kit), peer_control(kit)
        claim = await _running(kit)
        queued = await kit.store.enqueue(new_job())
        for job_id in (claim.job.id, queued.id):
            here, there = await asyncio.gather(store.cancel(job_id), peer.cancel(job_id))
            assert here is not None and here.status is JobStatus.CANCELED
            assert here == there == await kit.store.get(job_id)
        assert await kit.store.complete(claim, "late") is None

    async def test_of_concurrent_cancels_exactly_one_reports_that_it_cancelled(
        self, kit: StoreKit
    ) -> None:
        """`try_cancel`: the call that cancelled the job says so; a repeat, a concurrent
        call from another process, a terminal job and an unknown id say False."""
        store, peer = control(kit), peer_control(kit)
        claim = await _running(kit)
        queued = await kit.store.enqueue(new_job())
        for job_id in (claim.job.id, queued.id):
            (here, by_here), (there, by_there) = await asyncio.gather(
                store.try_cancel(job_id), peer.try_cancel(job_id)
            )
            assert [by_here, by_there].count(True) == 1
            assert here == there == await kit.store.get(job_id)
            assert here is not None and here.status is JobStatus.CANCELED
            assert await store.try_cancel(job_id) == (here, False)
        assert await store.try_cancel(uuid.uuid4()) == (None, False)
