"""The batch contract (`BatchStore`), part one: a batch is stored whole or not at all, its
counts follow every transition of its jobs in the same step, and its continuations are
stored exactly once, when its last job ends, whichever transition ends it."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from .._batch import Batch, BatchStatus, ContinueWhen, NewBatch, status_counts
from .._errors import DuplicateJobError, QueueFullError
from .._job import JobStatus, NewJob
from .._store import Claim
from .._store_features import BatchStore, PendingContinuationStore
from ._contract_support import BOOM, FAR, control, new_job, read, require
from ._kit import StoreKit


def batches(kit: StoreKit) -> BatchStore:
    """``kit.store`` as a `BatchStore`, or skip the test when it is not one."""
    require(kit.store, BatchStore)
    assert isinstance(kit.store, BatchStore)
    return kit.store


def peer_batches(kit: StoreKit) -> BatchStore:
    """``kit.other`` as a `BatchStore` (the test is skipped when ``kit.store`` is none)."""
    batches(kit)
    assert isinstance(kit.other, BatchStore)
    return kit.other


def member(batch_id: uuid.UUID, **fields: Any) -> NewJob:
    """A new job of batch ``batch_id``; ``fields`` as for `new_job`."""
    return dataclasses.replace(new_job(**fields), batch_id=batch_id)


def new_batch(
    jobs: int = 2,
    continuations: int = 1,
    *,
    continue_when: ContinueWhen = ContinueWhen.ALL_TERMINAL,
    tenant: str | None = None,
    **fields: Any,
) -> NewBatch:
    """A batch of ``jobs`` jobs and ``continuations`` continuations (``fields`` for each of
    its jobs, as for `new_job`)."""
    batch_id = uuid.uuid4()
    return NewBatch(
        batch_id,
        [member(batch_id, tenant=tenant, **fields) for _ in range(jobs)],
        [member(batch_id, name="Then", tenant=tenant) for _ in range(continuations)],
        continue_when,
        tenant,
    )


async def read_batch(store: BatchStore, batch_id: uuid.UUID) -> Batch:
    """The stored batch, which must exist."""
    found = await store.get_batch(batch_id)
    assert found is not None, f"batch {batch_id} is missing"
    return found


def counts(found: Batch) -> tuple[int, int, int, int, int, int]:
    """(queued, scheduled, in progress, completed, failed, canceled) of ``found``."""
    return (
        found.queued,
        found.scheduled,
        found.in_progress,
        found.completed,
        found.failed,
        found.canceled,
    )


async def exact(kit: StoreKit, batch_id: uuid.UUID, jobs: Sequence[NewJob]) -> Batch:
    """The batch, whose counts must be those of ``jobs`` (all of its jobs) as stored now."""
    store = batches(kit)
    found = await read_batch(store, batch_id)
    statuses = status_counts([await read(kit.store, job.id) for job in jobs])
    assert counts(found) == tuple(statuses[status] for status in JobStatus)
    assert found.total == len(jobs)
    return found


async def claim_all(kit: StoreKit, count: int) -> list[Claim]:
    """Exactly ``count`` claims, taken now."""
    claims = await kit.store.claim(count, lease=kit.lease)
    assert len(claims) == count, claims
    return claims


async def closed_batches(kit: StoreKit) -> tuple[NewBatch, NewBatch]:
    """A Finished batch (its one job completed) and a Canceled one, each of one job and
    one continuation, on an otherwise empty store."""
    store = batches(kit)
    finished, cancelled = new_batch(1, 1), new_batch(1, 1)
    await store.create_batch(finished)
    (claim,) = await claim_all(kit, 1)
    await kit.store.complete(claim, "ok")
    await store.create_batch(cancelled)
    await store.cancel_batch(cancelled.id)
    return finished, cancelled


async def continuations_stored(kit: StoreKit, spec: NewBatch) -> list[JobStatus]:
    """The statuses of ``spec``'s continuations that exist now."""
    found = [await kit.store.get(job.id) for job in spec.continuations]
    return [job.status for job in found if job is not None]


