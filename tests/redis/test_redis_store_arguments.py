"""RedisJobStore refuses, when it is made, arguments it could never work with: the app
would otherwise start and answer 503 for ever (a URL redis-py cannot parse), or fail with
a bare TypeError later."""

from __future__ import annotations

import math
from typing import Any

import pytest
import redis
from redis.asyncio.cluster import RedisCluster

from async_endpoints import ConfigurationError
from async_endpoints_redis import RedisJobStore


def test_a_sharded_store_needs_a_connection_per_shard_and_two_more() -> None:
    """Each shard's subscription holds a connection: 8 shards need at least 10."""
    with pytest.raises(
        ConfigurationError, match=r"max_connections must be at least shards \+ 2 \(10\)"
    ):
        RedisJobStore("redis://127.0.0.1:6379/0", shards=8, max_connections=9)
    RedisJobStore("redis://127.0.0.1:6379/0", shards=8, max_connections=10)


@pytest.mark.parametrize(
    "url",
    [
        "nope://127.0.0.1",
        "redis://127.0.0.1:notaport/0",
        "127.0.0.1:6379",
        6379,
        "redis://127.0.0.1:6379/0?ssl_cert_reqs=required",
        "rediss://127.0.0.1:6380/0?ssl_cert_reqs=bogus",
        "redis://127.0.0.1:6379/0?socket_timeout=soon",
        "redis://127.0.0.1:6379/x",
        "redis://127.0.0.1:6379/1x?socket_timeout=3",
        "redis://127.0.0.1:6379/\u00b2",
    ],
    ids=[
        "unknown-scheme",
        "port-not-a-number",
        "no-scheme",
        "not-a-string",
        "TLS option without TLS",
        "TLS option value",
        "option value",
        "database not a number",
        "database not a number, options after",
        "database a superscript digit",
    ],
)
@pytest.mark.parametrize("shards", [1, 3])
def test_a_url_redis_py_cannot_connect_with_is_refused_when_the_store_is_made(
    url: Any, shards: int
) -> None:
    with pytest.raises(ConfigurationError, match="url"):
        RedisJobStore(url, shards=shards)


def test_the_refusal_of_a_url_never_repeats_its_password() -> None:
    for url in (
        "redis://user:s3cret-pass@127.0.0.1:notaport/0",
        "redis://user:s3cret-pass@127.0.0.1:6379/0?ssl_cert_reqs=none",
    ):
        with pytest.raises(ConfigurationError) as refused:
            RedisJobStore(url)
        assert "s3cret-pass" not in str(refused.value)


@pytest.mark.parametrize("name", ["retention", "socket_timeout", "socket_connect_timeout"])
@pytest.mark.parametrize("value", ["1", None, True, 0, -1.0, math.inf, math.nan])
def test_a_duration_that_is_not_a_positive_number_is_refused_naming_it(
    name: str, value: Any
) -> None:
    with pytest.raises(ConfigurationError, match=name):
        RedisJobStore("redis://127.0.0.1:6379/0", **{name: value})


@pytest.mark.parametrize("value", ["50", 2.5, True, 2])
def test_max_connections_must_be_a_whole_number_of_at_least_three(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_connections"):
        RedisJobStore("redis://127.0.0.1:6379/0", max_connections=value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://user:pass@127.0.0.1:6380/1",
        "unix:///tmp/r.sock",
        "rediss://127.0.0.1:6380/0?ssl_cert_reqs=none",
        "redis://127.0.0.1:6379/0?health_check_interval=5&socket_keepalive=true",
        "redis://127.0.0.1:6379",
        "redis://127.0.0.1:6379/",
        "redis://127.0.0.1:6379?db=2",
    ],
)
def test_the_urls_redis_py_accepts_make_a_store_without_connecting(url: str) -> None:
    RedisJobStore(url)  # nothing connects before start()


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:7000/0?read_from_replicas=true",
        "redis://127.0.0.1:7000/0?require_full_coverage=false",
        "redis://127.0.0.1:7000/0?ssl=true&ssl_cert_reqs=none",
    ],
)
def test_a_cluster_clients_own_url_options_make_a_cluster_store(url: str) -> None:
    """Options ``RedisCluster.from_url`` takes and a node's connection does not (and TLS
    options after its ``ssl=true``) are not refused for a store said to be on a Cluster."""
    RedisJobStore(url, cluster=True)


@pytest.mark.parametrize("cluster", [None, False])
def test_a_cluster_clients_option_is_refused_where_a_plain_client_would_read_it(
    cluster: bool | None,
) -> None:
    """Without ``cluster=True`` the URL first reaches a plain client (the probe that asks
    whether the server is a Cluster node, or the client itself), which cannot take the
    cluster client's options: refused at once rather than at every start."""
    with pytest.raises(ConfigurationError, match="read_from_replicas"):
        RedisJobStore("redis://127.0.0.1:7000/0?read_from_replicas=true", cluster=cluster)


@pytest.mark.parametrize("cluster", [None, True, False])
def test_a_pool_size_that_is_no_size_is_refused_in_the_url(cluster: bool | None) -> None:
    with pytest.raises(ConfigurationError, match="max_connections"):
        RedisJobStore("redis://127.0.0.1:7000/0?max_connections=-1", cluster=cluster)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://127.0.0.1:7000/1", "database 0 only"),
        ("unix:///tmp/redis.sock", "Unix socket"),
    ],
)
def test_what_a_cluster_lacks_is_refused_when_a_cluster_store_is_made(
    url: str, message: str
) -> None:
    """``cluster=True`` with a database other than 0 or a Unix socket (which a Cluster
    has not: every start would fail) is refused at once."""
    with pytest.raises(ConfigurationError, match=message):
        RedisJobStore(url, cluster=True)


@pytest.mark.parametrize(
    "client",
    [redis.Redis(), "redis://127.0.0.1:6379/0", object()],
    ids=["blocking-client", "text", "object"],
)
def test_a_client_that_is_not_an_asyncio_client_of_redis_py_is_refused(client: Any) -> None:
    with pytest.raises(ConfigurationError, match="client must be an asyncio client of redis-py"):
        RedisJobStore(client=client)


@pytest.mark.parametrize("prefix", [5, None, b"jobs"])
def test_a_prefix_that_is_not_text_is_refused(prefix: Any) -> None:
    for shards in (1, 3):
        with pytest.raises(ConfigurationError, match="prefix must be a string"):
            RedisJobStore("redis://127.0.0.1:6379/0", prefix=prefix, shards=shards)


def test_a_cluster_store_before_redis_py_8_is_refused_naming_the_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """redis-py's asyncio cluster client has pub/sub from 8.0 only: without it, events
    between processes never arrive (a stream served elsewhere waits for ever)."""
    monkeypatch.delattr(RedisCluster, "pubsub")
    needs = r'needs redis-py 8.0 or later, .*\(this is redis-py .*pip install "redis>=8"'
    with pytest.raises(ConfigurationError, match=needs):
        RedisJobStore("redis://127.0.0.1:7000/0", cluster=True)
    with pytest.raises(ConfigurationError, match=needs):
        RedisJobStore(client=RedisCluster(host="127.0.0.1", port=7000))
    RedisJobStore("redis://127.0.0.1:6379/0", cluster=False)  # a single server needs none
