"""Fixtures of the multi-process tests: a real redis-server and process bookkeeping."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as redis

from tests.redis_servers import RedisServer, start_server

from .processes import Proc


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A durable server of its own (AOF, fsync always), so it can be killed and restarted."""
    server = start_server("--appendonly", "yes", "--appendfsync", "always", directory=tmp_path)
    yield server
    server.stop()


@pytest.fixture
def env(redis_server: RedisServer) -> dict[str, str]:
    """The environment of tests.apps.redis_app processes, with fast recovery settings."""
    return {
        "REDIS_URL": redis_server.url,
        "AE_PREFIX": f"e2e-{uuid.uuid4().hex[:8]}",
        "CLAIM_TIMEOUT": "2",
        "RECOVERY_INTERVAL": "0.2",
    }


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Processes registered here are killed at the end of the test, whatever happened."""
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.kill()


@pytest.fixture
async def records(redis_server: RedisServer) -> AsyncIterator[redis.Redis]:
    """A plain client of the test's Redis, to read what the handlers recorded."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()
