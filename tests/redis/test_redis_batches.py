"""What `RedisJobStore` promises for batches beyond the store contract: every key of a
batch in the store's hash slot (a Redis Cluster runs it), nothing of a batch left once its
retention has passed, a batch sent in chunks stored whole or not at all, and a call
resent after its reply was lost storing and counting nothing twice."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from async_endpoints import _listing
from async_endpoints._batch import BatchStatus, NewBatch
from async_endpoints._errors import DuplicateJobError, QueueFullError
from async_endpoints._job import JobStatus, NewJob
from async_endpoints_redis import RedisJobStore, _batches, _scripts
from tests.redis.support import drain, eventually, keys_of

pytestmark = pytest.mark.redis
StoreFactory = Callable[..., Awaitable[RedisJobStore]]


def member(batch_id: uuid.UUID, name: str = "Job", **options: Any) -> NewJob:
    return NewJob(id=uuid.uuid4(), name=name, max_retries=0, batch_id=batch_id, **options)


def new_batch(jobs: int, continuations: int = 1, tenant: str | None = None) -> NewBatch:
    batch_id = uuid.uuid4()
    return NewBatch(
        batch_id,
        [member(batch_id, tenant=tenant) for _ in range(jobs)],
        [member(batch_id, name="Then", tenant=tenant) for _ in range(continuations)],
        tenant=tenant,
    )


async def test_a_batch_keeps_its_keys_under_the_hash_tag_and_leaves_nothing_after_retention(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """While it runs a batch has its hash, job list and listing entries under
    ``{prefix}:``; once it has finished (its continuation run too) and the retention has
    passed, recovery deletes it with its jobs: no key of the batch or of a job is left."""
    store = await make_store(retention=0.5)
    spec = new_batch(3, 1, tenant="acme")
    await store.create_batch(spec)
    tag = "{" + prefix + "}:"
    during = await keys_of(raw_redis, prefix)
    assert all(key.startswith(tag) for key in during)
    assert {f"{tag}batch:{spec.id}", f"{tag}batch:{spec.id}:jobs", f"{tag}batches"} <= set(during)
    assert f"{tag}batches:t:acme" in during
    ran = await drain(store)
    assert ran[-1] == spec.continuations[0].id and len(ran) == 4
    finished = await store.get_batch(spec.id)
    assert finished is not None and finished.status is BatchStatus.FINISHED

    async def purged() -> bool:
        await store.recover()
        left = await keys_of(raw_redis, prefix)
        return not [key for key in left if ":batch" in key or ":job:" in key]

    await eventually(purged)
    assert await store.get_batch(spec.id) is None
    assert (await store.list_batches(tenant="acme")).batches == []


async def test_a_batch_sent_in_chunks_is_stored_whole(
    store: RedisJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past CHUNK jobs the batch goes in several calls; the last stores them all, in order,
    counted."""
    monkeypatch.setattr(_batches, "CHUNK", 10)
    spec = new_batch(35)
    created = await store.create_batch(spec)
    assert created.total == 35 and created.queued == 35
    page = await store.list_jobs(batch_id=spec.id, limit=100)  # newest stored first
    assert [job.id for job in page.jobs] == [job.id for job in reversed(spec.jobs)]
    extra = [member(spec.id) for _ in range(25)]
    appended = await store.append_to_batch(spec.id, extra)
    assert appended is not None and appended.total == 60


