"""The batch contract (`BatchStore`), part two: appending to a running batch, cancelling a
batch, listing batches and a batch's jobs, and keeping finished batches for the
retention only."""

from __future__ import annotations

import base64
import dataclasses
import uuid

import pytest

from .._batch import BatchStatus
from .._errors import DuplicateJobError, QueueFullError
from .._job import MAX_LABEL_LENGTH, JobError, JobStatus
from .._listing import MAX_LIMIT
from .._store import ControlStore
from .._store_features import BatchStore
from ._contract_batches import (
    batches,
    claim_all,
    closed_batches,
    continuations_stored,
    counts,
    member,
    new_batch,
    peer_batches,
    read_batch,
)
from ._contract_cancel import Heard
from ._contract_support import FAR, TICK, control, inspection, new_job, read
from ._kit import StoreKit


async def one_by_one(store: BatchStore, tenant: str | None) -> list[uuid.UUID]:
    """The ids of ``tenant``'s batches (every batch's for None), listed one a page, each
    page from the cursor of the one before (at most 10 pages)."""
    seen: list[uuid.UUID] = []
    cursor = None
    for _ in range(10):
        page = await store.list_batches(tenant=tenant, limit=1, cursor=cursor)
        seen += [found.id for found in page.batches]
        cursor = page.next_cursor
        if cursor is None:
            break
    return seen


