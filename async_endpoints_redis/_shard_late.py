"""`LateClaims`: a sharded store's claims of shards that did not answer in time.

A claim waits for one shard's answer `ANSWER_WITHIN` seconds at least (a few milliseconds
normally), or `PATIENCE` times the quickest of that shard's last `_KEPT` answers when more
(a shard whose last answers were all slow, a distant host, is waited for as long as its
round trip needs: its claims would otherwise all be late and its jobs never run; never
past the socket timeout, when a call fails anyway). A master frozen (SIGSTOP, a stalled host)
takes connections and answers nothing until the socket timeout, and a claim waiting that
long for it would hold up the jobs of every other shard; a few stalls among prompt answers
do not lengthen its wait.

A shard's claim not answered in time is left running, and the claim moves on to the other
shards; the shard is passed over while its claim runs. What that claim takes when it
answers late is given back at once (`RedisJobStore._unclaim`: Queued again at the head of
its queue, as if never claimed, as an offer's unstarted job goes back): no worker waits to
have room for it, and no job waits unrenewed for its lease to run out (which would count
an attempt it never made). A claim left running that fails (its script may have run)
leaves its token base to be sent again by the shard's next claim, whose script returns
what the first send took (the claim script's memo): whatever of it the claim has no room
for is given back the same way (`give_back_excess`). The tokens of handed jobs a worker
started stay with the shard until a call carrying them is answered (`RedisWaits._told`),
so an offer sent while a claim is left running carries them too.

A claim that no shard answered in time, every shard being passed over or late, waits for
the first claim left running to answer and takes its jobs (`first_answer`), as a claim
of one shard waits for it: a store that is slow as a whole is not a reason to give back
what it claims.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from async_endpoints._errors import StoreUnavailableError
from async_endpoints._logs import job_extra
from async_endpoints._store import Claim

from ._store import RedisJobStore

logger = logging.getLogger("async_endpoints")

#: Seconds a claim waits for a shard's answer at least before it moves on to the others.
ANSWER_WITHIN = 0.25
#: How many times the quickest of its recent answers a shard is waited for, when longer.
PATIENCE = 4
#: Seconds more a claim waits after that, for an answer a blocked event loop has not yet
#: read: its data arrived, but the timer ran out first in the same turn of the loop.
_GRACE = 0.01
#: How many of a shard's latest answer times its wait is drawn from (the quickest: stalls
#: among prompt answers do not lengthen it; a shard slow every time, a distant host whose
#: round trip is never shorter, is waited for).
_KEPT = 9


@dataclass(eq=False)
class _Left:
    """A shard's claim left running by the claim that sent it."""

    shard: RedisJobStore
    task: asyncio.Task[list[Claim]]
    sent: float  # loop time
    awaited: int = 0  # claims waiting for it (`first_answer`)
    settled: bool = False  # its claims taken by a caller or given back


