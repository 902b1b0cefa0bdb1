"""Pointers: how a sharded store finds, with no fan-out, a job (or batch) stored away from
its id's shard.

A job is looked up in its id's shard (`ShardLayout.of_id`). A job placed elsewhere (by
its partition key, its batch or its idempotency key) leaves a pointer in its id's shard,
written before the job is stored::

    {s}:at        HASH  "<job id>" or "batch:<batch id>" -> the key prefix of the shard
                        holding it (a prefix, not an index: it stays right when the
                        number of shards changes, see `_shard_reshard`)
    {s}:at-check  ZSET  the same fields, by when the pointer is next checked (ms, the
                        Redis server's clock)

An idempotency key is recorded in its own shard (`ShardLayout.of_label`) with the shard
of its job, as ``{s}:idem-at:<key>`` (STRING, the shard's prefix; beside it
``{s}:idem-end:<key>``, its end on the store's elapsed-time clock as the key's record's;
Redis expires both `STEP_ALLOWANCE_MS` later: `_IDEM_AT`), so that repeats of
a submission meet in one shard whatever their partition key (`idempotent`). A
client-chosen id's key is not recorded: its repeats all have the job's placement
(`ShardLookup._chosen_id_home`).

Writing a pointer is one script in the id's shard (`_ADD`) that also refuses an id taken
there (a job with this id, or a pointer to another shard), and the enqueue script of the
id's shard refuses an id that a pointer there names (``lua/enqueue_many.lua``): ids stay
unique across shards whichever shard a job goes to. A lookup that misses in the id's
shard reads the pointer (one HGET) and goes to the shard it names; a job in its id's
shard needs no pointer and costs nothing more.

A pointer's lifetime follows its job without touching the job's scripts: every
`recover` pass checks the pointers due (`sweep`, `SWEEP_BATCH` at a time, up to
`SWEEP_CALLS` batches per shard and pass): one whose job (or batch) is gone is deleted,
the others are checked again a retention later. The first check comes a retention plus
an hour after the write, long after the job's own store call ended, so a pointer written
for a job that was then refused goes too. Cost: one pointer (about 100 bytes) per job
stored away from its id's shard while it lives, one round trip more for its enqueue, and
one check per retention.

A follow-up (`NewJob.follow_up`, a webhook delivery) is enqueued by its parent's script,
in its parent's shard, with the id the engine chose: when that id's shard is another, the
parent's enqueue points it there first (``"<prefix> <parent id>"``: kept while the
parent or the follow-up lives). That pointer reserves the id in its shard: another job
enqueued there under it is refused (`DuplicateJobError`), since the parent's script could
not see it and would store the follow-up too.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from async_endpoints._errors import DuplicateJobError

from ._client import AnyRedis
from ._keys import Keys
from ._lua_script import LuaScript
from ._shard_layout import ShardLayout

if TYPE_CHECKING:
    from ._store import RedisJobStore

#: Milliseconds Redis keeps a record whose end the store reads on its elapsed-time clock
#: past that end (its backstop expiry, by the Redis host's wall clock): a step of that
#: clock up to this size ends none early (``STEP_ALLOWANCE_MS`` of lua/_bookkeeping.lua).
STEP_ALLOWANCE_MS = 3_600_000

T = TypeVar("T")

#: Pointers checked at a time (one batch of a shard's `sweep`).
SWEEP_BATCH = 200
SWEEP_CALLS = 200  # batches one pass checks at most
_FIRST_CHECK_MS = 3_600_000  # after a retention, plus this

# KEYS: {s}:at, {s}:at-check, {s}:reserved, "{s}:" (never written); ARGV: the target
# ("<prefix>" or "<prefix> <parent id>"), check delay ms, the job key prefix ({s}:job:)
# or '' (take no notice of ids in use), then fields. Reply: the first field that is taken
# (a job's, a pointer to elsewhere, or a continuation's not stored yet: lua/_batch.lua),
# or ''.
_ADD = """
local t = redis.call('TIME')
local due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
for i = 4, #ARGV do
  local name = ARGV[i]
  local held = redis.call('HGET', KEYS[1], name)
  local taken = held and held ~= ARGV[1]
  if ARGV[3] ~= '' and (taken or redis.call('EXISTS', ARGV[3] .. name) == 1
      or redis.call('HEXISTS', KEYS[3], name) == 1) then
    return name
  end
end
for i = 4, #ARGV do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[1])
  redis.call('ZADD', KEYS[2], 'NX', due, ARGV[i])
