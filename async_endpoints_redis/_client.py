"""Building the redis-py client of a store: plain Redis or Redis Cluster, from a URL.

The client's timeouts and retries are chosen so that no call hangs while Redis is down:
connecting gives up after ``socket_connect_timeout``, a reply is awaited at most
``socket_timeout``, and a failed command is retried once, after a short pause, on a fresh
connection (which is what a pooled connection needs after a server restart).

A burst of more concurrent calls than ``max_connections`` waits for a connection instead
of failing, up to the operation's deadline (``socket_timeout + socket_connect_timeout``), on
a single server and on a cluster alike. Each store admits its calls through a `call_gate`,
a semaphore of the connections its subscriptions leave: on a single server
``max_connections`` less one per subscription (redis-py's blocking pool would otherwise
refuse a call after ``socket_connect_timeout`` with ``No connection available.``, which
reads as an outage when it is only a burst); on a cluster, whose client refuses a call
beyond ``max_connections`` on a node at once (``MaxConnectionsError``), less one more, left
to redis-py's topology refresh (``CLUSTER SLOTS``, then ``COMMAND``, one at a time under its
own lock). A call that waited out the deadline for its turn says so, naming the burst (see
`_connection.Connection.run`). Every store call holds at most one connection at a time
(``EVALSHA``; after ``NOSCRIPT``, an ``EVAL`` of the script's text on the same node, see
`_lua_script`; after ``ASK``, ``ASKING``, then the command), and on a cluster all of them go
to the node of the store's one hash tag, so that node never sees more than
``max_connections`` from the store. The blocking pool of a single server waits up to the
deadline too, for the few commands sent outside the gate (the first ``PING``, opening a
subscription).
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import math
from contextvars import ContextVar
from typing import Any, TypeAlias
from urllib.parse import unquote, urlsplit

from redis import __version__ as redis_version
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import (
    AbstractConnection,
    BlockingConnectionPool,
    Connection,
    ConnectionPool,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from async_endpoints._errors import ConfigurationError

from ._command_table import keep_command_table

AnyRedis: TypeAlias = "Redis | RedisCluster"

#: The fewest connections a store can work with: its pub/sub subscription's, one that a
#: cluster's topology refresh may take, and one for its calls.
MIN_CONNECTIONS = 3
#: Connections of a cluster node left to the subscription and the topology refresh.
_RESERVED = MIN_CONNECTIONS - 1
#: The gate of a pool that states no bound (redis-py's own pools all do).
_UNBOUNDED = 1 << 20


def reply_timeout(client: AnyRedis) -> float:
    """How long ``client`` waits for one reply before it gives up on that send (its
    ``socket_timeout``; infinite when it has none). redis-py then sends the command once
    more on a fresh connection (``retry``), so a submission's fence counts from each send
    (`_fence`)."""
    if isinstance(client, RedisCluster):
        options = client.nodes_manager.connection_kwargs
    else:
        options = client.connection_pool.connection_kwargs
    value = options.get("socket_timeout")
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return math.inf


def _parameters(*functions: Any) -> frozenset[str]:
    return frozenset(name for f in functions for name in inspect.signature(f).parameters)


#: The options of a URL that `RedisCluster.from_url` takes and a node's connection does
#: not (``read_from_replicas``, ``require_full_coverage``, ``ssl``...), but for the pool's
#: size, which both kinds of client read.
_CLUSTER_OPTIONS = _parameters(RedisCluster.__init__) - _parameters(
    AbstractConnection.__init__,
    Connection.__init__,
    SSLConnection.__init__,
    UnixDomainSocketConnection.__init__,
    ConnectionPool.__init__,
)


def check_url(url: object, cluster: bool | None = None) -> None:
    """Refuse, before anything connects, a ``url`` redis-py could never connect with
    (``cluster``: as the store's argument; True also refuses what a Cluster lacks).

    Raises:
        ConfigurationError: ``url`` is not a string, or not a ``redis://``, ``rediss://``
            or ``unix://`` URL with a numeric port and options redis-py takes (the message
            never repeats the URL, which may hold a password); for a Cluster, a database
            other than 0 or a Unix socket.
    """
    if not isinstance(url, str):
        raise ConfigurationError(
            f"url must be a redis://, rediss:// or unix:// URL string, not {type(url).__name__}"
        )
    try:
        options: dict[str, Any] = dict(parse_url(url))
    except ValueError as exc:
        raise ConfigurationError(f"url is not a Redis URL: {exc}") from None
    parts = urlsplit(url)  # as redis-py reads it
    database = unquote(parts.path).strip("/")
    if parts.scheme in ("redis", "rediss") and database and not _decimal(database):
        # redis-py would take database 0 without a word
        raise ConfigurationError("url: the database after the host must be a number")
    if cluster:
        if options.get("connection_class") is UnixDomainSocketConnection:
            raise ConfigurationError("url: a Redis Cluster is not reached by a Unix socket")
        if options.get("db", 0) != 0:
            raise ConfigurationError("url: a Redis Cluster has database 0 only")
    if cluster:  # the cluster client's own options are not a node connection's
        if str(options.get("ssl", "")).lower() in ("1", "true", "yes", "on"):
            options["connection_class"] = SSLConnection  # as the cluster client makes them
        options = {key: value for key, value in options.items() if key not in _CLUSTER_OPTIONS}
    try:
        # A connection object (no socket yet) takes the URL's options as redis-py would
        # at the first connect: an option it lacks, or a value it refuses, fails here
        # rather than at every connect, retried for ever as if Redis were down.
        ConnectionPool(**options).make_connection()  # type: ignore[no-untyped-call]
    except (TypeError, ValueError, RedisError) as exc:
        raise ConfigurationError(f"url has an option redis-py refuses: {exc}") from None


def _decimal(text: str) -> bool:
    """Whether ``text`` is a number as redis-py reads a database (``int``): ASCII digits
    (``str.isdigit`` would take ``²``, which ``int`` refuses)."""
    return text.isascii() and text.isdigit()


def check_client(client: object) -> None:
    """Refuse a ``client`` the store cannot use: it must be one of redis-py's asyncio
    clients (``redis.asyncio.Redis`` or ``RedisCluster``), not the blocking ones.

    Raises:
        ConfigurationError: as said.
    """
    if not isinstance(client, Redis | RedisCluster):
        kind = f"{type(client).__module__}.{type(client).__qualname__}"
        raise ConfigurationError(
            "client must be an asyncio client of redis-py (redis.asyncio.Redis or "
            f"redis.asyncio.RedisCluster), not {kind}"
        )
    if isinstance(client, RedisCluster):
        check_cluster_client()


def check_cluster_client() -> None:
    """Refuse a Redis Cluster store when redis-py's asyncio cluster client has no pub/sub
    (before redis-py 8.0): the store's events, wake-ups and cancels reach other processes
    through it, and without it job event streams served by another process never hear of
    their jobs.

    Raises:
        ConfigurationError: as said, naming the redis-py installed.
    """
    if not hasattr(RedisCluster, "pubsub"):
        raise ConfigurationError(
            "a Redis Cluster store needs redis-py 8.0 or later, whose asyncio cluster "
            f"client has pub/sub (this is redis-py {redis_version}): "
            'pip install "redis>=8"'
        )


def check_seconds(name: str, value: object) -> float:
    """``value`` when it is a positive, finite number of seconds.

    Raises:
        ConfigurationError: It is not (naming ``name``).
    """
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if number is None or not math.isfinite(number) or number <= 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(number)


#: True in a task once redis-py sent one of its commands again after a failure (a reply
#: lost to a dropped connection or a timeout): its first send may have been carried out.
#: A store call resets it before it sends and reads it after (`NotingBackoff`).
RESENT: ContextVar[bool] = ContextVar("async_endpoints_redis_resent", default=False)


class NotingBackoff(ExponentialBackoff):
    """redis-py's exponential backoff, noting in `RESENT` that a command is about to be
    sent again: both a client's retry (`Retry.call_with_retry`) and a cluster client's
    own loop ask it for the pause before each resend, in the task of the call, so that a
    store call refused by its own first send (a completion that landed, its reply lost)
    can tell so. (A cluster's topology refresh after failed ones asks it too: at worst a
    refusal is then read once more.)"""

    def compute(self, failures: int) -> float:
        RESENT.set(True)
        return super().compute(failures)


def client_options(
    *, socket_timeout: float, socket_connect_timeout: float, max_connections: int
) -> dict[str, Any]:
    """Keyword arguments for `BlockingConnectionPool.from_url` and `RedisCluster.from_url`.

    Raises:
        ConfigurationError: ``max_connections`` is not a whole number of at least
            `MIN_CONNECTIONS`.
    """
    if not isinstance(max_connections, int) or isinstance(max_connections, bool):
        raise ConfigurationError(f"max_connections must be a whole number, not {max_connections!r}")
    if max_connections < MIN_CONNECTIONS:
        raise ConfigurationError(f"max_connections must be at least {MIN_CONNECTIONS}")
    return {
        "max_connections": max_connections,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_connect_timeout,
        "retry": Retry(NotingBackoff(cap=0.25, base=0.05), retries=1),
        "health_check_interval": 15,
    }


def database_of(url: str | None, client: AnyRedis | None) -> int:
    """The numbered database a store's client selects (a cluster has database 0 alone)."""
    if isinstance(client, RedisCluster):
        return 0
    if client is not None:
        database = client.connection_pool.connection_kwargs.get("db")
    else:
        database = parse_url(url).get("db") if url is not None else None
    return int(database or 0)


