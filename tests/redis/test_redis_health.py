"""The start-up check of the Redis server's configuration: a warning when a setting can lose
accepted jobs (no persistence, an evicting maxmemory-policy), silence otherwise, and never a
failed start when the server will not say (CONFIG refused by an ACL or renamed away)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from async_endpoints import NewJob
from async_endpoints_redis import RedisJobStore
from tests.redis_servers import RedisClusterProcesses, RedisServer, start_server

LOGGER = "async_endpoints_redis"
ServerFactory = Callable[..., RedisServer]


@pytest.fixture
def server_with() -> Iterator[ServerFactory]:
    """Start servers of this test alone, with the given command-line settings.

    Every server starts from ``--save "" --appendonly no`` (persistence off); the
    arguments given here come after, so they override it.
    """
    servers: list[RedisServer] = []

    def start(*args: str) -> RedisServer:
        servers.append(start_server(*args))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


async def warnings_at_start(
    url: str, caplog: pytest.LogCaptureFixture, **options: Any
) -> list[str]:
    """The warnings a store on ``url`` logs while it starts (and, again, starts)."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    store = RedisJobStore(url, **options)
    try:
        await store.start()
        await store.start()
    finally:
        await store.aclose()
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_server_without_persistence_gets_one_warning_at_start(
    server_with: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """--save "" --appendonly no: one warning (however often start is called) naming it."""
    server = server_with("--save", "", "--appendonly", "no")
    (warning,) = await warnings_at_start(server.url, caplog)
    assert "persistence is off" in warning and "appendonly yes" in warning


async def test_an_aof_server_that_never_evicts_gets_no_warning(
    server_with: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """--appendonly yes --maxmemory-policy noeviction: nothing to warn about."""
    server = server_with("--appendonly", "yes", "--maxmemory-policy", "noeviction")
    assert await warnings_at_start(server.url, caplog) == []


async def test_rdb_save_rules_alone_count_as_persistence(
    server_with: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Snapshots without an AOF lose the last minutes, not everything: no warning."""
    server = server_with("--save", "60", "1", "--appendonly", "no")  # Redis 6.2 reads it so
    assert await warnings_at_start(server.url, caplog) == []


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl", "allkeys-random"])
async def test_an_evicting_maxmemory_policy_gets_a_warning(
    server_with: ServerFactory, caplog: pytest.LogCaptureFixture, policy: str
) -> None:
    """Any maxmemory-policy but noeviction may delete job records: a warning naming it."""
    server = server_with("--appendonly", "yes", "--maxmemory-policy", policy)
    (warning,) = await warnings_at_start(server.url, caplog)
    assert f"maxmemory-policy is {policy}" in warning and "noeviction" in warning


async def test_a_server_refusing_config_get_is_noted_at_debug_and_the_store_works(
    server_with: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """An ACL without CONFIG (as on managed Redis): a debug line, no warning, jobs flow."""
    server = server_with("--save", "", "--appendonly", "no")
    admin = Redis.from_url(server.url)
    await admin.acl_setuser(
        "app",
        enabled=True,
        passwords=["+pw"],
        keys=["*"],
        channels=["*"],
        commands=["+@all", "-config"],
    )
    await admin.aclose()
    url = f"redis://app:pw@127.0.0.1:{server.port}/0"
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    store = RedisJobStore(url)
    try:
        await store.start()
        job = await store.enqueue(NewJob(uuid.uuid4(), "Echo", 0))
        assert await store.get(job.id) == job
    finally:
        await store.aclose()
    ours = [r for r in caplog.records if r.name == LOGGER]
    assert not [r for r in ours if r.levelno >= logging.WARNING]
    assert any("could not read the Redis configuration" in r.getMessage() for r in ours)


async def test_a_cluster_is_checked_on_the_node_serving_the_store(
    redis_cluster: RedisClusterProcesses, caplog: pytest.LogCaptureFixture
) -> None:
    """On a Redis Cluster the node holding the store's slot is asked (it persists nothing),
    and the warning names it."""
    (warning,) = await warnings_at_start(redis_cluster.url, caplog)
    assert "persistence is off" in warning
    node = redis_cluster.primary_for("{async-endpoints}:clock")
    assert f"(node 127.0.0.1:{node.port})" in warning


async def test_the_shards_of_a_store_on_one_server_warn_once(
    server_with: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Three shards on one server share its settings: one warning, not three."""
    server = server_with("--save", "", "--appendonly", "no")
    (warning,) = await warnings_at_start(server.url, caplog, shards=3)
    assert "persistence is off" in warning


async def test_the_shards_of_a_store_on_a_cluster_warn_once_per_node(
    redis_cluster: RedisClusterProcesses, caplog: pytest.LogCaptureFixture
) -> None:
    """Shards spread over a Cluster's three masters, none persisting: a warning for each
    master that holds a shard, naming it, and never two for one."""
    warnings = await warnings_at_start(redis_cluster.url, caplog, shards=6)
    nodes = [warning.rsplit("(node ", 1)[1] for warning in warnings]
    assert all("persistence is off" in warning for warning in warnings)
    assert len(nodes) == len(set(nodes)) >= 2
