"""A worker app for the CLI tests: its lifespan queues one slow job and leaves marks.

The marks (files in $MARKS_DIR) show what ran: the app's own lifespan, the handler's start
and its end, so a test can check that SIGTERM let the handler finish; ``frozen-objects``
holds how many objects the garbage collector had frozen when the handler started, and
``lifespan-state`` the handler's ``ctx.state.started_by`` (the pid of the process whose
lifespan yielded it).
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette

from async_endpoints import AsyncContext, AsyncEndpoints

MARKS = Path(os.environ.get("MARKS_DIR", "."))


def mark(name: str) -> None:
    (MARKS / name).write_text(name)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, str]]:
    mark("lifespan-started")
    await endpoints.submit("slow")
    yield {"started_by": str(os.getpid())}
    mark("lifespan-stopped")


app = Starlette(lifespan=lifespan)
endpoints = AsyncEndpoints(app, run_workers=False, shutdown_grace_period=30)


@endpoints.map_async_post("/slow")
async def slow(ctx: AsyncContext[None]) -> str:
    (MARKS / "frozen-objects").write_text(str(gc.get_freeze_count()))
    (MARKS / "lifespan-state").write_text(ctx.state.started_by)
    mark("handler-started")
    await asyncio.sleep(float(os.environ.get("HANDLER_SECONDS", "1")))
    mark("handler-finished")
    return "done"
