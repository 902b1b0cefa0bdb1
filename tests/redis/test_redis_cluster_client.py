"""The store's own Redis Cluster client, on a real cluster: read the command table once
per process and URL, and read as closed once the store closed it."""

from __future__ import annotations

import asyncio
import gc
import uuid
import weakref
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from async_endpoints import AsyncContext, AsyncEndpoints, JobStatus, StoreUnavailableError
from async_endpoints._job import NewJob
from async_endpoints_redis import RedisJobStore
from tests import redis_servers
from tests.redis_servers import RedisClusterProcesses

pytestmark = pytest.mark.redis


async def command_table_reads(cluster: RedisClusterProcesses) -> int:
    """How many ``COMMAND`` calls the cluster's nodes have served, all together."""
    total = 0
    for node in cluster.live_nodes():
        async with Redis.from_url(node.url) as client:
            stats = await client.info("commandstats")
        total += int(stats.get("cmdstat_command", {}).get("calls", 0))
    return total


async def test_stores_made_for_one_cluster_url_read_its_command_table_once(
    redis_cluster: RedisClusterProcesses, prefix: str
) -> None:
    """redis-py's cluster client reads the server's command table (``COMMAND``, a quarter
    of a second of parsing) when it connects; three stores made in one process for one
    URL read it at most once (not at all when an earlier store of this process did),
    and each works."""
    before = await command_table_reads(redis_cluster)
    stores = [RedisJobStore(redis_cluster.url, prefix=prefix, shards=n) for n in (1, 1, 3)]
    try:
        for store in stores:
            await store.start()
            job_id = uuid.uuid4()
            await store.enqueue(NewJob(job_id, "Echo", 0))
            found = await store.get(job_id)
            assert found is not None and found.name == "Echo"
    finally:
        for store in stores:
            await store.aclose()
    assert await command_table_reads(redis_cluster) - before <= 1


async def test_a_closed_store_leaves_no_cluster_client_reported_unclosed(
    redis_cluster: RedisClusterProcesses, prefix: str
) -> None:
    """A sharded store keeps its client's default node across redis-py's own closes of
    the client (see ``_shard_client.py``); the store's close lets it go, so a collected
    client, the store's own or one the app gave and closed, is not reported as "Unclosed
    RedisCluster client" (asyncio's exception handler, then stderr, in whichever test
    happened to collect it)."""
    loop = asyncio.get_running_loop()
    reported: list[str] = []

    def report(_: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        reported.append(str(context.get("message")))

    previous = loop.get_exception_handler()
    loop.set_exception_handler(report)
    try:
        for shards in (1, 3):
            store = RedisJobStore(redis_cluster.url, prefix=f"{prefix}-{shards}", shards=shards)
            await store.start()
            client = weakref.ref(store._connection.client if shards == 1 else store._client)
            await store.aclose()
            del store
            gc.collect()
            assert client() is None  # collected: redis-py's check of it has run
        given = RedisCluster.from_url(redis_cluster.url)  # the app's own, closed by the app
        store = RedisJobStore(client=given, prefix=f"{prefix}-given", shards=3)
        await store.start()
        await store.aclose()
        await given.aclose()
        client = weakref.ref(given)
        del store, given
        gc.collect()
        assert client() is None
    finally:
        loop.set_exception_handler(previous)
    assert [message for message in reported if "Unclosed" in message] == []


async def test_a_client_naming_several_nodes_starts_while_the_first_is_down(
    redis_cluster: redis_servers.RedisClusterProcesses, prefix: str
) -> None:
    """The README's way round a store that cannot start while its one URL's node is
    down: a RedisCluster client given several startup nodes, the first of them down
    (nothing listens on its port), starts and runs jobs."""
    down = ClusterNode("127.0.0.1", redis_servers.free_port())
    live = [ClusterNode("127.0.0.1", node.port) for node in redis_cluster.masters()]
    given = RedisCluster(startup_nodes=[down, *live])
    try:
        store = RedisJobStore(client=given, prefix=prefix, cluster=True)
        engine = AsyncEndpoints(store=store)

        async def work(ctx: AsyncContext[None]) -> str:
            return "ran"

        engine.add_handler(work)
        async with engine.running():
            job = await engine.submit("work")
            done = await engine.wait_for(job.id, timeout=10)
        assert done.status is JobStatus.COMPLETED
    finally:
        await given.aclose()
    with pytest.raises(StoreUnavailableError):
        await RedisJobStore(f"redis://127.0.0.1:{down.port}", cluster=True).start()


async def test_a_cluster_found_at_start_before_redis_py_8_is_refused_naming_the_version(
    redis_cluster: RedisClusterProcesses, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store not told it is on a Cluster (``cluster=None``) learns it at start: with a
    redis-py whose asyncio cluster client has no pub/sub (before 8.0) the start is
    refused, as when the store is made with ``cluster=True``."""
    from async_endpoints import ConfigurationError

    monkeypatch.delattr(RedisCluster, "pubsub")
    store = RedisJobStore(redis_cluster.url, prefix=prefix)  # nothing connects yet
    with pytest.raises(ConfigurationError, match=r"needs redis-py 8\.0 or later"):
        await store.start()
    await store.aclose()
