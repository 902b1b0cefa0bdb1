"""What `RedisJobStore` promises beyond the store contract: layout, races, outages, setups."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from redis.asyncio import Redis

from async_endpoints._errors import JobStoreError, StoreUnavailableError
from async_endpoints._job import DEFAULT_QUEUE, JobError, JobStatus, NewJob
from async_endpoints._store import Claim
from async_endpoints_redis import RedisJobStore
from async_endpoints_redis._codec import job_from_text
from tests.redis.support import eventually
from tests.redis_servers import RedisServer, start_server

pytestmark = pytest.mark.redis
T = TypeVar("T")


def new_job(max_retries: int = 3) -> NewJob:
    return NewJob(id=uuid.uuid4(), name="Job", max_retries=max_retries)


WEEK_MS = 7 * 24 * 3_600_000

#: Longer than the 0.3 s retention the expiry tests give their stores (the scenario's
#: wait, not a wait for something to happen).
RETENTION_PASSED = 0.5

PROMPTLY = 5.0  # "long before the 30 s a missed wake-up would cost", on a loaded machine


async def within(seconds: float, awaitable: Awaitable[T]) -> T:
    async with asyncio.timeout(seconds):
        return await awaitable


async def test_every_key_shares_the_store_hash_tag(
    store: RedisJobStore, raw_redis: Redis, prefix: str
) -> None:
    """Every key the store writes starts with ``{prefix}:``, so a cluster keeps them in one slot."""
    await store.enqueue(new_job())
    failing = await store.enqueue(new_job())
    [first, second] = await store.claim(2, lease=30)
    await store.complete(first, {"ok": True})
    await store.fail(second, JobError("boom", "ValueError"), retry_in=60)
    await store.enqueue(new_job())
    keys = [key async for key in raw_redis.scan_iter(match=f"*{prefix}*")]
    assert len(keys) >= 5
    assert all(key.startswith("{" + prefix + "}:") for key in keys)
    assert await raw_redis.zscore("{" + prefix + "}:scheduled", str(failing.id)) is not None


async def test_missing_or_corrupt_ids_in_the_queue_do_not_stall_claims(
    store: RedisJobStore, raw_redis: Redis, prefix: str
) -> None:
    """Ids of missing, non-hash or incomplete records are dropped; the good job is claimed."""
    tag = "{" + prefix + "}"
    wrong_type, incomplete = uuid.uuid4(), uuid.uuid4()
    await raw_redis.set(f"{tag}:job:{wrong_type}", "not a hash")
    await raw_redis.hset(f"{tag}:job:{incomplete}", mapping={"status": "Queued"})
    await raw_redis.rpush(
        f"{tag}:queue:default", str(uuid.uuid4()), "not-a-uuid", str(wrong_type), str(incomplete)
    )
    good = await store.enqueue(new_job())
    claims = await store.claim(5, lease=30)
    assert [claim.job.id for claim in claims] == [good.id]
    assert await raw_redis.llen(f"{tag}:queue:default") == 0


async def test_a_record_decoding_cannot_reach_reads_as_no_job_and_claims_go_on(
    store: RedisJobStore, raw_redis: Redis, prefix: str
) -> None:
    """A job hash another writer damaged past what decoding takes (a created_at past
    datetime's years, a result nested past the JSON parser's recursion limit) reads as
    no job, like any corrupt record; a claim that takes it beside a good job hands out
    the good one (it raised, and the good job was left to its lease)."""
    tag = "{" + prefix + "}"
    far, deep, good = [await store.enqueue(new_job()) for _ in range(3)]
    await raw_redis.hset(f"{tag}:job:{far.id}", "created_at", "9" * 20)
    await raw_redis.hset(f"{tag}:job:{deep.id}", "result", "[" * 100_000 + "]" * 100_000)
    assert await store.get(far.id) is None and await store.get(deep.id) is None
    claims = await store.claim(5, lease=30)
    assert [claim.job.id for claim in claims] == [good.id]


async def test_concurrent_claimers_on_two_clients_never_share_a_job(
    make_store: Callable[..., Awaitable[RedisJobStore]],
) -> None:
    """500 jobs, 8 concurrent claimers over two clients: each job is handed out exactly once."""
    stores = [await make_store(), await make_store()]
    jobs = await asyncio.gather(*(stores[0].enqueue(new_job()) for _ in range(500)))
    claimed: Counter[uuid.UUID] = Counter()

    async def claimer(store: RedisJobStore) -> None:
        while claims := await store.claim(7, lease=30):
            claimed.update(claim.job.id for claim in claims)
            await asyncio.sleep(0)

    await asyncio.gather(*(claimer(stores[i % 2]) for i in range(8)))
    assert set(claimed) == {job.id for job in jobs}
    assert set(claimed.values()) == {1}


async def test_a_stale_token_cannot_complete_a_job_after_recovery(store: RedisJobStore) -> None:
    """Once an expired claim is recovered, completing with its token changes nothing."""
    job = await store.enqueue(new_job())
    [stale] = await store.claim(1, lease=0.05)
    assert await eventually(store.recover) == [job.id]
    assert await store.complete(stale, "late") is None
    requeued = await store.get(job.id)
    assert requeued is not None and requeued.status is JobStatus.QUEUED
    assert requeued.retry_count == 1 and requeued.error is not None
    assert requeued.error.type == "ClaimExpired"
    [fresh] = await store.claim(1, lease=30)
    assert fresh.token != stale.token
    completed = await store.complete(fresh, "on time")
    assert completed is not None and completed.result == "on time"


async def test_a_recovered_job_without_retries_left_fails(store: RedisJobStore) -> None:
    """A lost attempt with no retries left makes the job Failed for good."""
    job = await store.enqueue(new_job(max_retries=0))
    await store.claim(1, lease=0.05)
    assert await eventually(store.recover) == [job.id]
    failed = await store.get(job.id)
    assert failed is not None and failed.status is JobStatus.FAILED and failed.retry_count == 0


async def test_a_delayed_retry_becomes_claimable_after_its_due_time_not_before(
    store: RedisJobStore,
) -> None:
    """A job failed with retry_in=0.4 is Scheduled, not claimable early, and claimable once due."""
    await store.enqueue(new_job())
    [claim] = await store.claim(1, lease=30)
    scheduled = await store.fail(claim, JobError("boom", "ValueError"), retry_in=0.4)
    assert scheduled is not None and scheduled.status is JobStatus.SCHEDULED
    assert scheduled.run_at is not None and scheduled.retry_count == 1
    assert await store.claim(1, lease=30) == []
    [again] = await eventually(lambda: store.claim(1, lease=30))
    # Due on the store's elapsed clock, ``run_at`` and the claim's stamp on the wall clock,
    # each kept to the millisecond: the two readings may differ by that rounding.
    rounding = timedelta(milliseconds=2)
    assert again.job.started_at is not None
    assert again.job.last_updated_at >= scheduled.run_at - rounding
    assert again.job.started_at == claim.job.started_at  # set by the first attempt only


async def test_terminal_jobs_expire_after_the_retention(
    make_store: Callable[..., Awaitable[RedisJobStore]], raw_redis: Redis, prefix: str
) -> None:
    """Completed and Failed jobs are deleted by the first recovery pass once ``retention``
    seconds have passed (not before), and carry a backstop TTL of the retention plus a
    week (every worker pool may be down that long: the pass that deletes a job takes its
    index entries and counts with it, which its key's expiry would leave behind)."""
    store = await make_store(retention=0.3)
    done, failed = await store.enqueue(new_job()), await store.enqueue(new_job())
    [first, second] = await store.claim(2, lease=30)
    await store.complete(first, None)
    await store.fail(second, JobError("boom", "ValueError"), retry_in=None)
    ttl = await raw_redis.pttl("{" + prefix + "}:job:" + str(done.id))
    assert WEEK_MS < ttl <= WEEK_MS + 300
    await store.recover()
    assert await store.get(done.id) is not None
    assert await eventually(lambda: _gone_after_recovery(store, done.id, failed.id))


async def _gone_after_recovery(store: RedisJobStore, *job_ids: uuid.UUID) -> bool:
    await store.recover()
    return all([await store.get(job_id) is None for job_id in job_ids])


async def test_one_recovery_pass_deletes_every_finished_job_whose_retention_passed(
    make_store: Callable[..., Awaitable[RedisJobStore]],
) -> None:
    """More finished jobs than one script call deletes (500) reach the end of their
    retention together: a single recovery pass deletes them all, with their counts, so
    the deletions keep up with any rate of finished jobs."""
    store = await make_store(retention=0.3)
    jobs = await asyncio.gather(*(store.enqueue(new_job()) for _ in range(1_200)))
    claims: list[Any] = []
    while len(claims) < len(jobs):
        claims += await store.claim(500, lease=30)
    await asyncio.gather(*(store.complete(claim, None) for claim in claims))
    [stats] = await store.queue_stats(["default"])
    assert stats.completed == 1_200
    await asyncio.sleep(RETENTION_PASSED)
    await store.recover()
    [stats] = await store.queue_stats(["default"])
    assert stats.completed == 0
    assert [job for job in jobs if await store.get(job.id) is not None] == []


async def test_queued_jobs_never_expire(
    store: RedisJobStore, raw_redis: Redis, prefix: str
) -> None:
    """Only terminal jobs get a TTL."""
    job = await store.enqueue(new_job())
    assert await raw_redis.pttl("{" + prefix + "}:job:" + str(job.id)) == -1


async def test_wait_for_work_returns_promptly_when_another_instance_enqueues(
    make_store: Callable[..., Awaitable[RedisJobStore]],
) -> None:
    """An idle worker's store is woken by an enqueue through another store instance."""
    worker, api = await make_store(), await make_store()
    await _until_listening(worker)
    assert await worker.claim(1, lease=30) == []
    waiting = asyncio.create_task(worker.wait_for_work(30))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await api.enqueue(new_job())
    await within(PROMPTLY, waiting)


async def test_wait_for_work_returns_at_once_after_an_enqueue_since_the_last_claim(
    store: RedisJobStore,
) -> None:
    """A job enqueued between a claim and the wait is not slept through."""
    await store.claim(1, lease=30)
    await store.enqueue(new_job())
    await within(PROMPTLY, store.wait_for_work(30))


async def test_wait_for_work_returns_when_the_earliest_scheduled_job_is_due(
    store: RedisJobStore,
) -> None:
    """Without any wake-up, the wait ends when a Scheduled job falls due."""
    await store.enqueue(new_job())
    [claim] = await store.claim(1, lease=30)
    loop = asyncio.get_running_loop()
    started = loop.time()  # before the fail: the job is due 0.3 s after the fail ran
    await store.fail(claim, JobError("boom", "ValueError"), retry_in=0.3)
    async with asyncio.timeout(2.0):  # a wait that ignored the due time would sleep 30 s
        while not (claims := await store.claim(1, lease=30)):
            await store.wait_for_work(30)  # spurious wake-ups are allowed
    assert loop.time() - started >= 0.25
    assert claims[0].job.retry_count == 1


async def test_a_wait_after_a_dry_claim_learns_of_a_job_delayed_by_another_instance(
    make_store: Callable[..., Awaitable[RedisJobStore]],
) -> None:
    """A claim that finds its queues dry tells the due time of the earliest Scheduled job,
    so the busy wait after it asks Redis nothing; a job delayed by another instance since
    then still ends that wait (its wake-up), and is claimed once due."""
    worker, api = await make_store(), await make_store()
    await eventually(lambda: _listening(worker))
    assert await worker.claim(5, lease=30) == []
    waiting = asyncio.create_task(worker.wait_for_work(30))
    delayed = await api.enqueue(new_job_delayed(0.2))
    await within(PROMPTLY, waiting)
    async with asyncio.timeout(2.0):
        while not (claims := await worker.claim(5, lease=30)):
            await worker.wait_for_work(30)  # spurious wake-ups are allowed
    assert [claim.job.id for claim in claims] == [delayed.id]


def new_job_delayed(delay: float) -> NewJob:
    return NewJob(id=uuid.uuid4(), name="Job", max_retries=3, delay=delay)


async def test_wait_until_terminal_is_woken_by_a_completion_through_another_instance(
    make_store: Callable[..., Awaitable[RedisJobStore]],
) -> None:
    """A waiter on one instance sees the job Completed by another within moments."""
    api, worker = await make_store(), await make_store()
    job = await api.enqueue(new_job())
    waiting = asyncio.create_task(api.wait_until_terminal(job.id, 30))
    await _until_listening(api)
    [claim] = await worker.claim(1, lease=30)
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await worker.complete(claim, [1, 2])
    done = await within(PROMPTLY, waiting)
    assert done is not None and done.status is JobStatus.COMPLETED and done.result == [1, 2]


async def test_wait_until_terminal_returns_the_current_job_after_the_timeout(
    store: RedisJobStore,
) -> None:
    """Without a settlement the waiter gets the job as it is at the timeout; None if unknown."""
    job = await store.enqueue(new_job())
    current = await within(2.0, store.wait_until_terminal(job.id, 0.2))
    assert current is not None and current.status is JobStatus.QUEUED
    assert await store.wait_until_terminal(uuid.uuid4(), 0.2) is None


async def test_an_unreachable_redis_raises_store_unavailable_quickly_and_the_store_recovers(
    own_redis_server: RedisServer,
) -> None:
    """Server down: every call fails fast with StoreUnavailableError; back up: the store works."""
    store = RedisJobStore(own_redis_server.url)
    other = RedisJobStore(own_redis_server.url)
    await store.start()
    await other.start()
    try:
        job = await store.enqueue(new_job())
        own_redis_server.stop()
        calls = [
            store.enqueue(new_job()),
            store.get(job.id),
            store.claim(1, lease=30),
            store.recover(),
            store.count_waiting(),
            store.wait_for_work(30),
            store.wait_until_terminal(job.id, 30),
        ]
        for call in calls:
            with pytest.raises(StoreUnavailableError):
                await within(2.0, call)
        own_redis_server.start()
        await eventually(lambda: _answers(store), timeout=10)
        await _until_listening(store)
        assert await store.claim(1, lease=30) == []  # the server restarted empty
        waiting = asyncio.create_task(store.wait_for_work(30))
        await other.enqueue(new_job())
        await within(PROMPTLY, waiting)
        assert len(await store.claim(1, lease=30)) == 1
    finally:
        await store.aclose()
        await other.aclose()


async def _answers(store: RedisJobStore) -> bool:
    try:
        await store.count_waiting()
    except StoreUnavailableError:
        return False
    return True


async def _until_listening(store: RedisJobStore) -> None:
    """Wait until the store's pub/sub subscription is live (it starts in the background)."""
    await eventually(lambda: _listening(store))


async def _listening(store: RedisJobStore) -> bool:
    return store._notifications.connected  # the store's own wiring


async def test_a_url_with_acl_user_and_password_works(tmp_path: Any) -> None:
    """``redis://user:password@host`` authenticates commands and the pub/sub connection."""
    server = start_server(
        "--user",
        "default",
        "off",
        "--user",
        "worker",
        "on",
        ">s3cret",
        "~*",
        "&*",
        "+@all",
        directory=tmp_path,
    )
    store = RedisJobStore(f"redis://worker:s3cret@127.0.0.1:{server.port}/0")
    try:
        await store.start()
        job = await store.enqueue(new_job())
        waiting = asyncio.create_task(store.wait_until_terminal(job.id, 10))
        [claim] = await store.claim(1, lease=30)
        await store.complete(claim, "ok")
        done = await within(PROMPTLY, waiting)
        assert done is not None and done.status is JobStatus.COMPLETED
        wrong = RedisJobStore(f"redis://worker:wrong@127.0.0.1:{server.port}/0")
        with pytest.raises(JobStoreError, match="refused the store's credentials"):
            await wrong.start()  # a mistake to fix, not an outage to wait out
        await wrong.aclose()
    finally:
        await store.aclose()
        server.stop()


@pytest.mark.parametrize("decode_responses", [False, True])
async def test_a_store_built_from_an_existing_client_works_and_leaves_it_open(
    redis_server: Any, prefix: str, decode_responses: bool
) -> None:
    """``RedisJobStore(client=...)`` uses the client as given and does not close it."""
    client = Redis.from_url(redis_server.url, decode_responses=decode_responses)
    store = RedisJobStore(client=client, prefix=prefix)
    try:
        await store.start()
        job = await store.enqueue(new_job())
        [claim] = await store.claim(1, lease=30)
        assert claim.job.id == job.id
        completed = await store.complete(claim, {"n": 1})
        assert completed is not None and completed.result == {"n": 1}
    finally:
        await store.aclose()
    assert await client.ping()
    await client.aclose()


async def test_the_store_works_against_a_redis_cluster(redis_cluster: Any, prefix: str) -> None:
    """On a 3-master cluster: enqueue, claim, complete, wake-ups and settlement notifications."""
    worker = RedisJobStore(redis_cluster.url, prefix=prefix)
    api = RedisJobStore(redis_cluster.url, prefix=prefix, cluster=True)
    try:
        await worker.start()
        await api.start()
        assert await worker.claim(1, lease=30) == []
        await _until_listening(worker)
        await _until_listening(api)
        waiting = asyncio.create_task(worker.wait_for_work(30))
        job = await api.enqueue(new_job())
        await within(PROMPTLY, waiting)
        settled = asyncio.create_task(api.wait_until_terminal(job.id, 30))
        [claim] = await worker.claim(1, lease=30)
        assert claim.job.id == job.id and claim.job.status is JobStatus.IN_PROGRESS
        await worker.complete(claim, "done")
        done = await within(PROMPTLY, settled)
        assert done is not None and done.status is JobStatus.COMPLETED and done.result == "done"
        assert await api.count_waiting() == 0
    finally:
        await worker.aclose()
        await api.aclose()


async def test_completions_made_in_one_loop_turn_share_one_round_trip(
    store: RedisJobStore, raw_redis: Redis
) -> None:
    """Fifty handlers finishing together settle in two script calls, each with its result:
    the first has nothing to wait for and goes at once, the other 49 share the next."""
    for _ in range(51):
        await store.enqueue(new_job())
    warm_up, *claims = await store.claim(51, lease=30)
    await store.complete(warm_up, None)  # the server may first answer NOSCRIPT and load it
    before = (await raw_redis.info("commandstats"))["cmdstat_evalsha"]["calls"]
    done = await asyncio.gather(*(store.complete(c, {"n": i}) for i, c in enumerate(claims)))
    after = (await raw_redis.info("commandstats"))["cmdstat_evalsha"]["calls"]
    assert after - before == 2
    assert [job.result for job in done] == [{"n": i} for i in range(50)]
    assert [(await store.get(c.job.id)).status for c in claims] == [JobStatus.COMPLETED] * 50


async def test_a_lost_claim_in_a_batch_of_completions_changes_only_that_job(
    store: RedisJobStore,
) -> None:
    """Batched completions are checked one by one: a stale token is refused, others land."""
    for _ in range(3):
        await store.enqueue(new_job())
    first, second, third = await store.claim(3, lease=30)
    await store.complete(second, "settled before")
    results = await asyncio.gather(
        store.complete(first, 1), store.complete(second, 2), store.complete(third, 3)
    )
    assert [None if job is None else job.result for job in results] == [1, None, 3]
    assert (await store.get(second.job.id)).result == "settled before"


async def test_a_claim_resent_after_its_reply_was_lost_returns_the_same_claims(
    store: RedisJobStore,
) -> None:
    """The resend of a claim call that ran hands back its jobs instead of stranding them."""
    ids = [(await store.enqueue(new_job())).id for _ in range(3)]
    store._unanswered.append(("lost-reply", ""))  # as after a call that failed unanswered
    first = await store.claim(2, lease=30)
    store._unanswered.append(("lost-reply", ""))  # its reply was lost too: the next resends
    again = await store.claim(2, lease=30)
    assert [c.job.id for c in first] == ids[:2]
    assert [(c.job.id, c.token) for c in again] == [(c.job.id, c.token) for c in first]
    (third,) = await store.claim(5, lease=30)
    assert third.job.id == ids[2]
    assert None not in [await store.complete(c, None) for c in first]


async def late_first_send(store: RedisJobStore, base: str, limit: int) -> list[uuid.UUID]:
    """A claim call with token ``base`` carried out now, as Redis carries out one its
    caller gave up on (from a stalled server's backlog): the ids it took."""
    reply, _ = await store._run(
        "claim", lambda s: s.claim(limit, 30_000, base, "", [], (DEFAULT_QUEUE,))
    )
    return [job_from_text(message)[0].id for message in reply]  # type: ignore[union-attr]


async def test_a_first_send_carried_out_after_its_resend_claims_nothing(
    store: RedisJobStore,
) -> None:
    """The resend of an unanswered claim (an undo, room for none) reaches Redis before its
    first send, which Redis carries out later (a frozen server's backlog runs in any order
    across connections): the first send then claims nothing, so no job is left claimed
    by a call nobody will send again, waiting for its lease and charged an attempt."""
    ids = [(await store.enqueue(new_job())).id for _ in range(2)]
    store._unanswered.append(("late-base", ""))
    await store._undo_unanswered()  # found nothing to undo: the first send has not run
    assert await late_first_send(store, "late-base", 2) == []
    claims = await store.claim(5, lease=30)
    assert [claim.job.id for claim in claims] == ids
    assert all(claim.job.retry_count == 0 for claim in claims)


async def test_every_unanswered_claim_is_undone_not_only_the_last(
    store: RedisJobStore,
) -> None:
    """Two claim calls went unanswered (a frozen shard visited twice) and both ran: the
    undo hands back what each took, every job Queued again at the head of its queue,
    never started, no attempt counted."""
    ids = [(await store.enqueue(new_job())).id for _ in range(4)]
    assert await late_first_send(store, "first-base", 2) == ids[:2]
    assert await late_first_send(store, "second-base", 2) == ids[2:]
    store._unanswered += [("first-base", ""), ("second-base", "")]
    await store._undo_unanswered()
    for job_id in ids:
        job = await store.get(job_id)
        assert job is not None and job.status is JobStatus.QUEUED
        assert job.retry_count == 0 and job.started_at is None
    claims = await store.claim(5, lease=30)
    assert [claim.job.id for claim in claims] == ids


async def test_a_claim_resend_given_up_on_keeps_its_place_at_the_front(
    store: RedisJobStore,
) -> None:
    """Two unanswered claims wait to be sent again, oldest first. The next claim resends
    the oldest; when that resend goes unanswered too, it goes back to the front (not
    behind the younger one), so the claim after resends it first again."""
    store._unanswered += [("first-base", ""), ("second-base", "")]

    async def down(operation: str, call: Any) -> Any:
        raise StoreUnavailableError("down for the test")

    store._run = down  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailableError):
        await store.claim(1, lease=30)
    assert [base for base, _ in store._unanswered] == ["first-base", "second-base"]


async def test_an_undo_whose_unclaim_fails_keeps_its_base_for_the_next(
    store: RedisJobStore,
) -> None:
    """An unanswered claim's undo is handed its jobs but fails to put them back (Redis
    went away between the two calls): the base is kept, and the next undo hands them back
    and puts every one at the head of its queue, uncounted."""
    ids = [(await store.enqueue(new_job())).id for _ in range(2)]
    assert await late_first_send(store, "undo-base", 2) == ids
    store._unanswered.append(("undo-base", ""))
    unclaim = store._unclaim
    failed: list[Claim] = []

    async def failing_once(claim: Claim) -> Any:
        if not failed:
            failed.append(claim)
            raise StoreUnavailableError("down for the test")
        return await unclaim(claim)

    store._unclaim = failing_once  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailableError):
        await store._undo_unanswered()
    assert store._unanswered == [("undo-base", "")]
    await store._undo_unanswered()
    for job_id in ids:
        job = await store.get(job_id)
        assert job is not None and job.status is JobStatus.QUEUED and job.retry_count == 0
    assert [claim.job.id for claim in await store.claim(5, lease=30)] == ids
