"""`ShardedRedisJobStore`: `RedisJobStore(..., shards=N)`, the routing layer over N
shards (see `_shard_layout` for the tags and the placement rules).

Each shard is a plain `RedisJobStore` on the shared client under its own hash tag (so
every Lua script stays single-slot and atomic, exactly as with one shard), with its own
subscription (on a cluster, to its own master) and its own inbox. This layer picks the
shard of every call; what it costs on top of one shard:

- enqueue: the placement shard's script, shared by the submissions of one event-loop
  turn as with one shard (the shards' submissions of a turn wait in one queue, flushed
  as one call per shard: `_batch.Turn`; completions likewise); a job placed away from
  its id's shard (a partition key, a batch) first writes a pointer there (one more
  round trip, `_shard_pointers`); an idempotency key is first recorded in its own shard
  (one more round trip; not a client-chosen id's: its job's shard answers its repeats).
  ``max_waiting`` counts every shard: see `WaitingCounts` (`_shard_enqueue`).
- get, cancel, requeue, wait_until_terminal, watch_job, follow_up_of: the id's shard;
  a miss there reads its pointer (one small call) and goes to the job's shard. No fan-out
  (`_shard_lookup`).
- renew, complete, fail, set_progress: the claim's shard, named by the claim token's
  mark (``s<i>-``); a renewal asks each shard of the claims at once and renews the
  claims of those that answer, whatever the others do (`_shard_renewals`).
- claim, wait_for_work: the shards in turn; every shard at once (`_shard_waits`).
- recover, pause, resume, count_waiting, queue_stats, list_jobs, list_batches: every
  shard (`_shard_recover`, `_shard_reads`, `_shard_features`); schedules: shard 0;
  batches: one shard each (`_shard_batches`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from async_endpoints._errors import (
    ConfigurationError,
    JobStoreError,
    StoreClosedError,
)
from async_endpoints._job import Job, JobError
from async_endpoints._store import Claim
from async_endpoints._store_features import ClaimCancelListener

from ._batch import Batcher, Turn
from ._client import MIN_CONNECTIONS, AnyRedis, client_options, connect
from ._codec import Reply
from ._connection import share_gates
from ._errors import mapped_errors, refused_credentials, refused_for_now
from ._keys import Keys
from ._scripts import Submission
from ._settling import CompletionReply
from ._shard_client import keep_command_table, release_default
from ._shard_counts import WaitingCounts
from ._shard_enqueue import ShardEnqueue
from ._shard_features import ShardFeatures
from ._shard_late import LateClaims
from ._shard_layout import ShardLayout
from ._shard_lookup import UPKEEP_EVERY, ShardLookup
from ._shard_pointers import Pointers
from ._shard_recover import ShardRecovery
from ._shard_renewals import ShardRenewals
from ._shard_waits import ShardWaits
from ._store import MadeWith, RedisJobStore

#: Connections beyond the shards' subscriptions: one for calls, one for a cluster's
#: topology refresh.
_RESERVED = MIN_CONNECTIONS - 1

logger = logging.getLogger("async_endpoints_redis")


class ShardedRedisJobStore(
    ShardEnqueue,
    ShardRecovery,
    ShardFeatures,
    ShardWaits,
    ShardRenewals,
    ShardLookup,
    RedisJobStore,
):
    """`RedisJobStore` over ``shards`` hash tags; made by ``RedisJobStore(...,
    shards=N)`` with N other than 1 (same arguments, same behaviour and guarantees; the
    costs and rules of the routing are in this module's docstring).

    Raises:
        ConfigurationError: As `RedisJobStore`, or ``shards`` is not a whole number from
            1 to `_shard_layout.MAX_SHARDS`.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: AnyRedis | None = None,
        prefix: str = "async-endpoints",
        retention: float = 7 * 24 * 3600,
        cluster: bool | None = None,
        socket_timeout: float = 3.0,
        socket_connect_timeout: float = 2.0,
        max_connections: int = 50,
        shards: int = 1,
    ) -> None:
        Keys(prefix)  # checks the prefix
        self._layout = ShardLayout(prefix, shards)
        # Checks the other arguments as one shard does, and keeps them for the shards.
        RedisJobStore(
            url, client=client, prefix=prefix, retention=retention, cluster=cluster,
            socket_timeout=socket_timeout, socket_connect_timeout=socket_connect_timeout,
            max_connections=max_connections,
        )  # fmt: skip
        if client is None and max_connections < shards + _RESERVED:
            raise ConfigurationError(
                f"max_connections must be at least shards + {_RESERVED} ({shards + _RESERVED}):"
                " each shard's subscription holds one, and calls need at least one more"
            )
        self._url = url
        self._given_client = client
        self._owns_client = client is None
        self._cluster = cluster
        self._shard_options: dict[str, Any] = {
            "retention": retention,
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_connect_timeout,
            "max_connections": max_connections,
        }
        self._client_options = client_options(
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_connect_timeout,
            max_connections=max_connections,
        )
        self._retention = retention
        self._deadline = socket_timeout + socket_connect_timeout
        self._cancel_listeners: list[ClaimCancelListener] = []
        self._warned: set[str] = set()  # warnings about server settings given (`_health`)
        self._shards: list[RedisJobStore] = []
        self._client: AnyRedis | None = None
        self._start_lock = asyncio.Lock()
        self._closed = False
        self._turn = random.randrange(shards)
        self._turn_until = 0.0
        self._down_until: dict[RedisJobStore, float] = {}
        self._late = LateClaims(longest=socket_timeout)
        self._renewing: dict[RedisJobStore, asyncio.Future[set[str]]] = {}
        # Submitters wait for their reply before their next submission, so the shards'
        # replies arriving apart would split their calls (`_batch`): one call under way
        # per shard. A worker's slot is free before its completion is answered, so
        # completions batch by turn as they are (and are not held back).
        self._completion_turn: Turn[tuple[Claim, str], CompletionReply] = Turn()
        self._submission_turn: Turn[Submission, int | Reply] = Turn(one_call_each=True)
        self._pointers: Pointers | None = None
        self._counts = WaitingCounts(self)
        self._old_layouts: list[ShardLayout] = []
        self._adopted: RedisJobStore | None = None  # the plain store this one was
        self._upkeep_lock = asyncio.Lock()
        self._upkeep_task: asyncio.Task[None] | None = None
        self._next_upkeep = 0.0
        self._next_miss_upkeep = 0.0
        self._room_told: set[int] = set()  # the old counts `_make_room` has seen to
        self._made_with: MadeWith = (
            ShardedRedisJobStore,
            url,
            client,
            {**self._shard_options, "prefix": prefix, "cluster": cluster, "shards": shards},
        )
        self._ended = False  # closed, `aclose` done: a `start` makes it anew

    # Starting and stopping

    async def start(self) -> None:
        """Connect and start every shard (see `RedisJobStore.start`). Idempotent; after
        `aclose` the store is made anew (see `RedisJobStore._made_again`)."""
        if self._ended:
            self._made_again()
            await self.start()  # a plain store again, when it was one made sharded
            return
        await self._ready_shards(starting=True)

    async def _ready_shards(self, *, starting: bool = False) -> list[RedisJobStore]:
        """The started shards, started now if they are not yet (by `start`, or by the
        first operation after a start that found Redis down).

        Raises:
            JobStoreError: ``starting``, and Redis refused the credentials (as
                `RedisJobStore.start` raises it); after the start such a refusal is a
                `StoreUnavailableError` (`refused_for_now`).
        """
        if self._shards and not self._closed:
            self._keep_layouts_current()
            return self._shards
        try:
            return await self._start_shards()
        except JobStoreError as exc:
            passing = None if starting else refused_for_now(exc)
            if passing is None:
                raise
            raise passing from exc

    async def _start_shards(self) -> list[RedisJobStore]:
        async with self._start_lock:
            if self._closed:
                raise StoreClosedError
            if not self._shards:
                client = self._given_client
                if client is None:
                    assert self._url is not None
                    with refused_credentials(), mapped_errors("start"):
                        client = await connect(
                            self._url, cluster=self._cluster, options=self._client_options
                        )
                keep_command_table(client)  # one dead master must stop no other shard
                self._client = client
                shards = [self._shard(index, prefix, client) for index, prefix in enumerate(
                    self._layout.prefixes)]  # fmt: skip
                try:
                    await asyncio.gather(*(shard.start() for shard in shards))
                except BaseException:
                    await self._close_shards(shards)
                    raise
                share_gates(client, [shard._connection for shard in shards], self._layout.prefixes)
                self._pointers = Pointers(client, self._layout, shards)
                self._shards = shards
                try:
                    with mapped_errors("start"):
                        await self._layout_upkeep()
                except BaseException:
                    self._shards = []
                    await self._close_shards(shards)
                    raise
        return self._shards

    def _server_warnings(self) -> set[str]:
        return self._warned  # every shard's

    def _shard(self, index: int, prefix: str, client: AnyRedis) -> RedisJobStore:
        shard = RedisJobStore(client=client, prefix=prefix, **self._shard_options)
        shard._token_mark = f"s{index}-"
        shard._connection.warned = self._warned  # a server's warning given once
        shard._cancel_listeners = self._cancel_listeners  # one list: every shard tells it
        shard._job_lookup = _lookup_through(self)  # a job missing there: looked for everywhere
        # One queue per turn for every shard's calls of a kind (see `_batch.Turn`).
        shard._completions = Batcher(shard._complete_many, turn=self._completion_turn)
        shard._submissions = Batcher(shard._enqueue_many, turn=self._submission_turn)
        return shard

    def _keep_layouts_current(self) -> None:
        """At most every `UPKEEP_EVERY` seconds while the store is used, its layout
        upkeep (`ShardLookup._layout_upkeep`) in the background: a process that runs no
        recovery (an API-only instance) learns within a second of the shards another
        shard count added, and of pauses those shards missed."""
        loop = asyncio.get_running_loop()
        running = self._upkeep_task is not None and not self._upkeep_task.done()
        if running or self._closed or loop.time() < self._next_upkeep:
            return
        self._next_upkeep = loop.time() + UPKEEP_EVERY
        self._upkeep_task = loop.create_task(
            self._upkeep_in_background(), name="async-endpoints-redis-layout-upkeep"
        )

    async def _upkeep_in_background(self) -> None:
        try:
            with mapped_errors("layout upkeep"):
                await self._layout_upkeep()
        except JobStoreError as exc:  # the calls that need Redis say so themselves
            logger.debug("layout upkeep failed: %s", exc)
        except Exception:
            if not self._closed:
                logger.exception("layout upkeep failed")

    async def aclose(self) -> None:
        """End this store's offers, stop listening, release every waiter and close the
        client if the store made it. Idempotent; stored jobs are kept."""
        self._closed = True  # before any await: no upkeep starts from here on
        task, self._upkeep_task = self._upkeep_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        async with self._start_lock:
            self._closed = True
            shards, self._shards = self._shards, []
        self._counts.cancel()
        await self._late.aclose(self._deadline)  # the claims being undone land first
        await self._close_shards(shards)
        if self._adopted is not None:
            await self._adopted.aclose()  # its connection, and its client if it made it
        self._ended = True

    async def _close_shards(self, shards: Sequence[RedisJobStore]) -> None:
        await asyncio.gather(*(shard.aclose() for shard in shards), return_exceptions=True)
        if self._client is not None:
            release_default(self._client)
        if self._given_client is None and self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()
        self._client = None

    # Where things are

    def _of_token(self, token: str) -> RedisJobStore | None:
        """The shard that issued a claim token (its mark ``s<i>-``); None for a token no
        shard of this store made (a claim that cannot be held)."""
        mark, _, _ = token.partition("-")
        index = int(mark[1:]) if mark[:1] == "s" and mark[1:].isdigit() else -1
        return self._shards[index] if 0 <= index < len(self._shards) else None

    # The JobStore

    async def get(self, job_id: uuid.UUID) -> Job | None:
        """The job, from its id's shard (or, by its pointer, from its own; see
        `ShardLookup`)."""
        job, _ = await self._probe(job_id, str(job_id), lambda shard: shard.get(job_id))
        return job

    async def complete(self, claim: Claim, result: Any) -> Job | None:
        """As `RedisJobStore.complete`, in the claim's shard."""
        if not self._shards:  # not started (or closed: it raises)
            await self._ready_shards()
        shard = self._of_token(claim.token)
        return None if shard is None else await shard.complete(claim, result)

    async def fail(self, claim: Claim, error: JobError, *, retry_in: float | None) -> Job | None:
        """As `RedisJobStore.fail`, in the claim's shard."""
        if not self._shards:  # not started (or closed: it raises)
            await self._ready_shards()
        shard = self._of_token(claim.token)
        if shard is None:
            return None
        job = await shard.fail(claim, error, retry_in=retry_in)
        shard._notifications.wake()  # its key's next job may be claimable: look again
        return job

    async def give_back(self, claim: Claim, *, retry_in: float) -> Job | None:
        """As `RedisJobStore.give_back`, in the claim's shard."""
        if not self._shards:  # not started (or closed: it raises)
            await self._ready_shards()
        shard = self._of_token(claim.token)
        if shard is None:
            return None
        job = await shard.give_back(claim, retry_in=retry_in)
        shard._notifications.wake()  # the job is claimable again: look again
        return job

    async def wait_until_terminal(self, job_id: uuid.UUID, timeout: float) -> Job | None:
        """As `RedisJobStore.wait_until_terminal`, in the job's shard (found as `get`
        finds it: the wait in a shard without the job answers None at once)."""
        job, _ = await self._probe(
            job_id, str(job_id), lambda shard: shard.wait_until_terminal(job_id, timeout)
        )
        return job


