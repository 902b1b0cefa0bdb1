"""`StoreBase`: what the parts of `RedisJobStore` share: the connection and its calls."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from async_endpoints._cancels import CancelledClaims
from async_endpoints._job import Job, JobError
from async_endpoints._store import Claim
from async_endpoints._store_features import ClaimCancelListener

from ._connection import Connection
from ._notify import Notifications
from ._scripts import Scripts

T = TypeVar("T")

#: What the refused report of a cancelled claim that never ran says (nothing is kept).
_DROPPED = JobError("the job was cancelled before this claim ran", "Canceled")


@dataclass(eq=False)
class Offer:
    """A store's open offer: the jobs handed to it, until `wait_for_work` returns them."""

    base: str
    handed: list[Claim] = field(default_factory=list)
    ended: bool = False
    #: Per handed claim's token, ms of its lease left (by this process's reading of the
    #: store's clock) when its message arrived.
    lease_left: dict[str, int] = field(default_factory=dict)


class StoreBase:
    """The connection, its notifications, the cancel listeners and the open offer."""

    _connection: Connection
    _notifications: Notifications
    _cancel_listeners: list[ClaimCancelListener]
    _cancelled_claims: CancelledClaims
    _offer: Offer | None
    _withdrawals: set[asyncio.Task[None]]

    if TYPE_CHECKING:

        async def fail(
            self, claim: Claim, error: JobError, *, retry_in: float | None
        ) -> Job | None: ...

    async def _run(self, operation: str, call: Callable[[Scripts], Awaitable[T]]) -> T:
        return await self._connection.run(operation, call)

    def _let_go_soon(self, claims: Sequence[Claim]) -> None:
        """Claims of cancelled jobs that this store drops instead of running them (their
        cancel came first): report them ended, from a task of its own (`aclose` waits for
        it), so that a partition key the store holds for them goes to the key's next job
        now rather than when their lease runs out. Each report is refused (the job stays
        Canceled); one that fails leaves the key to the lease. Claims of jobs without a
        key hold nothing: nothing is sent for them."""
        claims = [claim for claim in claims if claim.job.partition_key is not None]
        if not claims:
            return
        task = asyncio.get_running_loop().create_task(self._let_go(claims))
        self._withdrawals.add(task)
        task.add_done_callback(self._withdrawals.discard)

    async def _let_go(self, claims: list[Claim]) -> None:
        for claim in claims:
            with contextlib.suppress(Exception):
                await self.fail(claim, _DROPPED, retry_in=None)
