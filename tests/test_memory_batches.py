"""Batches in the in-memory store: counts that match the jobs' statuses through any mix of
transitions, big batches, retention that leaves nothing behind, and the paths only this
store has (the contract suite covers what every store shares)."""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Sequence

import pytest

from async_endpoints import (
    DuplicateJobError,
    InMemoryJobStore,
    JobError,
    JobStatus,
    NewJob,
    QueueFullError,
)
from async_endpoints._batch import BatchStatus, ContinueWhen, NewBatch, status_counts
from async_endpoints._store import Claim
from async_endpoints.testing import ManualClock

BOOM = JobError("boom", "RuntimeError")
LEASE = 30.0
RETENTION = 60.0


def member(batch_id: uuid.UUID, **fields: object) -> NewJob:
    return NewJob(uuid.uuid4(), "Echo", 1, batch_id=batch_id, **fields)  # type: ignore[arg-type]


def new_batch(jobs: int, continuations: int = 1, **fields: object) -> NewBatch:
    batch_id = uuid.uuid4()
    return NewBatch(
        batch_id,
        [member(batch_id) for _ in range(jobs)],
        [member(batch_id) for _ in range(continuations)],
        **fields,  # type: ignore[arg-type]
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def store(clock: ManualClock) -> InMemoryJobStore:
    store = InMemoryJobStore(clock=clock, retention=RETENTION)
    await store.start()
    return store


async def run_all(store: InMemoryJobStore) -> None:
    """Claim and complete until nothing is claimable."""
    while claims := await store.claim(1000, lease=LEASE):
        for claim in claims:
            await store.complete(claim, "ok")


async def assert_exact(
    store: InMemoryJobStore, batch_id: uuid.UUID, jobs: Sequence[NewJob]
) -> None:
    batch = await store.get_batch(batch_id)
    assert batch is not None
    found = [await store.get(job.id) for job in jobs]
    statuses = status_counts([job for job in found if job is not None])
    counted = (
        *(batch.queued, batch.scheduled, batch.in_progress),
        *(batch.completed, batch.failed, batch.canceled),
    )
    assert counted == tuple(statuses[status] for status in JobStatus)


def assert_nothing_kept(store: InMemoryJobStore) -> None:
    book = store._batch_book
    assert book.records == {} and len(book.listed) == 0 and book.listed.chunks == []
    assert book.tenants == {} and not book.expiries


async def test_a_finished_batch_leaves_nothing_behind_after_the_retention(
    store: InMemoryJobStore, clock: ManualClock
) -> None:
    """Finished and cancelled batches, with and without a tenant, are gone after the
    retention, and so is every trace of them in the store's structures."""
    finished, cancelled = new_batch(3, tenant="acme"), new_batch(2)
    await store.create_batch(finished)
    await store.create_batch(cancelled)
    await store.cancel_batch(cancelled.id)
    await run_all(store)
    clock.advance(RETENTION - 1)
    await store.recover()
    assert len((await store.list_batches()).batches) == 2
    clock.advance(2)
    await store.recover()
    assert await store.get_batch(finished.id) is None
    assert await store.get_batch(cancelled.id) is None
    assert (await store.list_batches(tenant="acme")).batches == []
    assert_nothing_kept(store)


async def test_a_running_batch_is_kept_however_long_it_runs(
    store: InMemoryJobStore, clock: ManualClock
) -> None:
    """Retention starts when the last job ends, not when the batch was created."""
    spec = new_batch(1)
    await store.create_batch(spec)
    clock.advance(10 * RETENTION)
    await store.recover()
    assert await store.get_batch(spec.id) is not None
    await run_all(store)
    clock.advance(RETENTION - 1)
    batch = await store.get_batch(spec.id)
    assert batch is not None and batch.status is BatchStatus.FINISHED


async def test_a_requeued_job_holds_a_finished_batch_until_it_ends_again(
    store: InMemoryJobStore, clock: ManualClock
) -> None:
    """While a requeued job of a finished batch is unfinished, the batch is kept; its
    retention starts again when that job ends."""
    spec = new_batch(1, 0)
    await store.create_batch(spec)
    (claim,) = await store.claim(1, lease=LEASE)
    await store.fail(claim, BOOM, retry_in=None)
    clock.advance(RETENTION - 1)
    await store.requeue(spec.jobs[0].id)
    clock.advance(RETENTION)
    await store.recover()
    assert await store.get_batch(spec.id) is not None
    await run_all(store)
    clock.advance(RETENTION - 1)
    assert await store.get_batch(spec.id) is not None
    clock.advance(2)
    assert await store.get_batch(spec.id) is None
    assert_nothing_kept(store)


async def test_a_wall_clock_step_neither_keeps_nor_drops_a_batch_early(
    store: InMemoryJobStore, clock: ManualClock
) -> None:
    """Retention runs on the monotonic clock: a day's step of the wall clock drops
    nothing."""
    spec = new_batch(1)
    await store.create_batch(spec)
    await run_all(store)
    clock.step_wall(25 * 3600)
    await store.recover()
    assert await store.get_batch(spec.id) is not None


async def test_a_batch_of_ten_thousand_jobs_is_counted_exactly(store: InMemoryJobStore) -> None:
    """Claimed, completed, failed and cancelled by the thousand: the counts match, and
    the continuation is stored once, when the last one ends."""
    spec = new_batch(10_000, continue_when=ContinueWhen.ALL_COMPLETED)
    created = await store.create_batch(spec)
    assert created.total == 10_000 and created.queued == 10_000
    claims = await store.claim(10_000, lease=LEASE)
    for index, claim in enumerate(claims[:9_000]):
        if index % 3:
            await store.complete(claim, index)
        else:
            await store.fail(claim, BOOM, retry_in=None)
    batch = await store.get_batch(spec.id)
    assert batch is not None
    assert (batch.in_progress, batch.completed, batch.failed) == (1_000, 6_000, 3_000)
    for claim in claims[9_000:-1]:
        await store.cancel(claim.job.id)
    assert await store.get(spec.continuations[0].id) is None
    await store.complete(claims[-1], "last")
    batch = await store.get_batch(spec.id)
    assert batch is not None and batch.status is BatchStatus.FINISHED
    assert (batch.completed, batch.failed, batch.canceled, batch.unfinished) == (
        6_001,
        3_000,
        999,
        0,
    )
    continuation = await store.get(spec.continuations[0].id)
    assert continuation is not None and continuation.status is JobStatus.CANCELED


@pytest.mark.parametrize("seed", [12, 19, 20, 28, 29])
async def test_counts_match_the_jobs_through_a_random_mix_of_transitions(
    clock: ManualClock, seed: int
) -> None:
    """Every transition (claim, complete, retry now or later, dead, recovery, cancel,
    requeue, promotion, partition keys) at random, then every job run to its end: after
    each step the counts are those of the jobs' statuses (all retained throughout), and
    the continuation is stored once."""
    store = InMemoryJobStore(clock=clock, retention=1e9)
    chance = random.Random(seed)
    batch_id = uuid.uuid4()
    jobs = [
        member(batch_id, partition_key=chance.choice([None, "a", "b"]), delay=chance.choice([0, 5]))
        for _ in range(60)
    ]
    continuation = member(batch_id)
    await store.create_batch(NewBatch(batch_id, jobs[:40], [continuation]))
    await store.append_to_batch(batch_id, jobs[40:])
    held: list[Claim] = []
    for _ in range(400):
        await _step(store, clock, chance, jobs, held)
        await assert_exact(store, batch_id, jobs)
    for _ in range(20):
        clock.advance(LEASE + 1)
        await store.recover()
        for claim in [*held, *await store.claim(1000, lease=LEASE)]:
            await store.complete(claim, "ok")
        held.clear()
        await assert_exact(store, batch_id, jobs)
    batch = await store.get_batch(batch_id)
    assert batch is not None and batch.total == 60 and batch.unfinished == 0
    assert batch.status is BatchStatus.FINISHED
    assert await store.get(continuation.id) is not None
    page = await store.list_jobs(batch_id=batch_id, limit=100)
    assert len(page.jobs) == 61 and page.next_cursor is None


async def _step(
    store: InMemoryJobStore,
    clock: ManualClock,
    chance: random.Random,
    jobs: list[NewJob],
    held: list[Claim],
) -> None:
    action = chance.choice(["claim", "settle", "settle", "time", "cancel", "requeue"])
    if action == "claim":
        held += await store.claim(chance.randint(1, 5), lease=LEASE)
    elif action == "settle" and held:
        claim = held.pop(chance.randrange(len(held)))
        outcome = chance.choice(["complete", "retry", "later", "dead"])
        if outcome == "complete":
            await store.complete(claim, "ok")
        else:
            retry_in = {"retry": 0.0, "later": 3.0, "dead": None}[outcome]
            await store.fail(claim, BOOM, retry_in=retry_in)
    elif action == "time":
        clock.advance(chance.choice([1.0, 4.0, LEASE + 1]))
        await store.recover()
        held[:] = [claim for claim in held if await _still_held(store, claim)]
    elif action == "cancel":
        await store.cancel(chance.choice(jobs).id)
    elif action == "requeue":
        job = await store.get(chance.choice(jobs).id)
        if job is not None and job.status in (JobStatus.FAILED, JobStatus.CANCELED):
            await store.requeue(job.id)


async def _still_held(store: InMemoryJobStore, claim: Claim) -> bool:
    return not await store.renew([claim], lease=LEASE)


async def test_the_continuations_wait_behind_their_partition_key(
    store: InMemoryJobStore,
) -> None:
    """A continuation with a partition key is stored as enqueue would store it: behind
    the key's running job."""
    blocker = await store.enqueue(NewJob(uuid.uuid4(), "Echo", 0, partition_key="k"))
    (running,) = await store.claim(1, lease=LEASE)
    spec = new_batch(1, 0)
    follow = NewJob(uuid.uuid4(), "Then", 0, partition_key="k", batch_id=spec.id)
    spec = NewBatch(spec.id, spec.jobs, [follow])
    await store.create_batch(spec)
    (claim,) = await store.claim(1, lease=LEASE)
    await store.complete(claim, "ok")
    assert await store.claim(5, lease=LEASE) == []
    await store.complete(running, "ok")
    assert [c.job.id for c in await store.claim(5, lease=LEASE)] == [follow.id]
    assert blocker.id == running.job.id


async def test_cancel_batch_tells_the_listeners_before_it_returns(
    store: InMemoryJobStore,
) -> None:
    """The running jobs' ids reach every cancel listener within the call."""
    heard: list[uuid.UUID] = []
    store.add_cancel_listener(heard.append)
    spec = new_batch(3)
    await store.create_batch(spec)
    claims = await store.claim(2, lease=LEASE)
    await store.cancel_batch(spec.id)
    assert sorted(heard) == sorted(claim.job.id for claim in claims)


async def test_a_continuation_id_taken_meanwhile_is_left_alone(
    store: InMemoryJobStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A submission cannot take a continuation's id (it is reserved: refused as taken).
    Should a job hold it all the same when the batch finishes (stored without the
    reservation, as here by hand), it keeps its own data; the continuation is not stored
    over it, and a warning says so."""
    spec = new_batch(1)
    await store.create_batch(spec)
    squatter = NewJob(spec.continuations[0].id, "Other", 0)
    with pytest.raises(DuplicateJobError):
        await store.enqueue(squatter)
    store._batch_book.reserved.discard(squatter.id.int)
    await store.enqueue(squatter)
    with caplog.at_level(logging.WARNING, logger="async_endpoints"):
        claims = await store.claim(5, lease=LEASE)
        for claim in claims:
            await store.complete(claim, "ok")
    kept = await store.get(squatter.id)
    assert kept is not None and kept.name == "Other" and kept.batch_id is None
    assert "is taken" in caplog.text


async def test_a_batch_listing_by_batch_costs_its_own_jobs_only(
    store: InMemoryJobStore,
) -> None:
    """Without a status, a batch's jobs are paged from its own members, newest first,
    however many other jobs are stored: full pages, no short ones."""
    spec = new_batch(30, 0)
    await store.create_batch(spec)
    for _ in range(25_000):
        await store.enqueue(NewJob(uuid.uuid4(), "Echo", 0))
    seen: list[uuid.UUID] = []
    cursor = None
    while True:
        page = await store.list_jobs(batch_id=spec.id, limit=10, cursor=cursor)
        assert len(page.jobs) == 10
        seen += [job.id for job in page.jobs]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [job.id for job in reversed(spec.jobs)]


async def test_the_jobs_of_a_batch_are_created_at_the_batchs_moment(
    store: InMemoryJobStore, clock: ManualClock
) -> None:
    """One atomic step, one moment: the batch and its jobs share created_at; appended
    jobs and the continuations have the moment they were stored."""
    spec = new_batch(3)
    created = await store.create_batch(spec)
    for job in spec.jobs:
        stored = await store.get(job.id)
        assert stored is not None and stored.created_at == created.created_at
    clock.advance(5)
    extra = member(spec.id)
    await store.append_to_batch(spec.id, [extra])
    appended = await store.get(extra.id)
    assert appended is not None and appended.created_at > created.created_at
    clock.advance(5)
    await run_all(store)
    batch = await store.get_batch(spec.id)
    continuation = await store.get(spec.continuations[0].id)
    assert batch is not None and continuation is not None
    assert continuation.created_at == batch.finished_at


async def test_a_batch_refused_for_max_waiting_says_its_jobs_pass_the_limit(
    store: InMemoryJobStore,
) -> None:
    """No job waits: the refusal of a batch bigger than max_waiting says its jobs would
    pass the limit (as on Redis), rather than claiming that max_waiting jobs wait."""
    with pytest.raises(
        QueueFullError, match=r"batch's jobs would take .* past the max_queue_size limit \(3\)"
    ):
        await store.create_batch(new_batch(4), max_waiting=3)
