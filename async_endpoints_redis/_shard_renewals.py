"""`ShardRenewals`: lease renewal of a sharded store, per shard.

A worker renews all its claims in one `renew` call; a sharded store sends one script
call per shard the claims come from, at once. Each shard answers for its own claims:

- a shard that answers renews its claims (or reports some lost), whatever the others do;
- a shard whose call fails (its master down, say) renews none of its claims: they are
  *unknown*, neither renewed nor known lost, and `PartialRenewalError` carries both sets
  when some other shard answered (when none did, the shard's error is raised as by one
  shard). The worker pool then counts the answered claims as renewed and lets the lease
  of the unknown ones run on, so only the handlers of the shard that is down fence
  themselves (`async_endpoints._recovery`);
- a shard that is slow to answer (a frozen master) does not hold up the others: the
  call waits for the rest until `_SLOW_FOR` of the lease after its sending (or, when no
  shard has answered by then, until the first answers), and the claims of a shard that
  has not answered by then are unknown (its call goes on in the background and is not
  sent again until it has ended: a frozen master is not sent a pile of renewals);
- a shard whose last renewal is still under way when another is asked for (the worker
  renewing a claim answered late, just as the stall that held both up ends) is sent the
  new one as soon as the last one ends, within the same wait; when it does not end in
  that time, the new one is not sent and its claims are unknown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from async_endpoints._errors import PartialRenewalError, StoreUnavailableError
from async_endpoints._store import Claim

from ._shard_base import ShardBase
from ._store import RedisJobStore

#: The part of a lease after its sending until which a renewal waits for the slowest
#: shard (once another has answered). The worker counts a renewed claim's lease from the
#: sending of its last renewal, and sends the next a third of a lease at most after the
#: previous one returned: two renewals that both waited (a frozen shard's calls failing
#: in between) leave an answered claim 1/4 + 1/3 + 1/4 of a lease unconfirmed, a sixth
#: of a lease short of its fencing. (Counted from the first answer instead, half a lease
#: each, they fenced the claims of the shards that answered.)
_SLOW_FOR = 0.25


class ShardRenewals(ShardBase):
    """`renew` of `ShardedRedisJobStore`."""

    _renewing: dict[RedisJobStore, asyncio.Future[set[str]]]  # calls still under way

    async def renew(self, claims: Sequence[Claim], *, lease: float) -> set[str]:
        """As `RedisJobStore.renew`: one call per shard the claims come from, at once (see
        the module docstring).

        Raises:
            PartialRenewalError: Some shards could not renew their claims (could not be
                reached, or were slow) and others answered: the claims of those that
                answered are renewed (or in its ``lost``), those of the others are in
                its ``unknown``.
            StoreUnavailableError: No shard the claims come from could be reached.
        """
        await self._ready_shards()
        groups: dict[RedisJobStore, list[Claim]] = {}
        lost: set[str] = set()
        for claim in claims:
            shard = self._of_token(claim.token)
            if shard is None:
                lost.add(claim.token)
            else:
                groups.setdefault(shard, []).append(claim)
        patience = lease * _SLOW_FOR
        calls = {
            shard: self._renewal(shard, group, lease, patience) for shard, group in groups.items()
        }
        await _answers(list(calls.values()), patience)
        unknown: set[str] = set()
        failures: list[BaseException] = []
        for shard, call in calls.items():
            if _answered(call):
                lost |= call.result()
                continue
            failures.append(_failure(call))
            unknown.update(claim.token for claim in groups[shard])
        if not failures:
            return lost
        if len(failures) == len(groups) or not all(isinstance(f, Exception) for f in failures):
            raise failures[0]
        raise PartialRenewalError(
            f"{len(unknown)} claim(s) of {len(failures)} shard(s) not renewed: {failures[0]}",
            lost=lost,
            unknown=unknown,
        ) from failures[0]

    def _renewal(
        self, shard: RedisJobStore, claims: list[Claim], lease: float, patience: float
    ) -> asyncio.Future[set[str]]:
        """The shard's renewal of ``claims``, sent now, or when the shard's last one ends
        if that is within ``patience`` (kept until it ends, which may be after `renew`
        returned)."""
        last = self._renewing.get(shard)
        if _under_way(last):
            assert last is not None
            waiting = asyncio.ensure_future(
                _after(last, patience, lambda: self._sent(shard, claims, lease))
            )
            waiting.add_done_callback(_retrieved)
            return waiting
        return self._sent(shard, claims, lease)

    def _sent(
        self, shard: RedisJobStore, claims: list[Claim], lease: float
    ) -> asyncio.Future[set[str]]:
        """The shard's renewal of ``claims``, sent now; the shard's call under way until
        it ends."""
        call = asyncio.ensure_future(shard.renew(claims, lease=lease))
        call.add_done_callback(_retrieved)
        self._renewing[shard] = call
        return call


async def _after(
    last: asyncio.Future[set[str]],
    patience: float,
    renewal: Callable[[], asyncio.Future[set[str]]],
) -> set[str]:
    """``renewal()``, sent once ``last`` has ended, if that is within ``patience``."""
    done, _ = await asyncio.wait([last], timeout=patience)
    if not done:
        raise StoreUnavailableError("the shard's last renewal is still under way")
    return await renewal()


async def _answers(calls: list[asyncio.Future[set[str]]], patience: float) -> None:
    """Wait until every call has ended, or ``patience`` seconds have passed and one has
    answered."""
    pending = set(calls)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    answered = False
    while pending:
        left = deadline - loop.time()
        if answered and left <= 0:
            return
        done, pending = await asyncio.wait(
            pending, timeout=left if left > 0 else None, return_when=asyncio.FIRST_COMPLETED
        )
        answered = answered or any(_answered(call) for call in done)


def _under_way(call: asyncio.Future[set[str]] | None) -> bool:
    return call is not None and not call.done()


def _answered(call: asyncio.Future[set[str]]) -> bool:
    return call.done() and not call.cancelled() and call.exception() is None


def _failure(call: asyncio.Future[set[str]]) -> BaseException:
    """Why a call that did not answer did not."""
    if not call.done():
        return StoreUnavailableError("the shard did not answer the renewal in time")
    if call.cancelled():
        return asyncio.CancelledError()
    failure = call.exception()
    assert failure is not None
    return failure


def _retrieved(call: asyncio.Future[set[str]]) -> None:
    """Mark the outcome of a call left to run in the background as seen."""
    if not call.cancelled():
        call.exception()