end
return ''
"""

# The elapsed-time clock now, as lua/_lib.lua's clock_ms reads it (without moving it):
# the shard's clock key, the caller's reading (ARGV[2]), the server's time when the key is
# missing.
_CLOCK_NOW = """
local t = redis.call('TIME')
local wall = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now = math.max(tonumber(redis.call('GET', KEYS[3])) or wall, tonumber(ARGV[2]))
"""

# KEYS: {s}:idem-at:<key>, {s}:idem-end:<key>, {s}:clock; ARGV: the target prefix, this
# process's reading of the elapsed-time clock (ms), the key's ttl ms, the allowance ms.
# The pointer holds the prefix of the shard of the key's job; its end key, the
# elapsed-clock ms its ttl ends (as the job shard's record of the key ends,
# lua/enqueue_many.lua). Past that end, or gone, both are written anew in this one step,
# so that concurrent first uses meet in one shard; a pointer without an end key (an
# older version wrote it) lasts as long as Redis keeps it. Redis expires both the
# allowance after the ttl. Reply: the prefix the key's submissions meet in, and 1 when
# it was held already (0: written now).
_IDEM_AT = (
    _CLOCK_NOW
    + """
local held = redis.call('GET', KEYS[1])
if held then
  local ends = tonumber(redis.call('GET', KEYS[2]))
  if not ends or ends > now then
    return {held, 1}
  end
end
local ttl = tonumber(ARGV[3])
local lasts = ttl + tonumber(ARGV[4])
redis.call('SET', KEYS[1], ARGV[1], 'PX', lasts)
redis.call('SET', KEYS[2], string.format('%d', now + ttl), 'PX', lasts)
return {ARGV[1], 0}
"""
)

# The same KEYS and ARGV: the key's job shard stored a new job under a pointer found
# held (its record there had ended): the pointer, if it still names that shard, lasts
# as long as that new record.
_IDEM_RENEW = (
    _CLOCK_NOW
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local ttl = tonumber(ARGV[3])
local lasts = ttl + tonumber(ARGV[4])
redis.call('PEXPIRE', KEYS[1], lasts)
redis.call('SET', KEYS[2], string.format('%d', now + ttl), 'PX', lasts)
return 1
"""
)

