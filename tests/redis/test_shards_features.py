"""What spans shards in a sharded store: idempotency keys met in one shard, batches kept
in one, batch listings merged, schedules in shard 0, every public method routed."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    BatchStatus,
    DuplicateJobError,
    IdempotencyConflictError,
    JobSpec,
    QueueFullError,
)
from async_endpoints._batch import NewBatch
from async_endpoints._idempotency import by_request_id
from async_endpoints._job import Job, NewJob
from async_endpoints._schedule import Schedule
from async_endpoints._store_features import Idempotency
from async_endpoints_redis import RedisJobStore
from async_endpoints_redis._keys import Keys
from async_endpoints_redis._shard_layout import ShardLayout
from async_endpoints_redis._shard_store import ShardedRedisJobStore
from tests.redis.conftest import StoreFactory
from tests.redis.support import eventually

pytestmark = pytest.mark.redis


def new_job(**options: object) -> NewJob:
    return NewJob(uuid.uuid4(), "Echo", 0, **options)  # type: ignore[arg-type]


def test_every_public_method_of_the_store_is_routed_by_the_sharded_one() -> None:
    """A method added to `RedisJobStore` and not to the routing layer would act on no
    shard at all: each one is overridden."""
    for name, member in inspect.getmembers(RedisJobStore, callable):
        if not name.startswith("_"):
            assert getattr(ShardedRedisJobStore, name) is not member, name


async def test_repeats_of_an_idempotency_key_meet_in_one_shard(
    make_store: StoreFactory, prefix: str
) -> None:
    """Two submissions under one key whose partition keys fall in different shards: the
    second finds the first (and its fingerprint), and nothing new is stored."""
    store = await make_store(shards=3)
    layout = ShardLayout(prefix, 3)
    keys = [f"k{n}" for n in range(100)]
    first_key = keys[0]
    other_key = next(key for key in keys if layout.of_key(key) != layout.of_key(first_key))
    idempotency = Idempotency("order-42", "fp-1", 60.0)
    first, earlier = await store.enqueue_once(new_job(partition_key=first_key), idempotency)
    assert earlier is None
    again = Idempotency("order-42", "fp-2", 60.0)
    second, earlier = await store.enqueue_once(new_job(partition_key=other_key), again)
    assert (second.id, earlier) == (first.id, "fp-1")
    assert await store.count_waiting() == 1


def keys_in_two_shards(prefix: str) -> tuple[str, str]:
    """Two partition keys whose lanes are in different shards of 3."""
    layout = ShardLayout(prefix, 3)
    keys = [f"k{n}" for n in range(100)]
    return keys[0], next(key for key in keys if layout.of_key(key) != layout.of_key(keys[0]))


async def test_a_keyed_job_is_never_stored_away_from_its_lane_under_a_held_key(
    make_store: StoreFactory, prefix: str
) -> None:
    """The key was recorded for another shard by a submission that stored nothing there
    (refused: the queue was full): a job of another partition key under the same key is
    a conflict, not a job stored in the other key's shard (where it would run beside its
    own key's jobs); once the first submission lands, repeats find it."""
    store = await make_store(shards=3)
    first_key, other_key = keys_in_two_shards(prefix)
    idempotency = Idempotency("order-7", "fp-1", 60.0)
    with pytest.raises(QueueFullError):
        await store.enqueue_once(new_job(partition_key=first_key), idempotency, max_waiting=0)
    with pytest.raises(IdempotencyConflictError, match="another partition key"):
        await store.enqueue_once(new_job(partition_key=other_key), idempotency)
    assert await store.count_waiting() == 0
    first, earlier = await store.enqueue_once(new_job(partition_key=first_key), idempotency)
    assert earlier is None
    second, earlier = await store.enqueue_once(new_job(partition_key=other_key), idempotency)
    assert (second.id, earlier) == (first.id, "fp-1")
    assert await store.count_waiting() == 1


async def test_concurrent_submissions_under_one_key_store_one_job_in_its_own_lane(
    make_store: StoreFactory, prefix: str
) -> None:
    """Many rounds of two stores submitting one key at once, with partition keys in
    different shards: each round stores exactly one job, always in its own key's shard
    (the other submitter gets that job or a conflict)."""
    one, two = await make_store(shards=3), await make_store(shards=3)
    first_key, other_key = keys_in_two_shards(prefix)
    layout = ShardLayout(prefix, 3)
    for round_ in range(30):
        idempotency = Idempotency(f"race-{round_}", "fp", 60.0)
        answers = await asyncio.gather(
            one.enqueue_once(new_job(partition_key=first_key), idempotency),
            two.enqueue_once(new_job(partition_key=other_key), idempotency),
            return_exceptions=True,
        )
        jobs = {answer[0].id: answer[0] for answer in answers if isinstance(answer, tuple)}
        assert len(jobs) == 1, answers
        assert all(isinstance(answer, tuple | IdempotencyConflictError) for answer in answers), (
            answers
        )
        (job,) = jobs.values()
        assert job.partition_key is not None
        home = one._shards[layout.of_key(job.partition_key)]  # type: ignore[attr-defined]
        assert await home.get(job.id) is not None, "stored away from its key's lane"


