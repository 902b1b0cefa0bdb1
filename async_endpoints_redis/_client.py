"""Building the redis-py client of a store: plain Redis or Redis Cluster, from a URL.

The client's timeouts and retries are chosen so that no call hangs while Redis is down:
connecting gives up after ``socket_connect_timeout``, a reply is awaited at most
``socket_timeout``, and a failed command is retried once, after a short pause, on a fresh
connection (which is what a pooled connection needs after a server restart).

A burst of more concurrent calls than ``max_connections`` waits for a connection instead
of failing, on a single server and on a cluster alike. A single server gets a blocking
pool, whose calls wait up to ``socket_connect_timeout`` for a connection (redis-py's
``No connection available.`` after that). redis-py's cluster client has none: a call beyond
``max_connections`` on a node fails at once (``MaxConnectionsError``). There the store
admits its calls through a `call_gate` (waited for up to the operation's deadline), a
semaphore of ``max_connections - 2``: one
connection of the node is the pub/sub subscription's, one is left to redis-py's topology
refresh (``CLUSTER SLOTS``, then ``COMMAND``, one at a time under its own lock). Every
store call holds at most one connection at a time (``EVALSHA``; after ``NOSCRIPT``, an
``EVAL`` of the script's text on the same node, see `_lua_script`; after ``ASK``,
``ASKING``, then the command), and all of them go to the node of the store's one hash
tag, so that node never sees more than ``max_connections`` from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any, TypeAlias

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import BlockingConnectionPool, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from async_endpoints._errors import ConfigurationError

AnyRedis: TypeAlias = "Redis | RedisCluster"

#: The fewest connections a store can work with: its pub/sub subscription's, one that a
#: cluster's topology refresh may take, and one for its calls.
MIN_CONNECTIONS = 3
#: Connections of a cluster node left to the subscription and the topology refresh.
_RESERVED = MIN_CONNECTIONS - 1


def check_url(url: object) -> None:
    """Refuse, before anything connects, a ``url`` redis-py could never connect with.

    Raises:
        ConfigurationError: ``url`` is not a string, or not a ``redis://``, ``rediss://``
            or ``unix://`` URL with a numeric port (the message never repeats the URL,
            which may hold a password).
    """
    if not isinstance(url, str):
        raise ConfigurationError(
            f"url must be a redis://, rediss:// or unix:// URL string, not {type(url).__name__}"
        )
    try:
        parse_url(url)
    except ValueError as exc:
        raise ConfigurationError(f"url is not a Redis URL: {exc}") from None


def check_seconds(name: str, value: object) -> float:
    """``value`` when it is a positive, finite number of seconds.

    Raises:
        ConfigurationError: It is not (naming ``name``).
    """
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if number is None or not math.isfinite(number) or number <= 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(number)


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
        "retry": Retry(ExponentialBackoff(cap=0.25, base=0.05), retries=1),
        "health_check_interval": 15,
    }


async def connect(url: str, *, cluster: bool | None, options: dict[str, Any]) -> AnyRedis:
    """A client for ``url``; ``cluster=None`` asks the server whether it is a cluster node.

    Raises:
        redis.exceptions.RedisError: The server could not be asked (cluster=None only).
    """
    if cluster is None:
        cluster = await _is_cluster_node(url, options)
    if cluster:
        return RedisCluster.from_url(url, **options)
    pool = BlockingConnectionPool.from_url(
        url, timeout=options["socket_connect_timeout"], **options
    )
    return Redis.from_pool(pool)


def call_gate(client: AnyRedis) -> contextlib.AbstractAsyncContextManager[Any]:
    """What each store call holds while it runs, so that a burst waits for a connection.

    For a cluster client (the store's own or one given to it), a semaphore admitting the
    node's ``max_connections`` less the two the subscription and the topology refresh may
    take; for a single server nothing (its blocking pool makes calls wait already).
    """
    if not isinstance(client, RedisCluster):
        return contextlib.nullcontext()
    per_node = int(client.nodes_manager.connection_kwargs.get("max_connections", 100))
    return asyncio.Semaphore(max(1, per_node - _RESERVED))


async def _is_cluster_node(url: str, options: dict[str, Any]) -> bool:
    probe = Redis.from_url(url, **{**options, "max_connections": 1})
    try:
        info = await probe.info("cluster")
    finally:
        await probe.aclose()
    return bool(info.get("cluster_enabled"))


async def open_pubsub(client: AnyRedis, slot_key: str) -> PubSub:
    """A pub/sub connection; on a cluster, to the primary serving ``slot_key``'s slot.

    Regular PUBLISH reaches every node of a cluster, so any node would do; the slot owner
    is simply a deterministic choice that follows failovers when re-resolved.
    """
    if isinstance(client, RedisCluster):
        await client.initialize()
        return client.pubsub(node=client.get_node_from_key(slot_key))
    return client.pubsub()
