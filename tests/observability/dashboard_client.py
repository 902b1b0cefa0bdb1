"""The dashboard app of `dashboard_app` served in process to an httpx client, with its
workers off (tests drive the jobs), and the dashboard's action token: the fixtures and
helpers of the dashboard's HTTP tests (import the fixtures into a test module)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from async_endpoints import AsyncEndpoints, JobStore
from async_endpoints._dashboard_guard import COOKIE
from tests.observability.dashboard_app import Gate, make_app

BASE = "http://testserver"
#: What a browser sends with a form posted from the dashboard's own page.
SAME_ORIGIN = {"Origin": BASE, "Sec-Fetch-Site": "same-origin"}


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
async def engine(gate: Gate) -> AsyncIterator[AsyncEndpoints]:
    _, endpoints = make_app(gate)
    async with endpoints.running(workers=False):
        yield endpoints


@pytest.fixture
async def client(engine: AsyncEndpoints) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=engine.app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client


@asynccontextmanager
async def dashboard_on(
    store: JobStore, gate: Gate
) -> AsyncIterator[tuple[AsyncEndpoints, httpx.AsyncClient]]:
    """The app on ``store`` (its workers off) and a client of it."""
    app, endpoints = make_app(gate, store)
    transport = httpx.ASGITransport(app=app)
    async with (
        endpoints.running(workers=False),
        httpx.AsyncClient(transport=transport, base_url=BASE) as client,
    ):
        yield endpoints, client


async def token_of(client: httpx.AsyncClient) -> str:
    """Load a page (which sets the token cookie) and read the token from its forms."""
    page = await client.get("/dashboard/")
    match = re.search(r'name="token" value="([^"]+)"', page.text)
    assert match is not None
    assert client.cookies.get(COOKIE) == match.group(1)
    return match.group(1)
