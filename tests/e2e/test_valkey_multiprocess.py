"""The Redis store on Valkey 8, across real processes: the multi-process tests of an
API-only instance with worker processes (tests/e2e/test_multiprocess.py) that matter most,
run again with Valkey as the server (the store's contract suite runs on Valkey too:
tests/contract)."""

from __future__ import annotations

import pytest
import redis.asyncio as redis

from tests.redis_servers import RedisServer

from .test_multiprocess import (
    test_a_job_whose_worker_is_killed_is_completed_by_another as _killed_worker,
)
from .test_multiprocess import (
    test_a_thousand_jobs_over_two_workers_each_run_exactly_once as _two_workers,
)

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(180)]


@pytest.fixture
def redis_server(valkey_node: RedisServer) -> RedisServer:
    """The server of this module's tests (and of the ``env`` and ``records`` fixtures
    built on it): the session's Valkey; each test keeps to a key prefix of its own."""
    return valkey_node


test_a_thousand_jobs_run_once_each_over_two_worker_processes_on_valkey = _two_workers
test_a_job_whose_worker_is_killed_is_completed_by_another_on_valkey = _killed_worker


async def test_the_server_these_tests_run_on_is_valkey(env: dict[str, str]) -> None:
    """The processes' REDIS_URL (the ``env`` fixture) leads to a Valkey server."""
    client = redis.Redis.from_url(env["REDIS_URL"], decode_responses=True)
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    assert str(info.get("server_name", "")).lower() == "valkey", info
