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
  ``max_waiting`` counts every shard: see `WaitingCounts`.
- get, cancel, requeue, wait_until_terminal, watch_job, follow_up_of: the id's shard;
  a miss there reads its pointer (one small call) and goes to the job's shard. No fan-out
  (`_shard_lookup`).
- renew, complete, fail, set_progress: the claim's shard, named by the claim token's
  mark (``s<i>-``); a renewal asks each shard of the claims at once and renews the
  claims of those that answer, whatever the others do (`_shard_renewals`).
- claim, wait_for_work: the shards in turn; every shard at once (`_shard_waits`).
- recover, pause, resume, count_waiting, queue_stats, list_jobs, list_batches: every
  shard (`_shard_reads`, `_shard_features`); schedules: shard 0; batches: one shard each
  (`_shard_batches`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import uuid
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from async_endpoints._errors import (
    ConfigurationError,
    JobStoreError,
    QueueFullError,
)
from async_endpoints._idempotency import IdempotencyConflictError, is_by_request_id
from async_endpoints._job import Job, JobError, NewJob
from async_endpoints._store import Claim
from async_endpoints._store_features import ClaimCancelListener, Idempotency

from ._batch import Batcher, Turn
from ._client import MIN_CONNECTIONS, AnyRedis, client_options, connect
from ._codec import Reply
from ._connection import share_gates
from ._errors import refused_credentials, refused_for_now
from ._keys import Keys
from ._scripts import Submission
from ._shard_client import keep_command_table, release_default
from ._shard_counts import WaitingCounts
from ._shard_features import ShardFeatures
from ._shard_late import LateClaims
from ._shard_layout import ShardLayout
from ._shard_lookup import UPKEEP_EVERY, ShardLookup
from ._shard_pointers import Pointers
from ._shard_renewals import ShardRenewals
from ._shard_waits import ShardWaits
from ._store import RECOVER_CALLS, CompletionReply, MadeWith, RedisJobStore

#: Connections beyond the shards' subscriptions: one for calls, one for a cluster's
#: topology refresh.
_RESERVED = MIN_CONNECTIONS - 1

logger = logging.getLogger("async_endpoints_redis")


class ShardedRedisJobStore(ShardFeatures, ShardWaits, ShardRenewals, ShardLookup, RedisJobStore):
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
                raise JobStoreError("the store is closed")
            if not self._shards:
                client = self._given_client
                if client is None:
                    assert self._url is not None
                    with refused_credentials(), _mapped("start"):
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
                    with _mapped("start"):
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
            with _mapped("layout upkeep"):
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

    def _open_shard(self, index: int) -> RedisJobStore:
        """Shard ``index``, once the store is started (after an await: the store may
        have been closed meanwhile).

        Raises:
            JobStoreError: The store is closed.
        """
        if not self._shards:
            raise JobStoreError("the store is closed")
        return self._shards[index]

    def _placement(self, new_job: NewJob) -> int:
        if new_job.partition_key is not None:
            return self._layout.of_key(new_job.partition_key)
        return self._layout.of_id(new_job.id)

    # The JobStore

    async def enqueue(self, new_job: NewJob, *, max_waiting: int | None = None) -> Job:
        """As `RedisJobStore.enqueue`, in the job's shard (see `_shard_layout`)."""
        shard, new_job = await self._placed(new_job)
        if max_waiting is None:  # no count to keep
            return await self._open_shard(shard).enqueue(new_job)
        return await self._counts.limited(
            shard, max_waiting, lambda limit: self._open_shard(shard).enqueue(
                new_job, max_waiting=limit)
        )  # fmt: skip

    async def enqueue_once(
        self, new_job: NewJob, idempotency: Idempotency, *, max_waiting: int | None = None
    ) -> tuple[Job, str | None]:
        """As `RedisJobStore.enqueue_once`. The job goes to its own shard (as `enqueue`,
        a partition key's old lane included) unless its idempotency key was used already:
        every key is first recorded, with the shard of its job, in the key's shard
        (`Pointers.idempotent`, one more round trip, kept as long as the key), and a
        repeat goes to that shard, whose script then answers it atomically (the job
        stored under the key, or a conflict). A job with a partition key is never stored
        away from its key's lane: when the key was recorded for another shard, that
        shard only answers (its job, compared as any repeat), and while it holds no job
        under the key (the first submission still on its way, or refused) this one is a
        conflict (`IdempotencyConflictError`), not a second job.

        A client-chosen id (`by_request_id`: the key is the id's own) is not recorded in
        the key's shard: every repeat has the same placement, so it meets its job in the
        job's own shard, which alone it depends on (`_chosen_id_home`).

        Raises:
            IdempotencyConflictError: See above.
            IdempotentJobGoneError: the key is remembered but its job is no longer kept.
        """
        shards = await self._ready_shards()
        placed = await self._home(new_job)
        ttl_ms = max(1, math.ceil(idempotency.ttl * 1000))
        book = self._pointer_book
        if is_by_request_id(idempotency, new_job.id):
            shard, held = await self._chosen_id_home(new_job, idempotency.key, placed), False
        else:
            shard, held = await book.idempotent(idempotency.key, placed, ttl_ms, self._old_layouts)
        if new_job.partition_key is not None and shard != placed:
            return await self._answer_only(shard, new_job, idempotency)
        if held and self._layout.of_id(new_job.id) != shard:
            # A used key is answered by its shard before the id is pointed there: an id
            # the client chose, taken by another job, would otherwise be refused first
            # (409), and a repeat's fresh id would leave a pointer to nothing behind.
            answered = await self._held_answer(shard, new_job, idempotency)
            if answered is not None:
                return answered
        shard, new_job = await self._placed(new_job, shard)
        job, earlier = await self._counts.limited(
            shard, max_waiting, lambda limit: shards[shard].enqueue_once(
                new_job, idempotency, max_waiting=limit)
        )  # fmt: skip
        if held and earlier is None:  # a new job under a key whose record there had ended
            await book.renew_idempotent(idempotency.key, shard, ttl_ms)
        return job, earlier

    async def _answer_only(
        self, shard: int, new_job: NewJob, idempotency: Idempotency
    ) -> tuple[Job, str | None]:
        """The job ``shard`` holds under the idempotency key, and its fingerprint; stores
        nothing there (a limit of 0 waiting jobs: the script answers a key it holds
        before it looks at the limit).

        Raises:
            IdempotencyConflictError: ``shard`` holds no job under the key.
            IdempotentJobGoneError: it holds the key, and its job is no longer kept.
        """
        try:
            return await self._open_shard(shard).enqueue_once(new_job, idempotency, max_waiting=0)
        except QueueFullError:
            raise IdempotencyConflictError(
                "this idempotency key is held by a submission with another partition key"
            ) from None

    async def _held_answer(
        self, shard: int, new_job: NewJob, idempotency: Idempotency
    ) -> tuple[Job, str | None] | None:
        """The job ``shard`` holds under the idempotency key and its fingerprint, or None
        when it holds none (its record there ended, or the first submission was refused):
        nothing is stored (a limit of 0 waiting jobs, as `_answer_only`).

        Raises:
            IdempotentJobGoneError: it holds the key, and its job is no longer kept.
        """
        try:
            return await self._open_shard(shard).enqueue_once(new_job, idempotency, max_waiting=0)
        except QueueFullError:
            return None

    async def _home(self, new_job: NewJob) -> int:
        """The job's shard: its partition key's (the old shard where the key's lane
        still has jobs, after a resharding), else its id's."""
        shard = self._placement(new_job)
        if self._old_layouts and new_job.partition_key is not None:
            shard = await self._old_lane(new_job.partition_key, shard)
        return shard

    async def _placed(self, new_job: NewJob, shard: int | None = None) -> tuple[int, NewJob]:
        """The job's shard (``shard`` if given) and the job, its pointers written first
        (`_point`)."""
        if not self._shards:  # not started (or closed: it raises)
            await self._ready_shards()
        if shard is None:
            shard = await self._home(new_job)
        follow_up = getattr(new_job, "follow_up", None)
        if follow_up is not None or self._layout.of_id(new_job.id) != shard:
            await self._point(shard, new_job)
        return shard, new_job

    async def _point(self, shard: int, new_job: NewJob) -> None:
        """Point the job's id shard (and its follow-up's) at ``shard`` when another."""
        book = self._pointer_book
        if self._layout.of_id(new_job.id) != shard:
            await book.add([new_job.id], shard, self._retention)
        follow_up = getattr(new_job, "follow_up", None)
        if follow_up is not None:
            fields = [(self._layout.of_id(follow_up.id), str(follow_up.id))]
            await book.add_fields(fields, shard, self._retention, parent=new_job.id)

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
            with _mapped("recover"):
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
                with _mapped("recover"):
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

    async def wait_until_terminal(self, job_id: uuid.UUID, timeout: float) -> Job | None:
        """As `RedisJobStore.wait_until_terminal`, in the job's shard (found as `get`
        finds it: the wait in a shard without the job answers None at once)."""
        job, _ = await self._probe(
            job_id, str(job_id), lambda shard: shard.wait_until_terminal(job_id, timeout)
        )
        return job


@contextlib.contextmanager
def _mapped(operation: str) -> Any:
    from ._errors import mapped_errors

    with mapped_errors(operation):
        yield


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