async def test_a_batch_placed_by_its_key_is_found_counted_and_cancelled(
    make_store: StoreFactory, prefix: str
) -> None:
    store = await make_store(shards=3)
    layout = ShardLayout(prefix, 3)
    batch_id = uuid.uuid4()
    key = next(f"k{n}" for n in range(100) if layout.of_key(f"k{n}") != layout.of_id(batch_id))
    jobs = [new_job(batch_id=batch_id, partition_key=key) for _ in range(3)]
    await store.create_batch(NewBatch(batch_id, jobs, [new_job(batch_id=batch_id)]))
    found = await store.get_batch(batch_id)
    assert found is not None and found.total == 3
    elsewhere = next(f"o{n}" for n in range(100) if layout.of_key(f"o{n}") != layout.of_key(key))
    with pytest.raises(ValueError, match="another shard"):
        await store.append_to_batch(batch_id, [new_job(batch_id=batch_id, partition_key=elsewhere)])
    appended = await store.append_to_batch(batch_id, [new_job(batch_id=batch_id)])
    assert appended is not None and appended.total == 4
    cancelled = await store.cancel_batch(batch_id)
    assert cancelled is not None and cancelled.canceled == 4
    page = await store.list_jobs(batch_id=batch_id, limit=10)
    assert len(page.jobs) == 5  # its jobs, then its continuation


async def test_batches_are_listed_newest_first_across_shards(make_store: StoreFactory) -> None:
    store = await make_store(shards=3)
    made = []
    for _ in range(12):
        batch_id = uuid.uuid4()
        made.append(await store.create_batch(NewBatch(batch_id, [new_job(batch_id=batch_id)])))
    seen = []
    cursor = None
    while True:
        page = await store.list_batches(limit=5, cursor=cursor)
        seen += page.batches
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(batch.id for batch in seen) == sorted(batch.id for batch in made)
    times = [batch.created_at for batch in seen]
    assert times == sorted(times, reverse=True)


async def test_a_schedules_cycle_is_fired_once_and_its_job_found(
    make_store: StoreFactory,
) -> None:
    store = await make_store(shards=3)
    peer = await make_store(shards=3)
    due = datetime.now(UTC) - timedelta(seconds=1)
    schedule = await store.upsert_schedule(
        Schedule("nightly", "Echo", "* * * * *", "UTC", True, next_run_at=due)
    )
    (listed,) = await peer.list_schedules()
    assert listed.id == "nightly"
    later = due + timedelta(minutes=1)
    job = new_job()
    fired = await store.fire_schedule(schedule, later, job)
    assert fired is not None and await peer.fire_schedule(schedule, later, new_job()) is None
    found = await peer.get(job.id)
    assert found is not None and found.name == "Echo"


@pytest.mark.parametrize(("limit", "accepted"), [(100, 100), (1000, 300)])
async def test_concurrent_submissions_of_one_process_keep_to_max_waiting(
    make_store: StoreFactory, limit: int, accepted: int
) -> None:
    """300 submissions at once from one store, spread over 3 shards: with a limit of 100
    exactly 100 are stored (each shard counts the others' submissions in flight; before,
    each shard let in nearly the whole limit: about 290), and with a limit of 1,000 none
    is refused for the others in flight."""
    store = await make_store(shards=3)
    answers = await asyncio.gather(
        *(store.enqueue(new_job(), max_waiting=limit) for _ in range(300)),
        return_exceptions=True,
    )
    stored = [answer for answer in answers if not isinstance(answer, BaseException)]
    refused = [answer for answer in answers if isinstance(answer, QueueFullError)]
    assert (len(stored), len(refused)) == (accepted, 300 - accepted)
    assert await store.count_waiting() == accepted


async def stored_past_its_ttl(
    store: RedisJobStore, key: str, first: Job, partition_key: str
) -> Job:
    """Submit under idempotency key ``key`` (fingerprint fp-2, ttl 60 s) with
    ``partition_key`` until a submission stores a new job, which is returned: until the
    first job's ttl has passed, each is a repeat answered by ``first`` (fingerprint
    fp-1)."""
    stored: list[Job] = []

    async def anew() -> bool:
        try:
            job, earlier = await store.enqueue_once(
                new_job(partition_key=partition_key), Idempotency(key, "fp-2", 60.0)
            )
        except IdempotencyConflictError:
            # At the boundary the pointer (on its shard's clock) can outlive the record
            # (on the job's shard's) by the two clocks' skew: a conflict until it ends too.
            return False
        if job.id == first.id:
            assert earlier == "fp-1"  # within the ttl: a repeat
            return False
        assert earlier is None
        stored.append(job)
        return True

    await eventually(anew, timeout=10)
    return stored[0]


