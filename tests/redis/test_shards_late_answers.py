"""A sharded store's claim that a shard answers late (`_shard_late`), on one server (two
shards): what the late claim took is handed back by the shard's next claim (the rest
undone, to the head of its queue), in order and uncounted, and the jobs a worker started
from an offer stay its own whatever order its calls reach Redis in."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from async_endpoints._job import JobStatus
from async_endpoints_redis._shard_layout import ShardLayout
from tests.redis.conftest import StoreFactory
from tests.redis.support import eventually
from tests.redis.test_shards_order import in_shard

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]

LEASE = 30.0


def first_claim_late(shard: Any, monkeypatch: pytest.MonkeyPatch, by: float = 0.4) -> None:
    """The shard's next claim runs in Redis at once, and its answer comes ``by`` seconds
    late (a stall on the way back): the claim gives up on it (its later ones answer at
    once)."""
    real_run, calls = shard._connection.run, []

    async def answered_late(operation: str, call: Any) -> Any:
        result = await real_run(operation, call)
        if operation == "claim" and not calls:
            calls.append(1)
            await asyncio.sleep(by)
        return result

    monkeypatch.setattr(shard._connection, "run", answered_late)


def claims_held_up(shard: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The shard's claims reach Redis a second after they are sent (held up on the way),
    whether or not their caller still waits; returns the shard's own way of sending
    calls, to put back."""
    real_run = shard._connection.run

    async def held_up(operation: str, call: Any) -> Any:
        if operation != "claim":
            return await real_run(operation, call)

        async def later() -> Any:
            await asyncio.sleep(1.0)
            return await real_run(operation, call)

        return await asyncio.shield(asyncio.ensure_future(later()))

    monkeypatch.setattr(shard._connection, "run", held_up)
    return real_run


async def assert_still_its_own(worker: Any, other: Any, started: Any) -> None:
    """The job ``worker`` started is not claimable by ``other`` (it would run twice), and
    ``worker`` records its result."""
    taken_by_other = await other.claim(4, lease=LEASE)
    assert [claim.job.id for claim in taken_by_other] == [], "the job runs twice"
    assert await worker.complete(started, "done") is not None


async def claimed_in_order(store: Any, count: int) -> list[uuid.UUID]:
    """Claim one job at a time until ``count`` were claimed (a shard whose answer was late
    is passed over for a moment: the claims meanwhile find nothing); their ids in order."""
    order: list[uuid.UUID] = []

    async def all_claimed() -> bool:
        order.extend(claim.job.id for claim in await store.claim(1, lease=LEASE))
        return len(order) >= count

    await eventually(all_claimed, timeout=10)
    return order


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
    gets A and B or counts its answer late (handed back by the next claim), the jobs are
    claimed oldest first."""
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
    order = [claim.job.id for claim in first]
    order += await claimed_in_order(store, len(made) - len(first))
    assert order == made, "oldest first within a shard"


async def test_a_late_answers_jobs_are_claimed_next_in_their_order_uncounted(
    make_store: StoreFactory, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shard's claim of 2 takes A and B in Redis, but its answer comes 0.4 s late: the
    claim gives up on it (nothing claimed), and what it took goes back to the head of the
    queue (undone: no start time): A, B, C, D are claimed in order, none counted as an
    attempt."""
    store = await make_store(shards=2)
    layout = ShardLayout(prefix, 2)
    made = [(await store.enqueue(in_shard(layout, 0))).id for _ in range(4)]
    shard = store._shards[0]  # type: ignore[attr-defined]
    first_claim_late(shard, monkeypatch)
    started = time.monotonic()
    assert await store.claim(2, lease=LEASE) == []
    assert time.monotonic() - started < 1.0
    assert await claimed_in_order(store, 4) == made, "oldest first within a shard"
    for job_id in made:
        job = await store.get(job_id)
        assert job is not None and job.retry_count == 0


