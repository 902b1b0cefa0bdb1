"""503 answers for the library's store errors raised in any route of the app.

An app's own route that calls `AsyncEndpoints.submit` or `AsyncEndpoints.wait_for` (to answer
synchronously, say) meets `StoreUnavailableError` while the store is down and
`QueueFullError` while too many jobs wait. Starlette would answer those with a plain-text
500; these handlers answer ``503`` with ``Retry-After`` and a fixed JSON message, as the
library's own routes do (the exception's text names hosts: it goes to the log only).
An `ExceptionGroup` made only of those errors (a route that submits inside a
`asyncio.TaskGroup`) is answered as its first one; any other group goes on as before.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.routing import Host, Mount
from starlette.websockets import WebSocket

from ._errors import QueueFullError, StoreUnavailableError
from ._http import STORE_UNAVAILABLE
from ._outage_log import STORE_OUTAGE
from ._responses import error_response

logger = logging.getLogger("async_endpoints")

QUEUE_FULL = "too many jobs are waiting; try again later"
#: Middleware layers looked through to find a mounted app.
_MAX_WRAPPERS = 32
#: WebSocket close code "Try Again Later" (RFC 6455 registry).
_TRY_AGAIN_LATER = 1013


def install_exception_handlers(app: Any) -> None:
    """Register the 503 handlers on ``app``, keeping any the app registered already.

    A handler the app has for one of these types, or for a base class of theirs below
    ``Exception`` (``JobStoreError``, ``AsyncEndpointsError``), is left in charge.
    """
    registered = app.exception_handlers
    for error_type, handler in (
        (StoreUnavailableError, store_unavailable),
        (QueueFullError, queue_full),
        (ExceptionGroup, store_error_group),
    ):
        mro = error_type.__mro__
        if not any(cls in registered for cls in mro[: mro.index(Exception)]):
            app.add_exception_handler(error_type, handler)


def install_on_mounted_apps(app: Any) -> None:
    """`install_exception_handlers` on every Starlette or FastAPI app mounted under
    ``app``, however deep and behind whatever middleware the mount wraps it in: a
    mounted app answers its routes' errors itself (a plain-text 500), before the parent's
    handlers could see them. Called at startup, before any request builds their
    middleware."""
    seen: set[int] = {id(app)}
    routers = [app]
    while routers:
        for route in getattr(routers.pop(), "routes", ()):
            if not isinstance(route, (Mount, Host)):
                continue
            mounted = _unwrapped(route.app)
            if mounted is None or id(mounted) in seen:
                continue
            seen.add(id(mounted))
            if hasattr(mounted, "exception_handlers") and hasattr(mounted, "router"):
                install_exception_handlers(mounted)
            routers.append(mounted)


def _unwrapped(app: Any) -> Any:
    """The app or router under the middleware a mount wraps ``app`` in (each middleware
    keeps the app it wraps as ``.app``), or None when there is none to find."""
    for _ in range(_MAX_WRAPPERS):
        if app is None or hasattr(app, "routes"):
            return app
        app = getattr(app, "app", None)
    return None


async def store_unavailable(connection: HTTPConnection, exc: Exception) -> Response | None:
    """``503`` + ``Retry-After`` for a `StoreUnavailableError` raised in a route."""
    STORE_OUTAGE.warning("%s: the job store is unavailable: %s", connection.url.path, exc)
    return await _try_again_later(connection, exc, STORE_UNAVAILABLE)


async def queue_full(connection: HTTPConnection, exc: Exception) -> Response | None:
    """``503`` + ``Retry-After`` for a `QueueFullError` raised in a route."""
    return await _try_again_later(connection, exc, QUEUE_FULL)


async def store_error_group(connection: HTTPConnection, exc: Exception) -> Response | None:
    """A group of store errors only (``StoreUnavailableError``, ``QueueFullError``, however
    nested) is answered as its first one; any other group is raised again, to be answered
    as without this handler (a 500)."""
    assert isinstance(exc, ExceptionGroup)
    matched, rest = exc.split((StoreUnavailableError, QueueFullError))
    if matched is None or rest is not None:
        raise exc
    first = _first_leaf(matched)
    if isinstance(first, StoreUnavailableError):
        return await store_unavailable(connection, first)
    return await queue_full(connection, first)


def _first_leaf(group: BaseExceptionGroup[Exception]) -> Exception:
    found: Exception | BaseExceptionGroup[Exception] = group
    while isinstance(found, BaseExceptionGroup):
        found = found.exceptions[0]
    return found


async def _try_again_later(
    connection: HTTPConnection, exc: Exception, detail: str
) -> Response | None:
    if isinstance(connection, WebSocket):
        # A WebSocket route gets no HTTP answer: its socket is closed with "try again later".
        with contextlib.suppress(RuntimeError):  # closed already
            await connection.close(_TRY_AGAIN_LATER, detail)
        return None
    retry_after: float = getattr(exc, "retry_after", 1.0)
    return error_response(503, detail, retry_after=retry_after)
