"""Fixtures shared by the hostile-input and security tests: each app kind, each store kind.

Registered for the whole suite by ``pytest_plugins`` in tests/conftest.py; a module or
folder that defines an ``app`` or ``store`` fixture of its own overrides these.
"""

import pytest
from fastapi import FastAPI
from starlette.applications import Starlette

from async_endpoints import InMemoryJobStore, JobStore
from async_endpoints_redis import RedisJobStore


@pytest.fixture(params=[FastAPI, Starlette], ids=["fastapi", "starlette"])
def app(request: pytest.FixtureRequest) -> Starlette:
    """A fresh, empty app: every rule here holds for FastAPI and for plain Starlette."""
    app_class: type[Starlette] = request.param
    return app_class()


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> JobStore:
    """A fresh store of each kind (Redis: a real server, a prefix of this test alone)."""
    if request.param == "memory":
        return InMemoryJobStore()
    server = request.getfixturevalue("redis_server")
    return RedisJobStore(server.url, prefix=request.getfixturevalue("prefix"))
