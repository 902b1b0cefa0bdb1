"""Resharding: changing ``shards`` while jobs are stored loses and strands none (drained,
not moved).

The store records in Redis which shard counts are in use, in shard 0 (the store's own
tag, which every layout shares)::

    {p}:shards   HASH   shard count -> when a store with it last said so (ms); and
                        "sharded" -> when the first sharded store started (ms)

A sharded store (``shards=N``) records N at start and at every `recover` pass, and reads
the record then: every other count recorded is a layout that may still hold jobs, and the
store adds that layout's shards (those its own layout lacks) to the shards it serves, as
*old* shards: it claims from them, waits on them, recovers them, counts and lists them,
pauses and resumes them, and falls back to them when looking an id (or a batch) up: the
id's shard in its own layout, its pointer, then the id's shard in each old layout and its
pointer (so a lookup costs one more small call per old layout only while one is
recorded, and only when the job is not in the new layout). New jobs go to the store's
own layout only, so the old shards empty as their jobs finish; their retained jobs
expire after the retention as usual. A partition key whose lane is still in an old shard
gets its new jobs there (one HEXISTS per old layout for a job with a key, while one is
recorded), so the key's order holds across the change.

A store (of any count) that finds an old layout's own shards empty (no job of any status
and no batch) at a `recover` pass deletes that count from the record, unless a store
with that count said so within `_LIVE_FOR` (it still runs, and may store jobs there).

The first sharded store to start on a prefix that holds jobs (of a plain store, which
records nothing) records 1 for it, so that the keys' lanes in shard 0 keep their new jobs
there while plain stores still run (and for `_LIVE_FOR` after).

A store with ``shards=1`` (shard 0 alone, today's layout) reads the record once at
`start`; when another count is recorded it serves the old shards as a sharded store does
(it becomes a `ShardedRedisJobStore` of one shard: `RedisJobStore.start`); with none, it
stays the plain store, with no cost at all. So both 1 -> N and N -> 1 (and N -> M) are
a restart of the processes with the new count, in any order: while both counts run, both
kinds of process serve every shard that holds jobs.

What resharding does not keep: the strict order of jobs across the change (old and new
shards are claimed in turn, as any two shards), the order of a key whose jobs stores of
both counts submit at the same moment (the look at the old lane and the enqueue are two
steps: a job submitted by an old-count store in between starts a second lane), an
idempotency key first used by stores of both counts at the same moment (each may record
it before it reads the other's record), and a listing cursor made before (refused:
`ValueError`). An idempotency key used before the change is found through the old
layout's record (`Pointers.idempotent`).

A process that runs no recovery (an API-only instance) reads the record at most once a
second while its store is used (`ShardedRedisJobStore._keep_layouts_current`), and every
upkeep also pauses in each shard what shard 0 has paused, so that a pause made before its
maker knew of a newer count's shards reaches them too.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ._keys import Keys

if TYPE_CHECKING:
    from ._client import AnyRedis

#: Seconds within which a store that recorded its count counts as running.
_LIVE_FOR = 3600.0


def record_key(prefix: str) -> str:
    """The HASH of shard counts in use, in shard 0."""
    return f"{Keys(prefix).key_prefix}shards"


async def recorded(client: AnyRedis, prefix: str) -> dict[int, float]:
    """The shard counts recorded, and when each was last said (ms)."""
    raw = await client.hgetall(record_key(prefix))
    counts: dict[int, float] = {}
    for count, said in raw.items():
        text_count = count.decode() if isinstance(count, bytes) else count
        if text_count.isdigit():
            counts[int(text_count)] = float(said)
    return counts


async def record(client: AnyRedis, prefix: str, count: int) -> dict[int, float]:
    """Record that a store with ``count`` shards runs; every count recorded."""
    await client.hset(record_key(prefix), str(count), str(round(time.time() * 1000)))
    return await recorded(client, prefix)


async def first_sharded(client: AnyRedis, prefix: str) -> bool:
    """Whether this is the first sharded store on ``prefix`` (it marks the record so) and
    shard 0 holds jobs already (a plain store's)."""
    marked = await client.hsetnx(record_key(prefix), "sharded", str(round(time.time() * 1000)))
    return bool(marked) and not await is_empty(client, prefix)


async def retire(client: AnyRedis, prefix: str, count: int, said: float) -> None:
    """Delete ``count`` from the record unless it was said again since ``said``, or
    within `_LIVE_FOR` seconds."""
    if time.time() * 1000 - said < _LIVE_FOR * 1000:
        return
    held = await client.hget(record_key(prefix), str(count))
    if held is not None and float(held) == said:
        await client.hdel(record_key(prefix), str(count))


async def is_empty(client: AnyRedis, prefix: str) -> bool:
    """Whether the shard with this key prefix holds no job (of any status, retained ones
    included), no batch and no partition key held for a cancelled attempt (whose job
    may be gone already)."""
    keys = Keys(prefix)
    counts = await client.hvals(keys.counts)
    if any(int(value) > 0 for value in counts):
        return False
    if await client.zcard(f"{keys.key_prefix}batches"):
        return False
    return not await client.zcard(f"{keys.key_prefix}held")
