"""Redis refusing the store's credentials is a configuration mistake, not an outage: the
store's start raises `JobStoreError` saying so (no endless retry as while Redis is down),
so an app's startup fails at once, and the worker CLI exits with a one-line error."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette

from async_endpoints import AsyncContext, AsyncEndpoints, JobStoreError, StoreUnavailableError
from async_endpoints_redis import RedisJobStore
from tests.redis_servers import RedisServer, start_cluster

PASSWORD = "right-one"


@pytest.fixture
async def guarded(own_redis_server: RedisServer) -> RedisServer:
    """The test's own server, asking for ``PASSWORD``."""
    client = Redis.from_url(own_redis_server.url)
    await client.config_set("requirepass", PASSWORD)
    await client.aclose()
    return own_redis_server


def with_password(server: RedisServer, password: str | None) -> str:
    host = server.url.removeprefix("redis://")
    return f"redis://:{password}@{host}" if password else server.url


@pytest.mark.parametrize("shards", [1, 2], ids=["plain", "sharded"])
@pytest.mark.parametrize("password", ["wrong", None], ids=["wrong", "none"])
async def test_a_refused_password_fails_the_start_saying_so(
    guarded: RedisServer, password: str | None, shards: int
) -> None:
    store = RedisJobStore(with_password(guarded, password), shards=shards)
    with pytest.raises(JobStoreError, match="Redis refused the store's credentials") as refused:
        await store.start()
    assert not isinstance(refused.value, StoreUnavailableError)
    await store.aclose()


async def test_the_right_password_starts(guarded: RedisServer) -> None:
    store = RedisJobStore(with_password(guarded, PASSWORD))
    await store.start()
    await store.aclose()


async def test_an_app_with_a_refused_password_fails_its_startup(
    guarded: RedisServer, http_client_for: Any
) -> None:
    app = Starlette()
    AsyncEndpoints(app, store=RedisJobStore(with_password(guarded, "wrong")))
    with pytest.raises(JobStoreError, match="credentials"):
        async with http_client_for(app):
            pass


WORKER_APP = """
import os

from async_endpoints import AsyncContext, AsyncEndpoints
from async_endpoints_redis import RedisJobStore

endpoints = AsyncEndpoints(store=RedisJobStore(os.environ["REDIS_URL"]))

@endpoints.add_handler
async def noop(ctx: AsyncContext[None]) -> None:
    return None
"""


def start_worker(url: str, directory: Path) -> subprocess.Popen[str]:
    (directory / "credentials_app.py").write_text(WORKER_APP)
    return subprocess.Popen(
        [sys.executable, "-m", "async_endpoints", "worker", "credentials_app:endpoints"],
        cwd=directory,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path.cwd()), "REDIS_URL": url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_exits_with_the_one_line(worker: subprocess.Popen[str]) -> None:
    try:
        _, said = worker.communicate(timeout=60)
    finally:
        worker.kill()
    assert worker.returncode == 1, said
    assert "Redis refused the store's credentials" in said
    assert "Traceback" not in said


def test_the_worker_cli_exits_at_once_with_one_line(guarded: RedisServer, tmp_path: Path) -> None:
    assert_exits_with_the_one_line(start_worker(with_password(guarded, "wrong"), tmp_path))


def test_a_worker_cli_started_during_an_outage_exits_when_redis_then_refuses_it(
    own_redis_server: RedisServer, tmp_path: Path
) -> None:
    """The worker waits for a Redis that is down; when it comes back asking for another
    password, the worker exits 1 with the one line, as at a start that met it."""
    own_redis_server.stop()
    worker = start_worker(with_password(own_redis_server, PASSWORD), tmp_path)
    assert worker.poll() is None
    own_redis_server.extra_args = ["--requirepass", "another"]
    own_redis_server.start()
    assert_exits_with_the_one_line(worker)


@pytest.mark.parametrize("shards", [1, 3], ids=["plain", "sharded"])
async def test_a_cluster_refusing_the_password_fails_the_start_saying_so(shards: int) -> None:
    cluster = start_cluster()
    try:
        for node in cluster.nodes:
            client = Redis.from_url(node.url)
            await client.config_set("requirepass", PASSWORD)
            await client.aclose()
        store = RedisJobStore(with_password(cluster.nodes[0], "wrong"), shards=shards)
        with pytest.raises(JobStoreError, match="Redis refused the store's credentials") as refused:
            await store.start()
        assert not isinstance(refused.value, StoreUnavailableError)
        await store.aclose()
        right = RedisJobStore(with_password(cluster.nodes[0], PASSWORD), shards=shards)
        await right.start()
        await right.aclose()
    finally:
        cluster.stop()


@pytest.mark.parametrize("shards", [1, 2], ids=["plain", "sharded"])
async def test_a_refusal_met_after_the_start_answers_503_until_the_password_is_right(
    own_redis_server: RedisServer, http_client_for: Any, shards: int
) -> None:
    """The app started while Redis was down (it carries on, as in any outage); Redis came
    back asking for another password. That is no reason for a 500: requests answer 503
    with ``Retry-After`` (the refusal is logged), and once the password is right the
    store connects and the jobs run."""
    own_redis_server.stop()
    app = Starlette()
    store = RedisJobStore(with_password(own_redis_server, PASSWORD), shards=shards)
    endpoints = AsyncEndpoints(app, store=store)

    @endpoints.map_async_post("/noop")
    async def noop(ctx: AsyncContext[None]) -> str:
        return "ran"

    endpoints.map_job_details("/jobs/{job_id}")
    async with http_client_for(app) as client:
        own_redis_server.extra_args = ["--requirepass", "another"]
        own_redis_server.start()
        refused = await client.post("/noop")
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"] == "1"
        assert refused.json() == {"detail": "the job store is unavailable; try again later"}
        looked_up = await client.get(f"/jobs/{uuid.uuid4()}")
        assert looked_up.status_code == 503, looked_up.text

        admin = Redis.from_url(with_password(own_redis_server, "another"))
        await admin.config_set("requirepass", PASSWORD)
        await admin.aclose()
        accepted = await client.post("/noop")
        assert accepted.status_code == 202, accepted.text
        job = await endpoints.wait_for(uuid.UUID(accepted.json()["id"]), timeout=10)
        assert job.status.value == "Completed"
        assert job.result == "ran"