async def test_a_key_reused_after_its_ttl_stores_a_job_in_its_new_partition_keys_shard(
    make_store: StoreFactory, prefix: str
) -> None:
    """The key's pointer ends with its record (on the store's clock): past the key's ttl
    a submission under it with a partition key in another shard stores a new job in
    that key's shard, rather than meeting the old pointer and answering a conflict."""
    store = await make_store(shards=3)
    first_key, other_key = keys_in_two_shards(prefix)
    layout = ShardLayout(prefix, 3)
    first, _ = await store.enqueue_once(
        new_job(partition_key=first_key), Idempotency("reuse", "fp-1", 0.3)
    )
    job = await stored_past_its_ttl(store, "reuse", first, other_key)
    assert isinstance(store, ShardedRedisJobStore)
    assert await store._shards[layout.of_key(other_key)].get(job.id) is not None
    again, earlier = await store.enqueue_once(
        new_job(partition_key=first_key), Idempotency("reuse", "fp-2", 60.0)
    )
    assert (again.id, earlier) == (job.id, "fp-2")


async def test_a_continuation_id_homed_in_its_batchs_shard_is_not_taken_from_elsewhere(
    make_store: StoreFactory, prefix: str
) -> None:
    """A continuation whose id's shard is its batch's (so no pointer names it) is still
    reserved against a submission choosing its id that a partition key places in
    another shard (the pointer it would write in the id's shard is refused); the batch's
    end stores the continuation."""
    store = await make_store(shards=3)
    layout = ShardLayout(prefix, 3)
    batch_id = uuid.uuid4()
    home = layout.of_id(batch_id)
    then_id = next(one for one in iter(uuid.uuid4, None) if layout.of_id(one) == home)
    elsewhere = next(key for key in (f"k{n}" for n in range(200)) if layout.of_key(key) != home)
    member = NewJob(uuid.uuid4(), "Echo", 0, batch_id=batch_id)
    then = NewJob(then_id, "Then", 0, batch_id=batch_id)
    await store.create_batch(NewBatch(batch_id, [member], [then]))
    with pytest.raises(DuplicateJobError):
        await store.enqueue(NewJob(then_id, "Squat", 0, partition_key=elsewhere))
    (claim,) = await store.claim(1, lease=30)
    await store.complete(claim, "ok")
    stored = await store.get(then_id)
    assert stored is not None and (stored.name, stored.batch_id) == ("Then", batch_id)


async def test_a_key_stored_anew_after_its_ttl_keeps_other_partition_keys_to_that_job(
    make_store: StoreFactory, prefix: str, raw_redis: Redis
) -> None:
    """Past the key's ttl, a submission with the same partition key stores a new job in
    that key's shard. Here the key's pointer outlives its record there by 3 s (as two
    shards' clocks apart can make it), so that submission finds the pointer standing: the
    pointer is then renewed to last as long as the new record, and a submission under
    the key with a partition key in another shard, after the old pointer's end, is
    answered by that job, not stored as a second one."""
    store = await make_store(shards=3)
    first_key, other_key = keys_in_two_shards(prefix)
    first, _ = await store.enqueue_once(
        new_job(partition_key=first_key), Idempotency("again", "fp-1", 0.3)
    )
    label = Keys(ShardLayout(prefix, 3).prefixes[ShardLayout(prefix, 3).of_label("again")])
    ends = int(await raw_redis.get(label.clock)) + 3000
    await raw_redis.set(f"{label.key_prefix}idem-end:again", ends, keepttl=True)
    renewed = await stored_past_its_ttl(store, "again", first, first_key)

    assert isinstance(store, ShardedRedisJobStore)
    reading = store._shards[0]._connection.elapsed.reading

    async def old_end_passed() -> bool:  # the pointer's clock is at least this reading
        return reading() > ends

    await eventually(old_end_passed, timeout=10)
    other, earlier = await store.enqueue_once(
        new_job(partition_key=other_key), Idempotency("again", "fp-3", 60.0)
    )
    assert (other.id, earlier) == (renewed.id, "fp-2")


