"""`ShardWaits`: claims and waits of a sharded store (costs: `_shard_store`).

A claim visits the shards in turn and takes what it can from each until its limit is
filled: a worker busy on a backlog pays one round trip per claim, as with one shard. Each
worker's claims start at one shard (a random one at first) for `_TURN_FOR` seconds, or
until it runs dry, then at the next: its running jobs mostly come from one shard, so
their completions and renewals share script calls as with one shard, and no shard
waits more than N turns for any worker. A shard whose
last claim found nothing due, less than `_DRY_FOR` seconds ago and with no wake-up from it
since, is skipped (a cancel or failure made through this store counts as its wake-up, so a
claim right after it sees its effect). A shard that cannot be reached is passed over,
and then by the next claims for `_DOWN_FOR` seconds (unless every shard is), with no
wait for its offers' withdrawals; after such a failure the claim asks every other shard,
dry or not, and raises the error only when no shard answered: the others keep running
while one fails over, and a worker does not back off because of one shard. A shard that
does not answer in time (a frozen master) is passed over likewise, its call cancelled
(what it took, if it ran, is undone in the background: `_shard_late`).

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
pays per wait; no polling.
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
from ._shard_late import LateClaims
from ._store import RedisJobStore

#: Seconds a worker's claims start at the same shard before they move on to the next
#: (sooner when it runs dry): long enough that the jobs of a busy worker mostly come from
#: one shard, so their completions and renewals share script calls as with one shard;
#: short enough that a job in any shard waits at most N turns for a given worker.
_TURN_FOR = 0.05
#: Seconds a shard whose claim found nothing due is skipped by the next claims (unless
#: it wakes): bounds what a missed wake-up can delay on top of one shard's behaviour.
_DRY_FOR = 0.5
#: Seconds a shard whose claim failed (it could not be reached) is passed over by the
#: next claims, unless every shard is: a failing-over master holds up no other shard.
_DOWN_FOR = 0.5


class ShardWaits(ShardBase):
    """Claiming from and waiting on every shard."""

    _turn: int
    _turn_until: float
    _deadline: float
    _down_until: dict[RedisJobStore, float]  # shards whose last claim failed or was late
    _late: LateClaims  # how long a claim waits for each shard

    async def claim(
        self, limit: int, *, lease: float, queues: Sequence[str] = (DEFAULT_QUEUE,)
    ) -> list[Claim]:
        """Claim up to ``limit`` jobs, from the shards in turn (see the module
        docstring): strict priority and tenant turns hold within each shard. A shard that
        cannot be reached, or does not answer in time (`_shard_late`), is passed over (an
        error is raised only when no shard answered), so the others' jobs are claimed
        while it fails over or stays frozen. When no shard answered in time, the claim
        asks again, waiting as long as each takes (the whole store is slow)."""
        shards = await self._ready_shards()
        if limit <= 0:
            return []
        claims, failure, late = await self._claim_round(shards, limit, lease, queues, False)
        if claims is None and late:
            claims, failure, _ = await self._claim_round(shards, limit, lease, queues, True)
        # What their calls took, if they ran, goes back now (after a patient round, what
        # the calls it did not send again took: it resends one per shard).
        for shard in late:
            if shard._unanswered:  # (an undo with nothing to send would teach its wait)
                self._late.undo_soon(shard)
        if claims is not None:
            return claims
        if failure is not None:
            raise failure
        return []

    async def _claim_round(
        self,
        shards: Sequence[RedisJobStore],
        limit: int,
        lease: float,
        queues: Sequence[str],
        patient: bool,
    ) -> tuple[list[Claim] | None, StoreUnavailableError | None, list[RedisJobStore]]:
        """One visit of the shards in turn: the claims (None when no shard answered),
        the last failure and the shards that were late."""
        count = len(shards)
        start = self._turn_start(count)
        now = time.monotonic()
        all_down = all(self._down_until.get(shard, 0.0) > now for shard in shards)
        claims: list[Claim] = []
        failure: StoreUnavailableError | None = None
        late: list[RedisJobStore] = []
        answered = False
        for offset in range(count):
            shard = shards[(start + offset) % count]
            # After a failure or a late answer, every other shard is asked (dry or not):
            # a claim raises only when no shard answered.
            if offset and failure is None and not late and _dry(shard, queues):
                answered = True  # as good as an answer: it had nothing just now
                continue
            if not all_down and self._down_until.get(shard, 0.0) > now:
                continue  # it failed or was late just now: asked again once its mark ends
            try:
                got = await self._claim_in_time(shard, limit - len(claims), lease, queues, patient)
            except StoreUnavailableError as exc:
                failure = exc
            else:
                if got is None:
                    late.append(shard)
                else:
                    answered = True
                    claims += got
                if len(claims) >= limit:
                    break
            if not offset:  # its shard ran dry (or failed): the next claim starts further
                self._turn_until = 0.0
        return (claims if answered else None), failure, late

    async def _claim_in_time(
        self,
        shard: RedisJobStore,
        room: int,
        lease: float,
        queues: Sequence[str],
        patient: bool,
    ) -> list[Claim] | None:
        """Up to ``room`` claims of ``shard``; None when it does not answer in time
        (`_shard_late`). A failure or a late answer marks it down for a while."""
        call = self._claim_in(shard, room, lease, queues)
        try:
            got = await self._late.answer(shard, call, patient=patient)
        except StoreUnavailableError:
            self._down_until[shard] = time.monotonic() + _DOWN_FOR
            raise
        if got is None:
            self._down_until[shard] = time.monotonic() + self._late.late_for(shard)
            return None
        self._down_until.pop(shard, None)
        return self._late.give_back_excess(shard, got, room)

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
        # but not that of a shard whose last claim failed (it would fail or time out too,
        # holding up the claims of the other shards meanwhile).
        if shard._withdrawals and shard not in self._down_until:
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
        shards = await self._ready_shards()
        waits = [
            asyncio.ensure_future(
                shard.wait_for_work(timeout, take=take, lease=lease, queues=queues)
            )
            for shard in shards
        ]
        pending = set(waits)
        try:
            try:
                while pending:
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
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
        for shard, wait in zip(shards, waits, strict=True):
            if not wait.cancelled() and wait.exception() is None:
                # It answered: the next claim need not pass it over (a shard marked down
                # or late whose offer finds work claimable would wake the worker at once,
                # again and again, while its mark lasts).
                self._down_until.pop(shard, None)
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
    if len(failures) == len(shards):
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