async def test_a_late_claim_in_flight_does_not_let_an_offer_take_back_a_started_job(
    make_store: StoreFactory, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """J was handed to the worker's offer on shard 0 and started. The worker's next claim
    of shard 0 carries J's token ("started") to end that offer, but its script is held up
    on the way (a stalled host; TCP delivers it late) and the claim gives up on it. The
    idle worker's next wait sends shard 0 an offer, which Redis runs first: it must carry
    J's token too (else it ends the old offer and puts J, running here, back in the
    queue, and another worker runs it too): the token stays with the shard until a call
    carrying it is answered."""
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
    await asyncio.sleep(1.0)  # the held-up claim has reached Redis and run
    monkeypatch.setattr(shard._connection, "run", real_run)

    await assert_still_its_own(worker, other, started)


async def test_a_late_claim_does_not_end_a_later_offer_that_handed_a_started_job(
    make_store: StoreFactory, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's claim of shard 0 is held up on the way (the claim gives up on it); the
    idle worker's next wait sends shard 0 a new offer, which Redis runs first, and J is
    handed to it and started. The held-up claim then runs: it ends only offers numbered
    no higher than the newest its worker had sent when it sent the claim, so the new one
    stands and J stays this worker's (it ended the inbox's offer, whichever, and put J
    back in the queue)."""
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
    await asyncio.sleep(1.0)  # the held-up claim has reached Redis and run
    monkeypatch.setattr(shard._connection, "run", real_run)

    job = await api.get(started.job.id)
    assert job is not None and job.status is JobStatus.IN_PROGRESS, job and job.status
    await assert_still_its_own(worker, other, started)


async def test_a_late_answer_keeps_a_retried_jobs_first_start(
    make_store: StoreFactory, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``startedAt`` stays a job's first start (README): N and R (R ran once, its attempt
    given back by a stopping worker) are taken by a late claim; the next claim, of 1, is
    handed N, and R, undone, is Queued again with its first start kept."""
    store = await make_store(shards=2)
    layout = ShardLayout(prefix, 2)
    retried = (await store.enqueue(in_shard(layout, 0))).id
    [claim] = await store.claim(1, lease=LEASE)
    await store.give_back(claim, retry_in=0)
    before = await store.get(retried)
    assert before is not None and before.started_at is not None  # it ran once
    new = (await store.enqueue(in_shard(layout, 0))).id
    shard = store._shards[0]  # type: ignore[attr-defined]
    first_claim_late(shard, monkeypatch)
    shard._due_after_claim = None
    assert await store.claim(2, lease=LEASE) == []
    [first] = await claimed_in_order(store, 1)
    await store._late.aclose(5)  # type: ignore[attr-defined]  # the undoing done
    after = await store.get(retried if first == new else new)
    assert after is not None and after.status is JobStatus.QUEUED
    if first == new:
        assert after.started_at == before.started_at
    else:
        assert after.started_at is None


@pytest.mark.parametrize(
    "tenants", [("a", "b", "a", "b"), ("a", "a", "b", "b"), (None, "a", None, "a")]
)
async def test_a_late_answer_keeps_each_tenants_order(
    make_store: StoreFactory, prefix: str, monkeypatch: pytest.MonkeyPatch, tenants: Any
) -> None:
    """After a late answer (what it took handed back by the next claim, the rest undone)
    claims take every job of several tenants once, each tenant's in order."""

    async def order_of(store: Any, late: bool) -> list[int]:
        layout = ShardLayout(store._prefix if hasattr(store, "_prefix") else prefix, 2)
        made = [(await store.enqueue(in_shard(layout, 0, tenant=t))).id for t in tenants]
        shard = store._shards[0]
        if late:
            first_claim_late(shard, monkeypatch)
            shard._due_after_claim = None
            assert await store.claim(3, lease=LEASE) == []
        return [made.index(one) for one in await claimed_in_order(store, len(made))]

    store = await make_store(shards=2)
    plain = await order_of(store, False)
    late = await order_of(store, True)
    assert sorted(late) == sorted(plain)  # each job once
    for tenant in set(tenants):  # and each tenant's in order (the turns may shift by one)
        mine = [index for index, of in enumerate(tenants) if of == tenant]
        assert [index for index in late if index in mine] == mine


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
    first_claim_late(shard, monkeypatch, by=0.5)
    shard._due_after_claim = None
    task = asyncio.ensure_future(store.claim(2, lease=LEASE))
    await asyncio.sleep(0.1)
    if cancel:
        await api.cancel(j1)
    assert await task == []
    expected = [j2] if cancel else [j1, j2]
    order: list[uuid.UUID] = []

    async def all_ran() -> bool:
        for claim in await store.claim(1, lease=LEASE):
            order.append(claim.job.id)
            await store.complete(claim, None)
        return len(order) >= len(expected)

    await eventually(all_ran, timeout=10)
    assert order == expected


def every_claim_answered_late(
    shard: Any, monkeypatch: pytest.MonkeyPatch, by: float = 0.35
) -> None:
    """Every claim of the shard runs in Redis at once and its answer takes ``by`` s more
    (a distant host: its round trip is always longer than ANSWER_WITHIN)."""
    real_run = shard._connection.run

    async def answered_late(operation: str, call: Any) -> Any:
        result = await real_run(operation, call)
        if operation == "claim":
            await asyncio.sleep(by)
        return result

    monkeypatch.setattr(shard._connection, "run", answered_late)


async def test_a_shard_always_slower_than_answer_within_still_gets_its_jobs_run(
    make_store: StoreFactory, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shard 0 answers every claim 0.35 s late (a distant host); shard 1 is empty and
    prompt: shard 0 comes to be waited for, and its job is claimed (here within 8 s of
    claims and waits), not given up on again and again."""
    store = await make_store(shards=2)
    layout = ShardLayout(prefix, 2)
    job = (await store.enqueue(in_shard(layout, 0))).id
    every_claim_answered_late(store._shards[0], monkeypatch)  # type: ignore[attr-defined]
    end = time.monotonic() + 8
    got: list[Any] = []
    rounds = 0
    while not got and time.monotonic() < end:
        rounds += 1
        got = await store.claim(1, lease=30.0)
        if not got:
            await store.wait_for_work(0.5, take=1, lease=30.0)
    j = await store.get(job)
    assert got, f"job never claimed after {rounds} claim+wait rounds; status {j and j.status}"


async def test_a_busy_workers_late_claim_does_not_strand_its_job_until_the_lease(
    make_store: StoreFactory, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shard 0's claim of 1 takes A in Redis but answers late (given up on); shard 1's B
    fills the worker, which runs B (renewing it) longer than the lease and claims nothing
    more meanwhile: A does not wait for its lease, nor count an attempt it never made."""
    lease = 1.5
    store, other = await make_store(shards=2), await make_store(shards=2)
    layout = ShardLayout(prefix, 2)
    a = (await store.enqueue(in_shard(layout, 0))).id
    b = (await store.enqueue(in_shard(layout, 1))).id
    first_claim_late(store._shards[0], monkeypatch)  # type: ignore[attr-defined]
    store._turn = -1  # type: ignore[attr-defined]  # the claim starts at shard 0
    store._turn_until = 0.0  # type: ignore[attr-defined]
    [claim_b] = await store.claim(1, lease=lease)
    assert claim_b.job.id == b
    for _ in range(4):  # B runs 2 s, renewed; the worker has no room to claim meanwhile
        await asyncio.sleep(0.5)
        assert not await store.renew([claim_b], lease=lease)
    await other.recover()
    job = await other.get(a)
    assert job is not None
    assert job.retry_count == 0 and job.status is JobStatus.QUEUED, (job.status, job.retry_count)


async def test_a_stopping_workers_late_claim_is_given_back(
    make_store: StoreFactory, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shard 0's claim takes A but answers late (given up on); the worker stops: A goes
    back to its queue rather than waiting InProgress for its lease (30 s here)."""
    store, other = await make_store(shards=2), await make_store(shards=2)
    layout = ShardLayout(prefix, 2)
    a = (await store.enqueue(in_shard(layout, 0))).id
    first_claim_late(store._shards[0], monkeypatch)  # type: ignore[attr-defined]
    store._shards[0]._due_after_claim = None  # type: ignore[attr-defined]
    assert await store.claim(1, lease=30.0) == []
    await store.aclose()
    await asyncio.sleep(0.5)
    job = await other.get(a)
    assert job is not None and job.status is JobStatus.QUEUED, job and job.status


async def test_a_late_shard_whose_wait_answers_is_asked_again_at_once(
    make_store: StoreFactory, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shard given up on is passed over for a while, but a wait that shard answers
    (its offer finds A claimable) lifts that: the next claim is handed A at once, rather
    than finding nothing until the mark ends while the wait keeps waking the worker."""
    store = await make_store(shards=2)
    layout = ShardLayout(prefix, 2)
    a = (await store.enqueue(in_shard(layout, 0))).id
    first_claim_late(store._shards[0], monkeypatch)  # type: ignore[attr-defined]
    store._shards[0]._due_after_claim = None  # type: ignore[attr-defined]
    assert await store.claim(1, lease=LEASE) == []  # late: passed over for 0.5 s
    await store._late.aclose(5)  # type: ignore[attr-defined]  # A undone: Queued again
    started = time.monotonic()
    assert await store.wait_for_work(5, take=1, lease=LEASE) == []  # A is claimable
    [claim] = await store.claim(1, lease=LEASE)
    assert claim.job.id == a and time.monotonic() - started < 0.4
