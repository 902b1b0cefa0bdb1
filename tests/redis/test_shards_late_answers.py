"""A sharded store's claim that a shard answers late (`_shard_late`), on one server (two
shards): what the late answer took goes back to the head of its queue as if never
claimed, and the jobs a worker started from an offer stay its own while its claim there
is left running."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

import pytest

from async_endpoints._job import JobStatus, NewJob
from async_endpoints_redis._shard_layout import ShardLayout
from tests.redis.conftest import StoreFactory

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]

LEASE = 30.0


def in_shard(layout: ShardLayout, shard: int, **options: object) -> NewJob:
    job_id = uuid.uuid4()
    while layout.of_id(job_id) != shard:
        job_id = uuid.uuid4()
    return NewJob(job_id, "Echo", 0, **options)  # type: ignore[arg-type]


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
    real = shard.claim
    calls = 0

    async def stalled(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(0.4)
        return await real(*args, **kwargs)

    monkeypatch.setattr(shard, "claim", stalled)
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

    real_run = shard._connection.run

    async def held_up(operation, call):  # type: ignore[no-untyped-def]
        if operation == "claim":
            await asyncio.sleep(1.0)  # sent, delivered a second late
        return await real_run(operation, call)

    monkeypatch.setattr(shard._connection, "run", held_up)
    assert await worker.claim(4, lease=LEASE) == []  # shard 0 late, shard 1 empty
    await worker.wait_for_work(0.3, take=4, lease=LEASE)  # idle again
    await worker._late.aclose(5)  # type: ignore[attr-defined]
    monkeypatch.setattr(shard._connection, "run", real_run)

    taken_by_other = await other.claim(4, lease=LEASE)
    assert [claim.job.id for claim in taken_by_other] == [], "J runs twice"
    assert await worker.complete(started, "done") is not None


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
    for shard in store._shards:  # type: ignore[attr-defined]
        real_claim, real_renew = shard.claim, shard.renew

        async def stalled(*args: Any, real: Any = real_claim, **kwargs: Any) -> Any:
            await asyncio.sleep(1.5)
            return await real(*args, **kwargs)

        async def renew(claims: Any, *, lease: float, real: Any = real_renew) -> Any:
            renewed.extend(claim.job.id for claim in claims)
            return await real(claims, lease=lease)

        monkeypatch.setattr(shard, "claim", stalled)
        monkeypatch.setattr(shard, "renew", renew)
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
