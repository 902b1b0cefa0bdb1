"""Jobs handed straight to an idle worker's offer, and the settlement a done message carries.

An idle worker's `wait_for_work(take=...)` leaves an offer in Redis; a job enqueued while it
stands is stored InProgress for that worker and published to its inbox, one hop after the
submit. These tests pin the rules that keep that exactly-once: nothing handed over is lost
when the worker never starts it, a dead or expired offer holds nothing, and turns are taken.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from async_endpoints import AsyncContext, AsyncEndpoints, Claim, StoreUnavailableError
from async_endpoints._job import Job, JobRequest, JobStatus, NewJob
from async_endpoints_redis import RedisJobStore
from tests.redis.support import eventually
from tests.redis_servers import RedisServer, start_server

pytestmark = [pytest.mark.redis, pytest.mark.usefixtures("steady_offers")]
StoreFactory = Callable[..., Awaitable[RedisJobStore]]


def new_job() -> NewJob:
    return NewJob(id=uuid.uuid4(), name="Job", max_retries=3)


async def offering(store: RedisJobStore, raw_redis: Redis, prefix: str, take: int) -> asyncio.Task:
    """Start an idle wait that offers ``take`` slots; return once the offer is in Redis."""
    await eventually(lambda: _listening(store))
    assert await store.claim(take, lease=30) == []  # ends any earlier offer of this store
    waiting = asyncio.create_task(store.wait_for_work(30, take=take, lease=30))

    async def offered() -> bool:
        # The store's own inbox name is its key in the offers HASH.
        return bool(await raw_redis.hexists(offers_key(prefix), store._inbox))

    await eventually(offered)
    return waiting


async def _listening(store: RedisJobStore) -> bool:
    return store._notifications.connected  # the store's own wiring


def offers_key(prefix: str) -> str:
    return "{" + prefix + "}:offers"


async def plant_offer(raw_redis: Redis, prefix: str, inbox: str, offer: str) -> None:
    """Leave an offer in Redis as a worker would ("<base> <slots> <lease ms> <expires ms>")."""
    await raw_redis.hset(offers_key(prefix), inbox, offer)
    await raw_redis.rpush("{" + prefix + "}:idle", inbox)


async def raw_status(raw_redis: Redis, prefix: str, job_id: uuid.UUID) -> str | None:
    status: str | None = await raw_redis.hget("{" + prefix + "}:job:" + str(job_id), "status")
    return status


async def test_a_job_submitted_while_a_worker_waits_idle_is_handed_to_it_claimed(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """The waiter returns the job InProgress under a valid claim, without claiming it."""
    worker, api = await make_store(), await make_store()
    waiting = await offering(worker, raw_redis, prefix, take=4)
    accepted = await api.enqueue(new_job())
    async with asyncio.timeout(2):
        [claim] = await waiting
    assert accepted.status is JobStatus.QUEUED, "the job as accepted"
    assert claim.job.id == accepted.id
    assert claim.job.status is JobStatus.IN_PROGRESS and claim.job.started_at is not None
    assert await raw_status(raw_redis, prefix, accepted.id) == "InProgress"
    done = await worker.complete(claim, {"ok": True})
    assert done is not None and done.status is JobStatus.COMPLETED
    assert await worker.claim(4, lease=30) == [], "handed over once, never queued as well"


async def test_jobs_handed_over_but_never_started_go_back_to_the_head_of_the_queue(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """The worker's next claim ends its offer; jobs it was handed but did not start are
    claimed again in order, with no attempt counted, and the started one stays its own."""
    worker, api = await make_store(), await make_store()
    waiting = await offering(worker, raw_redis, prefix, take=2)
    first = await api.enqueue(new_job())
    async with asyncio.timeout(2):
        [started] = await waiting
    # The offer still has a slot in Redis: the next job is handed to it too, though the
    # worker has stopped waiting and will not start it.
    second = await api.enqueue(new_job())
    assert await raw_status(raw_redis, prefix, second.id) == "InProgress"
    third = await api.enqueue(new_job())  # the offer is used up: queued as usual
    assert await raw_status(raw_redis, prefix, third.id) == "Queued"

    claims = await worker.claim(5, lease=30)

    assert [claim.job.id for claim in claims] == [second.id, third.id]
    assert all(claim.job.retry_count == 0 for claim in claims)
    assert started.job.id == first.id
    assert await worker.complete(started, "kept") is not None, "a started job is not taken back"
    assert await raw_redis.hlen(offers_key(prefix)) == 0


async def test_a_cancelled_idle_wait_leaves_no_job_behind(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """A wait cancelled (shutdown) ends its offer; a job submitted around then is claimable."""
    worker, api = await make_store(), await make_store()
    waiting = await offering(worker, raw_redis, prefix, take=3)
    waiting.cancel()
    job = await api.enqueue(new_job())

    async def claimable() -> list[uuid.UUID]:
        return [claim.job.id for claim in await api.claim(3, lease=30)]

    assert await eventually(claimable) == [job.id]
    assert await raw_redis.hlen(offers_key(prefix)) == 0


async def test_closing_the_store_ends_its_offer(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """aclose withdraws the offer, so later jobs are queued for the living."""
    worker, api = await make_store(), await make_store()
    waiting = await offering(worker, raw_redis, prefix, take=3)
    waiting.cancel()
    await worker.aclose()
    assert await raw_redis.hlen(offers_key(prefix)) == 0
    job = await api.enqueue(new_job())
    assert await raw_status(raw_redis, prefix, job.id) == "Queued"


async def test_an_offer_whose_worker_is_gone_holds_no_job(
    store: RedisJobStore, raw_redis: Redis, prefix: str
) -> None:
    """An offer nobody listens to any more (its process died) loses its turn; the job is
    queued for the living."""
    tag = "{" + prefix + "}"
    await plant_offer(raw_redis, prefix, "ghost", "base 5 30000 99999999999999")
    job = await store.enqueue(new_job())
    assert await raw_status(raw_redis, prefix, job.id) == "Queued"
    assert await raw_redis.llen(f"{tag}:idle") == 0


async def test_a_pattern_subscriber_does_not_make_a_dead_offer_look_alive(
    store: RedisJobStore, raw_redis: Redis, prefix: str
) -> None:
    """Only the worker's own subscription counts (a monitoring PSUBSCRIBE does not)."""
    pubsub = raw_redis.pubsub()
    await pubsub.psubscribe("*")
    try:
        await plant_offer(raw_redis, prefix, "ghost", "base 5 30000 99999999999999")
        job = await store.enqueue(new_job())
        assert await raw_status(raw_redis, prefix, job.id) == "Queued"
    finally:
        await pubsub.aclose()