async def connect(url: str, *, cluster: bool | None, options: dict[str, Any]) -> AnyRedis:
    """A client for ``url``; ``cluster=None`` asks the server whether it is a cluster node.

    Raises:
        redis.exceptions.RedisError: The server could not be asked (cluster=None only).
    """
    if cluster is None:
        cluster = await _is_cluster_node(url, options)
    if cluster:
        check_cluster_client()
        client = RedisCluster.from_url(url, **options)
        keep_command_table(client, url)  # read once per process and URL
        return client
    deadline = options["socket_timeout"] + options["socket_connect_timeout"]
    pool = BlockingConnectionPool.from_url(url, timeout=deadline, **options)
    return Redis.from_pool(pool)


class CallGate(asyncio.Semaphore):
    """The semaphore `call_gate` makes, which knows how many calls it admits at once and
    can admit fewer from some moment on without being replaced (calls under way hold the
    gate they entered: a new gate beside the old one would admit both gates' calls)."""

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        #: How many calls it admits at once.
        self.capacity = capacity
        #: Given by `_connection.share_gates` to the shards of one pool.
        self.shared = False

    async def narrow(self, capacity: int) -> int:
        """Admit at most ``capacity`` calls (at least one) at once: the turns beyond it are
        taken, each as soon as a call under way ends, and kept (`widen_by` gives them
        back). How many were taken."""
        taken = 0
        while self.capacity > max(1, capacity):
            await self.acquire()
            self.capacity -= 1
            taken += 1
        return taken

    def widen_by(self, count: int) -> None:
        """Admit ``count`` more calls at once (the turns `narrow` took, given back)."""
        for _ in range(count):
            self.capacity += 1
            self.release()


