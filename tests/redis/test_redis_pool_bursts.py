"""A store on a single real Redis server under more concurrent calls than connections.

A call beyond ``max_connections`` waits for a connection up to the operation's deadline
(``socket_timeout + socket_connect_timeout``), as on a cluster, instead of failing after
``socket_connect_timeout`` with redis-py's ``No connection available.``, which a request
answered 503 as if Redis were down. Redis is made slow with ``CLIENT PAUSE``: the calls
admitted hold their connections for the pause, longer than the connect timeout, so the
calls behind them have to wait past it.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from async_endpoints import StoreUnavailableError
from async_endpoints._job import NewJob
from async_endpoints_redis import RedisJobStore
from async_endpoints_redis._client import widen
from async_endpoints_redis._shard_store import ShardedRedisJobStore
from tests.redis.support import reads_while_paused
from tests.redis_servers import RedisClusterProcesses, RedisServer

pytestmark = pytest.mark.redis

CONNECT_TIMEOUT = 0.2
#: Far beyond the pause, so that the rule tested (calls wait instead of failing) does not
#: depend on how fast the machine serves the burst once Redis answers again.
REPLY_TIMEOUT = 30.0
PAUSE_MS = 1000  # five connect timeouts
CALLS = 20


async def connections_named(server: RedisServer, name: str) -> int:
    """How many connections named ``name`` the server has open."""
    async with Redis.from_url(server.url) as probe:
        clients = await probe.client_list()
    return sum(client["name"] == name for client in clients)


def tight_store(
    server: RedisServer, prefix: str, shards: int, max_connections: int, **timeouts: float
) -> RedisJobStore:
    """A store whose connections carry the name ``prefix`` (see `connections_named`),
    with a small pool; the timeouts default to a short connect and a long reply."""
    return RedisJobStore(
        f"{server.url}?client_name={prefix}",
        prefix=prefix,
        shards=shards,
        max_connections=max_connections,
        socket_connect_timeout=timeouts.get("socket_connect_timeout", CONNECT_TIMEOUT),
        socket_timeout=timeouts.get("socket_timeout", REPLY_TIMEOUT),
    )


async def burst_during_a_pause(server: RedisServer, store: RedisJobStore) -> list[object]:
    """``CALLS`` concurrent reads sent while the server pauses every client for ``PAUSE_MS``."""
    async with Redis.from_url(server.url) as admin:
        await admin.execute_command("CLIENT", "PAUSE", PAUSE_MS, "ALL")
    return await asyncio.gather(
        *(store.get(uuid.uuid4()) for _ in range(CALLS)), return_exceptions=True
    )


@pytest.mark.parametrize("shards", [1, 3])
async def test_a_burst_waits_past_the_connect_timeout_for_a_connection(
    own_redis_server: RedisServer, prefix: str, shards: int
) -> None:
    """20 reads through a pool that serves two at a time, while Redis holds each for a
    second (five connect timeouts): all answer, none refused, and the server never sees
    more than ``max_connections`` from the store (one subscription per shard, two calls)."""
    max_connections = shards + 2
    store = tight_store(own_redis_server, prefix, shards, max_connections)
    await store.start()
    try:
        await asyncio.gather(*(store.get(uuid.uuid4()) for _ in range(CALLS)))  # warm
        found = await burst_during_a_pause(own_redis_server, store)
        failures = [answer for answer in found if isinstance(answer, BaseException)]
        assert not failures, f"{len(failures)} of {CALLS} failed, e.g. {failures[0]!r}"
        assert found == [None] * CALLS
        assert 0 < await connections_named(own_redis_server, prefix) <= max_connections
    finally:
        await store.aclose()


async def test_a_call_that_found_no_free_connection_in_time_says_so_on_a_single_server(
    own_redis_server: RedisServer, prefix: str
) -> None:
    """A burst on a server that stopped answering: the calls admitted say Redis gave no
    answer in time, the calls queued behind them that no connection was free (not
    redis-py's ``No connection available.``)."""
    store = RedisJobStore(
        own_redis_server.url,
        prefix=prefix,
        max_connections=3,  # two calls at a time
        socket_timeout=0.3,
        socket_connect_timeout=CONNECT_TIMEOUT,
    )
    await store.start()
    try:
        found = await reads_while_paused(own_redis_server.port, store, 6)
    finally:
        await store.aclose()
    messages = [str(answer) for answer in found]
    assert all(isinstance(answer, StoreUnavailableError) for answer in found), messages
    waited = ["no connection of the store was free within 0.5 s" in m for m in messages]
    # Redis's answer waited for past our 0.5 s deadline, or past redis-py's own wait for a
    # reply (socket_timeout, then one retry) when that ran out first on a busy machine.
    unanswered = ["(get): no answer" in m for m in messages]
    assert all(a or b for a, b in zip(waited, unanswered, strict=True)), messages
    assert any(waited) and any(unanswered), messages


async def test_the_old_shards_a_resharding_left_share_the_one_gate_of_the_pool(
    own_redis_server: RedisServer, prefix: str
) -> None:
    """A store restarted with 2 shards over jobs stored with 4 also serves the 2 shards
    it lacks: all 4 (4 subscriptions on the one pool) admit their calls through one
    gate of ``max_connections - 4``, so that a burst waits for a connection rather than
    for a subscription to give one back."""
    old = RedisJobStore(own_redis_server.url, prefix=prefix, shards=4)
    await old.enqueue(NewJob(uuid.uuid4(), "Echo", 0))
    await old.aclose()
    store = tight_store(own_redis_server, prefix, 2, 6)
    await store.start()
    try:
        assert isinstance(store, ShardedRedisJobStore)
        gates = {id(shard._connection._gate) for shard in store._shards}
        assert len(store._shards) == 4 and len(gates) == 1
        assert store._shards[0]._connection._gate._value == 6 - 4  # type: ignore[attr-defined]
        found = await burst_during_a_pause(own_redis_server, store)
        assert found == [None] * CALLS
        assert 0 < await connections_named(own_redis_server, prefix) <= 6
    finally:
        await store.aclose()


async def test_a_store_serving_more_old_shards_than_its_connections_allow_makes_room(
    own_redis_server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Jobs stored with 6 shards, then a store with 2 shards and ``max_connections=4``
    (enough for its own 2): it also serves the 4 old shards, whose subscriptions would
    not fit, so it raises its bound to 8 with a warning, and every old job is found and
    claimed."""
    old = RedisJobStore(own_redis_server.url, prefix=prefix, shards=6)
    stored = [await old.enqueue(NewJob(uuid.uuid4(), "Echo", 0)) for _ in range(30)]
    await old.aclose()
    store = tight_store(own_redis_server, prefix, 2, 4, socket_connect_timeout=1, socket_timeout=2)
    await store.start()
    try:
        assert isinstance(store, ShardedRedisJobStore)
        assert len(store._shards) == 6
        assert "max_connections raised from 4 to 8" in caplog.text
        found = await asyncio.gather(*(store.get(job.id) for job in stored))
        assert all(job is not None for job in found)
        claimed = []
        while claims := await store.claim(10, lease=30):
            claimed += [claim.job.id for claim in claims]
        assert sorted(claimed) == sorted(job.id for job in stored)
        assert 0 < await connections_named(own_redis_server, prefix) <= 8
    finally:
        await store.aclose()


async def test_widening_a_cluster_clients_bound_lets_every_connection_be_reused(
    redis_cluster: RedisClusterProcesses,
) -> None:
    """A cluster client made for 4 connections per node, widened to 10: 10 connections
    taken on a node and given back can all be taken again (none dropped from the idle
    queue, whose bound was the old one, to stay open and counted but never reused)."""
    client = RedisCluster.from_url(redis_cluster.url, max_connections=4)
    try:
        await client.initialize()
        assert widen(client, subscriptions=8) == 4
        node = client.get_nodes()[0]
        for _ in range(2):
            taken = [node.acquire_connection() for _ in range(10)]
            for connection in taken:
                node.release(connection)
        assert len(node._connections) == 10
    finally:
        await client.aclose()
