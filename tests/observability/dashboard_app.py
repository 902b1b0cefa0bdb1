"""A small app with the dashboard, for the dashboard's HTTP and browser tests."""

from __future__ import annotations

import asyncio
from html import escape
from typing import Any

from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse

from async_endpoints import AsyncContext, AsyncEndpoints, InMemoryJobStore, JobStore


class Payload(BaseModel):
    """The body of an Ok job."""

    text: str = "ok"


class Gate:
    """Lets tests decide when the Hold handler returns, and whether requests pass
    ``authorize``."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.allowed = True
        #: While True, Flaky jobs fail.
        self.flaky_fails = True
        #: Each item set here lets a Steps job report its next step.
        self.step = asyncio.Queue[None]()

    def authorize(self, request: Request) -> bool:
        return self.allowed


def make_app(
    gate: Gate, store: JobStore | None = None, **settings: Any
) -> tuple[Starlette, AsyncEndpoints]:
    """An app with handlers Ok (returns its body's text), Broken (fails), Flaky (fails
    while ``gate.flaky_fails``), Hold (runs until the gate opens, or is cancelled), Report
    (reports its body's text as progress, then holds as Hold does), Steps (reports
    ``{"done": n, "of": 4}`` for n = 1, 2, 3, one at each ``gate.step`` item, then holds), the
    dashboard at /dashboard, and at /elsewhere a page with a form that posts a cancel to
    the dashboard (served to the browser from another origin in the CSRF test)."""
    app = Starlette()
    settings = {"queues": ("high", "default"), "max_retries": 0, **settings}
    store = InMemoryJobStore() if store is None else store
    endpoints = AsyncEndpoints(app, store=store, **settings)

    async def ok(ctx: AsyncContext[Payload]) -> str:
        return ctx.request.text

    async def broken(ctx: AsyncContext[None]) -> None:
        raise RuntimeError("<img src=x onerror=alert(1)> broke")

    async def hold(ctx: AsyncContext[None]) -> str:
        await gate.open.wait()
        return "released"

    async def report(ctx: AsyncContext[Payload]) -> str:
        await ctx.report_progress({"message": ctx.request.text, "done": 3})
        await gate.open.wait()
        return "reported"

    async def steps(ctx: AsyncContext[None]) -> str:
        for done in range(1, 4):
            await gate.step.get()
            await ctx.report_progress({"done": done, "of": 4})
        await gate.open.wait()
        return "stepped"

    async def flaky(ctx: AsyncContext[None]) -> str:
        if gate.flaky_fails:
            raise RuntimeError("flaky failed")
        return "fine now"

    endpoints.add_handler(ok, name="Ok")
    endpoints.add_handler(flaky, name="Flaky")
    endpoints.add_handler(broken, name="Broken")
    endpoints.add_handler(hold, name="Hold", job_timeout=120)
    endpoints.add_handler(report, name="Report", job_timeout=120)
    endpoints.add_handler(steps, name="Steps", job_timeout=120)
    endpoints.map_dashboard("/dashboard", authorize=gate.authorize)

    async def elsewhere(request: Request) -> HTMLResponse:
        target = request.query_params["target"]
        job_id = request.query_params["job_id"]
        form = (
            f'<form method="post" action="{escape(target)}">'
            f'<input type="hidden" name="job_id" value="{escape(job_id)}">'
            '<input type="hidden" name="token" value="guessed">'
            '<button id="attack">Win a prize</button></form>'
        )
        return HTMLResponse(f"<!doctype html><html><body>{form}</body></html>")

    app.router.add_route("/elsewhere", elsewhere)
    return app, endpoints
