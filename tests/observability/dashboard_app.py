"""A small app with the dashboard, for the dashboard's HTTP and browser tests."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request

from async_endpoints import AsyncContext, AsyncEndpoints, InMemoryJobStore


class Payload(BaseModel):
    """The body of an Ok job."""

    text: str = "ok"


class Gate:
    """Lets tests decide when the Hold handler returns, and whether requests pass
    ``authorize``."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.allowed = True

    def authorize(self, request: Request) -> bool:
        return self.allowed


def make_app(gate: Gate, **settings: Any) -> tuple[Starlette, AsyncEndpoints]:
    """An app with handlers Ok (returns its body), Broken (fails), Hold (runs until the
    gate opens, or is cancelled) and the dashboard at /dashboard."""
    app = Starlette()
    settings = {"queues": ("high", "default"), "max_retries": 0, **settings}
    endpoints = AsyncEndpoints(app, store=InMemoryJobStore(), **settings)

    async def ok(ctx: AsyncContext[Payload]) -> str:
        return ctx.request.text

    async def broken(ctx: AsyncContext[None]) -> None:
        raise RuntimeError("<img src=x onerror=alert(1)> broke")

    async def hold(ctx: AsyncContext[None]) -> str:
        await gate.open.wait()
        return "released"

    endpoints.add_handler(ok, name="Ok")
    endpoints.add_handler(broken, name="Broken")
    endpoints.add_handler(hold, name="Hold", job_timeout=120)
    endpoints.map_dashboard("/dashboard", authorize=gate.authorize)
    return app, endpoints