# KEYS: {s}:at, {s}:at-check; ARGV: most. Reply: {how many checks were due, then field,
# target, ...} of the pointers due (a check whose pointer is gone is dropped).
_DUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, ARGV[1])
local out = {#due}
for _, name in ipairs(due) do
  local target = redis.call('HGET', KEYS[1], name)
  if target then
    out[#out + 1] = name
    out[#out + 1] = target
  else
    redis.call('ZREM', KEYS[2], name)
  end
end
return out
"""

# KEYS: {s}:at, {s}:at-check; ARGV: next check delay ms, then per pointer: field, 1 (its
# job lives: check again later) or 0 (gone: delete it).
_CHECKED = """
local t = redis.call('TIME')
local due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  if ARGV[i + 1] == '1' then
    redis.call('ZADD', KEYS[2], 'XX', due, ARGV[i])
  else
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('ZREM', KEYS[2], ARGV[i])
  end
end
return 0
"""


def batch_field(batch_id: uuid.UUID) -> str:
    """The pointer field of a batch."""
    return f"batch:{batch_id}"


class Pointers:
    """The pointers of one store's shards.

    Every call goes through the shard store it is about (`StoreBase._run`: its call
    gate, deadline and error mapping), as the shard's own calls do.

    Args:
        client: The store's client.
        layout: The store's shards.
        shards: The shard stores, in the order of `prefixes` (the sharded store's own
            list, which grows when it serves old shards).
    """

    def __init__(self, client: AnyRedis, layout: ShardLayout, shards: list[RedisJobStore]) -> None:
        self._client = client
        self._layout = layout
        self._shards = shards
        #: The key prefix of every shard the store serves (its layout's, then old ones).
        self.prefixes: list[str] = list(layout.prefixes)
        self._add = LuaScript(client, _ADD)
        self._idem_at = LuaScript(client, _IDEM_AT)
        self._idem_renew = LuaScript(client, _IDEM_RENEW)
        self._due = LuaScript(client, _DUE)
        self._checked = LuaScript(client, _CHECKED)

    def index_of(self, prefix: str) -> int | None:
        """The index of the shard with this key prefix (None: not served)."""
        try:
            return self.prefixes.index(prefix)
        except ValueError:
            return None

    def _keys(self, shard: int) -> list[str]:
        keys = Keys(self.prefixes[shard])
        return [f"{keys.key_prefix}at", f"{keys.key_prefix}at-check"]

    def _add_keys(self, shard: int) -> list[str]:
        # The last, the shard's bare key prefix, is a key never written (as every store
        # script's KEYS[2], lua/_lib.lua): while the shard's slot migrates between
        # Cluster nodes, Redis refuses the call (TRYAGAIN) rather than run it where the
        # job key it reads may have moved away.
        key_prefix = Keys(self.prefixes[shard]).key_prefix
        return [*self._keys(shard), f"{key_prefix}reserved", key_prefix]

    async def add(self, ids: Sequence[uuid.UUID], shard: int, retention: float) -> None:
        """Point the ids' shards at ``shard`` for these job ids (one call per id shard).

        Raises:
            DuplicateJobError: An id is taken in its id's shard.
        """
        await self.add_fields([(self._layout.of_id(job_id), str(job_id)) for job_id in ids],
                              shard, retention)  # fmt: skip

    async def add_fields(
        self,
        fields: Sequence[tuple[int, str]],
        shard: int,
        retention: float,
        *,
        parent: uuid.UUID | None = None,
    ) -> None:
        """Point at ``shard`` the (id shard, field) pairs (jobs or `batch_field`); with
        ``parent``, the pointers of that job's follow-ups (kept while either lives, and
        written whatever the ids' shards hold: a follow-up whose id is taken is skipped
        by the parent's script, not refused here).

        Raises:
            DuplicateJobError: A field is taken in its id's shard.
        """
        by_shard: dict[int, list[str]] = {}
        for id_shard, name in fields:
            if id_shard != shard:
                by_shard.setdefault(id_shard, []).append(name)
        delay = round(retention * 1000) + _FIRST_CHECK_MS
        target = self.prefixes[shard]
        if parent is not None:
            target = f"{target} {parent}"
        for id_shard, names in by_shard.items():
            job_prefix = "" if parent else Keys(self.prefixes[id_shard]).job_prefix
            args: list[str | int] = [target, delay, job_prefix, *names]
            add = functools.partial(self._add, keys=self._add_keys(id_shard), args=args)
            taken = await self._on(id_shard, "enqueue", add)
            if taken:
                raise DuplicateJobError(f"a job with id {_text(taken)} exists already")

    async def idempotent(
        self, key: str, shard: int, ttl_ms: int, old_layouts: Sequence[ShardLayout] = ()
    ) -> tuple[int, bool]:
        """Record that idempotency key ``key`` is used for a job in ``shard`` (in the
        key's shard, for ``ttl_ms`` on the store's elapsed-time clock, unless a record
        of it lasts still: `_IDEM_AT`); the shard of the key's job (``shard``, or the one
        recorded by an earlier submission), and whether it was recorded already (then
        `renew_idempotent` once that shard stored a new job under it). A key first used
        before a resharding is found in an ``old_layouts`` one's record first (one more
        call per old layout), and recorded here as that shard, for what is left of that
        record's time, so that every submission of the key, through either layout, meets
        in the same shard."""
        target, ttl = self.prefixes[shard], ttl_ms
        label_shard = self._layout.of_label(key)
        for layout in old_layouts:
            earlier = await self._earlier(key, layout, label_shard)
            if earlier is not None and self.index_of(earlier[0]) is not None:
                target, ttl = earlier[0], earlier[1] if earlier[1] > 0 else ttl_ms
                break
        prefix, held = await self._idem_call(self._idem_at, key, target, ttl)
        chosen = self.index_of(_text(prefix))
        return (shard, False) if chosen is None else (chosen, bool(held))

    async def holds(self, shard: int, job_id: uuid.UUID, key: str) -> bool:
        """Whether ``shard`` holds the job ``job_id`` or the record of idempotency key
        ``key`` (one EXISTS of both: one slot)."""
        keys = Keys(self.prefixes[shard])
        found = functools.partial(self._client.exists, keys.job(job_id), keys.idempotency(key))
        return int(await self._on(shard, "enqueue", found)) > 0

    async def renew_idempotent(self, key: str, shard: int, ttl_ms: int) -> None:
        """The key's record in ``shard`` ended and that shard stored a new job under it:
        its pointer (still naming ``shard``) ends with that new record (`_IDEM_RENEW`)."""
        await self._idem_call(self._idem_renew, key, self.prefixes[shard], ttl_ms)

    async def _idem_call(self, script: LuaScript, key: str, target: str, ttl: int) -> Any:
        label_shard = self._layout.of_label(key)
        home = Keys(self.prefixes[label_shard])
        pointer, ends = f"{home.key_prefix}idem-at:{key}", f"{home.key_prefix}idem-end:{key}"
        return await self._shards[label_shard]._run(
            "enqueue",
            lambda scripts: script(
                keys=[pointer, ends, home.clock],
                args=[target, scripts.reading(), ttl, STEP_ALLOWANCE_MS],
            ),
        )

    async def _earlier(
        self, key: str, layout: ShardLayout, label_shard: int
    ) -> tuple[str, int] | None:
        """The prefix of the shard holding the job of idempotency key ``key`` as
        ``layout`` recorded it, and the milliseconds that record has left: its record in
        the key's shard of that layout, or, for the one shard of a plain store (which
        records no such pointer), that shard when its own record of the key
        (``{p}:idem:<key>``) exists (-1 ms left: it does not expire); None when it has
        none."""
        if layout.count == 1:
            (only,) = layout.prefixes
            shard = self.index_of(only)
            if shard is None:
                return None
            record = Keys(only).idempotency(key)
            left = await self._on(shard, "enqueue", functools.partial(self._client.pttl, record))
            return None if left == -2 else (only, _ttl_left(int(left)))
        old_shard = self.index_of(layout.prefixes[layout.of_label(key)])
        if old_shard is None or old_shard == label_shard:
            return None  # this layout's own record, read by the caller
        record = Keys(self.prefixes[old_shard]).key_prefix + f"idem-at:{key}"
        found, left = await self._on(old_shard, "enqueue", lambda: _with_ttl(self._client, record))
        if found is None or left == -2:
            return None
        return _text(found), _ttl_left(left)

    async def target(self, id_shard: int, job_id: uuid.UUID | str) -> int | None:
        """The shard a pointer in ``id_shard`` names for this id (or `batch_field`); None
        when there is none (or it names a shard this layout lacks)."""
        key = self._keys(id_shard)[0]
        held = await self._on(id_shard, "get", lambda: self._client.hget(key, str(job_id)))
        if held is None:
            return None
        return self.index_of(_text(held).split(" ")[0])

    async def sweep(self, shard: int, retention: float) -> int:
        """Check the pointers of ``shard`` that are due, `SWEEP_BATCH` at a time, until
        none is (at most `SWEEP_CALLS` batches a pass: a backlog beyond goes on at the
        next), so the checks keep up with any rate of jobs stored away from their id's
        shard; how many were deleted."""
        deleted = 0
        for _ in range(SWEEP_CALLS):
            checked, gone = await self._sweep_batch(shard, retention)
            deleted += gone
            if checked < SWEEP_BATCH:
                break
        return deleted

    async def _sweep_batch(self, shard: int, retention: float) -> tuple[int, int]:
        """Check up to `SWEEP_BATCH` pointers of ``shard`` that are due: how many checks
        were due (those of pointers gone already included, which are dropped), and how
        many pointers were deleted (the others are checked again a retention later)."""
        keys = self._keys(shard)
        reply: list[Any] = await self._on(
            shard, "recover", lambda: self._due(keys=keys, args=[SWEEP_BATCH])
        )
        taken, flat = int(reply[0]), reply[1:]  # taken: orphaned checks dropped included
        if not flat:
            return taken, 0
        pairs = [(_text(flat[i]), _text(flat[i + 1])) for i in range(0, len(flat), 2)]
        results = iter(await self._on(shard, "recover", lambda: self._exist(pairs)))
        alive = [
            bool(next(results)) | (bool(next(results)) if " " in held else False)
            for _, held in pairs
        ]
        args: list[str | int] = [round(retention * 1000)]
        for (name, _), lives in zip(pairs, alive, strict=True):
            args += [name, 1 if lives else 0]
        await self._on(shard, "recover", lambda: self._checked(keys=keys, args=args))
        return taken, sum(1 for lives in alive if not lives)

    async def _exist(self, pairs: list[tuple[str, str]]) -> list[Any]:
        """Whether each pointer's job (and a follow-up's parent) exists, in one pipeline."""
        async with self._client.pipeline(transaction=False) as pipe:
            for name, held in pairs:
                target, _, parent = held.partition(" ")
                kind, _, raw_id = name.rpartition(":")
                key = Keys(target).key_prefix + ("batch:" if kind else "job:")
                pipe.exists(key + raw_id)
                if parent:  # a follow-up's pointer: kept while its parent lives too
                    pipe.exists(key + parent)
            found: list[Any] = await pipe.execute()
        return found

    async def _on(self, shard: int, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` as a call of that shard's store (its gate, deadline and errors)."""
        return await self._shards[shard]._run(operation, lambda _: call())


def _ttl_left(pttl: int) -> int:
    """What is left of a record's ttl (ms; -1: none) from what Redis has left of it, which
    adds `STEP_ALLOWANCE_MS` to the ttl; one with less than that left (a record of an
    older version, kept for its ttl alone, or one in its allowance: the job's shard then
    tells whether its record lasts) is taken as is."""
    if pttl <= STEP_ALLOWANCE_MS:
        return pttl
    return max(1, pttl - STEP_ALLOWANCE_MS)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _with_ttl(client: AnyRedis, key: str) -> tuple[bytes | str | None, int]:
    """``key``'s value and the milliseconds it has left (-2: gone), in one round trip."""
    pipe = client.pipeline(transaction=False)
    pipe.get(key)
    pipe.pttl(key)
    found, left = await pipe.execute()
    return found, int(left)
