"""`StoreBase`: what the parts of `RedisJobStore` share: the connection and its calls."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from async_endpoints._store import Claim

from ._connection import Connection
from ._notify import Notifications
from ._scripts import Scripts

T = TypeVar("T")


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
        self._seen: dict[str, float] = {}

    def add(self, token: str) -> None:
        """Remember ``token`` as cancelled."""
        now = time.monotonic()
        if len(self._seen) >= self.MOST:
            self._forget_before(now - self.KEEP_FOR)
            while len(self._seen) >= self.MOST:
                del self._seen[next(iter(self._seen))]
        self._seen[token] = now

    def live(self, claims: list[Claim]) -> list[Claim]:
        """``claims`` without those cancelled already."""
        if not self._seen:
            return claims
        return [claim for claim in claims if claim.token not in self._seen]

    def _forget_before(self, moment: float) -> None:
        for token, seen in list(self._seen.items()):
            if seen >= moment:
                return
            del self._seen[token]


@dataclass(eq=False)
class Offer:
    """A store's open offer: the jobs handed to it, until `wait_for_work` returns them."""

    base: str
    handed: list[Claim] = field(default_factory=list)
    ended: bool = False


class StoreBase:
    """The connection, its notifications, the cancel listeners and the open offer."""

    _connection: Connection
    _notifications: Notifications
    _cancel_listeners: list[Callable[[uuid.UUID], None]]
    _cancelled_claims: CancelledClaims
    _offer: Offer | None

    async def _run(self, operation: str, call: Callable[[Scripts], Awaitable[T]]) -> T:
        return await self._connection.run(operation, call)
