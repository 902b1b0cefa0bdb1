"""A look at the Redis server's configuration when a store starts: can it keep jobs?

Two server settings lose accepted jobs without any error reaching the app:

- no persistence (``appendonly no`` and no ``save`` rules): a restart empties Redis;
- an eviction policy other than ``noeviction``: under memory pressure Redis deletes keys,
  job records and queue entries among them, instead of refusing writes (which the store
  would answer with 503).

Either one is logged as a warning on the ``async_endpoints_redis`` logger, once per
`RedisJobStore.start`. Managed services and ACLs often refuse ``CONFIG GET``; then the
check says so at debug level and the store starts all the same.
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from ._client import AnyRedis
from ._codec import text

logger = logging.getLogger("async_endpoints_redis")

_SETTINGS = ("appendonly", "save", "maxmemory-policy")


async def warn_about_risky_config(client: AnyRedis, slot_key: str, timeout: float) -> None:
    """Log a warning for each server setting that can lose jobs; never raises.

    Args:
        client: The store's client.
        slot_key: A key of the store; on a cluster, the node serving it is asked.
        timeout: Seconds the check may take before it is given up.
    """
    try:
        async with asyncio.timeout(timeout):
            config = await _server_config(client, slot_key)
    except (RedisError, OSError, TimeoutError) as exc:
        logger.debug("could not read the Redis configuration (%s: %s)", type(exc).__name__, exc)
        return
    for problem in risks(config):
        logger.warning("%s", problem)


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


async def _server_config(client: AnyRedis, slot_key: str) -> dict[str, str]:
    options = {}
    if isinstance(client, RedisCluster):
        await client.initialize()
        options["target_nodes"] = client.get_node_from_key(slot_key)
    config: dict[str, str] = {}
    for setting in _SETTINGS:
        reply = await client.config_get(setting, **options)
        config.update(
            {text(key): text(value) for key, value in reply.items() if value is not None and key}
        )
    return config
