"""A store's link to Redis: the client, the registered scripts and the notifications.

`Connection.run` is the one way operations reach Redis: it starts the connection on first
use, bounds the call by the operation deadline (so nothing hangs, whatever client the
user passed in) and maps redis-py's errors to the library's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from async_endpoints._errors import JobStoreError, StoreClosedError, StoreUnavailableError

from ._client import (
    AnyRedis,
    CallGate,
    call_gate,
    connect,
    database_of,
    gate_capacity,
    open_pubsub,
    pubsub_moved,
    reply_timeout,
)
from ._elapsed import ElapsedClock
from ._errors import RETRY_AFTER, mapped_errors, refused_credentials, refused_for_now
from ._fence import give_up, giving_up
from ._health import inspect_server
from ._keys import Keys
from ._notify import Notifications
from ._trouble import Trouble

if TYPE_CHECKING:
    from async_endpoints._job import Job
from ._scripts import Scripts

T = TypeVar("T")
logger = logging.getLogger("async_endpoints_redis")

#: How long a starting process waits for the first answer of the live processes it asked
#: for their clock readings (seconds; only when some are subscribed).
PROBE_WAIT = 1.0
_PROBE_POLL = 0.01


class Connection:
    """The client (made from ``url`` unless given), its scripts and its subscription.

    Args:
        url: Where to connect when no ``client`` is given.
        client: A ready client, used as is and never closed here.
        cluster: Whether ``url`` names a cluster; None asks the server.
        options: Client options (`_client.client_options`).
        deadline: Seconds an operation may take before Redis counts as unavailable.
        keys: The store's key and channel names.
        retention_ms: How long terminal jobs are kept.
        inbox: The name of this store's inbox channel (jobs handed to its idle worker).
        decode: Builds the terminal job a done message carries.
        on_handed_over: Receives each message on the inbox channel.
        on_cancel: Receives the id in each message on the cancel channel.
    """

    def __init__(
        self,
        url: str | None,
        client: AnyRedis | None,
        *,
        cluster: bool | None,
        options: dict[str, Any],
        deadline: float,
        keys: Keys,
        retention_ms: int,
        inbox: str,
        decode: Callable[[str, bytes | str], Job | None],
        on_handed_over: Callable[[bytes | str], None],
        on_cancel: Callable[[str], None],
    ) -> None:
        self._url = url
        self._client = client
        self._owns_client = client is None
        self._cluster = cluster
        self._options = options
        self.deadline = deadline
        self._keys = keys
        self._retention_ms = retention_ms
        self._scripts: Scripts | None = None
        self.elapsed = ElapsedClock()
        #: When this process last met trouble reaching Redis (shared by a sharded store's
        #: shards: `share_gates`).
        self.trouble = Trouble()
        self._start_lock = asyncio.Lock()
        self._gate: contextlib.AbstractAsyncContextManager[Any] = contextlib.nullcontext()
        self._reply_wait = math.inf  # how long the client waits for one reply (`_fence`)
        self.closed = False
        self.max_bulk_len: int | None = None
        """The longest argument the server accepts, read at start (None: unknown)."""
        self.warned: set[str] = set()
        """The warnings about server settings given at start (`_health`); the shards of a
        sharded store share one, so a server's warning is given once."""
        self._probes = 0  # clock probes not answered yet
        self._probe_channel = keys.clock_probe_channel(database_of(url, client))
        self._answering: asyncio.Task[None] | None = None
        self.notifications = Notifications(
            self._open_pubsub,
            moved=self._pubsub_moved,
            wake_channel=keys.wake_channel,
            done_channel=keys.done_channel,
            inbox_channel=keys.inbox_channel(inbox),
            cancel_channel=keys.cancel_channel,
            events_channel=keys.events_channel,
            probe_channel=self._probe_channel,
            decode=decode,
            on_handed_over=on_handed_over,
            on_cancel=on_cancel,
            on_probe=self._probed,
            reply_timeout=deadline,
        )

    @property
    def client(self) -> AnyRedis:
        """The client; raises `StoreClosedError` once closed."""
        if self._client is None:
            raise StoreClosedError
        return self._client

    async def start(self) -> Scripts:
        """Connect, check that Redis answers and start listening. Idempotent.

        The first successful start also warns about server settings that can lose jobs
        and reads the longest argument the server accepts (`_health`).

        Raises:
            StoreUnavailableError: Redis cannot be reached; a later call tries again.
            StoreClosedError: The store is closed.
            JobStoreError: Redis refused the credentials (a wrong password or user: no try
                again would change that).
        """
        async with self._start_lock:
            if self.closed:
                raise StoreClosedError
            if self._scripts is None:
                with refused_credentials(), mapped_errors("start"):
                    async with asyncio.timeout(self.deadline):
                        await self._connect()
                self.max_bulk_len = await inspect_server(
                    self.client, self._keys.queue, self.deadline, self.warned
                )
                scripts = Scripts(self.client, self._keys, self._retention_ms, self.elapsed)
                await self._first_reading(scripts)
                self._scripts = scripts
                self.notifications.start()
                # Live before the first claim, so no wake-up is lost and the connection's
                # own wake-up does not interrupt a worker's first wait.
                if not await self.notifications.wait_live(self.deadline):
                    failure = self.notifications.last_failure or "no answer in time"
                    logger.warning(
                        "no pub/sub subscription yet (%s); idle workers will poll", failure
                    )
            return self._scripts

    async def _first_reading(self, scripts: Scripts) -> None:
        """Read the elapsed-time clock once, so this process's readings start from it, and
        migrate a store of the older layout (``lua/migrate.lua``).

        When nobody set the clock for a second or more by the Redis server's wall clock,
        the live processes of the store are asked for their readings first (their
        monotonic clocks did not step), and the clock is caught up with the wall-clock
        time since it was last set only when none answers within `PROBE_WAIT`: the
        spell was then one in which no process called (``lua/clock.lua``).

        A Redis that refuses the script for good (a user not allowed to run scripts, say)
        does not stop the start: the operations then answer that refusal themselves.
        """
        try:
            with mapped_errors("start"):
                async with asyncio.timeout(self.deadline + PROBE_WAIT):
                    seen, asked = await scripts.probe_clock(self._probe_channel)
                    if asked == 0 and isinstance(self.client, RedisCluster):
                        asked = await self._probe_listeners()
                    if asked > 0:
                        await _first_answer(scripts, seen)
                    await scripts.clock(catch_up_from=seen)
                    await scripts.migrate()
        except StoreUnavailableError:
            raise
        except JobStoreError as exc:
            logger.warning(
                "could not read the store's clock: %s; the store's operations run scripts"
                " (EVALSHA) and will fail alike until Redis allows them",
                exc,
            )

    async def _probe_listeners(self) -> int:
        """How many subscriptions to the probe channel the whole cluster holds.

        A probe reaches every node, but PUBLISH counts the subscribers of its own node
        alone, and a live store's subscription stays on the node it was made on, which a
        failover may have turned into a replica since. Unknown (a refusal, say) counts as
        one: the start then waits for an answer.
        """
        client = self.client
        assert isinstance(client, RedisCluster)
        try:
            replies = await client.pubsub_numsub(
                self._probe_channel, target_nodes=RedisCluster.ALL_NODES
            )
        except RedisError as exc:
            logger.debug("could not count the clock probe's listeners: %s", exc)
            return 1
        return sum(int(count) for _, count in replies)

    def _probed(self) -> None:
        """A starting process asks for this one's clock reading: call with it (once for
        every probe that came while a call was on its way, as that one may have been
        carried out before the probe was sent)."""
        self._probes += 1
        if self._answering is None or self._answering.done():
            self._answering = asyncio.create_task(
                self._answer_probes(), name="async-endpoints-redis-clock-probe"
            )

    async def _answer_probes(self) -> None:
        while self._probes and not self.closed:
            self._probes = 0
            try:
                await self.run("clock", lambda scripts: scripts.clock())
            except JobStoreError as exc:  # the prober catches up alone, as it would
                logger.debug("could not answer a clock probe: %s", exc)
                return

    async def _connect(self) -> None:
        if self._client is None and self._url is not None:
            self._client = await connect(self._url, cluster=self._cluster, options=self._options)
        await self.client.ping()
        self._gate = call_gate(self.client)
        self._reply_wait = reply_timeout(self.client)

    async def aclose(self) -> None:
        """Stop listening, release every waiter and close the client if made here."""
        self.closed = True
        await self.notifications.aclose()
        if self._answering is not None:
            self._answering.cancel()
            await asyncio.wait({self._answering})
        if self._owns_client and self._client is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._client.aclose()
            self._client = None

    async def run(self, operation: str, call: Callable[[Scripts], Awaitable[T]]) -> T:
        """``call`` with the scripts, within the deadline, redis-py errors mapped.

        A cancellation of the calling task during the call always reaches it (see the
        comment inside). Waiting for a turn at the client (`_client.call_gate`) counts
        towards the deadline; a deadline that runs out before the turn came says so (the
        process sent more calls at once than its connections serve in that time, Redis
        itself may be fine).
        """
        task = asyncio.current_task()
        # Counted before the start too: connecting sends commands the same way.
        cancels = 0 if task is None else task.cancelling()
        scripts = self._scripts if self._scripts is not None and not self.closed else None
        if scripts is None:
            try:
                scripts = await self.start()
            except JobStoreError as exc:  # a refusal fails the app's start, not a call
                passing = refused_for_now(exc)
                if passing is None:
                    raise
                self.trouble.met()
                raise passing from exc
        began = time.monotonic()
        try:
            return await self._run(operation, call, scripts, task, cancels)
        except StoreUnavailableError:
            self.trouble.met()
            raise
        finally:  # however it ended (answered, refused, cancelled): was it held up?
            self.trouble.took(time.monotonic() - began)

    async def _run(
        self,
        operation: str,
        call: Callable[[Scripts], Awaitable[T]],
        scripts: Scripts,
        task: asyncio.Task[Any] | None,
        cancels: int,
    ) -> T:
        admitted = False
        with mapped_errors(operation):
            try:
                async with asyncio.timeout(self.deadline) as deadline, self._gate:
                    admitted = True
                    ends = deadline.when()
                    assert ends is not None  # (a timeout of self.deadline seconds)
                    given = give_up.set(giving_up(ends, self.deadline, self._reply_wait))
                    try:
                        result = await call(scripts)
                    finally:
                        give_up.reset(given)
                    if task is not None and task.cancelling() > cancels:
                        # On Python 3.11, redis-py sends each command under asyncio.wait_for,
                        # which returns the result and drops a cancellation that arrives as
                        # the send completes (fixed in 3.12): raise it here, so the caller
                        # is cancelled (and our deadline, a cancellation too, still fires).
                        raise asyncio.CancelledError
                    return result
            except TimeoutError as exc:
                if not deadline.expired():
                    raise
                waited = (
                    "no answer" if admitted else "no connection of the store was free"
                ) + f" within {self.deadline:g} s"
                if not admitted:
                    waited += " (more calls at once than max_connections serve in that time)"
                raise StoreUnavailableError(
                    f"Redis is unavailable ({operation}): {waited}", retry_after=RETRY_AFTER
                ) from exc

    async def _open_pubsub(self) -> PubSub:
        return await open_pubsub(self.client, self._keys.queue)

    def _pubsub_moved(self, pubsub: PubSub) -> bool:
        return self._client is not None and pubsub_moved(self._client, pubsub, self._keys.queue)


