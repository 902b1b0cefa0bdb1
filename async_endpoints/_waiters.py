"""`TerminalWaiters`: callers of `wait_until_terminal` on the in-memory store, woken by the
job's settlement rather than by polling."""

from __future__ import annotations

import asyncio
import uuid


class TerminalWaiters:
    """Futures per job id, resolved when that job becomes terminal (or the store closes)."""

    def __init__(self) -> None:
        self._waiters: dict[uuid.UUID, set[asyncio.Future[None]]] = {}

    async def wait(self, job_id: uuid.UUID, timeout: float) -> None:
        """Until ``wake(job_id)`` or ``wake_all()``, or ``timeout`` seconds at most."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(job_id, set()).add(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            pass
        finally:
            waiters = self._waiters.get(job_id, set())
            waiters.discard(waiter)
            if not waiters:
                self._waiters.pop(job_id, None)

    def wake(self, job_id: uuid.UUID) -> None:
        """Wake every caller waiting for ``job_id``."""
        for waiter in self._waiters.pop(job_id, ()):
            if not waiter.done():
                waiter.set_result(None)

    def wake_all(self) -> None:
        """Wake every caller (the store is closing)."""
        for job_id in list(self._waiters):
            self.wake(job_id)
