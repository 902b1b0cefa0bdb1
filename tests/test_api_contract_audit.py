"""Rules found by auditing the library against its public contract (API.md): input the
contract is silent about is refused with an exception (or a 4xx) naming the problem,
never a hang, a late crash inside a worker, or a 500."""

from __future__ import annotations

import asyncio
import math

import pytest

from async_endpoints import AsyncContext, AsyncEndpoints


async def forever(ctx: AsyncContext) -> None:
    await asyncio.Event().wait()


# --- wait_for ---------------------------------------------------------------------------------


async def test_wait_for_refuses_a_timeout_that_is_not_a_number() -> None:
    """``timeout=nan`` is a ValueError naming it, at once: it used to spin a core for ever
    (no deadline ever passed, and every wait was of 0 s)."""
    endpoints = AsyncEndpoints()
    endpoints.add_handler(forever)
    async with endpoints.running(workers=False):
        job = await endpoints.submit("forever")
        async with asyncio.timeout(5):
            with pytest.raises(ValueError, match="timeout"):
                await endpoints.wait_for(job.id, timeout=math.nan)
