"""An idle worker's offers and the calls that end them reaching Redis out of the order they
were sent (held up on the way, or run by Redis after their caller gave up): an offer is
ended only by a call sent after it, and never made after a call sent after it has run; a
job handed over and given back unstarted shows no start."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from async_endpoints._job import JobStatus, NewJob
from async_endpoints_redis import RedisJobStore
from tests.redis.support import eventually
from tests.redis.test_redis_hand_over import offering, offers_key, raw_status

pytestmark = [pytest.mark.redis, pytest.mark.usefixtures("steady_offers")]
StoreFactory = Callable[..., Awaitable[RedisJobStore]]


def new_job() -> NewJob:
    return NewJob(id=uuid.uuid4(), name="Job", max_retries=3)


async def test_a_handed_job_that_goes_back_unstarted_has_no_start_time(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """A new job handed to an offer and withdrawn unstarted is Queued with no start time
    (its record has no last_updated_at yet: its created_at stands for it)."""
    worker, api = await make_store(), await make_store()
    waiting = await offering(worker, raw_redis, prefix, take=2)
    await api.enqueue(new_job())
    async with asyncio.timeout(2):
        [_first] = await waiting  # started: the offer has one slot left
    second = await api.enqueue(new_job())  # handed to the offer's 2nd slot, never started
    assert await raw_status(raw_redis, prefix, second.id) == "InProgress"
    await worker._withdraw()  # the offer ends: the second goes back, unstarted
    job = await api.get(second.id)
    assert job is not None and job.status is JobStatus.QUEUED
    assert job.started_at is None, "a job that never ran shows a start time"


def offers_held_up(store: Any, monkeypatch: pytest.MonkeyPatch, by: float) -> None:
    """The store's first offer (wait_for_work with take) reaches Redis ``by`` seconds after
    it is sent, whatever its caller does meanwhile (held on the way)."""
    real_run = store._connection.run
    held = []

    async def held_up(operation: str, call: Any) -> Any:
        if operation == "wait_for_work" and not held:
            held.append(1)

            async def late() -> Any:
                await asyncio.sleep(by)
                return await real_run(operation, call)

            return await asyncio.shield(asyncio.ensure_future(late()))
        return await real_run(operation, call)

    monkeypatch.setattr(store._connection, "run", held_up)


@pytest.mark.parametrize("offers_again", [False, True])
async def test_an_offer_reaching_redis_after_its_withdrawal_is_not_made(
    make_store: StoreFactory,
    raw_redis: Redis,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    offers_again: bool,
) -> None:
    """The idle wait is cancelled while its offer B is on its way; its withdrawal reaches
    Redis first, then B: B is not made (a call sent after it has run). With
    ``offers_again`` the worker waits again at once, and its offer C is made before B
    arrives: B neither ends C nor is written over it. Either way a job submitted after the
    worker's next claim is Queued for any worker, not handed to an offer nobody awaits."""
    worker, api, other = await make_store(), await make_store(), await make_store()
    await eventually(lambda: _connected(worker))
    assert await worker.claim(1, lease=30) == []
    offers_held_up(worker, monkeypatch, by=0.6)
    waiting = asyncio.ensure_future(worker.wait_for_work(30, take=1, lease=30))
    await asyncio.sleep(0.1)
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    await asyncio.wait(set(worker._withdrawals))  # answered: B not in Redis yet
    again = None
    if offers_again:
        again = asyncio.ensure_future(worker.wait_for_work(30, take=1, lease=30))
    await asyncio.sleep(0.8)  # B has run now
    if again is not None:
        again.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await again
        await asyncio.wait(set(worker._withdrawals))
    assert await worker.claim(1, lease=30) == []  # ends the worker's offer, whichever
    standing = await raw_redis.hgetall(offers_key(prefix))
    job = await api.enqueue(new_job())
    status = await raw_status(raw_redis, prefix, job.id)
    assert status == "Queued", f"handed to an offer nobody awaits: {standing}"
    [claim] = await other.claim(1, lease=30)
    assert claim.job.id == job.id


async def _connected(store: RedisJobStore) -> bool:
    return store._notifications.connected


async def test_a_resent_offer_does_not_give_its_used_slot_back(
    make_store: Any, raw_redis: Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An offer's first send ran and its reply was lost, and redis-py sent it again: the
    offer is not made anew, so the slot a job handed to it in between used stays used (a
    second job with ``take=1`` is Queued, not handed over beyond the worker's room)."""
    worker, api = await make_store(), await make_store()
    await eventually(lambda: _connected(worker))
    assert await worker.claim(1, lease=30) == []
    first = new_job()
    real_run = worker._connection.run
    sent: list[int] = []

    async def resent(operation: str, call: Any) -> Any:
        if operation != "wait_for_work" or sent:
            return await real_run(operation, call)
        sent.append(1)

        async def twice(scripts: Any) -> Any:
            await call(scripts)  # the first send runs; its reply is lost
            await api.enqueue(first)  # another client's call runs in between
            return await call(scripts)  # redis-py's resend

        return await real_run(operation, twice)

    monkeypatch.setattr(worker._connection, "run", resent)
    waiting = asyncio.ensure_future(worker.wait_for_work(30, take=1, lease=30))
    try:
        await eventually(_true_when(sent))
        await eventually(lambda: _state(raw_redis, prefix, first.id, "InProgress"))
        await asyncio.sleep(0.2)  # the resend has run
        idle = await raw_redis.lrange("{" + prefix + "}:idle", 0, -1)
        offer = await raw_redis.hget(offers_key(prefix), worker._inbox)
        second = await api.enqueue(new_job())  # the offer's one slot was used by `first`
        status = await raw_status(raw_redis, prefix, second.id)
        assert status == "Queued", (
            f"a 2nd job handed to an offer of 1 slot (offer {offer!r}, idle list {idle!r})"
        )
    finally:
        waiting.cancel()
        with contextlib.suppress(BaseException):
            await waiting


async def _state(raw_redis: Redis, prefix: str, job_id: uuid.UUID, status: str) -> bool:
    return await raw_status(raw_redis, prefix, job_id) == status


def _true_when(items: list[int]) -> Any:
    async def check() -> bool:
        return bool(items)

    return check