async def become_sharded(plain: RedisJobStore, arguments: dict[str, Any]) -> None:
    """Make a started plain store (``shards=1``) a sharded store of one shard, so that it
    serves the old shards a resharding left (`_shard_reshard`): its client is kept (and
    closed with it when it made it), its cancel listeners too."""
    listeners = plain._cancel_listeners
    await plain._connection.notifications.aclose()  # each shard has its own
    original = object.__new__(RedisJobStore)
    original.__dict__.update(plain.__dict__)
    plain.__dict__.clear()
    plain.__class__ = ShardedRedisJobStore
    assert isinstance(plain, ShardedRedisJobStore)
    ShardedRedisJobStore.__init__(plain, client=original._connection.client, **arguments)
    plain._cancel_listeners += listeners
    plain._adopted = original
    plain._made_with = original._made_with  # made anew, it reads the shard counts again
    plain._owns_client = original._connection._owns_client  # its pool is the store's own
    await plain.start()


def _lookup_through(store: ShardedRedisJobStore) -> Callable[[uuid.UUID], Awaitable[Job | None]]:
    """``store.get`` for its shards to read a watched job through, without a reference to
    it (a shard holding the store would make a cycle: a store nobody closed would then be
    collected, and its client reported unclosed, in whichever later code runs the
    collector)."""
    ref = weakref.ref(store)

    async def lookup(job_id: uuid.UUID) -> Job | None:
        found = ref()
        return None if found is None else await found.get(job_id)

    return lookup
