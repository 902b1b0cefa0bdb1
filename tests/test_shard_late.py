"""How long a sharded store's claim waits for one shard (`LateClaims`): a late call is
given up on (cancelled), a shard slow every time is waited for once it has answered, a
few stalls do not lengthen the wait, a loop held up past the deadline still reads an
answer that arrived, and claims past a claim's room are undone in order. The shards here
are stand-ins whose claims take a set time (the Redis side is in
tests/redis/test_shards_frozen.py and tests/redis/test_shards_late_answers.py)."""

from __future__ import annotations

import asyncio
import types
from typing import Any, cast

from async_endpoints._store import Claim
from async_endpoints_redis._shard_late import ANSWER_WITHIN, LateClaims
from async_endpoints_redis._store import RedisJobStore

SOCKET_TIMEOUT = 3.0  # the store's default


class Slow:
    """A shard whose claims answer after ``takes`` seconds with one claim each."""

    def __init__(self, takes: float) -> None:
        self.takes = takes
        self.sent = 0
        self.cancelled = 0
        self.undone: list[Any] = []
        self.resent = 0
        self.troubled: list[None] = []

    async def claim(self) -> list[Claim]:
        self.sent += 1
        try:
            await asyncio.sleep(self.takes)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return [cast(Claim, f"claim {self.sent}")]

    async def _unclaim(self, claim: Any) -> None:
        self.undone.append(claim)

    async def _undo_unanswered(self) -> None:
        """Sent again with no deadline: as long as its calls take."""
        await asyncio.sleep(self.takes)
        self.resent += 1

    @property
    def _connection(self) -> Any:
        return types.SimpleNamespace(
            trouble=types.SimpleNamespace(met=lambda: self.troubled.append(None))
        )


def shard_of(slow: Slow) -> RedisJobStore:
    return cast(RedisJobStore, slow)


def late_claims() -> LateClaims:
    return LateClaims(longest=SOCKET_TIMEOUT)


async def test_an_answer_in_time_is_returned_and_a_late_call_is_given_up_on() -> None:
    late, slow = late_claims(), Slow(takes=0.001)
    assert await late.answer(shard_of(slow), slow.claim()) == ["claim 1"]
    slow.takes = ANSWER_WITHIN * 2
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await late.answer(shard_of(slow), slow.claim()) is None
    assert loop.time() - started < ANSWER_WITHIN * 1.5
    assert slow.cancelled == 1
    assert len(slow.troubled) == 1, "a call given up on counts as trouble reaching Redis"


async def test_a_patient_call_is_waited_for_as_long_as_it_takes() -> None:
    late, slow = late_claims(), Slow(takes=ANSWER_WITHIN * 2)
    assert await late.answer(shard_of(slow), slow.claim(), patient=True) == ["claim 1"]
    assert slow.cancelled == 0


async def test_a_shard_slow_every_time_is_waited_for_once_it_answered() -> None:
    """A distant shard (each answer 1.5 times the least wait) is late at first; once the
    call sent again to undo what the late one took has answered (with no deadline), its
    calls are waited for: its jobs are not given up on every time."""
    late, slow = late_claims(), Slow(takes=ANSWER_WITHIN * 1.5)
    assert await late.answer(shard_of(slow), slow.claim()) is None
    late.undo_soon(shard_of(slow))
    await late.aclose(timeout=5)  # the undoing, answered
    assert slow.resent == 1
    for sent in (2, 3, 4):
        assert await late.answer(shard_of(slow), slow.claim()) == [f"claim {sent}"]


async def test_a_shard_that_stalls_now_and_then_is_still_given_up_on_promptly() -> None:
    """A healthy shard (1 ms answers) stalls five times, a prompt answer between stalls,
    some of them answered (0.2 s) and some not (1 s); then its master freezes: a claim
    still moves on after the least wait (drawn from its quickest recent answer)."""
    late, slow = late_claims(), Slow(takes=0.001)
    for stall in (0.2, 1.0, 0.2, 1.0, 0.2):
        slow.takes = 0.001
        assert await late.answer(shard_of(slow), slow.claim()) is not None
        slow.takes = stall
        await late.answer(shard_of(slow), slow.claim())
    slow.takes = SOCKET_TIMEOUT  # frozen
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await late.answer(shard_of(slow), slow.claim()) is None
    assert loop.time() - started < 2 * ANSWER_WITHIN


async def test_a_shards_wait_never_passes_the_socket_timeout() -> None:
    late, slow = LateClaims(longest=1.0), Slow(takes=2.0)
    assert await late.answer(shard_of(slow), slow.claim(), patient=True) is not None
    assert late._within(shard_of(slow)) == 1.0


async def test_a_late_shard_is_passed_over_longer_while_it_stays_late() -> None:
    late, slow = late_claims(), Slow(takes=ANSWER_WITHIN * 2)
    periods = []
    for _ in range(5):
        assert await late.answer(shard_of(slow), slow.claim()) is None
        periods.append(late.late_for(shard_of(slow)))
    assert periods == [0.5, 1.0, 2.0, 4.0, 4.0]
    slow.takes = 0.001
    assert await late.answer(shard_of(slow), slow.claim()) is not None
    slow.takes = ANSWER_WITHIN * 2
    assert await late.answer(shard_of(slow), slow.claim()) is None
    assert late.late_for(shard_of(slow)) == 0.5


async def test_claims_past_the_room_are_undone_last_first() -> None:
    """A resent claim hands back all its first send took: those past the room go back,
    the last first, so that they reach the head of their queue in their order."""
    late, slow = late_claims(), Slow(takes=0)
    claims = cast(list[Claim], ["a", "b", "c", "d"])
    assert late.give_back_excess(shard_of(slow), claims, room=1) == ["a"]
    await late.aclose(timeout=5)
    assert slow.undone == ["d", "c", "b"]
