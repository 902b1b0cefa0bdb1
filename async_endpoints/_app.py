"""Joining a Starlette or FastAPI app: the library runs inside the app's lifespan.

The app's own lifespan is kept and runs first, so what the handlers need is ready before
the worker pool starts and is closed after the pool has drained. The library's answers to
its store errors raised in the app's own routes are registered on the app at the same time
(see `install_exception_handlers`), and on the apps mounted under it when it starts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from ._errors import ConfigurationError
from ._exception_handlers import install_exception_handlers, install_on_mounted_apps

Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


def join_app(
    app: Any,
    running: Callable[[], AbstractAsyncContextManager[Any]],
    keep_state: Callable[[Any], None] = lambda state: None,
) -> Lifespan:
    """Make ``app``'s lifespan run its own lifespan, give what it yielded (its state, or
    None) to ``keep_state``, then run ``running()``; return its own lifespan.

    Raises:
        ConfigurationError: ``app`` is not a Starlette (or FastAPI) app; it is left as is.
    """
    if not _is_starlette_app(app):
        raise ConfigurationError(f"app must be a Starlette or FastAPI app, not {app!r}")
    router = app.router
    original: Lifespan = router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        async with original(app) as state:
            install_on_mounted_apps(app)  # mounted now, by the app's startup included
            keep_state(state)
            async with running():
                yield state

    router.lifespan_context = lifespan
    install_exception_handlers(app)
    return original


def _is_starlette_app(app: Any) -> bool:
    """Duck-typed: what the library uses of a Starlette (or FastAPI) app is there."""
    router = getattr(app, "router", None)
    return (
        hasattr(router, "lifespan_context")
        and hasattr(app, "exception_handlers")
        and callable(getattr(app, "add_exception_handler", None))
    )
