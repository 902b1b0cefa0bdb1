"""`AnyMethodRoute`: a route every request method reaches, for routes behind an
``authorize`` hook (the dashboard's, a guarded metrics route).

Starlette's own routes answer a method they do not take with 405 and ``Allow``, which
would tell anyone that the route is there before ``authorize`` was asked; the endpoint of
an `AnyMethodRoute` asks it first, then answers 405 itself if it must.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send


class AnyMethodRoute(Route):
    """A route that every request method reaches; its endpoint answers 405 itself, once
    authorized. ``methods`` still names the usual ones (``listed``), for code that lists
    an app's routes; the route is left out of OpenAPI schemas."""

    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        listed: Sequence[str] = ("GET", "HEAD", "POST"),
        **options: Any,
    ) -> None:
        options.setdefault("include_in_schema", False)
        super().__init__(path, endpoint, methods=list(listed), **options)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """As `Route.matches`, any method a full match."""
        match, child = super().matches(scope)
        return (Match.FULL if match is Match.PARTIAL else match), child

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The endpoint, whatever the method (it answers 405 itself, once authorized)."""
        await self.app(scope, receive, send)
