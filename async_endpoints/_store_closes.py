"""The closes of job stores under way in this process, so that a store's close survives the
cancellation of the block that began it and a block starting the store waits for it.

A store left half closed keeps its connections and may not start again (a cancel landing
inside `aclose`: a lifespan's shutdown timeout). So `begin_close` runs the close as a task
of its own, registered by the store's id before any await of the caller: a block that
starts the store meanwhile waits for it (`closed_first`), and a second close begun
meanwhile runs after the first one (never beside it, where the first one's end would close
the store under the block that started it again). A close that fails is logged, since its
caller may be gone.
"""

from __future__ import annotations

import asyncio
import logging

from ._store import JobStore

logger = logging.getLogger("async_endpoints")

_CLOSES: dict[int, asyncio.Future[None]] = {}


def begin_close(store: JobStore) -> asyncio.Future[None]:
    """Begin closing ``store`` (after the close of it under way, if any); the future of
    that close (await it shielded: it never raises but a cancellation)."""
    before = _under_way(store)
    closing = asyncio.ensure_future(_close(store, before))
    _CLOSES[id(store)] = closing

    def ended(done: asyncio.Future[None]) -> None:
        if _CLOSES.get(id(store)) is done:
            del _CLOSES[id(store)]

    closing.add_done_callback(ended)
    return closing


async def closed_first(store: JobStore) -> None:
    """Wait for the close of ``store`` under way, if any, whatever its end."""
    closing = _under_way(store)
    if closing is not None:
        await asyncio.wait([closing])


def _under_way(store: JobStore) -> asyncio.Future[None] | None:
    closing = _CLOSES.get(id(store))
    if closing is None or closing.get_loop() is not asyncio.get_running_loop():
        return None  # (a close of a loop that has ended is no longer under way)
    return closing


async def _close(store: JobStore, before: asyncio.Future[None] | None) -> None:
    if before is not None:
        await asyncio.wait([before])
    try:
        await store.aclose()
    except Exception:
        logger.exception("closing the job store failed")
