"""Long waits that end when the client leaves.

A request with ``Prefer: wait=N`` (a submission, or a job's GET) holds its task and a
watcher of the job for up to N seconds. A client that disconnects sooner no longer reads
the answer, so the wait ends then: one cheap connect-and-drop must not buy N seconds of
server state. The disconnect is what the ASGI server reports on ``receive`` once the
request's body has been read (``http.disconnect``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

from starlette.requests import Request

T = TypeVar("T")


async def unless_disconnected(request: Request, waiting: Awaitable[T], otherwise: T) -> T:
    """What ``waiting`` returns (or raises); ``otherwise`` as soon as the client
    disconnects first (``waiting`` is then cancelled and awaited: what it holds is
    released before this returns). Cancelled itself, it cancels ``waiting`` too."""
    waited = asyncio.ensure_future(waiting)
    gone = asyncio.ensure_future(_disconnected(request.receive))
    try:
        await asyncio.wait((waited, gone), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        gone.cancel()
        waited.cancel()
        raise
    gone.cancel()
    if waited.done():
        return waited.result()
    waited.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waited
    return otherwise


async def _disconnected(receive: Callable[[], Awaitable[MutableMapping[str, Any]]]) -> None:
    """Return once ``receive`` reports the client gone; never, should it fail (the wait
    then runs its course, as without this)."""
    try:
        while (await receive())["type"] != "http.disconnect":
            pass
    except Exception:
        await asyncio.Future()
