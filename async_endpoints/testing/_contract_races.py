"""The control contract under races: two processes acting on one job at once end in one
of the outcomes the operations allow in some order, never in a mix of both."""

from __future__ import annotations

import asyncio

from .._job import Job, JobStatus
from .._lifecycle import InvalidTransitionError
from ._contract_support import BOOM, control, new_job, peer_control, read
from ._kit import StoreKit


class RaceContract:
    """Cancel against complete, claim and recovery; requeue against requeue."""

    async def test_a_cancel_racing_the_completion_leaves_one_outcome(self, kit: StoreKit) -> None:
        """Either the job completed first (the cancel returns it Completed) or it was
        cancelled first (the completion is refused): never both, never neither."""
        peer = peer_control(kit)
        control(kit)
        for _ in range(5):
            await kit.store.enqueue(new_job())
            (claim,) = await kit.store.claim(1, lease=kit.lease)
            done, canceled = await asyncio.gather(
                kit.store.complete(claim, "ok"), peer.cancel(claim.job.id)
            )
            final = await read(kit.store, claim.job.id)
            assert canceled == final
            if done is None:
                assert final.status is JobStatus.CANCELED and final.result is None
            else:
                assert final == done and final.status is JobStatus.COMPLETED

    async def test_a_cancel_racing_a_claim_never_lets_the_job_run_to_completion(
        self, kit: StoreKit
    ) -> None:
        """Whichever comes first, the job ends Canceled and a claim made of it cannot
        settle it."""
        peer = peer_control(kit)
        control(kit)
        for _ in range(5):
            job = await kit.store.enqueue(new_job())
            claims, canceled = await asyncio.gather(
                kit.store.claim(1, lease=kit.lease), peer.cancel(job.id)
            )
            assert canceled is not None and canceled.status is JobStatus.CANCELED
            for claim in claims:
                assert await kit.store.complete(claim, "ran") is None
            assert await read(kit.store, job.id) == canceled

    async def test_a_cancel_racing_the_recovery_of_its_job_ends_canceled(
        self, kit: StoreKit
    ) -> None:
        """A running job whose lease ran out, cancelled while recovery runs: Canceled,
        whichever comes first, and never claimed again."""
        peer = peer_control(kit)
        control(kit)
        for _ in range(3):
            await kit.store.enqueue(new_job())
        claims = await kit.store.claim(3, lease=kit.lease)
        await kit.advance(kit.lease + 0.2)
        outcomes = await asyncio.gather(
            kit.store.recover(), *(peer.cancel(claim.job.id) for claim in claims)
        )
        for claim, canceled in zip(claims, outcomes[1:], strict=True):
            assert isinstance(canceled, Job) and canceled.status is JobStatus.CANCELED
            assert await kit.store.get(claim.job.id) in (canceled, None)  # None: expired
        assert await kit.store.claim(5, lease=kit.lease) == []

    async def test_two_concurrent_requeues_queue_the_job_once(self, kit: StoreKit) -> None:
        """One requeue wins; the other finds the job Queued (InvalidTransitionError); the
        job is claimed once."""
        store, peer = control(kit), peer_control(kit)
        job = await kit.store.enqueue(new_job())
        (claim,) = await kit.store.claim(1, lease=kit.lease)
        await kit.store.fail(claim, BOOM, retry_in=None)
        outcomes = await asyncio.gather(
            store.requeue(job.id), peer.requeue(job.id), return_exceptions=True
        )
        requeued = [o for o in outcomes if isinstance(o, Job)]
        refused = [o for o in outcomes if isinstance(o, InvalidTransitionError)]
        assert len(requeued) == 1 and len(refused) == 1, outcomes
        assert [c.job.id for c in await kit.store.claim(5, lease=kit.lease)] == [job.id]
        assert await kit.store.claim(5, lease=kit.lease) == []
