"""A handler that runs until it is cancelled, for the tests of self-fencing: it tells when
it started and when its cancellation reached it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from async_endpoints import AsyncContext


def hangs_until_cancelled(
    started: asyncio.Event, cancelled: asyncio.Event
) -> Callable[[AsyncContext[None]], Awaitable[None]]:
    """The handler: sets ``started``, waits forever, sets ``cancelled`` when cancelled."""

    async def hangs(ctx: AsyncContext[None]) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    return hangs
