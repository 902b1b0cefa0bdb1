"""Redis frozen for part of a lease while a handler runs: the worker's renewals time out
meanwhile and are sent again every `RETRY_PAUSE` seconds, so the first after the thaw
renews the lease before it runs out; the handler is neither fenced nor run twice."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence

import pytest

from async_endpoints import AsyncContext, AsyncEndpoints, Claim, JobStatus
from async_endpoints_redis import RedisJobStore
from tests.redis_servers import RedisServer

pytestmark = pytest.mark.redis

LEASE = 3.0  # renewals every second when all is well
FREEZE = 1.7  # from the handler's start: over half the lease, under its two thirds


class NotingRenewals(RedisJobStore):
    """A Redis store that notes when each renewal that succeeded was answered, and sets
    ``after_thaw`` at the first answered after ``thawed`` (loop time) once that is set."""

    renewed: list[float]
    thawed: float | None
    after_thaw: asyncio.Event

    async def renew(self, claims: Sequence[Claim], *, lease: float) -> set[str]:
        lost = await super().renew(claims, lease=lease)
        now = asyncio.get_running_loop().time()
        self.renewed.append(now)
        if self.thawed is not None and now > self.thawed:
            self.after_thaw.set()
        return lost


async def test_a_redis_frozen_for_half_a_lease_does_not_fence_a_running_handler(
    own_redis_server: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frozen (SIGSTOP) from the handler's start for over half the lease, each renewal
    timing out meanwhile: the worker renews within 0.6 s of the thaw (where a third of
    the lease is a second), and the job completes from its one attempt."""
    monkeypatch.setattr("async_endpoints._recovery.RETRY_PAUSE", 0.05)
    store = NotingRenewals(
        own_redis_server.url, prefix=prefix, socket_timeout=0.2, socket_connect_timeout=0.2
    )
    store.renewed, store.thawed, store.after_thaw = [], None, asyncio.Event()
    engine = AsyncEndpoints(store=store, claim_timeout=LEASE, recovery_interval=0.2)
    process = own_redis_server.process
    assert process is not None
    attempts: list[int] = []
    cancelled = asyncio.Event()

    async def freeze() -> None:
        process.send_signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(FREEZE)
        finally:
            process.send_signal(signal.SIGCONT)
            store.thawed = asyncio.get_running_loop().time()

    async def report(ctx: AsyncContext[None]) -> str:
        attempts.append(ctx.retry_count)
        freezing = asyncio.create_task(freeze())
        try:
            async with asyncio.timeout(10):
                await store.after_thaw.wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        finally:
            await asyncio.shield(freezing)  # Redis is never left frozen
        return "done"

    engine.add_handler(report)
    async with engine.running():
        job = await engine.submit("report")
        done = await engine.wait_for(job.id, timeout=20)
    assert not cancelled.is_set() and attempts == [0]
    assert done.status is JobStatus.COMPLETED and done.retry_count == 0
    assert store.thawed is not None
    first = min(t for t in store.renewed if t > store.thawed)
    assert first - store.thawed <= 0.6  # a socket timeout and a pause: 0.25 s
