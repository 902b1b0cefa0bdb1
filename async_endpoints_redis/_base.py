"""`StoreBase`: what the parts of `RedisJobStore` share: the connection and its calls."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from async_endpoints._job import Job, JobError
from async_endpoints._store import Claim
from async_endpoints._store_features import ClaimCancelListener

from ._connection import Connection
from ._notify import Notifications
from ._scripts import Scripts

T = TypeVar("T")

#: What the refused report of a cancelled claim that never ran says (nothing is kept).
_DROPPED = JobError("the job was cancelled before this claim ran", "Canceled")


class CancelledClaims:
    """Tokens of claims cancelled lately, as the cancel channel announced them.

    The cancel message and the reply of the claim it cancels travel on two connections: a
    claim's reply can arrive after the message that cancels it. A claim whose token is
    here is dropped from the reply instead of being run. Tokens are kept for
    `KEEP_FOR` seconds (a reply never takes longer: calls time out sooner), and at most
    `MOST` of them.
    """

    KEEP_FOR = 60.0
    MOST = 10_000

    def __init__(self) -> None:
        self._seen: dict[str, tuple[uuid.UUID, float]] = {}

    def add(self, job_id: uuid.UUID, token: str) -> None:
        """Remember job ``job_id``'s claim ``token`` as cancelled."""
        now = time.monotonic()
        if len(self._seen) >= self.MOST:
            self._forget_before(now - self.KEEP_FOR)
            while len(self._seen) >= self.MOST:
                del self._seen[next(iter(self._seen))]
        self._seen.pop(token, None)  # last in the order of arrival
        self._seen[token] = (job_id, now)

    def live(self, claims: list[Claim]) -> tuple[list[Claim], list[Claim]]:
        """``claims`` without those cancelled already, and those. A claim counts as
        cancelled when a cancel named its token and its job (a token may be made again, for
        another job, by a claim call resent after its first answer was lost)."""
        if not self._seen:
            return claims, []
        live: list[Claim] = []
        cancelled: list[Claim] = []
        for claim in claims:
            seen = self._seen.get(claim.token)
            (cancelled if seen is not None and seen[0] == claim.job.id else live).append(claim)
        return live, cancelled

    def _forget_before(self, moment: float) -> None:
        for token, (_, seen) in list(self._seen.items()):
            if seen >= moment:
                return
            del self._seen[token]


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
