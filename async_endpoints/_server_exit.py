"""Hearing that the web server is shutting down before the app's lifespan does.

On SIGTERM (or SIGINT) uvicorn stops accepting connections, then waits for the requests
under way to end (held ``Prefer: wait`` requests and long polls among them, up to
``max_wait``) before it runs the lifespan's shutdown, where the embedded worker pool
stops. Meanwhile the pool would go on claiming queued jobs, starting work the process is
about to stop (a later SIGKILL would then cut it off), and the held requests would hold
the exit up. `watch` looks at the server's exit flag (uvicorn's ``Server.should_exit``,
or its sockets closed) every `INTERVAL` seconds and calls back once it is set; the server
is the one whose signal handler is installed when the lifespan starts, as sse-starlette
finds it, and only when it serves this app (`current_server`). A server that cannot be
found this way (another ASGI server, a uvicorn not on the main thread, one serving
another app of the process) is heard of at the lifespan's shutdown, as before.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import Any

#: Seconds between two looks at the server's exit flag.
INTERVAL = 0.1
#: The most middleware layers looked through for the app a server serves.
_MOST_WRAPPERS = 16


def current_server(app: Any) -> Any | None:
    """The server whose handler takes SIGTERM now (uvicorn's ``Server``: it installs its
    handlers before it starts the app's lifespan), when it serves ``app`` (found in its
    loaded app or the middleware wrapping it): None otherwise, another server of the
    process, say, whose exit is not this app's."""
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    if not isinstance(getattr(server, "should_exit", None), bool):
        return None
    served = getattr(getattr(server, "config", None), "loaded_app", None)
    for _ in range(_MOST_WRAPPERS):
        if served is None:
            return None
        if served is app:
            return server
        served = getattr(served, "app", None)
    return None


def exiting(server: Any) -> bool:
    """Whether ``server`` is shutting down: its exit flag set, or (having started) none of
    its listening sockets serving any more (uvicorn's ``--limit-max-requests``, what
    gunicorn's ``--max-requests`` becomes, ends its loop without the flag)."""
    if server.should_exit:
        return True
    listening = getattr(server, "servers", None) or []
    started = getattr(server, "started", False) is True
    return started and bool(listening) and not any(each.is_serving() for each in listening)


async def watch(server: Any, on_exit: Callable[[], Awaitable[None]]) -> None:
    """Call ``on_exit`` once ``server`` is shutting down (`exiting`; runs until then, or
    until cancelled)."""
    while not exiting(server):  # noqa: ASYNC110 - flags of the server, polled on purpose
        await asyncio.sleep(INTERVAL)
    await on_exit()