async def test_a_chunked_batch_whose_last_chunk_is_refused_stores_nothing(
    store: RedisJobStore, raw_redis: Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A taken id in the last of four chunks: DuplicateJobError, and no job of the earlier
    chunks, no batch and no staged chunk is left in Redis."""
    monkeypatch.setattr(_batches, "CHUNK", 10)
    spec = new_batch(35)
    taken = spec.jobs[33]
    await store.enqueue(NewJob(id=taken.id, name="Job", max_retries=0))
    before = await keys_of(raw_redis, prefix)
    with pytest.raises(DuplicateJobError):
        await store.create_batch(spec)
    for job in spec.jobs:
        if job.id != taken.id:
            assert await store.get(job.id) is None
    assert await store.get_batch(spec.id) is None
    assert await keys_of(raw_redis, prefix) == before


async def test_a_create_resent_after_its_reply_was_lost_counts_each_job_once(
    store: RedisJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every script call of a create (and an append) runs twice, as when the client resends
    a command whose reply was lost: the batch answers as created, and holds each job once,
    counted once."""
    monkeypatch.setattr(_batches, "CHUNK", 10)
    run = store._run

    async def twice(operation: str, call: Any) -> Any:
        if operation == "create_batch":
            await run(operation, call)  # the reply of this one is "lost"
        return await run(operation, call)

    monkeypatch.setattr(store, "_run", twice)
    spec = new_batch(25)
    created = await store.create_batch(spec)
    assert created.total == 25 and created.queued == 25
    appended = await store.append_to_batch(spec.id, [member(spec.id) for _ in range(3)])
    assert appended is not None and appended.total == 28 and appended.queued == 28
    assert len(await drain(store)) == 28 + 1
    found = await store.get_batch(spec.id)
    assert found is not None and found.total == 28 and found.completed == 28


async def test_an_append_resent_after_another_append_landed_is_recognised(
    store: RedisJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append is carried out, its reply lost; another process appends; then the first
    is resent: it answers as appended (not a taken id), and each job is counted once."""
    spec = new_batch(2)
    await store.create_batch(spec)
    run = store._run
    other = [member(spec.id)]

    async def with_another_between(operation: str, call: Any) -> Any:
        if operation == "create_batch" and other:
            await run(operation, call)  # carried out; its reply is "lost"
            monkeypatch.setattr(store, "_run", run)
            await store.append_to_batch(spec.id, [other.pop()])  # another process's
        return await run(operation, call)

    monkeypatch.setattr(store, "_run", with_another_between)
    appended = await store.append_to_batch(spec.id, [member(spec.id), member(spec.id)])
    assert appended is not None
    found = await store.get_batch(spec.id)
    assert found is not None and found.total == 5 and found.queued == 5
    assert len(await drain(store)) == 5 + 1


async def test_cancelling_a_batch_among_a_backlog_keeps_the_backlog_in_its_order(
    store: RedisJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 jobs of a batch queued between 30 jobs before it and 30 after, cancelled in
    steps of 25 (each step takes its jobs out of the queue in one pass): the 60 others
    are claimed in the order they were queued, none of the batch's."""
    monkeypatch.setattr(_batches, "CANCEL_STEP", 25)
    backlog = [NewJob(uuid.uuid4(), "Job", max_retries=0) for _ in range(60)]
    for job in backlog[:30]:
        await store.enqueue(job)
    spec = new_batch(40)
    await store.create_batch(spec)
    for job in backlog[30:]:
        await store.enqueue(job)
    cancelled = await store.cancel_batch(spec.id)
    assert cancelled is not None and cancelled.canceled == 40
    claimed = await store.claim(100, lease=30)
    assert [claim.job.id for claim in claimed] == [job.id for job in backlog]


async def test_a_large_batch_is_cancelled_in_steps(
    store: RedisJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With CANCEL_STEP jobs per script, a batch of 10 (two running) is cancelled in
    several steps: every job not completed ends Canceled, the counts match, and the
    continuation is stored Canceled."""
    monkeypatch.setattr(_batches, "CANCEL_STEP", 3)
    spec = new_batch(10)
    await store.create_batch(spec)
    first, second, _ = await store.claim(3, lease=30)
    await store.complete(first, None)
    cancelled = await store.cancel_batch(spec.id)
    assert cancelled is not None and cancelled.status is BatchStatus.CANCELED
    assert (cancelled.completed, cancelled.canceled, cancelled.unfinished) == (1, 9, 0)
    assert await store.complete(second, None) is None
    for job in spec.jobs[1:]:
        stored = await store.get(job.id)
        assert stored is not None and stored.status is JobStatus.CANCELED
    continuation = await store.get(spec.continuations[0].id)
    assert continuation is not None and continuation.status is JobStatus.CANCELED
    assert await store.claim(10, lease=30) == []


async def test_a_batch_cancel_cut_short_between_its_steps_is_finished_by_the_next(
    store: RedisJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancel_batch whose first step ran (the batch marked Canceled, 3 of its 10 jobs
    cancelled) but not the others (its process died, Redis went away): calling it again
    cancels the rest; a job that completed meanwhile stays Completed."""
    monkeypatch.setattr(_batches, "CANCEL_STEP", 3)
    spec = new_batch(10)
    await store.create_batch(spec)
    first_step = await store._script("cancel_batch", "batch_cancel", [str(spec.id), "", 0, 3])
    assert int(first_step[0]) == 3, "more steps were to come"
    (running,) = await store.claim(1, lease=30)
    assert await store.complete(running, None) is not None
    again = await store.cancel_batch(spec.id)
    assert again is not None and again.status is BatchStatus.CANCELED
    assert (again.completed, again.canceled, again.unfinished) == (1, 9, 0)
    assert await store.claim(10, lease=30) == []


async def test_batches_on_a_redis_cluster(redis_cluster: Any, prefix: str) -> None:
    """On a 3-master cluster every batch script stays in the store's slot: create, append,
    the continuation stored by the last completion, listing, a batch's job listing and
    cancel."""
    store = RedisJobStore(redis_cluster.url, prefix=prefix, cluster=True)
    try:
        await store.start()
        spec, other = new_batch(3, 1, tenant="t"), new_batch(2, 0)
        await store.create_batch(spec)
        await store.create_batch(other)
        await store.append_to_batch(spec.id, [member(spec.id, tenant="t")])
        assert [b.id for b in (await store.list_batches(tenant="t")).batches] == [spec.id]
        cancelled = await store.cancel_batch(other.id)
        assert cancelled is not None and cancelled.canceled == 2
        ran = await drain(store)
        assert len(ran) == 5 and ran[-1] == spec.continuations[0].id
        found = await store.get_batch(spec.id)
        assert found is not None and found.status is BatchStatus.FINISHED
        assert found.completed == 4 and found.total == 4
        page = await store.list_jobs(batch_id=spec.id, status=JobStatus.COMPLETED, limit=10)
        assert len(page.jobs) == 5
    finally:
        await store.aclose()


async def test_a_batch_refused_for_max_waiting_names_the_batch_not_a_count_that_waits(
    store: RedisJobStore,
) -> None:
    """No job waits: the refusal says the batch's jobs would pass max_waiting."""
    spec = new_batch(4)
    with pytest.raises(
        QueueFullError, match=r"batch's jobs would take .* past the max_queue_size limit \(3\)"
    ):
        await store.create_batch(spec, max_waiting=3)
    assert await store.get_batch(spec.id) is None


async def test_a_batch_cursor_past_a_shortened_or_dropped_job_list_ends_the_listing(
    store: RedisJobStore, raw_redis: Redis, prefix: str
) -> None:
    """A cursor whose place is past the batch's job list (its batch dropped after the
    retention, say) answers what is left and ends, never the same cursor again; a
    cursor of the oldest-first order that came before is refused."""
    spec = new_batch(5, 0)
    await store.create_batch(spec)
    page = await store.list_jobs(batch_id=spec.id, limit=2)
    assert [job.id for job in page.jobs] == [job.id for job in spec.jobs[:-3:-1]]
    assert page.next_cursor is not None
    await raw_redis.delete(f"{{{prefix}}}:batch:{spec.id}:jobs")
    rest = await store.list_jobs(batch_id=spec.id, limit=2, cursor=page.next_cursor)
    assert rest.jobs == [] and rest.next_cursor is None
    older = _listing.encode_cursor(_listing.filters_of(None, None, None, spec.id), [2])
    with pytest.raises(ValueError, match="cursor"):
        await store.list_jobs(batch_id=spec.id, limit=2, cursor=older)


async def test_batches_stored_before_reservations_have_their_continuations_reserved_at_start(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """A store of a version that reserved no continuation ids left two batches, one
    running and one finished: the next store to start reserves the running one's
    continuation (a submission choosing its id is refused), not the stored one's, once
    (its mark says so), and the batch's end still stores and clears it."""
    store = await make_store()
    running, finished = new_batch(1), new_batch(1)
    await store.create_batch(finished)
    (claim,) = await store.claim(1, lease=30)
    await store.complete(claim, "ok")
    await store.create_batch(running)
    tag = "{" + prefix + "}"
    await raw_redis.delete(f"{tag}:reserved", f"{tag}:reserving")  # as that version left it
    (then,) = running.continuations
    later = await make_store()
    with pytest.raises(DuplicateJobError):
        await later.enqueue(NewJob(then.id, "Squat", 0))
    assert await raw_redis.hkeys(f"{tag}:reserved") == [str(then.id)]
    assert await raw_redis.get(f"{tag}:reserving") == "done"
    await drain(later)
    assert await raw_redis.exists(f"{tag}:reserved") == 0
    stored = await later.get(then.id)
    assert stored is not None and stored.name == "Then"


async def test_reserving_an_older_versions_batches_goes_in_chunks_and_misses_none(
    make_store: StoreFactory, raw_redis: Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five running batches left without reservations, reserved two per script call (the
    chunk is the migration's batch size): every one's continuation is reserved, and the
    mark says done."""
    store = await make_store()
    batches = [new_batch(1) for _ in range(5)]
    for batch in batches:
        await store.create_batch(batch)
    tag = "{" + prefix + "}"
    await raw_redis.delete(f"{tag}:reserved", f"{tag}:reserving")
    monkeypatch.setattr(_scripts, "_MIGRATE_BATCH", 2)
    await make_store()
    expected = {str(batch.continuations[0].id) for batch in batches}
    assert set(await raw_redis.hkeys(f"{tag}:reserved")) == expected
    assert await raw_redis.get(f"{tag}:reserving") == "done"


async def test_one_recovery_pass_deletes_every_batch_whose_retention_passed(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """More ended batches than one script call deletes (500) reach the end of their
    retention together: a single recovery pass deletes them all, hashes, job lists and
    listing entries."""
    store = await make_store(retention=0.3)
    specs = [new_batch(1, 0) for _ in range(600)]
    for spec in specs:
        await store.create_batch(spec)
    await drain(store, batch=500)
    await asyncio.sleep(0.5)  # their retention passes
    await store.recover()
    assert [spec.id for spec in specs if await store.get_batch(spec.id) is not None] == []
    assert await raw_redis.zcard("{" + prefix + "}:batches") == 0
