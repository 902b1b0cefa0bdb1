"""Shared fixtures for the test suite (sections are appended by topic)."""

import contextlib

import httpx
import pytest
from asgi_lifespan import LifespanManager

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
