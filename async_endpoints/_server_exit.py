"""Hearing that the web server is shutting down before the app's lifespan does.

On SIGTERM (or SIGINT) uvicorn stops accepting connections, then waits for the requests
under way to end (held ``Prefer: wait`` requests and long polls among them, up to
``max_wait``) before it runs the lifespan's shutdown, where the embedded worker pool
stops. Meanwhile the pool would go on claiming queued jobs, starting work the process is
about to stop (a later SIGKILL would then cut it off), and the held requests would hold
the exit up. `watch` looks at the server's exit flag (uvicorn's ``Server.should_exit``)
every `INTERVAL` seconds and calls back once it is set; the server is the one whose
signal handler is installed when the lifespan starts (`current_server`, found as
sse-starlette finds it). A server that cannot be found this way (another ASGI server, a
uvicorn not on the main thread) is heard of at the lifespan's shutdown, as before.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import Any

#: Seconds between two looks at the server's exit flag.
INTERVAL = 0.1


def current_server() -> Any | None:
    """The server whose handler takes SIGTERM now (uvicorn's ``Server``: it installs its
    handlers before it starts the app's lifespan, so at the lifespan's startup that is
    the server running this app), or None."""
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return server if isinstance(getattr(server, "should_exit", None), bool) else None


async def watch(server: Any, on_exit: Callable[[], Awaitable[None]]) -> None:
    """Call ``on_exit`` once ``server`` is shutting down (runs until then, or until
    cancelled)."""
    while not server.should_exit:  # noqa: ASYNC110 - a flag of the server, polled on purpose
        await asyncio.sleep(INTERVAL)
    await on_exit()
