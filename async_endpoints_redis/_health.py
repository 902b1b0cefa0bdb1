"""A look at the Redis server's configuration when a store starts: can it keep jobs?

Two server settings lose accepted jobs without any error reaching the app:

- no persistence (``appendonly no`` and no ``save`` rules): a restart empties Redis;
- an eviction policy other than ``noeviction``: under memory pressure Redis deletes keys,
  job records and queue entries among them, instead of refusing writes (which the store
  would answer with 503).

Either one is logged as a warning on the ``async_endpoints_redis`` logger, once per
`RedisJobStore.start` and server (the shards of a sharded store on one server warn once;
on a Cluster, each warning names the node it concerns). The same look reads
``proto-max-bulk-len``, the longest argument the server accepts, so that a result longer
than it is refused before it is sent (Redis answers such an argument by closing the
connection, which looks like an outage when the client is still writing). Managed
services and ACLs often refuse ``CONFIG GET``; then the check says so at debug level and
the store starts all the same, limit unknown.
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from ._client import AnyRedis
from ._codec import text

logger = logging.getLogger("async_endpoints_redis")

_SETTINGS = ("appendonly", "save", "maxmemory-policy", "proto-max-bulk-len")


async def inspect_server(
    client: AnyRedis, slot_key: str, timeout: float, warned: set[str] | None = None
) -> int | None:
    """Log a warning for each server setting that can lose jobs and return the server's
    ``proto-max-bulk-len`` in bytes (None when it cannot be read); never raises.

    Args:
        client: The store's client.
        slot_key: A key of the store; on a cluster, the node serving it is asked.
        timeout: Seconds the check may take before it is given up.
        warned: The warnings given already (the shards of one store share it): one
            found in it is not given again; the ones given are added.
    """
    try:
        async with asyncio.timeout(timeout):
            config, node = await _server_config(client, slot_key)
    except (RedisError, OSError, TimeoutError) as exc:
        logger.debug("could not read the Redis configuration (%s: %s)", type(exc).__name__, exc)
        return None
    for problem in risks(config):
        warning = problem if node is None else f"{problem} (node {node})"
        if warned is None or warning not in warned:
            logger.warning("%s", warning)
        if warned is not None:
            warned.add(warning)
    return max_bulk_len(config)


def max_bulk_len(config: dict[str, str]) -> int | None:
    """The longest argument the server accepts (``proto-max-bulk-len``), if known."""
    value = config.get("proto-max-bulk-len", "")
    return int(value) if value.isdigit() else None


def risks(config: dict[str, str]) -> list[str]:
    """What in ``config`` (``CONFIG GET`` replies) can lose accepted jobs, in words."""
    problems = []
    if config.get("appendonly") == "no" and not config.get("save", "").strip():
        problems.append(
            "Redis persistence is off (appendonly no, no save rules): every job is lost "
            "when the Redis server restarts; set appendonly yes"
        )
    policy = config.get("maxmemory-policy")
    if policy is not None and policy != "noeviction":
        problems.append(
            f"Redis maxmemory-policy is {policy}: under memory pressure Redis deletes job "
            "records and queue entries; set maxmemory-policy noeviction (full memory "
            "then refuses new jobs with 503 instead)"
        )
    return problems


async def _server_config(client: AnyRedis, slot_key: str) -> tuple[dict[str, str], str | None]:
    """The settings `_SETTINGS` names, and on a cluster the node asked (its name)."""
    options = {}
    node = None
    if isinstance(client, RedisCluster):
        await client.initialize()
        target = client.get_node_from_key(slot_key)
        options["target_nodes"] = target
        node = None if target is None else target.name
    config: dict[str, str] = {}
    for setting in _SETTINGS:
        reply = await client.config_get(setting, **options)
        config.update(
            {text(key): text(value) for key, value in reply.items() if value is not None and key}
        )
    return config, node
