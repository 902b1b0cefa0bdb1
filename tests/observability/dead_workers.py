"""A worker that dies mid-attempt, and the handles two engines take on one store's jobs:
shared by the tests of what the engine that recovers the job reports (metrics, events,
spans)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from async_endpoints import AsyncContext, AsyncEndpoints, JobStore

LEASE = 2.0  # renewed every third of it: long enough that a loaded machine renews on time


Handles = Callable[[], JobStore]


def engine_on(
    store: JobStore, started: asyncio.Event, retries: int = 0, **settings: object
) -> AsyncEndpoints:
    """An engine whose ``hold`` handler (``retries`` retries) waits for ever on its first
    attempt and returns "again" on the next."""
    engine = AsyncEndpoints(
        store=store,
        claim_timeout=LEASE,
        recovery_interval=0.05,
        shutdown_grace_period=0,
        retry_base_delay=0,
        retry_jitter=0,
        **settings,  # type: ignore[arg-type]
    )

    async def hold(ctx: AsyncContext[None]) -> str:
        if ctx.retry_count:
            return "again"
        started.set()
        await asyncio.Event().wait()
        return "never"

    engine.add_handler(hold, max_retries=retries)
    return engine


async def left_running(
    store: JobStore, webhook_to: str | None = None, **settings: object
) -> tuple[uuid.UUID, CollectorRegistry]:
    """A job of ``hold`` started by an engine whose pool then stops without settling it
    and without giving it back (grace 0, and its give-back made a no-op: as a dead worker
    leaves it, claimed until its lease runs out); the job's id and that engine's
    metrics."""
    started = asyncio.Event()
    dying = engine_on(store, started, **settings)
    registry = CollectorRegistry()
    dying.enable_metrics(registry)

    async def gives_nothing_back(claims: object) -> None:
        return None

    dying.pool._give_back = gives_nothing_back  # type: ignore[method-assign,assignment]
    async with dying.running():
        job = await dying.submit("hold", None, webhook_url=webhook_to)
        async with asyncio.timeout(10):
            await started.wait()
    return job.id, registry