class BatchControlContract:
    """Append, cancel, listing and retention of batches."""

    async def test_jobs_appended_to_a_running_batch_are_counted_and_awaited(
        self, kit: StoreKit
    ) -> None:
        """Appended jobs are stored with the batch's id and counted; the batch finishes
        only once they have ended too."""
        store = batches(kit)
        spec = new_batch(1, 1)
        await store.create_batch(spec)
        (claim,) = await claim_all(kit, 1)
        extra = [member(spec.id), member(spec.id, delay=FAR)]
        appended = await store.append_to_batch(spec.id, extra)
        assert appended is not None and appended.total == 3
        assert counts(appended) == (1, 1, 1, 0, 0, 0)
        assert (await read(kit.store, extra[0].id)).batch_id == spec.id
        await kit.store.complete(claim, "ok")
        (claim,) = await claim_all(kit, 1)
        await kit.store.complete(claim, "ok")
        assert (await read_batch(store, spec.id)).status is BatchStatus.RUNNING
        assert await continuations_stored(kit, spec) == []
        await control(kit).cancel(extra[1].id)
        found = await read_batch(store, spec.id)
        assert found.status is BatchStatus.FINISHED and counts(found) == (0, 0, 0, 2, 0, 1)
        assert await continuations_stored(kit, spec) == [JobStatus.QUEUED]

    async def test_append_to_a_finished_or_cancelled_batch_is_a_value_error(
        self, kit: StoreKit
    ) -> None:
        """Its continuations must not run twice: ValueError, nothing stored."""
        store = batches(kit)
        for spec in await closed_batches(kit):
            late = member(spec.id)
            with pytest.raises(ValueError):
                await store.append_to_batch(spec.id, [late])
            assert await kit.store.get(late.id) is None

    async def test_append_to_an_unknown_batch_is_none(self, kit: StoreKit) -> None:
        """No such batch: None, nothing stored."""
        batch_id = uuid.uuid4()
        job = member(batch_id)
        assert await batches(kit).append_to_batch(batch_id, [job]) is None
        assert await kit.store.get(job.id) is None

    async def test_a_refused_append_stores_nothing(self, kit: StoreKit) -> None:
        """A job naming another batch (ValueError), a taken id (DuplicateJobError) or no
        room under max_waiting (QueueFullError): none of the jobs is stored."""
        store = batches(kit)
        spec = new_batch(1, 1)
        await store.create_batch(spec)
        fresh = member(spec.id)
        refusals = [
            (ValueError, [fresh, member(uuid.uuid4())], None),
            (DuplicateJobError, [fresh, dataclasses.replace(spec.jobs[0])], None),
            (QueueFullError, [fresh, member(spec.id)], 2),
        ]
        for error, jobs, max_waiting in refusals:
            with pytest.raises(error):
                await store.append_to_batch(spec.id, jobs, max_waiting=max_waiting)
            assert await kit.store.get(fresh.id) is None
        assert (await read_batch(store, spec.id)).total == 1

    async def test_cancel_batch_cancels_its_waiting_and_running_jobs(self, kit: StoreKit) -> None:
        """Queued, Scheduled and running jobs are Canceled (the running one announced to
        the cancel listeners of another process, its result refused), completed ones kept;
        the batch is Canceled and its continuations are stored Canceled."""
        store = batches(kit)
        peer = kit.other
        heard = Heard()
        assert isinstance(peer, ControlStore)
        control(kit)
        peer.add_cancel_listener(heard)
        spec = new_batch(3, 1)
        spec = dataclasses.replace(spec, jobs=[*spec.jobs, member(spec.id, delay=FAR)])
        await store.create_batch(spec)
        done, running = await claim_all(kit, 2)
        await kit.store.complete(done, "ok")
        canceled = await store.cancel_batch(spec.id)
        assert canceled is not None and canceled.status is BatchStatus.CANCELED
        assert canceled.finished_at is not None and counts(canceled) == (0, 0, 0, 1, 0, 3)
        await heard.until(running.job.id)
        assert await kit.store.complete(running, "late") is None
        for job in spec.jobs[1:]:
            assert (await read(kit.store, job.id)).status is JobStatus.CANCELED
        assert await continuations_stored(kit, spec) == [JobStatus.CANCELED]
        assert await kit.store.claim(10, lease=kit.lease) == []
        assert await peer_batches(kit).get_batch(spec.id) == canceled
        assert await store.cancel_batch(spec.id) == canceled

    async def test_cancel_batch_of_a_finished_batch_cancels_its_continuations_not_yet_run(
        self, kit: StoreKit
    ) -> None:
        """Its jobs have all ended: only its continuations not yet run (waiting, never
        started) are cancelled; one that ran, one running (it completes) and one waiting
        for its retry go on; the batch stays Finished with its counts."""
        store = batches(kit)
        spec = new_batch(1, 4)
        await store.create_batch(spec)
        (claim,) = await claim_all(kit, 1)
        await kit.store.complete(claim, "ok")
        finished = await read_batch(store, spec.id)
        first, running, retried = await claim_all(kit, 3)
        ran = await kit.store.complete(first, "then")
        assert await kit.store.fail(retried, JobError("again", "E"), retry_in=FAR) is not None
        assert await store.cancel_batch(spec.id) == finished
        assert await read(kit.store, first.job.id) == ran
        assert (await read(kit.store, retried.job.id)).status is JobStatus.SCHEDULED
        done = await kit.store.complete(running, "done")
        assert done is not None and done.status is JobStatus.COMPLETED
        started = {first.job.id, running.job.id, retried.job.id}
        waiting = next(job for job in spec.continuations if job.id not in started)
        assert (await read(kit.store, waiting.id)).status is JobStatus.CANCELED
        assert await kit.store.claim(10, lease=kit.lease) == []

    async def test_cancel_batch_again_leaves_the_jobs_requeued_since(self, kit: StoreKit) -> None:
        """A cancelled batch's jobs requeued afterwards (``requeue``) are not cancelled by
        a second cancel_batch: only its continuations not yet run would be."""
        store = batches(kit)
        spec = new_batch(1, 1)
        await store.create_batch(spec)
        await store.cancel_batch(spec.id)
        (member,) = spec.jobs
        requeued = await control(kit).requeue(member.id)
        assert requeued is not None and requeued.status is JobStatus.QUEUED
        await store.cancel_batch(spec.id)
        assert (await read(kit.store, member.id)).status is JobStatus.QUEUED

    async def test_cancel_batch_of_an_unknown_batch_is_none(self, kit: StoreKit) -> None:
        """No such batch: None."""
        assert await batches(kit).cancel_batch(uuid.uuid4()) is None

    async def test_batches_are_listed_newest_first_by_tenant_too(self, kit: StoreKit) -> None:
        """Newest created first; a tenant filter keeps that tenant's; pages of one
        continue through their cursors; another process lists the same."""
        store = batches(kit)
        specs = []
        for tenant in ("a", "b", "a", None):
            specs.append(new_batch(1, 0, tenant=tenant))
            await store.create_batch(specs[-1])
            await kit.advance(TICK)
        newest_first = [spec.id for spec in reversed(specs)]
        page = await store.list_batches()
        assert [found.id for found in page.batches] == newest_first and page.next_cursor is None
        assert page.batches[0] == await read_batch(store, specs[-1].id)
        listed = await store.list_batches(tenant="a")
        assert [found.id for found in listed.batches] == [specs[2].id, specs[0].id]
        assert await peer_batches(kit).list_batches(tenant="a") == listed
        for tenant, expected in ((None, newest_first), ("a", [specs[2].id, specs[0].id])):
            assert await one_by_one(store, tenant) == expected

    async def test_batches_of_the_longest_tenant_outside_ascii_are_paged_to_the_end(
        self, kit: StoreKit
    ) -> None:
        """A tenant of 255 four-byte characters: `list_batches` takes back its own
        cursors, one batch a page, newest first, to the last."""
        store = batches(kit)
        tenant = "\U0001d518" * MAX_LABEL_LENGTH
        specs = []
        for _ in range(3):
            specs.append(new_batch(1, 0, tenant=tenant))
            await store.create_batch(specs[-1])
            await kit.advance(TICK)
        assert await one_by_one(store, tenant) == [spec.id for spec in reversed(specs)]

    async def test_batches_created_together_are_paged_once_each(self, kit: StoreKit) -> None:
        """Pages of two visit every batch once, in the order of one whole page."""
        store = batches(kit)
        for _ in range(7):
            await store.create_batch(new_batch(1, 0))
        whole = [found.id for found in (await store.list_batches(limit=MAX_LIMIT)).batches]
        seen, cursor = [], None
        for _ in range(10):
            page = await store.list_batches(limit=2, cursor=cursor)
            assert len(page.batches) == 2 or page.next_cursor is None
            seen += [found.id for found in page.batches]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert len(whole) == 7 and seen == whole

    async def test_a_tampered_or_foreign_batch_cursor_is_a_value_error(self, kit: StoreKit) -> None:
        """Garbage, a cursor made for another tenant, or a job listing's cursor:
        ValueError; so is a limit out of range."""
        store = batches(kit)
        for _ in range(2):
            await store.create_batch(new_batch(1, 0, tenant="a"))
        cursor = (await store.list_batches(tenant="a", limit=1)).next_cursor
        assert cursor is not None
        garbage = base64.urlsafe_b64encode(b'[1, "x"').decode()
        for wrong, tenant in ((cursor, "b"), (cursor, None), (garbage, "a"), ("%%", "a")):
            with pytest.raises(ValueError):
                await store.list_batches(tenant=tenant, limit=1, cursor=wrong)
        for limit in (0, MAX_LIMIT + 1):
            with pytest.raises(ValueError):
                await store.list_batches(limit=limit)
        listing = inspection(kit)
        await kit.store.enqueue(new_job())
        await kit.store.enqueue(new_job())
        job_cursor = (await listing.list_jobs(limit=1)).next_cursor
        assert job_cursor is not None
        with pytest.raises(ValueError):
            await store.list_batches(limit=1, cursor=job_cursor)

    async def test_list_jobs_by_batch_lists_its_jobs_and_continuations(self, kit: StoreKit) -> None:
        """batch_id keeps the batch's jobs (its continuations once stored), with or
        without a status; its cursor is bound to the batch; an unknown batch lists
        nothing."""
        store, listing = batches(kit), inspection(kit)
        spec, other = new_batch(3, 1), new_batch(2, 0)
        await kit.store.enqueue(new_job())
        await store.create_batch(spec)
        await store.create_batch(other)
        page = await listing.list_jobs(batch_id=spec.id, limit=MAX_LIMIT)
        assert {job.id for job in page.jobs} == {job.id for job in spec.jobs}
        seen, cursor = [], None
        for _ in range(10):
            page = await listing.list_jobs(batch_id=spec.id, limit=1, cursor=cursor)
            seen += [job.id for job in page.jobs]
            cursor = page.next_cursor
            if cursor is None:
                break
            with pytest.raises(ValueError):
                await listing.list_jobs(batch_id=other.id, limit=1, cursor=cursor)
            with pytest.raises(ValueError):
                await listing.list_jobs(limit=1, cursor=cursor)
        assert sorted(seen) == sorted(job.id for job in spec.jobs)
        claims = await kit.store.claim(10, lease=kit.lease)
        for claim in claims:
            await kit.store.complete(claim, "ok")
        assert len(claims) == 6
        (continuation,) = spec.continuations
        for status, expected in (
            (None, {*(job.id for job in spec.jobs), continuation.id}),
            (JobStatus.COMPLETED, {job.id for job in spec.jobs}),
            (JobStatus.QUEUED, {continuation.id}),
        ):
            page = await listing.list_jobs(batch_id=spec.id, status=status, limit=MAX_LIMIT)
            assert {job.id for job in page.jobs} == expected, status
        empty = await listing.list_jobs(batch_id=uuid.uuid4(), limit=MAX_LIMIT)
        assert empty.jobs == [] and empty.next_cursor is None

    async def test_a_batchs_jobs_are_listed_in_the_order_of_the_whole_listing(
        self, kit: StoreKit
    ) -> None:
        """With ``batch_id``, each status lists the batch's jobs in that status's own order
        (as the listing of every job orders them), and without a status newest stored
        first, its continuation (stored last) first."""
        store, listing = batches(kit), inspection(kit)
        spec, other = new_batch(5, 1), new_batch(2, 0)
        await kit.store.enqueue(new_job())
        await store.create_batch(spec)
        await store.create_batch(other)
        mine = {job.id for job in spec.jobs} | {job.id for job in spec.continuations}

        async def in_batch_order(status: JobStatus | None) -> None:
            whole = await listing.list_jobs(status=status, limit=MAX_LIMIT)
            expected = [job.id for job in whole.jobs if job.id in mine]
            page = await listing.list_jobs(batch_id=spec.id, status=status, limit=MAX_LIMIT)
            assert [job.id for job in page.jobs] == expected, status

        await in_batch_order(JobStatus.QUEUED)
        claims = await claim_all(kit, 8)
        for claim in claims[:5]:
            await kit.store.complete(claim, "ok")
            await kit.advance(TICK)
        await in_batch_order(JobStatus.COMPLETED)
        await in_batch_order(JobStatus.IN_PROGRESS)
        for claim in claims[5:]:
            await kit.store.complete(claim, "ok")
        await in_batch_order(JobStatus.COMPLETED)
        await in_batch_order(JobStatus.QUEUED)  # the continuation
        newest = await listing.list_jobs(batch_id=spec.id, limit=MAX_LIMIT)
        assert [job.id for job in newest.jobs] == [
            *(job.id for job in reversed(spec.continuations)),
            *(job.id for job in reversed(spec.jobs)),
        ]

    async def test_a_finished_batch_is_kept_for_the_retention_then_dropped(
        self, kit: StoreKit
    ) -> None:
        """Running, a batch stays however long; finished, it reads back within the
        retention and is gone (from get_batch and list_batches) after it."""
        store = batches(kit)
        spec = new_batch(1, 0)
        await store.create_batch(spec)
        await kit.advance(kit.retention + 0.5)
        await kit.store.recover()
        (claim,) = await claim_all(kit, 1)
        await kit.store.complete(claim, "ok")
        assert (await read_batch(store, spec.id)).status is BatchStatus.FINISHED
        await kit.advance(kit.retention + 0.5)
        await kit.store.recover()
        assert await store.get_batch(spec.id) is None
        assert (await store.list_batches()).batches == []
