"""`ShardLookup`: finding a job or a batch in a sharded store with no fan-out, and the old
shards a resharding leaves (`_shard_reshard`).

A lookup probes, in order: the id's shard in the store's own layout, the shard its
pointer there names, then the same two in each old layout still recorded. The first
probe answers for every job stored in its id's shard with the store's layout (one call,
as with one shard); a job placed by its partition key, batch or idempotency key costs one
HGET more; only an id that is in none of them (an unknown id, or a job of an old layout)
costs two calls per layout served, and one more in shard 0 (where a store made before
sharding kept every job, which no record names).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from async_endpoints._job import NewJob

from ._client import connections_bound, connections_needed, widen
from ._connection import make_way, share_gates
from ._keys import Keys
from ._shard_base import ShardBase
from ._shard_layout import ShardLayout
from ._shard_reshard import first_sharded, is_empty, record, retire

if TYPE_CHECKING:
    from ._client import AnyRedis
    from ._store import RedisJobStore

T = TypeVar("T")
#: Seconds between two layout upkeeps of a store in use (`_keep_layouts_current`).
UPKEEP_EVERY = 1.0
#: Seconds between two upkeeps made because a lookup by id found nothing.
MISS_UPKEEP_EVERY = 0.25

logger = logging.getLogger("async_endpoints_redis")


class ShardLookup(ShardBase):
    """Lookups over the store's shards and the old ones it serves."""

    _old_layouts: list[ShardLayout]
    _client: AnyRedis | None

    if TYPE_CHECKING:

        def _shard(self, index: int, prefix: str, client: AnyRedis) -> RedisJobStore: ...

    def _homes(self, job_id: uuid.UUID) -> list[int]:
        """The shards (indexes) where the id's job or pointer may be, in probe order."""
        homes = [self._layout.of_id(job_id)]
        book = self._pointer_book
        for layout in self._old_layouts:
            index = book.index_of(layout.prefixes[layout.of_id(job_id)])
            if index is not None and index not in homes:
                homes.append(index)
        return homes

    def _last_home(self, homes: list[int]) -> int | None:
        """Shard 0 when the probe has not visited it: the one shard of a store made
        before sharding, whose jobs no layout record names (looked at only on a miss)."""
        return None if 0 in homes else 0

    async def _probe(
        self,
        job_id: uuid.UUID,
        field: str,
        call: Callable[[RedisJobStore], Awaitable[T | None]],
    ) -> tuple[T | None, RedisJobStore | None]:
        """``call`` on the shards that may hold the id (see the module docstring) until one
        answers other than None; that answer and its shard, or (None, None)."""
        shards = await self._ready_shards()
        book = self._pointer_book
        homes = self._homes(job_id)
        for home in homes:
            answer = await call(shards[home])
            if answer is not None:
                return answer, shards[home]
            target = await book.target(home, field)
            if target is not None and target != home:
                answer = await call(shards[target])
                if answer is not None:
                    return answer, shards[target]
        last = self._last_home(homes)
        if last is not None:
            answer = await call(shards[last])
            if answer is not None:
                return answer, shards[last]
        if await self._heard_of_new_shards():
            return await self._probe(job_id, field, call)
        return None, None

    async def _heard_of_new_shards(self) -> bool:
        """After a lookup found nothing: read the record of shard counts now (at most
        every `MISS_UPKEEP_EVERY` seconds), so that a job another count's store stored a
        moment ago is found rather than answered 404 until the next upkeep. Whether
        shards were added."""
        loop = asyncio.get_running_loop()
        if loop.time() < self._next_miss_upkeep:
            return False
        self._next_miss_upkeep = loop.time() + MISS_UPKEEP_EVERY
        served = len(self._shards)
        await self._layout_upkeep()
        return len(self._shards) > served

    async def _chosen_id_home(self, new_job: NewJob, key: str, placed: int) -> int:
        """The shard of a submission whose id the client chose (idempotency key ``key``,
        the id's own): ``placed``, its job's placement, which is every repeat's (the
        shard's script answers a repeat, or a concurrent first submission, atomically; a
        submission with that id placed elsewhere is refused by the id's pointer, as any
        taken id). While old layouts are served, a job first stored through one of them
        is where that layout placed it (its key's shard there, else its id's): the first
        such shard holding the job or the key's record (one EXISTS each; a record made
        before this rule, in the key's shard, named that same shard)."""
        book = self._pointer_book
        key_of = new_job.partition_key
        for layout in self._old_layouts:
            there = layout.of_id(new_job.id) if key_of is None else layout.of_key(key_of)
            index = book.index_of(layout.prefixes[there])
            if index is not None and index != placed and await book.holds(index, new_job.id, key):
                return index
        return placed

    async def _located(self, job_id: uuid.UUID) -> RedisJobStore:
        """The shard holding the job (its id's shard when none does)."""
        shards = await self._ready_shards()
        _, shard = await self._probe(job_id, str(job_id), lambda one: one.get(job_id))
        return shard or shards[self._layout.of_id(job_id)]

    async def _old_lane(self, partition_key: str, shard: int) -> int:
        """The old shard where the key's lane still has jobs, else ``shard``."""
        book = self._pointer_book
        assert self._client is not None
        for layout in self._old_layouts:
            prefix = layout.prefixes[layout.of_key(partition_key)]
            index = book.index_of(prefix)
            if index is None or index == shard:
                continue
            lanes = Keys(prefix).key_prefix + "lanes"
            held = await self._shards[index]._run(
                "enqueue", functools.partial(_has_lane, self._client, lanes, partition_key)
            )
            if held:
                return index
        return shard

    async def _serve_recorded(self, counts: dict[int, float]) -> None:
        """Serve the shards of every other recorded layout that this store lacks."""
        assert self._client is not None
        book = self._pointer_book
        known = {layout.count for layout in self._old_layouts} | {self._layout.count}
        for count in sorted(set(counts) - known):
            layout = ShardLayout(self._layout.prefix, count)
            prefixes = [one for one in layout.prefixes if book.index_of(one) is None]
            added = [
                self._shard(len(self._shards) + offset, one, self._client)
                for offset, one in enumerate(prefixes)
            ]
            self._make_room(len(self._shards) + len(added), count)
            serving = self._shards
            connections = [one._connection for one in serving]
            give_back = await make_way(
                self._client, connections, [*book.prefixes, *prefixes], len(added)
            )
            try:
                started = await asyncio.gather(
                    *(shard.start() for shard in added), return_exceptions=True
                )
            except BaseException:  # cancelled: the store is closing
                give_back()
                await _close(added)
                raise
            failure = next((one for one in started if isinstance(one, BaseException)), None)
            if failure is not None or self._closed or self._shards is not serving:
                give_back()
                await _close(added)  # none is left subscribed; the next upkeep tries again
                if failure is not None:
                    raise failure
                return
            book.prefixes += prefixes
            self._shards += added
            share_gates(self._client, [one._connection for one in self._shards], book.prefixes)
            self._old_layouts.append(layout)
            logger.info("serving the %d old shards of the layout of %d shards", len(added), count)

    def _make_room(self, subscriptions: int, count: int) -> None:
        """Let the client open a connection per shard's subscription and the calls' two,
        now that the shards of the layout of ``count`` shards join (each subscribes): a
        client the store made has its bound raised (with a warning: set
        ``max_connections`` that high); an app's own client is left as it is, since its
        pool is the app's to size, with an error logged when that pool is smaller."""
        assert self._client is not None
        if count in self._room_told:
            return
        self._room_told.add(count)
        if self._owns_client:
            was = widen(self._client, subscriptions)
            if was is not None:
                logger.warning(
                    "max_connections raised from %d to %d: this store now also serves the"
                    " shards of the layout of %d shards, and each shard's subscription"
                    " holds a connection; set max_connections to at least %d",
                    was, connections_needed(subscriptions), count,
                    connections_needed(subscriptions),
                )  # fmt: skip
            return
        needed = connections_needed(subscriptions)
        if connections_bound(self._client) >= needed:
            return
        logger.error(
            "this store now serves %d shards (with those of the layout of %d shards): the"
            " client given to it needs at least %d connections, one per shard's"
            " subscription and two for calls, or some shards are never served",
            subscriptions, count, needed,
        )  # fmt: skip

    async def _layout_upkeep(self) -> None:
        """Record this store's layout, serve any other recorded one, retire old layouts
        whose own shards are empty (`_shard_reshard`), and pause in every shard what
        shard 0 has paused (`_sync_pauses`). One at a time."""
        async with self._upkeep_lock:
            if self._closed or not self._shards:
                return  # closed, or its start failed, while this upkeep waited its turn
            await self._layout_upkeep_now()
            await self._sync_pauses()
            self._next_upkeep = asyncio.get_running_loop().time() + UPKEEP_EVERY

    async def _sync_pauses(self) -> None:
        """Make every shard's paused queues those of shard 0, which every pause and
        resume writes first: a shard added since a pause (another shard count's, which
        the pausing process did not know yet) is paused too, within one upkeep."""
        shards = self._shards
        if len(shards) < 2:
            return
        before = await shards[0].paused_queues()
        found = await asyncio.gather(*(shard.paused_queues() for shard in shards[1:]))
        # Read again: a pause under way wrote shard 0 before the shard where it was just
        # seen, so a queue missing from both readings of shard 0 is not being paused, and
        # one in both is not being resumed (a resume racing an addition here leaves the
        # shard paused until the next upkeep: the safe side).
        after = await shards[0].paused_queues()
        for shard, paused in zip(shards[1:], found, strict=True):
            missing = (before & after) - paused
            extra = paused - before - after
            if missing:
                await shard.pause(sorted(missing))
            if extra:
                await shard.resume(sorted(extra))

    async def _layout_upkeep_now(self) -> None:
        assert self._client is not None
        client, prefix = self._client, self._layout.prefix
        # Taken once: a close meanwhile empties `_shards` (the calls then say the store
        # is closed); `_serve_recorded` extends this same list.
        shards = self._shards
        home = shards[0]  # the record is in shard 0, the store's own tag
        counts = await home._run(
            "layout upkeep", lambda _: record(client, prefix, self._layout.count)
        )
        if (
            self._layout.count != 1
            and 1 not in counts
            and await home._run("layout upkeep", lambda _: first_sharded(client, prefix))
        ):
            # The first sharded store on a prefix a plain store used (shards=1 records
            # nothing): the keys' lanes in shard 0 are served as an old layout's while any
            # store says 1, or for `_LIVE_FOR` after this.
            counts = await home._run("layout upkeep", lambda _: record(client, prefix, 1))
        await self._serve_recorded(counts)
        mine = set(self._layout.prefixes)
        for layout in self._old_layouts:
            said = counts.get(layout.count)
            if said is None:
                continue
            own = [one for one in layout.prefixes if one not in mine]
            checks = await asyncio.gather(*(self._is_empty(shards, one) for one in own))
            if all(checks):
                await home._run(
                    "layout upkeep", functools.partial(self._retire, layout.count, said)
                )

    async def _retire(self, count: int, said: float, _: object) -> None:
        assert self._client is not None
        await retire(self._client, self._layout.prefix, count, said)

    async def _is_empty(self, shards: list[RedisJobStore], shard_prefix: str) -> bool:
        """`_shard_reshard.is_empty` for one of ``shards`` (those this store serves),
        through its calls' gate (the upkeep's calls wait their turn at the pool as every
        call does)."""
        assert self._client is not None
        client = self._client
        index = self._pointer_book.index_of(shard_prefix)
        assert index is not None
        return await shards[index]._run("layout upkeep", lambda _: is_empty(client, shard_prefix))


async def _has_lane(client: AnyRedis, lanes: str, partition_key: str, _: object) -> bool:
    """Whether the key has a lane in the shard whose ``{s}:lanes`` is ``lanes``."""
    return bool(await client.hexists(lanes, partition_key))


async def _close(shards: list[RedisJobStore]) -> None:
    await asyncio.gather(*(shard.aclose() for shard in shards), return_exceptions=True)