async def test_a_chosen_id_placed_elsewhere_the_second_time_is_refused_as_taken(
    make_store: StoreFactory, prefix: str
) -> None:
    """A client-chosen id submitted again with another placement (a partition key in
    another shard, or none) meets the first job's pointer or the job itself in the id's
    shard: refused as taken (the engine then compares the job it holds), never stored
    twice."""
    store = await make_store(shards=3)
    layout = ShardLayout(prefix, 3)
    for first, second in (("k", None), (None, "k")):
        job_id = next(i for i in iter(uuid.uuid4, None) if layout.of_id(i) != layout.of_key("k"))
        one, two = (NewJob(job_id, "Echo", 0, partition_key=key) for key in (first, second))
        await store.enqueue_once(one, by_request_id(job_id, "fp-1", 60))
        with pytest.raises(DuplicateJobError):
            await store.enqueue_once(two, by_request_id(job_id, "fp-2", 60))
    assert await store.count_waiting() == 2


async def test_a_used_key_with_an_id_taken_elsewhere_is_answered_by_the_keys_shard(
    make_store: StoreFactory, prefix: str
) -> None:
    """A key used before, sent again with a client-chosen id that another job holds in
    another shard: the key's shard answers (its job and fingerprint, which the engine
    compares: another body is a 422) before the id is looked at, in whichever shard the
    id falls, and nothing is stored."""
    store = await make_store(shards=3)
    layout = ShardLayout(prefix, 3)
    keyed, earlier = await store.enqueue_once(new_job(), Idempotency("k2", "fp-1", 60.0))
    assert earlier is None
    key_shard = layout.of_id(keyed.id)
    for other_shard in {0, 1, 2} - {key_shard}:
        taken_id = next(i for i in iter(uuid.uuid4, None) if layout.of_id(i) == other_shard)
        await store.enqueue_once(NewJob(taken_id, "Echo", 0), by_request_id(taken_id, "fp", 60))
        again = NewJob(taken_id, "Echo", 0)
        answered, earlier = await store.enqueue_once(again, Idempotency("k2", "fp-2", 60.0))
        assert (answered.id, earlier) == (keyed.id, "fp-1")
    assert await store.count_waiting() == 3


async def test_a_batch_refused_for_max_waiting_says_so_as_on_one_redis(
    make_store: StoreFactory,
) -> None:
    """The sharded store's refusal of a batch past max_waiting reads as the other stores'
    (not as a single job's "1 job is waiting")."""
    store = await make_store(shards=3)
    await store.enqueue(new_job())
    batch_id = uuid.uuid4()
    spec = NewBatch(batch_id, [new_job(batch_id=batch_id) for _ in range(2)])
    with pytest.raises(QueueFullError) as refused:
        await store.create_batch(spec, max_waiting=2)
    assert str(refused.value) == (
        "the batch's jobs would take the waiting jobs past the max_queue_size limit (2)"
    )


async def test_a_watch_on_a_shard_without_the_job_looks_for_it_everywhere_before_gone(
    make_store: StoreFactory, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A watch placed on the id's shard while the job lives in its partition key's (the
    two decided apart, a moment before the job was stored): the renewal finds no job in
    that shard, reads it through the whole store, finds it, and tells its status, not
    that it is gone."""
    from async_endpoints import JobNotice
    from async_endpoints_redis import _events

    monkeypatch.setattr(_events, "RENEW_EVERY", 0.1)
    store = await make_store(shards=3)
    layout = ShardLayout(prefix, 3)
    job = new_job(partition_key="k0")
    while layout.of_id(job.id) == layout.of_key("k0"):
        job = new_job(partition_key="k0")
    await store.enqueue(job)
    told: list[JobNotice] = []
    wrong_shard = store._shards[layout.of_id(job.id)]  # type: ignore[attr-defined]
    stop = await wrong_shard.watch_job(job.id, told.append)
    try:
        await eventually(lambda: _told(told), timeout=5)
    finally:
        stop()
    assert not any(notice.gone for notice in told)
    assert told[0].job is not None and told[0].job.id == job.id


async def _told(told: list[object]) -> bool:
    return bool(told)


async def test_appending_to_a_finished_batch_says_it_is_finished_whatever_the_keys(
    make_store: StoreFactory, prefix: str
) -> None:
    """`append_to_batch` of a finished batch, with a partition key whose shard is not the
    batch's: the ValueError says the batch is Finished (the reason no append can change),
    not that the key is in another shard."""
    store = await make_store(shards=3)
    endpoints = AsyncEndpoints(store=store)

    @endpoints.add_handler
    async def step(ctx: AsyncContext[None]) -> None:
        return None

    async with endpoints.running():
        batch = await endpoints.submit_batch([JobSpec("step")])
        await endpoints.drain()
        assert (await endpoints.get_batch(batch.id)).status is BatchStatus.FINISHED
        layout = ShardLayout(prefix, 3)
        elsewhere = next(
            f"k{n}" for n in range(100) if layout.of_key(f"k{n}") != layout.of_id(batch.id)
        )
        with pytest.raises(ValueError, match="is Finished: it takes no more jobs"):
            await endpoints.append_to_batch(batch.id, [JobSpec("step", partition_key=elsewhere)])
