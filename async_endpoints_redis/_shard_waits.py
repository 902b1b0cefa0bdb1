"""`ShardWaits`: claims and waits of a sharded store (costs: `_shard_store`).

A claim visits the shards in turn and takes what it can from each until its limit is
filled: a worker busy on a backlog pays one round trip per claim, as with one shard. Each
worker's claims start at one shard (a random one at first) for `_TURN_FOR` seconds, or
until it runs dry, then at the next: its running jobs mostly come from one shard, so
their completions and renewals share script calls as with one shard, and no shard
waits more than N turns for any worker. A shard whose
last claim found nothing due, less than `_DRY_FOR` seconds ago and with no wake-up from it
since, is skipped (a cancel or failure made through this store counts as its wake-up, so a
claim right after it sees its effect). A shard that cannot be reached, or does not answer
within `_shard_slow.ANSWER_WITHIN` seconds (a frozen master: its call is left running),
is passed over, and then by the next claims until a probe of it answers (unless every
shard is), with no wait for its offers' withdrawals; after such a failure the claim asks
every other shard, dry or not, and raises the error only when no shard answered: the
others keep running while one fails over or hangs, and a worker does not back off
because of one shard (`SlowShards` says how what a late answer claimed is not lost).

What the turns give: strict queue priority, oldest first and tenant turns hold within each
shard (its scripts, unchanged); across shards a claim takes from one shard, then the next.
So a tenant's lone job waits at most one round of its shard's tenant turns plus the turns
of the other shards first (each worker reaches every shard within N turns), and
a higher-priority job in one shard may start after lower-priority jobs a claim took from
another shard just before.

A wait waits on every shard at once: each shard's own subscription wakes it, and with
``take`` each shard holds an offer, so a job submitted to any shard is handed over. It
returns what the first shard to answer handed over; what another shard handed over in the
same instant, or what a cancelled wait was handed, goes back to its queue
(`RedisWaits._give_back`). One offer (or due-time read) per shard per wait, as one shard
pays per wait; no polling. A shard whose claim is left running is not waited on (its
offer would race that claim): the wait ends when that claim does, and the next claim
asks the shard again.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Sequence

from async_endpoints._errors import StoreUnavailableError
from async_endpoints._job import DEFAULT_QUEUE
from async_endpoints._store import Claim

from ._shard_base import ShardBase
from ._shard_slow import ANSWER_WITHIN, SlowShards
from ._store import RedisJobStore

#: Seconds a worker's claims start at the same shard before they move on to the next
#: (sooner when it runs dry): long enough that the jobs of a busy worker mostly come from
#: one shard, so their completions and renewals share script calls as with one shard;
#: short enough that a job in any shard waits at most N turns for a given worker.
_TURN_FOR = 0.05
#: Seconds a shard whose claim found nothing due is skipped by the next claims (unless
#: it wakes): bounds what a missed wake-up can delay on top of one shard's behaviour.
_DRY_FOR = 0.5


class ShardWaits(ShardBase):
    """Claiming from and waiting on every shard."""

    _turn: int
    _turn_until: float
    _deadline: float
    _slow: SlowShards  # shards passed over: their claim left running, or not answering

    async def claim(
        self, limit: int, *, lease: float, queues: Sequence[str] = (DEFAULT_QUEUE,)
    ) -> list[Claim]:
        """Claim up to ``limit`` jobs, from the shards in turn (see the module
        docstring): strict priority and tenant turns hold within each shard. A shard that
        cannot be reached or does not answer at once is passed over (an error is raised
        only when no shard answered), so the others' jobs are claimed while it fails over
        or hangs."""
        shards = await self._ready_shards()
        if limit <= 0:
            return []
        count = len(shards)
        start = self._turn_start(count)
        slow = self._slow
        # Every shard passed over: each is asked (but one whose claim is still under way),
        # and waited for as long as it takes: no other shard is held up.
        all_slow = all(slow.passed_over(shard) for shard in shards)
        within = None if all_slow else ANSWER_WITHIN
        claims: list[Claim] = []
        failure: StoreUnavailableError | None = None
        answered, left = False, []
        for offset in range(count):
            shard = shards[(start + offset) % count]
            # After a failure, every other shard is asked (dry or not): a claim raises
            # only when no shard answered.
            if offset and failure is None and _dry(shard, queues):
                continue
            if self._passed_over(shard, all_slow, limit - len(claims)):
                self._turn_until = 0.0 if not offset else self._turn_until
                continue  # asked again once a probe of it answers
            try:
                call = self._claim_in(shard, limit - len(claims), lease, queues)
                claims += await slow.answer(shard, call, within, limit - len(claims))
            except StoreUnavailableError as exc:
                failure = exc
                left += [shard] if slow.left_running(shard) else []
            else:
                answered = True
                if len(claims) >= limit:
                    break
            if not offset:  # its shard ran dry (or failed): the next claim starts further
                self._turn_until = 0.0
        if answered:
            return claims
        return await self._unanswered(shards, left, failure, all_slow)

    async def _unanswered(
        self,
        shards: Sequence[RedisJobStore],
        left: Sequence[RedisJobStore],
        failure: StoreUnavailableError | None,
        all_slow: bool,
    ) -> list[Claim]:
        """A claim that no shard answered: when every shard is passed over, what the
        first claim it left running answers (no other shard to hold up: the whole store
        stalls, say), else nothing, or its failure."""
        slow = self._slow
        if left and all(slow.passed_over(shard) for shard in shards):
            return await slow.first_answer(left)
        if failure is not None or all_slow:
            raise failure or StoreUnavailableError("no shard answered: their claims are under way")
        return []

    def _passed_over(self, shard: RedisJobStore, all_slow: bool, room: int) -> bool:
        """Whether a claim with ``room`` for jobs passes ``shard`` over: its claim left
        running, passed over (unless every shard is), or owed more claims than fit."""
        slow = self._slow
        if slow.left_running(shard) or slow.owed(shard) > room:
            return True
        return not all_slow and slow.passed_over(shard)

    def _turn_start(self, count: int) -> int:
        """The shard this worker's claims start at now (see `_TURN_FOR`)."""
        now = time.monotonic()
        if now >= self._turn_until:
            self._turn, self._turn_until = self._turn + 1, now + _TURN_FOR
        return self._turn % count

    async def _claim_in(
        self, shard: RedisJobStore, limit: int, lease: float, queues: Sequence[str]
    ) -> list[Claim]:
        # Jobs an ended offer hands back are claimable first: their withdrawal is awaited,
        # but not that of a shard passed over (it would fail or time out too, holding up
        # the claims of the other shards meanwhile).
        if shard._withdrawals and not self._slow.passed_over(shard):
            await asyncio.wait(set(shard._withdrawals), timeout=self._deadline)
        return await shard.claim(limit, lease=lease, queues=queues)

    async def wait_for_work(
        self,
        timeout: float,
        *,
        take: int = 0,
        lease: float = 0.0,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
    ) -> list[Claim]:
        """Wait on every shard at once (see the module docstring)."""
        shards = [s for s in await self._ready_shards() if not self._slow.left_running(s)]
        left = set(self._slow.claims_left())  # not ours: awaited, never cancelled
        waits = [
            asyncio.ensure_future(
                shard.wait_for_work(timeout, take=take, lease=lease, queues=queues)
            )
            for shard in shards
        ]
        pending = set(waits)
        try:
            try:
                while pending or left:
                    done, _ = await asyncio.wait(
                        pending | left,
                        timeout=None if pending else timeout,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    pending -= done
                    if not done or done & left:
                        break  # a claim left running ended: the next claim asks its shard
                    if any(wait.exception() is None for wait in done):
                        break  # else a shard that cannot be reached: the others still wake
            finally:
                for wait in pending:
                    wait.cancel()
                if pending:  # let each end its offer (a withdrawal the next claim awaits)
                    await asyncio.wait(pending)
        except BaseException:
            _give_all_back(shards, waits)  # this call is cancelled: nobody takes them
            raise
        if take > 0:
            for shard in shards:  # an offer may have handed jobs back with no wake-up
                shard._due_after_claim = None
        return _first_handed(shards, waits)


def _first_handed(
    shards: Sequence[RedisJobStore], waits: Sequence[asyncio.Future[list[Claim]]]
) -> list[Claim]:
    """The claims handed over by the first shard that handed any (the others' go back to
    their queues); raises when every shard's wait failed."""
    claims: list[Claim] = []
    failures: list[BaseException] = []
    for shard, wait in zip(shards, waits, strict=True):
        if not wait.done() or wait.cancelled():
            continue
        failure = wait.exception()
        if failure is not None:
            failures.append(failure)
            continue
        handed = wait.result()
        if handed and claims:
            shard._give_back(handed)
        elif handed:
            claims = handed
    if failures and len(failures) == len(shards):
        raise failures[0]
    return claims


def _give_all_back(
    shards: Sequence[RedisJobStore], waits: Sequence[asyncio.Future[list[Claim]]]
) -> None:
    """Give back what every shard's wait handed over, now or, for a wait still ending (this
    call was cancelled while it waited for them to end their offers), when it ends: its
    jobs go back to their queue, and its error is taken here (nobody else awaits it)."""
    for shard, wait in zip(shards, waits, strict=True):
        if wait.done():
            _give_back(shard, wait)
        else:
            wait.add_done_callback(functools.partial(_give_back, shard))


def _give_back(shard: RedisJobStore, wait: asyncio.Future[list[Claim]]) -> None:
    if wait.cancelled() or wait.exception() is not None:
        return  # a shard that could not be reached: the caller's own failure says so
    if wait.result():
        shard._give_back(wait.result())


def _dry(shard: RedisJobStore, queues: Sequence[str]) -> bool:
    """Whether the shard's last claim found ``queues`` dry lately, nothing is due there
    yet, and no wake-up came from it since (so a claim there now would find nothing)."""
    known = shard._due_after_claim
    if known is None or known[2] != tuple(queues) or not shard._notifications.connected:
        return False
    if shard._notifications.generation != shard._claim_generation:
        return False
    due_ms, at, _ = known
    age = time.monotonic() - at
    return age < _DRY_FOR and (due_ms < 0 or age * 1000 < due_ms)