async def test_a_job_with_a_large_request_is_queued_rather_than_handed_over(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """Requests over 8 KiB do not travel over pub/sub; the worker claims them instead."""
    worker, api = await make_store(), await make_store()
    waiting = await offering(worker, raw_redis, prefix, take=2)
    big = NewJob(id=uuid.uuid4(), name="Job", max_retries=3, request=JobRequest(body="x" * 9000))
    await api.enqueue(big)
    assert await raw_status(raw_redis, prefix, big.id) == "Queued"
    async with asyncio.timeout(2):
        assert await waiting == [], "woken to claim it"
    [claim] = await worker.claim(2, lease=30)
    assert claim.job.request.body == "x" * 9000


async def test_offers_of_workers_that_never_return_are_collected(
    store: RedisJobStore, raw_redis: Redis, prefix: str
) -> None:
    """An offer expired for longer than its lease is removed by the next worker's offer."""
    tag = "{" + prefix + "}"
    await raw_redis.hset(f"{tag}:offers", "ghost", "base 0 30000 1000")
    waiting = await offering(store, raw_redis, prefix, take=1)
    assert await raw_redis.hkeys(f"{tag}:offers") == [store._inbox]  # the store's own name
    waiting.cancel()


async def test_an_expired_offer_is_dropped_even_while_its_worker_listens(
    store: RedisJobStore, raw_redis: Redis, prefix: str
) -> None:
    """A worker that stopped renewing its offer (a frozen process) gets nothing new."""
    tag = "{" + prefix + "}"
    pubsub = raw_redis.pubsub()
    await pubsub.subscribe(f"{tag}:inbox:frozen")
    try:
        await plant_offer(raw_redis, prefix, "frozen", "base 5 30000 1000")  # long expired
        job = await store.enqueue(new_job())
        assert await raw_status(raw_redis, prefix, job.id) == "Queued"
        assert await raw_redis.llen(f"{tag}:idle") == 0
    finally:
        await pubsub.aclose()


async def test_idle_workers_take_turns_with_a_burst(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """Jobs of one burst alternate between the open offers instead of filling the first."""
    first, second, api = await make_store(), await make_store(), await make_store()
    waits = [await offering(store, raw_redis, prefix, take=10) for store in (first, second)]
    jobs = await asyncio.gather(*(api.enqueue(new_job()) for _ in range(4)))
    tokens = [await raw_redis.hget("{" + prefix + "}:job:" + str(job.id), "token") for job in jobs]
    bases = [token.rsplit(".", 1)[0] for token in tokens if token]
    assert len(bases) == 4 and len(set(bases)) == 2 and bases[0] != bases[1]
    for wait in waits:
        wait.cancel()


async def test_a_busy_pool_offers_nothing(
    store: RedisJobStore, raw_redis: Redis, prefix: str
) -> None:
    """Without ``take`` the wait makes no offer: jobs stay queued for whoever claims."""
    await eventually(lambda: _listening(store))
    assert await store.claim(1, lease=30) == []
    waiting = asyncio.create_task(store.wait_for_work(30))
    job = await store.enqueue(new_job())
    async with asyncio.timeout(2):
        assert await waiting == []
    assert await raw_status(raw_redis, prefix, job.id) == "Queued"


async def test_a_waiter_takes_the_terminal_job_from_the_done_message(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """The done message carries the settled job: the waiter reads the job only once (its
    first look), where a bare notification would need a second read."""
    api, worker = await make_store(), await make_store()
    await eventually(lambda: _listening(api))
    job = await api.enqueue(new_job())
    [claim] = await worker.claim(1, lease=30)
    waiter, reads_before = await _waiting_after_first_look(api, job.id, raw_redis)
    await worker.complete(claim, {"n": 1})
    async with asyncio.timeout(2):
        done = await waiter
    assert done.status is JobStatus.COMPLETED and done.result == {"n": 1}
    # One HGETALL: the one the completion script runs to build the message.
    assert await _hgetall_calls(raw_redis) - reads_before == 1


async def test_a_large_result_is_announced_by_id_and_read_by_the_waiter(
    make_store: StoreFactory, raw_redis: Redis
) -> None:
    """Past 2 KiB the message carries only the id; the waiter still gets the whole job."""
    api, worker = await make_store(), await make_store()
    await eventually(lambda: _listening(api))
    job = await api.enqueue(new_job())
    [claim] = await worker.claim(1, lease=30)
    waiter, reads_before = await _waiting_after_first_look(api, job.id, raw_redis)
    big = "x" * 3_000
    await worker.complete(claim, big)
    async with asyncio.timeout(2):
        done = await waiter
    assert done.status is JobStatus.COMPLETED and done.result == big
    # The completion script's HGETALL, then the waiter's own read of the job.
    assert await _hgetall_calls(raw_redis) - reads_before == 2


async def _waiting_after_first_look(
    store: RedisJobStore, job_id: uuid.UUID, raw_redis: Redis
) -> tuple[asyncio.Task[Job | None], int]:
    """Start a waiter on the job; return it once its first read of the job is answered,
    with the server's HGETALL count at that moment."""
    before = await _hgetall_calls(raw_redis)
    waiter = asyncio.create_task(store.wait_until_terminal(job_id, 30))

    async def looked() -> int:
        calls = await _hgetall_calls(raw_redis)
        return calls if calls > before and str(job_id) in store._notifications._watchers else 0

    return waiter, await eventually(looked)


async def _hgetall_calls(raw_redis: Redis) -> int:
    stats = await raw_redis.info("commandstats")
    return int(stats.get("cmdstat_hgetall", {}).get("calls", 0))


async def test_a_user_not_allowed_pubsub_queries_still_gets_every_job_run(
    tmp_path: Path,
) -> None:
    """Without the PUBSUB command (an ACL that lists commands one by one) hand-over is off,
    and enqueue still works: the job is queued and the idle worker claims it."""
    server = start_server(
        "--user", "default", "off",
        "--user", "worker", "on", ">s3cret", "~*", "&*", "+@all", "-pubsub",
        directory=tmp_path,
    )  # fmt: skip
    url = f"redis://worker:s3cret@127.0.0.1:{server.port}/0"
    worker, api = RedisJobStore(url, prefix="acl"), RedisJobStore(url, prefix="acl")
    raw = Redis.from_url(url, decode_responses=True)
    try:
        await worker.start()
        await api.start()
        waiting = await offering(worker, raw, "acl", take=2)
        job = await api.enqueue(new_job())
        async with asyncio.timeout(2):
            assert await waiting == [], "woken, not handed the job"
        [claim] = await worker.claim(2, lease=30)
        assert claim.job.id == job.id
    finally:
        await worker.aclose()
        await api.aclose()
        await raw.aclose()
        server.stop()


async def test_a_pool_offers_its_slots_only_while_it_runs_nothing(
    redis_server: RedisServer, raw_redis: Redis, prefix: str
) -> None:
    """A busy pool's new jobs are queued and claimed (no hand-over); once its last job ends
    it offers again, and the next job is handed straight to it."""
    engine = AsyncEndpoints(
        store=RedisJobStore(redis_server.url, prefix=prefix),
        max_concurrency=4,
        polling_interval=60.0,  # a wait that missed becoming idle would show as a stall
    )
    release = asyncio.Event()

    async def hold(ctx: AsyncContext[None]) -> str:
        await release.wait()
        return "held"

    async def quick(ctx: AsyncContext[None]) -> str:
        return "quick"

    engine.add_handler(hold)
    engine.add_handler(quick)
    store = engine.store
    assert isinstance(store, RedisJobStore)
    handed: list[uuid.UUID] = []
    wait_for_work = store.wait_for_work

    async def counting_wait(timeout: float, **options: Any) -> list[Claim]:
        claims = await wait_for_work(timeout, **options)
        handed.extend(claim.job.id for claim in claims)
        return claims

    store.wait_for_work = counting_wait  # type: ignore[method-assign]  # a spy at the seam

    async with engine.running():
        held = await engine.submit("hold")
        await eventually(lambda: _state_is(raw_redis, prefix, held.id, "InProgress"))
        busy = await engine.submit("quick")
        assert (await engine.wait_for(busy.id, timeout=5)).result == "quick"
        assert busy.id not in handed, "a busy pool is handed nothing"

        release.set()
        assert (await engine.wait_for(held.id, timeout=5)).result == "held"

        async def offering_again() -> bool:
            return bool(await raw_redis.hexists(offers_key(prefix), store._inbox))

        await eventually(offering_again)
        idle = await engine.submit("quick")
        assert (await engine.wait_for(idle.id, timeout=5)).result == "quick"
        assert idle.id in handed, "handed to the pool once it was idle again"


async def _state_is(raw_redis: Redis, prefix: str, job_id: uuid.UUID, status: str) -> bool:
    return await raw_status(raw_redis, prefix, job_id) == status


async def test_a_keyed_job_handed_over_then_cancelled_before_it_started_lets_its_key_go(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """A keyed job handed to an offer whose worker no longer waits (so it never starts it)
    and then cancelled holds its key for that claim; the worker's next claim, which ends
    the offer, lets the key go and takes the key's next job in the same call."""
    worker, api = await make_store(), await make_store()
    waiting = await offering(worker, raw_redis, prefix, take=2)
    await api.enqueue(new_job())
    async with asyncio.timeout(2):
        [started] = await waiting
    keyed = NewJob(id=uuid.uuid4(), name="Job", max_retries=3, partition_key="k")
    first = await api.enqueue(keyed)
    assert await raw_status(raw_redis, prefix, first.id) == "InProgress"  # handed over
    second = await api.enqueue(
        NewJob(id=uuid.uuid4(), name="Job", max_retries=3, partition_key="k")
    )
    canceled = await api.cancel(first.id)
    assert canceled is not None and canceled.status is JobStatus.CANCELED

    claims = await worker.claim(5, lease=30)

    assert [claim.job.id for claim in claims] == [second.id]
    assert await raw_redis.exists("{" + prefix + "}:held", "{" + prefix + "}:held_by") == 0
    assert await worker.complete(started, "kept") is not None


async def test_a_job_handed_over_late_whose_renewal_fails_goes_back_unstarted(
    make_store: StoreFactory,
    raw_redis: Redis,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A job arriving with under two thirds of its lease left (here: the worker's reading
    of the store's clock is a whole lease ahead) is renewed before the wait returns it;
    that renewal failing, the wait returns nothing, and the worker's next claim puts the
    job back in its queue and takes it again, with no attempt counted."""
    worker, api = await make_store(), await make_store()
    waiting = await offering(worker, raw_redis, prefix, take=1)
    elapsed = worker._connection.elapsed
    reading = elapsed.reading
    monkeypatch.setattr(elapsed, "reading", lambda: reading() + 30_000)  # the offer's lease

    async def unreachable(claims: Any, *, lease: float) -> set[str]:
        raise StoreUnavailableError("cut off")

    monkeypatch.setattr(worker, "renew", unreachable)
    accepted = await api.enqueue(new_job())
    with caplog.at_level(logging.WARNING, logger="async_endpoints_redis"):
        async with asyncio.timeout(5):
            assert await waiting == []
    assert "1 job(s) handed over late not started" in caplog.text
    monkeypatch.setattr(elapsed, "reading", reading)
    [again] = await worker.claim(1, lease=30)
    assert again.job.id == accepted.id and again.job.retry_count == 0


def random_part(token: str) -> str:
    """A Redis claim token without its shard mark (``s<n>-``), an offer's number (``<n>x``,
    in hex) and its claim counter."""
    base, _, counter = token.rpartition(".")
    assert counter.isdigit(), token
    return base.rpartition("-")[2].rpartition("x")[2]


async def test_claim_tokens_carry_128_random_bits_whether_claimed_or_handed_over(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """The token that fences a job's outcome to its claim holds 32 random hex digits
    (128 bits) in both paths a job reaches a worker, and no two claims share one."""
    worker, api = await make_store(), await make_store()
    await api.enqueue(new_job())
    await api.enqueue(new_job())
    claimed = await worker.claim(1, lease=30) + await worker.claim(1, lease=30)
    waiting = await offering(worker, raw_redis, prefix, take=1)
    await api.enqueue(new_job())
    async with asyncio.timeout(2):
        [handed] = await waiting
    tokens = [claim.token for claim in (*claimed, handed)]
    parts = [random_part(token) for token in tokens]
    assert all(len(part) == 32 and int(part, 16) >= 0 for part in parts), tokens
    assert len(set(parts)) == 3


async def test_an_undo_of_a_claim_sent_before_the_last_offer_puts_no_started_job_back(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """An unanswered claim's resend (an undo) carries the number of an offer older than
    the newest sent (that one never reached Redis): it ends the standing offer that handed
    a job the worker started, and must carry that job's token, so the job stays the
    worker's (InProgress, its completion recorded), not put back in the queue."""
    worker, api = await make_store(), await make_store()
    waiting = await offering(worker, raw_redis, prefix, take=1)
    first = await api.enqueue(new_job())
    async with asyncio.timeout(2):
        [started] = await waiting
    assert worker._started == [started.token]
    worker._unanswered.append(("deadbeef" * 4, worker._ending()))  # sent, never reached Redis
    worker._offers_sent += 1  # and an offer sent since, lost on its way
    await worker._undo_unanswered()
    assert await raw_status(raw_redis, prefix, first.id) == "InProgress"
    assert await worker.complete(started, "kept") is not None