class BatchContract:
    """Batches: atomic creation, exact counts, continuations once."""

    async def test_a_batch_is_stored_with_its_jobs_counted(self, kit: StoreKit) -> None:
        """Every job is stored with the batch's id (a delayed one Scheduled); the batch is
        Running, counts its jobs, and reads back the same from another process; its
        continuations do not exist yet."""
        store = batches(kit)
        spec = new_batch(2, 2, tenant="acme")
        delayed = member(spec.id, delay=FAR, tenant="acme")
        spec = dataclasses.replace(spec, jobs=[*spec.jobs, delayed])
        created = await store.create_batch(spec)
        assert created.id == spec.id and created.tenant == "acme"
        assert created.status is BatchStatus.RUNNING and created.finished_at is None
        assert created.total == 3 and counts(created) == (2, 1, 0, 0, 0, 0)
        assert created.continuation_ids == tuple(job.id for job in spec.continuations)
        assert created.continue_when is ContinueWhen.ALL_TERMINAL
        for job in spec.jobs:
            stored = await read(kit.store, job.id)
            assert stored.batch_id == spec.id and stored.tenant == "acme"
        assert (await read(kit.store, delayed.id)).status is JobStatus.SCHEDULED
        assert await continuations_stored(kit, spec) == []
        assert await store.get_batch(spec.id) == created
        assert await peer_batches(kit).get_batch(spec.id) == created

    async def test_get_batch_of_an_unknown_id_is_none(self, kit: StoreKit) -> None:
        """Never stored: None."""
        assert await batches(kit).get_batch(uuid.uuid4()) is None

    @pytest.mark.parametrize(
        "clash", ["stored job", "twice in the batch", "continuation id", "batch id"]
    )
    async def test_create_batch_with_a_taken_id_stores_nothing(
        self, kit: StoreKit, clash: str
    ) -> None:
        """A job id taken by a stored job or repeated in the batch, a continuation's id
        taken, or a batch id taken: DuplicateJobError, and not one job of the batch is
        stored."""
        store = batches(kit)
        spec = new_batch(3, 2)
        fresh = [*spec.jobs, *spec.continuations]
        if clash == "stored job":
            await kit.store.enqueue(dataclasses.replace(spec.jobs[1], batch_id=None))
            del fresh[1]
        elif clash == "twice in the batch":
            spec = dataclasses.replace(spec, jobs=[*spec.jobs, spec.jobs[0]])
        elif clash == "continuation id":
            await kit.store.enqueue(dataclasses.replace(spec.continuations[0], batch_id=None))
            del fresh[3]
        else:
            await store.create_batch(NewBatch(spec.id, [member(spec.id)]))
        with pytest.raises(DuplicateJobError):
            await store.create_batch(spec)
        for job in fresh:
            assert await kit.store.get(job.id) is None
        found = await store.get_batch(spec.id)
        assert found is None if clash != "batch id" else found is not None and found.total == 1

    async def test_create_batch_beyond_max_waiting_stores_nothing(self, kit: StoreKit) -> None:
        """The batch's jobs count against max_waiting all at once: refused whole
        (QueueFullError, nothing stored), accepted when they all fit."""
        store = batches(kit)
        await kit.store.enqueue(new_job())
        spec = new_batch(3)
        with pytest.raises(QueueFullError):
            await store.create_batch(spec, max_waiting=3)
        assert await store.get_batch(spec.id) is None
        for job in spec.jobs:
            assert await kit.store.get(job.id) is None
        assert (await store.create_batch(spec, max_waiting=4)).total == 3

    async def test_batch_counts_follow_every_transition_of_its_jobs(self, kit: StoreKit) -> None:
        """Claim, complete, a retried failure (Queued or Scheduled), a failure for good and
        a cancel each move one job between the counts, in the same step."""
        store = batches(kit)
        spec = new_batch(5, max_retries=1)
        await store.create_batch(spec)
        claims = {c.job.id: c for c in await claim_all(kit, 5)}
        first, second, third, fourth, fifth = (claims[job.id] for job in spec.jobs)
        assert counts(await read_batch(store, spec.id)) == (0, 0, 5, 0, 0, 0)
        await kit.store.complete(first, "ok")
        assert counts(await read_batch(store, spec.id)) == (0, 0, 4, 1, 0, 0)
        await kit.store.fail(second, BOOM, retry_in=0)
        assert counts(await read_batch(store, spec.id)) == (1, 0, 3, 1, 0, 0)
        await kit.store.fail(third, BOOM, retry_in=FAR)
        assert counts(await read_batch(store, spec.id)) == (1, 1, 2, 1, 0, 0)
        await kit.store.fail(fourth, BOOM, retry_in=None)
        assert counts(await read_batch(store, spec.id)) == (1, 1, 1, 1, 1, 0)
        await control(kit).cancel(fifth.job.id)
        found = await read_batch(store, spec.id)
        assert counts(found) == (1, 1, 0, 1, 1, 1) and found.total == 5
        assert found.status is BatchStatus.RUNNING and found.unfinished == 2
        (retried,) = await claim_all(kit, 1)
        assert retried.job.id == second.job.id
        assert counts(await exact(kit, spec.id, spec.jobs)) == (0, 1, 1, 1, 1, 1)

    async def test_a_recovered_batch_job_is_counted_where_recovery_puts_it(
        self, kit: StoreKit
    ) -> None:
        """A lease that runs out moves the job back to Queued (retries left) or to Failed,
        in the counts too."""
        store = batches(kit)
        batch_id = uuid.uuid4()
        again, dead = member(batch_id, max_retries=1), member(batch_id, max_retries=0)
        await store.create_batch(NewBatch(batch_id, [again, dead]))
        await claim_all(kit, 2)
        await kit.advance(kit.lease + 0.2)
        assert sorted(map(str, await kit.store.recover())) == sorted(map(str, [again.id, dead.id]))
        found = await exact(kit, batch_id, [again, dead])
        assert counts(found) == (1, 0, 0, 0, 1, 0) and found.status is BatchStatus.RUNNING

    async def test_batch_counts_follow_a_job_waiting_behind_its_partition_key(
        self, kit: StoreKit
    ) -> None:
        """A delayed job behind its key, due before the key is released, is counted as
        the status it shows at every step (released, it waits to be claimed)."""
        store = batches(kit)
        batch_id = uuid.uuid4()
        jobs = [
            member(batch_id, partition_key="k"),
            member(batch_id, partition_key="k", delay=kit.lease * 0.5),
        ]
        await store.create_batch(NewBatch(batch_id, jobs))
        assert counts(await exact(kit, batch_id, jobs)) == (1, 1, 0, 0, 0, 0)
        (claim,) = await kit.store.claim(1, lease=kit.lease * 3)  # held past the delay
        await kit.advance(kit.lease * 0.5 + 0.2)
        assert await kit.store.claim(5, lease=kit.lease) == []
        await exact(kit, batch_id, jobs)
        await kit.store.complete(claim, "ok")
        await exact(kit, batch_id, jobs)
        (claim,) = await claim_all(kit, 1)
        assert claim.job.id == jobs[1].id
        assert counts(await exact(kit, batch_id, jobs)) == (0, 0, 1, 1, 0, 0)

    async def test_a_delayed_batch_job_counts_as_scheduled_until_it_runs(
        self, kit: StoreKit
    ) -> None:
        """Scheduled while delayed; once due and claimed, in progress."""
        store = batches(kit)
        spec = new_batch(1, delay=kit.lease)
        assert counts(await store.create_batch(spec)) == (0, 1, 0, 0, 0, 0)
        await kit.advance(kit.lease + 0.2)
        await claim_all(kit, 1)
        assert counts(await read_batch(store, spec.id)) == (0, 0, 1, 0, 0, 0)

    @pytest.mark.parametrize(
        "last", ["complete", "dead", "cancel running", "cancel queued", "recovered failed"]
    )
    async def test_the_continuations_are_stored_once_when_the_batchs_last_job_ends(
        self, kit: StoreKit, last: str
    ) -> None:
        """Whatever ends the last unfinished job, that step finishes the batch and stores
        its continuations Queued, each once, with the batch's id; the batch does not count
        them."""
        store = batches(kit)
        spec = new_batch(2, 2, max_retries=0)
        await store.create_batch(spec)
        early, late = spec.jobs
        (claim,) = await claim_all(kit, 1)  # the batch's jobs are claimed in order
        assert claim.job.id == early.id
        await kit.store.complete(claim, "ok")
        assert await continuations_stored(kit, spec) == []
        if last == "cancel queued":
            await control(kit).cancel(late.id)
        else:
            (claim,) = await claim_all(kit, 1)
        if last == "complete":
            await kit.store.complete(claim, "ok")
        elif last == "dead":
            await kit.store.fail(claim, BOOM, retry_in=None)
        elif last == "cancel running":
            await control(kit).cancel(late.id)
        elif last == "recovered failed":
            await kit.advance(kit.lease + 0.2)
            assert await kit.store.recover() == [late.id]
        found = await read_batch(store, spec.id)
        assert found.status is BatchStatus.FINISHED and found.finished_at is not None
        assert found.total == 2 and found.unfinished == 0
        assert await continuations_stored(kit, spec) == [JobStatus.QUEUED] * 2
        for job in spec.continuations:
            assert (await read(kit.store, job.id)).batch_id == spec.id
        claimed = await claim_all(kit, 2)
        assert {c.job.id for c in claimed} == {job.id for job in spec.continuations}
        for claim in claimed:
            await kit.store.complete(claim, "then")
        assert counts(await read_batch(store, spec.id)) == counts(found)
        assert await kit.store.claim(10, lease=kit.lease) == []

    async def test_a_continuations_id_cannot_be_taken_while_its_batch_runs(
        self, kit: StoreKit
    ) -> None:
        """A submission (a client choosing its id) with the id of a continuation not
        stored yet is refused as a taken id, by this process and another, and so is a
        batch whose job has it; neither stores anything; the batch's end stores and runs
        the continuation as specified. Once stored, the id is taken by that job."""
        store = batches(kit)
        spec = new_batch(1, 1)
        await store.create_batch(spec)
        (then,) = spec.continuations
        squatter = dataclasses.replace(new_job(name="Other"), id=then.id)
        for one in (kit.store, kit.other):
            with pytest.raises(DuplicateJobError):
                await one.enqueue(squatter)
        other = new_batch(1, 0)
        taking = NewBatch(other.id, [dataclasses.replace(other.jobs[0], id=then.id)], [])
        with pytest.raises(DuplicateJobError):
            await store.create_batch(taking)  # nor can another batch's job
        assert await store.get_batch(other.id) is None
        assert await kit.store.get(then.id) is None
        (claim,) = await claim_all(kit, 1)
        await kit.store.complete(claim, "ok")
        stored = await read(kit.store, then.id)
        assert (stored.name, stored.batch_id) == ("Then", spec.id)
        with pytest.raises(DuplicateJobError):
            await kit.store.enqueue(squatter)
        (claim,) = await claim_all(kit, 1)
        assert claim.job.id == then.id and claim.job.name == "Then"

    async def test_a_continuation_is_pending_from_the_batchs_creation_until_stored(
        self, kit: StoreKit
    ) -> None:
        """`PendingContinuationStore.pending_continuation` is True for a continuation's id
        while its batch runs (in this process and another), and False once the batch's
        end stored it, and for any other id."""
        store = batches(kit)
        require(kit.store, PendingContinuationStore)
        spec = new_batch(1, 1)
        (then,) = spec.continuations
        for one in (kit.store, kit.other):
            assert isinstance(one, PendingContinuationStore)
            assert not await one.pending_continuation(then.id)
        await store.create_batch(spec)
        for one in (kit.store, kit.other):
            assert isinstance(one, PendingContinuationStore)
            assert await one.pending_continuation(then.id)
            assert not await one.pending_continuation(spec.jobs[0].id)
            assert not await one.pending_continuation(uuid.uuid4())
        (claim,) = await claim_all(kit, 1)
        await kit.store.complete(claim, "ok")
        for one in (kit.store, kit.other):
            assert isinstance(one, PendingContinuationStore)
            assert not await one.pending_continuation(then.id)
        assert (await read(kit.store, then.id)).status is JobStatus.QUEUED

    async def test_a_batch_all_completed_with_a_failure_cancels_its_continuations(
        self, kit: StoreKit
    ) -> None:
        """continue_when all_completed: one job Failed, and the continuations are stored
        Canceled (completed_at set) and never run."""
        store = batches(kit)
        spec = new_batch(2, 2, continue_when=ContinueWhen.ALL_COMPLETED, max_retries=0)
        await store.create_batch(spec)
        first, second = await claim_all(kit, 2)
        await kit.store.complete(first, "ok")
        await kit.store.fail(second, BOOM, retry_in=None)
        assert await continuations_stored(kit, spec) == [JobStatus.CANCELED] * 2
        for job in spec.continuations:
            stored = await read(kit.store, job.id)
            assert stored.completed_at is not None and stored.started_at is None
        found = await read_batch(store, spec.id)
        assert found.status is BatchStatus.FINISHED and counts(found) == (0, 0, 0, 1, 1, 0)
        assert await kit.store.claim(10, lease=kit.lease) == []

    async def test_a_batch_all_completed_runs_its_continuations_when_every_job_completed(
        self, kit: StoreKit
    ) -> None:
        """continue_when all_completed and no failure: the continuations are Queued; a
        delayed one is Scheduled."""
        store = batches(kit)
        spec = new_batch(1, 1, continue_when=ContinueWhen.ALL_COMPLETED)
        later = member(spec.id, name="Later", delay=FAR)
        spec = dataclasses.replace(spec, continuations=[*spec.continuations, later])
        await store.create_batch(spec)
        (claim,) = await claim_all(kit, 1)
        await kit.store.complete(claim, "ok")
        assert await continuations_stored(kit, spec) == [JobStatus.QUEUED, JobStatus.SCHEDULED]

    async def test_a_requeued_job_of_a_finished_batch_is_counted_but_continues_nothing(
        self, kit: StoreKit
    ) -> None:
        """The batch stays Finished; its counts follow the requeued job; its continuations
        are not stored again when that job ends."""
        store = batches(kit)
        spec = new_batch(1, 1, max_retries=0)
        await store.create_batch(spec)
        (claim,) = await claim_all(kit, 1)
        await kit.store.fail(claim, BOOM, retry_in=None)
        finished = await read_batch(store, spec.id)
        (continuation,) = await claim_all(kit, 1)
        assert continuation.job.id == spec.continuations[0].id
        ran = await kit.store.complete(continuation, "then")
        await control(kit).requeue(spec.jobs[0].id)
        found = await read_batch(store, spec.id)
        assert found.status is BatchStatus.FINISHED and counts(found) == (1, 0, 0, 0, 0, 0)
        assert found.finished_at == finished.finished_at
        (again,) = await claim_all(kit, 1)
        assert again.job.id == spec.jobs[0].id
        await kit.store.complete(again, "ok")
        assert counts(await read_batch(store, spec.id)) == (0, 0, 0, 1, 0, 0)
        assert await kit.store.claim(10, lease=kit.lease) == []
        assert await read(kit.store, continuation.job.id) == ran

    async def test_two_processes_ending_a_batchs_last_two_jobs_store_the_continuations_once(
        self, kit: StoreKit
    ) -> None:
        """The last two jobs settled at once, one in each process: the continuation is
        stored once and claimed once."""
        store, peer = batches(kit), peer_batches(kit)
        for _ in range(5):
            spec = new_batch(2, 1)
            await store.create_batch(spec)
            first, second = await claim_all(kit, 2)
            await asyncio.gather(kit.store.complete(first, "ok"), kit.other.complete(second, "ok"))
            found = await peer.get_batch(spec.id)
            assert found is not None and found.status is BatchStatus.FINISHED
            assert counts(found) == (0, 0, 0, 2, 0, 0)
            (continuation,) = await claim_all(kit, 1)
            assert continuation.job.id == spec.continuations[0].id
            await kit.store.complete(continuation, "then")
            assert await kit.store.claim(10, lease=kit.lease) == []
