"""`LateClaims`: how long a sharded store's claim waits for one shard's answer.

A claim waits for one shard's answer `ANSWER_WITHIN` seconds at least (a few milliseconds
normally), or `PATIENCE` times the quickest of that shard's last `_KEPT` answers when more
(a shard whose last answers were all slow, a distant host, is waited for as long as its
round trip needs; never past the socket timeout, when a call fails anyway). A master
frozen (SIGSTOP, a stalled host) takes connections and answers nothing until the socket
timeout, and a claim waiting that long for it would hold up the jobs of every other shard;
a few stalls among prompt answers do not lengthen its wait.

A shard's claim not answered in time is cancelled, and the claim moves on to the other
shards; the shard is passed over for a while (`late_for`, longer while it stays late). Its
call may still have run, or may yet run (a frozen server runs what it was sent once it
resumes): once the claim has its answer from other shards, its token base is sent again
in the background with no room, and the claim script hands back what the first send took
(the claim memo), each undone (`undo_soon`, `RedisJobStore._undo_unanswered`, `_unclaim`:
Queued again at the head of its queue, as if never claimed), so nothing it took waits for
its lease, whether or not its worker claims there again (busy, or stopping: `aclose`
waits for it). Should that resend go unanswered too, the shard's next claim sends the
token base again and is handed what it took; what a claim has no room for is undone the
same way (`give_back_excess`). A claim that no shard answered in time asks again, waiting
as long as each takes, the late calls' token bases sent again and their jobs handed over
(`ShardWaits.claim`): a store slow as a whole is not a reason to claim nothing.

The wait is a deadline on the call itself, not a task beside it: a claim pays no extra
turn of the event loop for it (a task per shard call cost a fifth of a sharded drain's
rate). An event loop held up past the deadline by a handler may give up on a healthy
shard's answer: its jobs are undone as any late call's, a wasted round and nothing more.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Sequence
from typing import Any

from async_endpoints._logs import job_extra
from async_endpoints._store import Claim

from ._store import RedisJobStore

logger = logging.getLogger("async_endpoints")

#: Seconds a claim waits for a shard's answer at least before it moves on to the others.
ANSWER_WITHIN = 0.25
#: How many times the quickest of its recent answers a shard is waited for, when longer.
PATIENCE = 4
#: How many of a shard's latest answer times its wait is drawn from (the quickest: stalls
#: among prompt answers do not lengthen it; a shard slow every time, a distant host whose
#: round trip is never shorter, is waited for).
_KEPT = 9
#: Seconds under which the answer of a call sent again with no deadline counts as the
#: shard's answer time (longer: a stall, a freeze).
_SLOW = 1.0
#: Seconds a shard that answered late is passed over by the next claims, doubled each time
#: it is late again, up to `_LATE_FOR_MOST`; an answer in time ends it.
_LATE_FOR = 0.5
_LATE_FOR_MOST = 4.0


class LateClaims:
    """Each shard's recent answer times and late answers, and the claims being undone."""

    def __init__(self, longest: float) -> None:
        self._longest = longest  # the longest wait for a shard's answer
        self._times: dict[RedisJobStore, deque[float]] = {}  # its latest answer times
        self._lates: dict[RedisJobStore, int] = {}  # late answers in a row
        self._calls: set[asyncio.Future[Any]] = set()  # undoing under way

    async def answer(
        self, shard: RedisJobStore, call: Awaitable[list[Claim]], *, patient: bool = False
    ) -> list[Claim] | None:
        """What ``call`` (a claim of ``shard``) answers, its error raised; None when it
        does not answer in time (it is cancelled: see the module docstring). A
        ``patient`` call is waited for as long as it takes."""
        loop = asyncio.get_running_loop()
        sent = loop.time()
        if patient:
            claims = await call
        else:
            deadline = asyncio.timeout_at(sent + self._within(shard))
            try:
                async with deadline:
                    claims = await call
            except TimeoutError:
                if not deadline.expired():
                    raise
                self._given_up(shard)
                return None
        self._lates.pop(shard, None)
        self._observe(shard, loop.time() - sent)
        return claims

    def _given_up(self, shard: RedisJobStore) -> None:
        """``shard``'s call was given up on: counted late, and trouble met (as by a call
        held up)."""
        self._lates[shard] = self._lates.get(shard, 0) + 1
        shard._connection.trouble.met()

    def undo_soon(self, shard: RedisJobStore) -> None:
        """Undo what ``shard``'s call given up on took, if it ran, in the background (its
        caller may not claim there again soon, busy or stopping; `aclose` waits for it)."""
        self._track(asyncio.ensure_future(self._undone(shard)))

    async def _undone(self, shard: RedisJobStore) -> None:
        """Undo what ``shard``'s call given up on took (`RedisJobStore._undo_unanswered`,
        sent with no deadline). Its answer time is the shard's too when under `_SLOW`: a
        shard slow every time (a distant host) comes to be waited for, while one that
        answers after a freeze does not make the claims wait longer for it."""
        loop = asyncio.get_running_loop()
        sent = loop.time()
        try:
            await shard._undo_unanswered()
        except Exception as exc:  # its next claim sends the token base again
            logger.debug("a claim given up on could not be undone yet: %s", exc)
            return
        took = loop.time() - sent
        if took < _SLOW:
            self._observe(shard, took)

    def late_for(self, shard: RedisJobStore) -> float:
        """Seconds the next claims pass ``shard`` over after a late answer."""
        lates = self._lates.get(shard, 1)
        return float(min(_LATE_FOR_MOST, _LATE_FOR * 2 ** (lates - 1)))

    def give_back_excess(self, shard: RedisJobStore, claims: list[Claim], room: int) -> list[Claim]:
        """``claims`` (of ``shard``) but those past ``room``, which are undone (a resent
        claim returns what its first send took, whatever its limit)."""
        if len(claims) > room:
            self.give_back(shard, claims[room:])
        return claims[:room]

    def give_back(self, shard: RedisJobStore, claims: Sequence[Claim]) -> None:
        """Undo ``claims`` of ``shard`` (`RedisJobStore._unclaim`) in a task of its own
        (`aclose` waits for it)."""
        self._track(asyncio.ensure_future(_given_back(shard, claims)))

    def _track(self, call: asyncio.Future[Any]) -> None:
        self._calls.add(call)
        call.add_done_callback(self._calls.discard)

    async def aclose(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the claims being undone (the store closes
        its connections next)."""
        if self._calls:
            await asyncio.wait(set(self._calls), timeout=timeout)

    def _within(self, shard: RedisJobStore) -> float:
        times = self._times.get(shard)
        wait = max(ANSWER_WITHIN, PATIENCE * min(times)) if times else ANSWER_WITHIN
        return min(wait, max(ANSWER_WITHIN, self._longest))

    def _observe(self, shard: RedisJobStore, took: float) -> None:
        self._times.setdefault(shard, deque(maxlen=_KEPT)).append(took)


async def _given_back(shard: RedisJobStore, claims: Sequence[Claim]) -> None:
    """Undo ``claims``: their jobs Queued again at the head of their queues, the last one
    first, so that they keep their order (one call after another: this is rare)."""
    for claim in reversed(claims):
        try:
            await shard._unclaim(claim)
        except Exception as exc:
            logger.warning(
                "job %s: claimed beyond a claim's room and not given back (%s): it waits"
                " for its lease to run out, and its attempt counts as lost",
                claim.job.id, exc, extra=job_extra(claim.job),
            )  # fmt: skip
