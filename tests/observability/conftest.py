"""Fixtures of the observability tests."""

from __future__ import annotations

import pytest

from async_endpoints import InMemoryJobStore
from async_endpoints_redis import RedisJobStore
from tests.observability.dead_workers import Handles


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("shards", marks=pytest.mark.redis),
    ]
)
def handles(request: pytest.FixtureRequest) -> Handles:
    """Makes handles on one store's jobs, one per engine: the in-memory store is its own
    handle; Redis: a store on the same server and prefix each time; shards: the same,
    with ``shards=3`` on a 3-master Cluster."""
    if request.param == "memory":
        store = InMemoryJobStore()
        return lambda: store
    prefix = request.getfixturevalue("prefix")
    if request.param == "shards":
        cluster = request.getfixturevalue("redis_cluster")
        return lambda: RedisJobStore(cluster.url, prefix=prefix, shards=3)
    server = request.getfixturevalue("redis_server")
    return lambda: RedisJobStore(server.url, prefix=prefix)
