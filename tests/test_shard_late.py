"""A sharded store's claims of shards that answer late (`LateClaims`): what a late answer
claimed goes back unless a claim waiting for it takes it, exactly once, and a shard that
is slow every time is waited for once it has answered late. The shards here are
stand-ins whose claims take a set time (the Redis side is in
tests/redis/test_shards_frozen.py)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from async_endpoints._store import Claim
from async_endpoints_redis._shard_late import ANSWER_WITHIN, LateClaims
from async_endpoints_redis._store import RedisJobStore

SOCKET_TIMEOUT = 3.0  # the store's default


class Slow:
    """A shard whose claims answer after ``takes`` seconds with one claim each."""

    def __init__(self, takes: float) -> None:
        self.takes = takes
        self.sent = 0
        self.given_back: list[Any] = []

    async def claim(self) -> list[Claim]:
        self.sent += 1
        await asyncio.sleep(self.takes)
        return [cast(Claim, f"claim {self.sent}")]

    async def _unclaim(self, claim: Any) -> None:
        self.given_back.append(claim)


def shard_of(slow: Slow) -> RedisJobStore:
    return cast(RedisJobStore, slow)


async def settled(late: LateClaims) -> None:
    """Wait for the claims left running and the give-backs under way."""
    await late.aclose(timeout=5)


async def test_what_a_late_answer_claims_is_given_back_once() -> None:
    late, slow = LateClaims(longest=SOCKET_TIMEOUT), Slow(takes=ANSWER_WITHIN * 2)
    assert await late.answer(shard_of(slow), slow.claim()) is None
    assert late.running(shard_of(slow))
    await settled(late)
    assert slow.given_back == ["claim 1"]
    assert not late.running(shard_of(slow))


async def test_a_claim_waiting_for_a_late_answer_takes_it_and_nothing_goes_back() -> None:
    late, slow = LateClaims(longest=SOCKET_TIMEOUT), Slow(takes=ANSWER_WITHIN * 2)
    assert await late.answer(shard_of(slow), slow.claim()) is None
    shard, claims, _ = await late.first_answer([shard_of(slow)])
    assert shard is shard_of(slow) and claims == cast(list[Claim], ["claim 1"])
    await settled(late)
    assert slow.given_back == []


async def test_two_claims_waiting_for_one_late_answer_do_not_both_take_it() -> None:
    late, slow = LateClaims(longest=SOCKET_TIMEOUT), Slow(takes=ANSWER_WITHIN * 2)
    assert await late.answer(shard_of(slow), slow.claim()) is None
    outcomes = await asyncio.gather(
        late.first_answer([shard_of(slow)]),
        late.first_answer([shard_of(slow)]),
        return_exceptions=True,
    )
    taken = [claims for _, claims, _ in outcomes if claims]  # type: ignore[misc]
    assert taken == [["claim 1"]], outcomes
    await settled(late)
    assert slow.given_back == []


async def test_a_late_answer_that_comes_after_its_waiting_claim_left_is_given_back() -> None:
    late, slow = LateClaims(longest=SOCKET_TIMEOUT), Slow(takes=ANSWER_WITHIN * 2)
    assert await late.answer(shard_of(slow), slow.claim()) is None
    waiting = asyncio.ensure_future(late.first_answer([shard_of(slow)]))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await settled(late)
    assert slow.given_back == ["claim 1"]


async def test_a_shard_slow_every_time_is_waited_for_once_it_answered_late() -> None:
    """A distant shard (each answer 1.5 times the least wait) answers late once, then in
    time: its jobs are not given back on every claim."""
    late, slow = LateClaims(longest=SOCKET_TIMEOUT), Slow(takes=ANSWER_WITHIN * 1.5)
    assert await late.answer(shard_of(slow), slow.claim()) is None
    await settled(late)
    for sent in (2, 3, 4):
        assert await late.answer(shard_of(slow), slow.claim()) == [f"claim {sent}"]
    assert slow.given_back == ["claim 1"]


async def test_a_late_claim_that_fails_leaves_nothing_to_give_back() -> None:
    """Its reply lost, its token base is the shard's next claim's to send again."""

    class Failing(Slow):
        async def claim(self) -> list[Claim]:
            await asyncio.sleep(self.takes)
            raise ConnectionError("no answer")

    late, failing = LateClaims(longest=SOCKET_TIMEOUT), Failing(takes=ANSWER_WITHIN * 2)
    assert await late.answer(shard_of(failing), failing.claim()) is None
    with pytest.raises(ConnectionError):
        await late.first_answer([shard_of(failing)])
    await settled(late)
    assert failing.given_back == []


async def test_a_shard_that_stalls_now_and_then_is_still_passed_over_promptly() -> None:
    """A healthy shard (1 ms answers) stalls for a second five times, a prompt answer
    between stalls; then its master freezes: a claim still moves on after the least
    wait, not after the stalls' length (its wait is drawn from its quickest answer)."""
    late, slow = LateClaims(longest=SOCKET_TIMEOUT), Slow(takes=0.001)
    for _ in range(5):
        slow.takes = 0.001
        assert await late.answer(shard_of(slow), slow.claim()) is not None
        slow.takes = 1.0
        assert await late.answer(shard_of(slow), slow.claim()) is None
        await settled(late)
    slow.takes = SOCKET_TIMEOUT  # frozen: its call ends at the socket timeout
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await late.answer(shard_of(slow), slow.claim()) is None
    assert loop.time() - started < 2 * ANSWER_WITHIN
    await settled(late)


async def test_a_shards_wait_never_passes_the_socket_timeout() -> None:
    """However slow its answers, a claim moves on after the socket timeout (a call to
    it fails then anyway)."""
    late, slow = LateClaims(longest=1.0), Slow(takes=2.0)
    for _ in range(4):
        assert await late.answer(shard_of(slow), slow.claim()) is None
        await settled(late)
    assert late._within(shard_of(slow)) == 1.0