def share_gates(
    client: AnyRedis, connections: Sequence[Connection], prefixes: Sequence[str]
) -> None:
    """Give the shards of one sharded store, sharing ``client``'s pool, one call gate
    (`_client.call_gate`) per pool of connections: its connections less one per
    subscription of theirs (and, on a cluster, one for the topology refresh), so that a
    burst over all shards waits for a connection instead of failing. On a single server
    all shards share one pool; on a cluster the shards of each node do. Called again when
    shards are added (the old layouts a resharding left), after `make_way`: a pool's
    shards that share a gate already keep it (narrowed to count the added
    subscriptions), and the added ones join it. All the shards also share one record
    of trouble met reaching Redis (`_trouble`), the first shard's.
    """
    for connection in connections:  # a stall of one server may be any shard's
        connection.trouble = connections[0].trouble
    for group in _pools(client, prefixes).values():
        members = [connections[index] for index in group]
        gate = _shared_gate(members)
        if gate is None:
            gate = call_gate(client, subscriptions=len(group))
            gate.shared = True
        for connection in members:
            connection._gate = gate


async def make_way(
    client: AnyRedis, connections: Sequence[Connection], prefixes: Sequence[str], adding: int
) -> Callable[[], None]:
    """Before the shards of the last ``adding`` of ``prefixes`` start (their connections
    are not in ``connections`` yet): narrow the shared gate of each pool they join to
    what it admits beside their subscriptions too, waiting for calls under way beyond
    that to end, so that their start and their subscriptions find a free connection in
    a pool that refuses calls beyond its bound (redis-py's default one). Returns what
    gives the turns back (the shards failed to start)."""
    taken: list[tuple[CallGate, int]] = []
    known = len(prefixes) - adding
    for group in _pools(client, prefixes).values():
        members = [connections[index] for index in group if index < known]
        gate = _shared_gate(members)
        if gate is not None and len(members) < len(group):
            taken.append((gate, await gate.narrow(gate_capacity(client, len(group)))))

    def undo() -> None:
        for gate, count in taken:
            gate.widen_by(count)

    return undo


