"""Helpers of the Redis store's tests: polling with a deadline, draining a store by hand,
listing a prefix's keys."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis

from async_endpoints_redis import RedisJobStore
from async_endpoints_redis._shard_store import ShardedRedisJobStore
from tests.redis_servers import RedisServer

T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T]], timeout: float = 10.0) -> T:
    """Poll ``check`` until it returns something truthy (returned), failing after
    ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not (result := await check()):  # noqa: ASYNC110 - polling real time on purpose
            await asyncio.sleep(0.02)
    return result


async def drain(store: RedisJobStore, batch: int = 50) -> list[uuid.UUID]:
    """Claim (``batch`` at a time) and complete until nothing is claimable; the ids in the
    order they ran."""
    ran = []
    while claims := await store.claim(batch, lease=30):
        for claim in claims:
            ran.append(claim.job.id)
            await store.complete(claim, None)
    return ran


async def keys_of(raw_redis: Redis, prefix: str) -> list[str]:
    """Every key whose name holds ``prefix``, sorted."""
    return sorted([key async for key in raw_redis.scan_iter(match=f"*{prefix}*")])


async def reads_while_paused(port: int, store: RedisJobStore, calls: int) -> list[object]:
    """``calls`` concurrent reads of unknown ids sent while the server on ``port`` pauses
    every client (``CLIENT PAUSE``, lifted once they all answered); each answer or error."""
    async with Redis(port=port) as admin:
        await admin.execute_command("CLIENT", "PAUSE", 5000, "ALL")
        try:
            return await asyncio.gather(
                *(store.get(uuid.uuid4()) for _ in range(calls)), return_exceptions=True
            )
        finally:
            await admin.execute_command("CLIENT", "UNPAUSE")


async def without_layout_upkeep(store: RedisJobStore) -> None:
    """Stop a sharded store's layout upkeep (once a second while it is used) and wait out
    one under way, so that a test counting a call's commands counts that call's alone."""
    if isinstance(store, ShardedRedisJobStore):
        store._next_upkeep = math.inf
        if store._upkeep_task is not None:
            await asyncio.gather(store._upkeep_task, return_exceptions=True)


async def user_without(server: RedisServer, name: str, *commands: str) -> str:
    """The URL of a new ACL user allowed everything but ``commands``."""
    async with Redis.from_url(server.url) as admin:
        await admin.acl_setuser(
            name,
            enabled=True,
            passwords=["+pw"],
            keys=["*"],
            channels=["*"],
            commands=["+@all", *(f"-{command}" for command in commands)],
        )
    return f"redis://{name}:pw@127.0.0.1:{server.port}/0"
