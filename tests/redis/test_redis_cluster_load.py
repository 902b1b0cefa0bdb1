"""A store on a real 3-master Redis Cluster under more concurrent calls than connections.

redis-py's cluster client refuses a call beyond ``max_connections`` on a node at once; the
store makes such calls wait for a connection instead (as a single server's blocking pool
does), so bursts far larger than the pool answer without a single failure, and waiters
hold no connection while they wait.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from redis.asyncio import Redis

from async_endpoints import AsyncContext, AsyncEndpoints, ConfigurationError, StoreUnavailableError
from async_endpoints_redis import RedisJobStore
from tests.e2e.processes import start_api
from tests.redis.support import reads_while_paused
from tests.redis_servers import RedisClusterProcesses, RedisServer

pytestmark = pytest.mark.redis

CALLS = 5000
MAX_CONNECTIONS = 4  # the smallest pool that leaves two calls at a time to the store
JOBS = 100
#: Seconds a call may wait for its turn and its reply. The burst is served two calls at a
#: time, so how long its last call waits depends on the machine's speed; the rule tested is
#: that calls wait instead of failing, so the deadline is far beyond any machine's need.
CALL_DEADLINE = 120.0


def cluster_endpoints(cluster: RedisClusterProcesses, prefix: str) -> AsyncEndpoints:
    """Endpoints on a store with a tiny pool, whose connections carry the name ``prefix``."""
    url = f"{cluster.url}?client_name={prefix}"
    store = RedisJobStore(
        url, prefix=prefix, max_connections=MAX_CONNECTIONS, socket_timeout=CALL_DEADLINE
    )
    return AsyncEndpoints(FastAPI(), store=store, max_concurrency=JOBS)


async def connections_named(cluster: RedisClusterProcesses, name: str) -> int:
    """How many connections named ``name`` the node serving the store's keys has open."""
    node = cluster.primary_for(f"{{{name}}}:queue")
    async with Redis(port=node.port) as probe:
        clients = await probe.client_list()
    return sum(client["name"] == name for client in clients)


async def test_5000_concurrent_get_job_calls_on_a_cluster_all_answer(
    redis_cluster: RedisClusterProcesses, prefix: str
) -> None:
    """5,000 concurrent get_job calls through a pool of 4 all answer; the node sees <= 4."""
    endpoints = cluster_endpoints(redis_cluster, prefix)

    @endpoints.map_async_post("/nothing", name="Nothing")
    async def nothing(ctx: AsyncContext[None]) -> None:
        return None

    async with LifespanManager(endpoints.app):
        jobs = [await endpoints.submit("Nothing") for _ in range(JOBS)]
        found = await asyncio.gather(
            *(endpoints.get_job(jobs[n % JOBS].id) for n in range(CALLS)),
            return_exceptions=True,
        )
        failures = [answer for answer in found if isinstance(answer, BaseException)]
        assert not failures, f"{len(failures)} of {CALLS} failed, e.g. {failures[0]!r}"
        assert [job.id for job in found] == [jobs[n % JOBS].id for n in range(CALLS)]
        assert 0 < await connections_named(redis_cluster, prefix) <= MAX_CONNECTIONS


async def test_5000_concurrent_wait_for_calls_on_a_cluster_all_answer(
    redis_cluster: RedisClusterProcesses, prefix: str
) -> None:
    """5,000 waiters on 100 running jobs, through a pool of 4, all get the terminal job."""
    endpoints = cluster_endpoints(redis_cluster, prefix)
    release = asyncio.Event()

    @endpoints.map_async_post("/held", name="Held")
    async def held(ctx: AsyncContext[None]) -> str:
        await release.wait()
        return str(ctx.job_id)

    async with LifespanManager(endpoints.app):
        jobs = [await endpoints.submit("Held") for _ in range(JOBS)]
        waiters = asyncio.gather(
            *(endpoints.wait_for(jobs[n % JOBS].id, timeout=30) for n in range(CALLS)),
            return_exceptions=True,
        )
        await asyncio.sleep(0)  # every waiter is under way before the jobs may finish
        release.set()
        done = await waiters
        failures = [answer for answer in done if isinstance(answer, BaseException)]
        assert not failures, f"{len(failures)} of {CALLS} failed, e.g. {failures[0]!r}"
        assert {job.result for job in done} == {str(job.id) for job in jobs}
        assert 0 < await connections_named(redis_cluster, prefix) <= MAX_CONNECTIONS


async def test_200_concurrent_http_connections_polling_a_job_on_a_cluster_get_only_2xx(
    redis_cluster: RedisClusterProcesses, redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    """uvicorn on a cluster store (a pool of 4): 200 connections polling a job, 0 non-2xx."""
    store_url = f"{redis_cluster.url}?max_connections={MAX_CONNECTIONS}"
    env = {"REDIS_URL": redis_server.url, "STORE_URL": store_url, "AE_PREFIX": prefix}
    api = start_api({**env, "RUN_WORKERS": "0"}, tmp_path)
    try:
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
            job_id = (await client.post("/count")).json()["id"]

        tls = ssl.create_default_context()

        async def poll(times: int) -> list[int]:
            # A client per connection: one client's pool of 200 connections costs it more
            # CPU per request (it scans them all) than the server spends answering.
            # (One TLS context for them all: each client would load the CA bundle again.)
            one = httpx.Limits(max_connections=1)
            async with httpx.AsyncClient(
                base_url=api.url, limits=one, timeout=30, verify=tls
            ) as own:
                return [(await own.get(f"/jobs/{job_id}")).status_code for _ in range(times)]

        answers = await asyncio.gather(*(poll(5) for _ in range(200)))
    finally:
        api.kill()
    statuses = [status for polls in answers for status in polls]
    assert len(statuses) == 1000
    refused = [status for status in statuses if not 200 <= status < 300]
    assert not refused, f"{len(refused)} of {len(statuses)} answers not 2xx: {set(refused)}"


async def test_a_call_that_found_no_free_connection_in_time_says_so(
    redis_cluster: RedisClusterProcesses, prefix: str
) -> None:
    """A burst on a node that stopped answering: the one call admitted says Redis gave no
    answer in time, the calls queued behind it that no connection was free (not a bare
    "TimeoutError")."""
    store = RedisJobStore(
        redis_cluster.url,
        prefix=prefix,
        max_connections=3,  # one call at a time
        socket_timeout=0.3,
        socket_connect_timeout=0.2,
    )
    await store.start()
    node = redis_cluster.primary_for(f"{{{prefix}}}:queue")
    try:
        found = await reads_while_paused(node.port, store, 5)
    finally:
        await store.aclose()
    messages = [str(answer) for answer in found]
    assert all(isinstance(answer, StoreUnavailableError) for answer in found), messages
    assert any("no connection of the store was free within 0.5 s" in m for m in messages)
    assert any("(get): no answer" in m for m in messages), messages


def test_a_pool_of_fewer_than_3_connections_is_a_configuration_error() -> None:
    """max_connections below 3 (subscription, topology refresh, one call) is refused."""
    with pytest.raises(ConfigurationError, match="max_connections"):
        RedisJobStore("redis://127.0.0.1:6379/0", max_connections=2)