def gate_capacity(client: AnyRedis, subscriptions: int) -> int:
    """The calls a gate of ``client`` admits at once beside ``subscriptions`` pub/sub
    connections (see `call_gate`)."""
    reserved = subscriptions + (_RESERVED - 1 if isinstance(client, RedisCluster) else 0)
    return max(1, min(connections_bound(client), _UNBOUNDED) - reserved)


def call_gate(client: AnyRedis, *, subscriptions: int = 1) -> CallGate:
    """What each store call holds while it runs, so that a burst waits for a connection.

    A semaphore admitting the connections that ``subscriptions`` pub/sub connections leave
    of the client's ``max_connections`` (per node on a cluster, where one more is left to
    the topology refresh); at least one call at a time. A client given by the app is
    gated by its own pool's bound (redis-py's default pool allows 100 at a time).
    """
    return CallGate(gate_capacity(client, subscriptions))


def connections_bound(client: AnyRedis) -> int:
    """How many connections ``client`` may open (per node on a cluster)."""
    if isinstance(client, RedisCluster):
        return int(client.nodes_manager.connection_kwargs.get("max_connections", 100))
    return int(getattr(client.connection_pool, "max_connections", _UNBOUNDED))


def connections_needed(subscriptions: int) -> int:
    """The connections a client needs for ``subscriptions`` pub/sub connections and the
    calls (per node on a cluster)."""
    return subscriptions + MIN_CONNECTIONS - 1


def widen(client: AnyRedis, subscriptions: int) -> int | None:
    """Raise the connections ``client`` may open (per node on a cluster) to what
    ``subscriptions`` pub/sub connections and the calls need, when they are fewer: the old
    shards a resharding left each hold a subscription, which the configured bound may not
    have counted. Returns the bound it was, or None when it sufficed."""
    needed, was = connections_needed(subscriptions), connections_bound(client)
    if was >= needed:
        return None
    if isinstance(client, RedisCluster):
        client.nodes_manager.connection_kwargs["max_connections"] = needed
        for node in client.get_nodes():
            node.max_connections = needed
            # Its idle connections wait in a deque bounded when the node was made: one
            # released beyond that bound would be dropped (open, counted, never reused).
            node._free = collections.deque(node._free, maxlen=needed)
        return was
    client.connection_pool.max_connections = needed
    return was


async def _is_cluster_node(url: str, options: dict[str, Any]) -> bool:
    probe = Redis.from_url(url, **{**options, "max_connections": 1})
    try:
        info = await probe.info("cluster")
    finally:
        await probe.aclose()
    return bool(info.get("cluster_enabled"))


async def open_pubsub(client: AnyRedis, slot_key: str) -> PubSub:
    """A pub/sub connection; on a cluster, to the primary serving ``slot_key``'s slot.

    Regular PUBLISH reaches every node of a cluster, so any node would hear the
    messages; but the scripts count the listeners of the store's channels on the slot's
    master (``PUBSUB NUMSUB``, one node's count) before handing jobs to idle workers, so
    the subscription is on that master, and moves when the slot does (`pubsub_moved`).
    """
    if isinstance(client, RedisCluster):
        await client.initialize()
        return client.pubsub(node=client.get_node_from_key(slot_key))
    return client.pubsub()


def pubsub_moved(client: AnyRedis, pubsub: PubSub, slot_key: str) -> bool:
    """Whether a cluster's pub/sub connection is no longer on the master serving
    ``slot_key``'s slot, as the client knows it (it learns of a slot that moved from the
    first redirection its calls get). The scripts ask that master how many listen
    (``PUBSUB NUMSUB``, which counts one node's subscribers), so after an operator moved
    the slot to another master an idle worker listening on the old one would be handed
    nothing (its jobs still reach it, one claim later)."""
    node = getattr(pubsub, "node", None)
    if not isinstance(client, RedisCluster) or node is None:
        return False
    try:
        home = client.get_node_from_key(slot_key)
    except Exception:  # no node serves the slot now (a failover): the connection says so
        return False
    return home is not None and home.name != node.name