class LateClaims:
    """The claims left running by shards that answered late, and each shard's recent
    answer time."""

    def __init__(self, longest: float) -> None:
        self._longest = longest  # the longest wait for a shard's answer
        self._left: dict[RedisJobStore, _Left] = {}
        self._times: dict[RedisJobStore, deque[float]] = {}  # its latest answer times
        self._waits: dict[RedisJobStore, float] = {}  # how long a claim waits for it
        self._calls: set[asyncio.Future[Any]] = set()  # give-backs under way

    def running(self, shard: RedisJobStore) -> bool:
        """Whether a claim of ``shard`` left running has not ended yet."""
        return shard in self._left

    def any_running(self, shards: Sequence[RedisJobStore]) -> bool:
        """Whether one of ``shards`` has a claim left running."""
        return any(shard in self._left for shard in shards)

    async def answer(
        self, shard: RedisJobStore, call: Coroutine[Any, Any, list[Claim]]
    ) -> list[Claim] | None:
        """What ``call`` (a claim of ``shard``) answers, its error raised, if it answers in
        time; None when it does not (it is left running, and what it claims given back)."""
        loop = asyncio.get_running_loop()
        sent = loop.time()
        task = asyncio.ensure_future(call)
        try:
            await asyncio.wait({task}, timeout=self._within(shard))
            if not task.done():
                await asyncio.wait({task}, timeout=_GRACE)
        except BaseException:
            task.cancel()  # the shard's claim leaves its token base to be sent again
            self._leave(_Left(shard, task, sent))
            raise
        if not task.done():
            self._leave(_Left(shard, task, sent))
            return None
        claims = task.result()
        self._observe(shard, loop.time() - sent)
        return claims

    async def first_answer(
        self, shards: Sequence[RedisJobStore]
    ) -> tuple[RedisJobStore | None, list[Claim], float]:
        """The shard of the first claim left running by ``shards`` to answer (waited for
        as long as it takes), its claims and the loop time it was sent; the others stay
        left; (None, [], 0.0) when another caller took the answers. Raises the last error
        when every one of them fails, or `StoreUnavailableError` when none is running."""
        lefts = [self._left[shard] for shard in shards if shard in self._left]
        if not lefts:
            raise StoreUnavailableError("no shard answered a claim")
        failure: BaseException | None = None
        for left in lefts:
            left.awaited += 1
        pending = {left.task: left for left in lefts}
        try:
            while pending:
                done, _ = await asyncio.wait(set(pending), return_when=asyncio.FIRST_COMPLETED)
                ended = [pending.pop(task) for task in done]
                first, failure = self._first_of(ended, failure)
                if first is not None:
                    self._observe(first.shard, asyncio.get_running_loop().time() - first.sent)
                    return first.shard, first.task.result(), first.sent
            if failure is not None:
                raise failure
            return None, [], 0.0
        finally:
            for left in pending.values():
                left.awaited -= 1
                if left.task.done() and not left.awaited:
                    self._settle(left)

    def _first_of(
        self, ended: list[_Left], failure: BaseException | None
    ) -> tuple[_Left | None, BaseException | None]:
        """The first of ``ended`` (claims one caller waited for) that answered and that
        no other caller took, now taken, and the last error of those that failed; the
        others are settled (given back) unless other callers still wait for them."""
        first = None
        for left in ended:
            left.awaited -= 1
            task = left.task
            if not task.cancelled() and task.exception() is not None:
                failure = task.exception() or failure
            elif first is None and not task.cancelled() and not left.settled:
                first, left.settled = left, True
                continue
            if not left.awaited:
                self._settle(left)
        return first, failure

    def give_back_excess(
        self, shard: RedisJobStore | None, claims: list[Claim], room: int
    ) -> list[Claim]:
        """``claims`` (of ``shard``) but those past ``room``, which are given back (a
        resent claim returns what its first send took, whatever its limit)."""
        if shard is not None and len(claims) > room:
            self.give_back(shard, claims[room:])
        return claims[:room]

    async def aclose(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the claims left running and the give-backs
        under way (the store closes its connections next)."""
        tasks: set[asyncio.Future[Any]] = {left.task for left in self._left.values()}
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        if self._calls:
            await asyncio.wait(set(self._calls), timeout=timeout)

    def _within(self, shard: RedisJobStore) -> float:
        return self._waits.get(shard, ANSWER_WITHIN)

    def _observe(self, shard: RedisJobStore, took: float) -> None:
        times = self._times.get(shard)
        if times is None:
            times = self._times[shard] = deque(maxlen=_KEPT)
        times.append(took)
        wait = max(ANSWER_WITHIN, PATIENCE * min(times))
        self._waits[shard] = min(wait, max(ANSWER_WITHIN, self._longest))

    def _leave(self, left: _Left) -> None:
        self._left[left.shard] = left
        left.task.add_done_callback(lambda _: self._ended(left))

    def _ended(self, left: _Left) -> None:
        if self._left.get(left.shard) is left:
            del self._left[left.shard]
        if not left.awaited:
            self._settle(left)  # else the waiting claims settle it

    def _settle(self, left: _Left) -> None:
        """Give back what ``left`` claimed, unless a caller took it."""
        if left.settled:
            return
        left.settled = True
        task = left.task
        if task.cancelled() or task.exception() is not None:
            return  # unanswered: the shard's next claim sends its token base again
        self._observe(left.shard, asyncio.get_running_loop().time() - left.sent)
        if task.result():
            self.give_back(left.shard, task.result())

    def give_back(self, shard: RedisJobStore, claims: Sequence[Claim]) -> None:
        """Undo ``claims`` of ``shard`` (`RedisJobStore._unclaim`) in a task of its own
        (`aclose` waits for it)."""
        call = asyncio.ensure_future(_given_back(shard, claims))
        self._calls.add(call)
        call.add_done_callback(self._calls.discard)


async def _given_back(shard: RedisJobStore, claims: Sequence[Claim]) -> None:
    """Undo ``claims``: their jobs Queued again at the head of their queues, the last one
    first, so that they keep their order (one call after another: this is rare)."""
    for claim in reversed(claims):
        try:
            await shard._unclaim(claim)
        except Exception as exc:
            logger.warning(
                "job %s: claimed by a late answer and not given back (%s): it waits for its"
                " lease to run out, and its attempt counts as lost",
                claim.job.id, exc, extra=job_extra(claim.job),
            )  # fmt: skip
