"""A sharded store's claim that a shard answers late (`_shard_late`), on one server (two
shards): what the late answer took goes back to the head of its queue as if never
claimed, and the jobs a worker started from an offer stay its own while its claim there
is left running."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from async_endpoints._job import JobStatus, NewJob
from async_endpoints._store import Claim
from async_endpoints_redis._shard_layout import ShardLayout
from tests.redis.conftest import StoreFactory

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]

LEASE = 30.0


def in_shard(layout: ShardLayout, shard: int, **options: object) -> NewJob:
    job_id = uuid.uuid4()
    while layout.of_id(job_id) != shard:
        job_id = uuid.uuid4()
    return NewJob(job_id, "Echo", 0, **options)  # type: ignore[arg-type]


def first_claim_late(shard: Any, monkeypatch: pytest.MonkeyPatch, by: float = 0.4) -> None:
    """The shard's next claim answers ``by`` seconds late (its later ones at once)."""
    real, calls = shard.claim, []

    async def stalled(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            await asyncio.sleep(by)
        return await real(*args, **kwargs)

    monkeypatch.setattr(shard, "claim", stalled)


def claims_held_up(shard: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The shard's claims reach Redis a second after they are sent (held up on the way);
    returns the shard's own way of sending calls, to put back."""
    real_run = shard._connection.run

    async def held_up(operation: str, call: Any) -> Any:
        if operation == "claim":
            await asyncio.sleep(1.0)
        return await real_run(operation, call)

    monkeypatch.setattr(shard._connection, "run", held_up)
    return real_run


async def assert_still_its_own(worker: Any, other: Any, started: Any) -> None:
    """The job ``worker`` started is not claimable by ``other`` (it would run twice), and
    ``worker`` records its result."""
    taken_by_other = await other.claim(4, lease=LEASE)
    assert [claim.job.id for claim in taken_by_other] == [], "the job runs twice"
    assert await worker.complete(started, "done") is not None


def every_claim_late(
    store: Any,
    monkeypatch: pytest.MonkeyPatch,
    on_renew: Callable[[list[Claim]], Awaitable[None]],
) -> None:
    """Every shard's claims answer 1.5 s late, and ``on_renew`` sees (and may hold up)
    each renewal before it is sent."""
    for shard in store._shards:
        real_claim, real_renew = shard.claim, shard.renew

        async def stalled(*args: Any, real: Any = real_claim, **kwargs: Any) -> Any:
            await asyncio.sleep(1.5)
            return await real(*args, **kwargs)

        async def renew(claims: Any, *, lease: float, real: Any = real_renew) -> Any:
            await on_renew(claims)
            return await real(claims, lease=lease)

        monkeypatch.setattr(shard, "claim", stalled)
        monkeypatch.setattr(shard, "renew", renew)


async def _busy(step: float) -> None:
    """Handlers doing sync work: every turn of the loop takes ``step`` seconds."""
    while True:
        time.sleep(step)  # noqa: ASYNC251 - handlers blocking the loop, on purpose
        await asyncio.sleep(0)


async def test_a_healthy_shard_behind_a_blocked_loop_keeps_its_jobs_and_order(
    make_store: StoreFactory, prefix: str
) -> None:
    """One shard holds A, B, C, D; a handler blocks the loop 0.3 s as a claim of 2 starts
    (other handlers keep each loop turn ~15 ms). The shard is healthy: whether the claim
    gets A and B or counts its answer late (given back), the queue's order stays oldest
    first."""
    store = await make_store(shards=2)
    layout = ShardLayout(prefix, 2)
    made = [(await store.enqueue(in_shard(layout, 0))).id for _ in range(4)]
    for _ in range(3):  # warm up: connections open, a prompt answer observed
        assert await store.claim(1, lease=LEASE, queues=("warm",)) == []
    busy = asyncio.ensure_future(_busy(0.015))
    try:
        await asyncio.sleep(0.05)
        asyncio.get_running_loop().call_soon(time.sleep, 0.3)
        first = await store.claim(2, lease=LEASE)
    finally:
        busy.cancel()
    await store._late.aclose(5)  # type: ignore[attr-defined]  # give-backs done
    order = [claim.job.id for claim in first]
    while claims := await store.claim(1, lease=LEASE):
        order.append(claims[0].job.id)
    assert order == made, "oldest first within a shard"


async def test_a_late_answer_goes_back_to_the_head_of_its_queue(
    make_store: StoreFactory, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shard that answers 0.4 s late (a master thawed, a stall) claims A and B; they go
    back uncounted, at the head of the queue as an offer's end puts unstarted jobs back
    (oldest first still), with no start time left behind."""
    store = await make_store(shards=2)
    layout = ShardLayout(prefix, 2)
    made = [(await store.enqueue(in_shard(layout, 0))).id for _ in range(4)]
    shard = store._shards[0]  # type: ignore[attr-defined]
    first_claim_late(shard, monkeypatch)
    assert await store.claim(2, lease=LEASE) == []
    await store._late.aclose(5)  # type: ignore[attr-defined]
    a = await store.get(made[0])
    assert a is not None and a.status is JobStatus.QUEUED and a.retry_count == 0
    order = []
    while claims := await store.claim(1, lease=LEASE):
        order.append(claims[0].job.id)
    assert order == made, "oldest first within a shard"
    assert a.started_at is None


async def test_a_late_claim_in_flight_does_not_let_an_offer_take_back_a_started_job(
    make_store: StoreFactory, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """J was handed to the worker's offer on shard 0 and started. The worker's next claim
    of shard 0 carries J's token ("started") to end that offer, but its script is held up
    on the way (a stalled host; TCP delivers it late): the claim leaves it running. The
    idle worker's next wait sends shard 0 an offer without J's token (the claim in flight
    took them, before), which Redis runs first: it ended the old offer and put J, running
    here, back in the queue: another worker ran it too, and this one's completion was
    refused. J's token now stays with the shard until a call carrying it is answered."""
    worker, api, other = [await make_store(shards=2) for _ in range(3)]
    layout = ShardLayout(prefix, 2)
    shard = worker._shards[0]  # type: ignore[attr-defined]
    assert await worker.claim(4, lease=LEASE) == []  # as the pool does before it waits
    waiting = asyncio.ensure_future(worker.wait_for_work(5, take=4, lease=LEASE))
    await asyncio.sleep(0.3)  # the offers stand
    await api.enqueue(in_shard(layout, 0))
    async with asyncio.timeout(3):
        [started] = await waiting
    assert shard._started == [started.token]

    real_run = claims_held_up(shard, monkeypatch)
    assert await worker.claim(4, lease=LEASE) == []  # shard 0 late, shard 1 empty
    await worker.wait_for_work(0.3, take=4, lease=LEASE)  # idle again
    await worker._late.aclose(5)  # type: ignore[attr-defined]
    monkeypatch.setattr(shard._connection, "run", real_run)

    await assert_still_its_own(worker, other, started)


async def test_a_claim_handed_an_earlier_calls_late_answer_renews_its_lease_first(
    make_store: StoreFactory, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both shards answer 1.5 s late; a claim waiting for the first answer is cancelled
    (its calls left running), and the next claim, all shards passed over, is handed the
    first answer: its jobs were leased before that claim began, which its caller counts
    their lease from, so it renews them first. The other answer's job goes back."""
    store = await make_store(shards=2)
    layout = ShardLayout(prefix, 2)
    made = {(await store.enqueue(in_shard(layout, shard))).id for shard in range(2)}
    renewed: list[uuid.UUID] = []

    async def note(claims: list[Claim]) -> None:
        renewed.extend(claim.job.id for claim in claims)

    every_claim_late(store, monkeypatch, on_renew=note)
    first = asyncio.ensure_future(store.claim(1, lease=LEASE))
    await asyncio.sleep(0.8)  # both shards late: it waits for the first answer
    first.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await first
    [claim] = await store.claim(1, lease=LEASE)
    assert claim.job.id in made and renewed == [claim.job.id]
    await store._late.aclose(5)  # type: ignore[attr-defined]  # the other one goes back
    [other] = made - {claim.job.id}
    job = await store.get(other)
    assert job is not None and job.status is JobStatus.QUEUED and job.started_at is None


async def test_a_late_claim_does_not_end_a_later_offer_that_handed_a_started_job(
    make_store: StoreFactory, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's claim of shard 0 is held up on the way (left running); the idle
    worker's next wait sends shard 0 a new offer, which Redis runs first, and J is handed
    to it and started. The late claim then runs: it ends only the offers its worker had
    sent when it sent the claim, so the new one stands and J stays this worker's (it
    ended the inbox's offer, whichever, and put J back in the queue)."""
    worker, api, other = [await make_store(shards=2) for _ in range(3)]
    layout = ShardLayout(prefix, 2)
    shard = worker._shards[0]  # type: ignore[attr-defined]
    assert await worker.claim(4, lease=LEASE) == []
    real_run = claims_held_up(shard, monkeypatch)
    shard._due_after_claim = None  # not skipped as dry: the claim asks shard 0
    assert await worker.claim(4, lease=LEASE) == []  # shard 0 late, shard 1 empty
    waiting = asyncio.ensure_future(worker.wait_for_work(3, take=4, lease=LEASE))
    await asyncio.sleep(0.2)  # the new offers stand
    await api.enqueue(in_shard(layout, 0))
    async with asyncio.timeout(3):
        [started] = await waiting  # J handed over and started, before the claim runs
    await worker._late.aclose(5)  # type: ignore[attr-defined]
    monkeypatch.setattr(shard._connection, "run", real_run)

    job = await api.get(started.job.id)
    assert job is not None and job.status is JobStatus.IN_PROGRESS, job and job.status
    await assert_still_its_own(worker, other, started)


async def test_a_claim_cancelled_while_renewing_a_late_answer_gives_its_jobs_back(
    make_store: StoreFactory, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim handed an earlier call's late answer renews its leases first; cancelled
    during that renewal (a worker shutting down), it gives the jobs back (they were
    InProgress until the lease ran out, an attempt counted)."""
    store = await make_store(shards=2)
    layout = ShardLayout(prefix, 2)
    made = {(await store.enqueue(in_shard(layout, shard))).id for shard in range(2)}
    renewing = asyncio.Event()

    async def slowly(claims: list[Claim]) -> None:
        renewing.set()
        await asyncio.sleep(0.5)

    every_claim_late(store, monkeypatch, on_renew=slowly)
    first = asyncio.ensure_future(store.claim(1, lease=LEASE))
    await asyncio.sleep(0.8)
    first.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await first
    second = asyncio.ensure_future(store.claim(1, lease=LEASE))
    async with asyncio.timeout(5):
        await renewing.wait()
    second.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await second
    await store._late.aclose(5)  # type: ignore[attr-defined]
    for job_id in made:
        job = await store.get(job_id)
        assert job is not None and job.status is JobStatus.QUEUED, (job_id, job and job.status)


async def test_a_late_answer_keeps_a_retried_jobs_first_start(
    make_store: StoreFactory, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``startedAt`` stays a job's first start (README): a job that ran once (its attempt
    given back by a stopping worker) and is then claimed by a late answer keeps it when
    that claim is undone."""
    store = await make_store(shards=2)
    layout = ShardLayout(prefix, 2)
    job_id = (await store.enqueue(in_shard(layout, 0))).id
    [claim] = await store.claim(1, lease=LEASE)
    await store.give_back(claim, retry_in=0)
    before = await store.get(job_id)
    assert before is not None and before.started_at is not None  # it ran once
    shard = store._shards[0]  # type: ignore[attr-defined]
    first_claim_late(shard, monkeypatch)
    shard._due_after_claim = None
    assert await store.claim(1, lease=LEASE) == []
    await store._late.aclose(5)  # type: ignore[attr-defined]
    after = await store.get(job_id)
    assert after is not None and after.status is JobStatus.QUEUED
    assert after.started_at == before.started_at


@pytest.mark.parametrize(
    "tenants", [("a", "b", "a", "b"), ("a", "a", "b", "b"), (None, "a", None, "a")]
)
async def test_a_late_answer_keeps_the_tenant_turns(
    make_store: StoreFactory, prefix: str, monkeypatch: pytest.MonkeyPatch, tenants: Any
) -> None:
    """Claims take the jobs of several tenants in the same order after a late answer's
    jobs were unclaimed as without that claim."""

    async def order_of(store: Any, late: bool) -> list[int]:
        layout = ShardLayout(store._prefix if hasattr(store, "_prefix") else prefix, 2)
        made = [(await store.enqueue(in_shard(layout, 0, tenant=t))).id for t in tenants]
        shard = store._shards[0]
        if late:
            first_claim_late(shard, monkeypatch)
            shard._due_after_claim = None
            assert await store.claim(3, lease=LEASE) == []
            await store._late.aclose(5)
        order = []
        while claims := await store.claim(1, lease=LEASE):
            order.append(made.index(claims[0].job.id))
        return order

    store = await make_store(shards=2)
    plain = await order_of(store, False)
    late = await order_of(store, True)
    assert late == plain


@pytest.mark.parametrize("cancel", [False, True])
async def test_a_late_answer_of_a_partition_keys_job_keeps_the_keys_order(
    make_store: StoreFactory, prefix: str, monkeypatch: pytest.MonkeyPatch, cancel: bool
) -> None:
    """J1 holds key k, J2 waits behind it; a late answer claims J1 (cancelled meanwhile,
    or not). Afterwards J1 then J2 run (or J2 alone), nothing held."""
    store, api = await make_store(shards=2), await make_store(shards=2)
    layout = ShardLayout(prefix, 2)
    j1 = (await api.enqueue(in_shard(layout, 0, partition_key="k"))).id
    j2 = (await api.enqueue(in_shard(layout, 0, partition_key="k"))).id
    shard = store._shards[layout.of_key("k")]  # type: ignore[attr-defined]
    real_run = shard._connection.run

    async def answered_late(operation, call):  # type: ignore[no-untyped-def]
        result = await real_run(operation, call)
        if operation == "claim":
            await asyncio.sleep(0.5)
        return result

    monkeypatch.setattr(shard._connection, "run", answered_late)
    shard._due_after_claim = None
    task = asyncio.ensure_future(store.claim(2, lease=LEASE))
    await asyncio.sleep(0.2)
    if cancel:
        await api.cancel(j1)
    got = await task
    assert got == []
    await store._late.aclose(5)  # type: ignore[attr-defined]
    await asyncio.sleep(0.3)
    monkeypatch.setattr(shard._connection, "run", real_run)
    order = []
    while claims := await store.claim(1, lease=LEASE):
        order.append(claims[0].job.id)
        await store.complete(claims[0], None)
    assert order == ([j2] if cancel else [j1, j2])
