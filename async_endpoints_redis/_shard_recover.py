"""`ShardRecovery`: stale-claim recovery over every shard of a sharded store, with the
upkeep of its pointers and layouts (a part of `ShardedRedisJobStore`)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING

from async_endpoints._errors import JobStoreError

from ._errors import mapped_errors
from ._recover import RECOVER_CALLS
from ._shard_lookup import ShardLookup

if TYPE_CHECKING:
    from ._store import RedisJobStore

logger = logging.getLogger("async_endpoints_redis")


class ShardRecovery(ShardLookup):
    """`recover` of a sharded store."""

    async def recover(self) -> list[uuid.UUID]:
        """As `RedisJobStore.recover`, in every shard, and the upkeep of the pointers
        (`Pointers.sweep`) and of the layouts (`_shard_reshard`). Each shard's first batch
        of expired claims is recovered first, in every shard at once (a shard slow to
        answer holds up no other's), then the layouts' upkeep, then each shard's backlog
        (more claims, finished jobs to delete, pointers to check) one after the other, so
        a backlog in one shard holds up no other shard's recovery.

        A shard that cannot be reached is passed over (logged), so the others' expired
        claims are recovered while it fails over; the error is raised when no shard
        could be recovered. A shard's pointer upkeep that fails (it reads other shards)
        is passed over too (logged): its recovered jobs are returned whatever it does.
        """
        failures: list[JobStoreError] = []
        known = len(await self._ready_shards())
        recovered, reached = await self._recover_first(failures)
        try:
            with mapped_errors("recover"):
                await self._layout_upkeep()
        except JobStoreError as exc:
            failures.append(exc)
        # The upkeep may have served another layout's shards (added after the others,
        # which keep their places): theirs are recovered in this pass too.
        more, served = await self._recover_first(failures, start=known)
        recovered += more
        reached += served
        for index, shard, behind in reached:  # then the backlogs and the pointers
            try:
                if behind:
                    recovered += (await shard._recover(RECOVER_CALLS - 1))[0]
            except JobStoreError as exc:
                logger.warning("recovery of a backlog passed over a shard: %s", exc)
            try:  # its jobs are recovered whatever the sweep does (it reads other shards)
                with mapped_errors("recover"):
                    await self._pointer_book.sweep(index, self._retention)
            except JobStoreError as exc:
                logger.warning("pointer upkeep passed over a shard: %s", exc)
        done = len(reached)
        if failures and not done:
            raise failures[0]
        for failure in failures:
            logger.warning("recovery passed over a shard: %s", failure)
        return recovered

    async def _recover_first(
        self, failures: list[JobStoreError], start: int = 0
    ) -> tuple[list[uuid.UUID], list[tuple[int, RedisJobStore, bool]]]:
        """The first batch of expired claims of every shard from the ``start``-th on, at
        once: a shard slow to answer (a frozen master) holds up none of the others' (nor
        does the upkeep after it, which reads every shard). The recovered ids, and (index,
        shard, whether more may wait) for each shard that answered; the others' errors are
        added to ``failures``."""
        places = list(enumerate(await self._ready_shards()))[start:]
        firsts = await asyncio.gather(
            *(shard._recover(1) for _, shard in places), return_exceptions=True
        )
        recovered: list[uuid.UUID] = []
        reached: list[tuple[int, RedisJobStore, bool]] = []
        for (index, shard), first in zip(places, firsts, strict=True):
            if isinstance(first, JobStoreError):
                failures.append(first)
            elif isinstance(first, BaseException):
                raise first
            else:
                recovered += first[0]
                reached.append((index, shard, first[1]))
        return recovered, reached
