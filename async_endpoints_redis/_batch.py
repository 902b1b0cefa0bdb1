"""Coalescing calls made in one event-loop turn into one Redis round trip.

A worker running many short handlers settles many of them in the same turn of the event
loop; sending each settlement as its own script call makes redis-py's per-call overhead
the bottleneck. `Batcher` queues the items submitted during a turn and hands them to one
flush at the end of it, then gives every caller its own reply (or the shared error).

An item submitted while no flush is under way and none is queued has nothing to share a
trip with: it is sent at once, from the caller's own task, so a lone submission (the
latency case) pays no extra loop turns. Under load a flush is nearly always under way,
and items batch per turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from async_endpoints._errors import JobStoreError

Item = TypeVar("Item")
Reply = TypeVar("Reply")


class Batcher(Generic[Item, Reply]):
    """Sends a lone item at once; collects the items of a busy turn and flushes them
    together.

    Args:
        flush: Sends a batch and returns one reply per item, in order.
        max_batch: The most items one flush carries; more start another flush.
    """

    def __init__(
        self, flush: Callable[[Sequence[Item]], Awaitable[Sequence[Reply]]], max_batch: int = 500
    ) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._pending: list[tuple[Item, asyncio.Future[Reply]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._sending_alone = 0

    async def submit(self, item: Item) -> Reply:
        """Send ``item`` now when nothing else is under way, else with this turn's flush;
        wait for its reply."""
        if not self._pending and not self._tasks and not self._sending_alone:
            self._sending_alone += 1
            try:
                replies = await self._flush([item])
            finally:
                self._sending_alone -= 1
            if len(replies) != 1:
                raise JobStoreError(f"{len(replies)} replies for a batch of 1")
            return replies[0]
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        self._pending.append((item, future))
        if len(self._pending) == 1:
            loop.call_soon(self._start_flush)
        elif len(self._pending) >= self._max_batch:
            self._start_flush()
        return await future

    def _start_flush(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[Item, asyncio.Future[Reply]]]) -> None:
        try:
            replies = await self._flush([item for item, _ in batch])
            if len(replies) != len(batch):
                raise JobStoreError(f"{len(replies)} replies for a batch of {len(batch)}")
        except BaseException as exc:  # every caller gets the failure, none waits forever
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), reply in zip(batch, replies, strict=False):
            if not future.done():
                future.set_result(reply)