def _pools(client: AnyRedis, prefixes: Sequence[str]) -> dict[str, list[int]]:
    """The indexes of ``prefixes`` by the pool their calls use: one on a single server,
    one per node on a cluster."""
    groups: dict[str, list[int]] = {}
    for index, prefix in enumerate(prefixes):
        node = (
            client.get_node_from_key("{" + prefix + "}:clock")
            if isinstance(client, RedisCluster)
            else None
        )
        groups.setdefault("" if node is None else node.name, []).append(index)
    return groups


def _shared_gate(connections: Sequence[Connection]) -> CallGate | None:
    """The gate `share_gates` gave ``connections``, if it did (each still has its own
    from its start otherwise)."""
    for connection in connections:
        gate = connection._gate
        if isinstance(gate, CallGate) and gate.shared:
            return gate
    return None


async def _first_answer(scripts: Scripts, seen: str) -> None:
    """Wait up to `PROBE_WAIT` for someone to set the clock, which the probe found last set
    as ``seen`` says.

    Polled (the answer is a write in Redis, which no local event announces) until a
    deadline of its own rather than bounded by a timeout's cancellation, which a library
    may swallow (see `_notify._raise_if_cancelling`): the start then still goes on.
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + PROBE_WAIT
    while await scripts.clock_set_at() == seen and loop.time() < end:  # noqa: ASYNC110
        await asyncio.sleep(_PROBE_POLL)
