"""`StoreBase`: what the parts of `RedisJobStore` share: the connection and its calls."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from async_endpoints._store import Claim

from ._connection import Connection
from ._notify import Notifications
from ._scripts import Scripts

T = TypeVar("T")


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
    _offer: Offer | None

    async def _run(self, operation: str, call: Callable[[Scripts], Awaitable[T]]) -> T:
        return await self._connection.run(operation, call)
