"""Where a sharded `RedisJobStore` (``shards=N``) keeps what: the shards' hash tags, and
which shard holds a job, a partition key, a batch or an idempotency key.

A shard is a complete instance of the single-tag layout of `_keys` under a hash tag of its
own, so every Lua script still touches one slot and stays atomic; the routing layer
(`_shard_store`) picks the shard of each call.

Tags. Shard 0 keeps the store's own tag, ``{prefix}`` (so a store that grows from 1 to N
shards keeps its existing jobs where they are: resharding, `_shard_reshard`). Shard ``i``
> 0 is ``{prefix#k}`` with the smallest ``k >= 0`` whose slot falls in a range of the
16384 slots that no other shard has: the ranges are those ``redis-cli --cluster create``
gives N masters (16384 / N slots each, in order), so on an evenly split N-master cluster
every shard lives on its own master. The ranges go to shards 1.. in order, skipping the
range shard 0's slot falls in. The tags depend on the prefix and N alone: every process
computes the same ones, with no coordination.

Placement (the shard a new job goes to):

- a job with a partition key: the key's shard (crc32 of the key, mod N), so a key's lane
  lives in one shard and its order is kept by the same scripts as with one shard;
- a job of a batch: the batch's shard (its jobs' partition keys' shard, else its id's):
  a batch's jobs, counts and continuations live together, so its counts and its
  exactly-once continuation are kept by the same atomic scripts as with one shard (a
  batch whose keys fall in different shards is refused: see `_shard_batches`);
- a job with an idempotency key: its own shard, unless the key was used already: then
  the shard of the key's job, where the key is checked atomically (`_shard_pointers`);
- a follow-up (webhook delivery): its parent's shard (the parent's script enqueues it);
- any other job: the shard of its id (``id.int mod N``), which spreads uuid4 ids evenly.

Looking an id up needs no fan-out: the id's shard (``id.int mod N``) holds the job, or,
when the job was placed elsewhere (a partition key, a batch, an idempotency key), a
pointer to the job's shard (`_shard_pointers`); so does a follow-up (webhook delivery),
which its parent's script enqueues in the parent's shard under the id the engine chose.
Why pointers rather than ids that name their shard: the engine (and a client, with
``X-Async-Request-Id``) chooses every id before the store sees the job, and follow-up and
batch job ids are fixed and read back by that id; a pointer costs one write only for the
jobs placed away from their id's shard (with N shards, (N-1)/N of the keyed and batched
jobs, none of the others) and nothing for the rest.
"""

from __future__ import annotations

import uuid
import zlib
from dataclasses import dataclass, field
from functools import cached_property

from redis.crc import key_slot

from async_endpoints._errors import ConfigurationError

#: The slots of a Redis Cluster.
SLOTS = 16384
#: The most shards a store may have: a listing's cursor holds a position per shard and
#: must stay within `async_endpoints._listing`'s length; and claims that find shards
#: empty, waits and listings cost a call per shard.
MAX_SHARDS = 16


def slot_ranges(count: int) -> list[tuple[int, int]]:
    """The slot ranges ``redis-cli --cluster create`` gives ``count`` masters, in order
    (first and last slot of each)."""
    per_master = SLOTS / count
    ranges, first, cursor = [], 0, 0.0
    for index in range(count):
        last = int(cursor + per_master - 1 + 0.5)  # lroundf, as redis-cli rounds
        if index == count - 1 or last >= SLOTS:
            last = SLOTS - 1
        last = max(last, first)
        ranges.append((first, last))
        first, cursor = last + 1, cursor + per_master
    return ranges


def slot_of(tag: str) -> int:
    """The cluster slot of the keys under hash tag ``{tag}``."""
    return int(key_slot(("{" + tag + "}").encode()))


def _range_of(slot: int, ranges: list[tuple[int, int]]) -> int:
    return next(index for index, (first, last) in enumerate(ranges) if first <= slot <= last)


def shard_prefixes(prefix: str, count: int) -> tuple[str, ...]:
    """The key prefix (the text inside the hash tag) of each of ``count`` shards: shard 0
    the store's own, the others ``prefix#k`` in slot ranges of their own (see above)."""
    if count == 1:
        return (prefix,)
    ranges = slot_ranges(count)
    taken = _range_of(slot_of(prefix), ranges)
    prefixes = [prefix]
    for wanted in (index for index in range(count) if index != taken):
        suffix = 0
        while _range_of(slot_of(f"{prefix}#{suffix}"), ranges) != wanted:
            suffix += 1
        prefixes.append(f"{prefix}#{suffix}")
    return tuple(prefixes)


@dataclass(frozen=True)
class ShardLayout:
    """N shards of one store: their key prefixes and the placement rules above.

    Attributes:
        prefix: The store's prefix (shard 0's).
        count: How many shards.
    """

    prefix: str
    count: int
    prefixes: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int):
            raise ConfigurationError("shards must be a whole number")
        if not 1 <= self.count <= MAX_SHARDS:
            raise ConfigurationError(f"shards must be between 1 and {MAX_SHARDS}")
        object.__setattr__(self, "prefixes", shard_prefixes(self.prefix, self.count))

    @cached_property
    def index_of(self) -> dict[str, int]:
        """The shard index of each key prefix."""
        return {prefix: index for index, prefix in enumerate(self.prefixes)}

    def of_id(self, job_id: uuid.UUID) -> int:
        """The id's shard: where the job is, or a pointer to it."""
        return job_id.int % self.count

    def of_key(self, partition_key: str) -> int:
        """The shard of a partition key's lane."""
        return zlib.crc32(partition_key.encode()) % self.count

    def of_label(self, label: str) -> int:
        """The shard of an idempotency key (all of one key's submissions meet there)."""
        return zlib.crc32(label.encode()) % self.count
