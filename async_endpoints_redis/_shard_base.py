"""`ShardBase`: what the parts of `ShardedRedisJobStore` share (its shards, layout,
pointers and counts) and the lookups they all use."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

from async_endpoints._store_features import ClaimCancelListener

from ._shard_layout import ShardLayout

if TYPE_CHECKING:
    from ._shard_counts import WaitingCounts
    from ._shard_pointers import Pointers
    from ._store import RedisJobStore


class ShardBase:
    """The state of a sharded store; its methods are in `_shard_store`."""

    _layout: ShardLayout
    _shards: list[RedisJobStore]
    _pointers: Pointers | None
    _counts: WaitingCounts
    _retention: float
    _cancel_listeners: list[ClaimCancelListener]
    _owns_client: bool
    _upkeep_lock: asyncio.Lock
    _next_upkeep: float
    _next_miss_upkeep: float
    _closed: bool
    _room_told: set[int]

    if TYPE_CHECKING:

        async def _ready_shards(self) -> list[RedisJobStore]: ...

        async def _located(self, job_id: uuid.UUID) -> RedisJobStore: ...

        def _of_token(self, token: str) -> RedisJobStore | None: ...

    @property
    def _pointer_book(self) -> Pointers:
        assert self._pointers is not None, "the store is not started"
        return self._pointers
