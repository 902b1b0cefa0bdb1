"""For the tests of self-fencing: a handler that runs until it is cancelled (it tells when
it started and when its cancellation reached it), and a store with a part that is down."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from async_endpoints import AsyncContext, Claim, PartialRenewalError


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


class PartDown:
    """Mixed into a store of parts, one of them down: the claims of jobs named ``down``
    cannot be renewed (`PartialRenewalError` tells them unknown); the others are renewed
    as the store it is mixed into renews them."""

    async def renew(self, claims: Sequence[Claim], *, lease: float) -> set[str]:
        down = {claim.token for claim in claims if claim.job.name == "down"}
        kept = [claim for claim in claims if claim.token not in down]
        lost: set[str] = await super().renew(kept, lease=lease)  # type: ignore[misc]
        if not down:
            return lost
        raise PartialRenewalError("a part is down", lost=lost, unknown=down)
