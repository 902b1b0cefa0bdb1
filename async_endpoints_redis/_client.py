"""Building the redis-py client of a store: plain Redis or Redis Cluster, from a URL.

The client's timeouts and retries are chosen so that no call hangs while Redis is down:
connecting gives up after ``socket_connect_timeout``, a reply is awaited at most
``socket_timeout``, and a failed command is retried once, after a short pause, on a fresh
connection (which is what a pooled connection needs after a server restart).

A single server gets a blocking pool: a burst of more concurrent calls than
``max_connections`` waits for a free connection instead of failing. (redis-py's cluster
client has no blocking pool; there ``max_connections`` is per node and a call beyond it
fails as unavailable.)
"""

from __future__ import annotations

from typing import Any, TypeAlias

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

AnyRedis: TypeAlias = "Redis | RedisCluster"


def client_options(
    *, socket_timeout: float, socket_connect_timeout: float, max_connections: int
) -> dict[str, Any]:
    """Keyword arguments for `BlockingConnectionPool.from_url` and `RedisCluster.from_url`."""
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
