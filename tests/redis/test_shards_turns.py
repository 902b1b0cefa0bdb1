"""Submissions to a sharded store made in one event-loop turn are answered in one turn,
whichever shards they went to (so that their submitters' next jobs batch together again,
one script call per shard; see `_shard_turns`)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from async_endpoints._errors import QueueFullError
from async_endpoints._job import NewJob
from tests.redis.conftest import StoreFactory

pytestmark = pytest.mark.redis


class TurnCounter:
    """Counts the turns of the running event loop while started."""

    def __init__(self) -> None:
        self.turns = 0
        self._running = False

    def start(self) -> None:
        self._running = True
        asyncio.get_running_loop().call_soon(self._tick)

    def stop(self) -> None:
        self._running = False

    def _tick(self) -> None:
        self.turns += 1
        if self._running:
            asyncio.get_running_loop().call_soon(self._tick)


async def test_the_submissions_of_one_turn_are_answered_in_one_turn(
    make_store: StoreFactory,
) -> None:
    store = await make_store(shards=3)
    await store.enqueue(NewJob(uuid.uuid4(), "Echo", 0))  # connected
    counter = TurnCounter()
    answered_in: list[int] = []

    async def submit() -> None:
        await store.enqueue(NewJob(uuid.uuid4(), "Echo", 0))
        answered_in.append(counter.turns)

    counter.start()
    try:
        for _ in range(5):
            await asyncio.gather(*(submit() for _ in range(30)))
            assert len(set(answered_in)) == 1, answered_in
            answered_in.clear()
    finally:
        counter.stop()
    assert await store.count_waiting() == 1 + 5 * 30


async def test_each_submission_of_a_turn_gets_its_own_reply_or_error(
    make_store: StoreFactory,
) -> None:
    store = await make_store(shards=3)
    jobs = [NewJob(uuid.uuid4(), "Echo", 0) for _ in range(12)]
    replies = await asyncio.gather(
        *(store.enqueue(job, max_waiting=0 if n == 5 else None) for n, job in enumerate(jobs)),
        return_exceptions=True,
    )
    assert isinstance(replies[5], QueueFullError)
    for n, (job, reply) in enumerate(zip(jobs, replies, strict=True)):
        if n != 5:
            assert not isinstance(reply, BaseException) and reply.id == job.id
    assert await store.count_waiting() == 11
