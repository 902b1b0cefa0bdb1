"""Coalescing calls made in one event-loop turn into one Redis round trip.

A worker running many short handlers settles many of them in the same turn of the event
loop; sending each settlement as its own script call makes redis-py's per-call overhead
the bottleneck. `Batcher` queues the items submitted during a turn and hands them to one
flush at the end of it, then gives every caller its own reply (or the shared error).

An item submitted while no flush is under way and none is queued has nothing to share a
trip with: it is sent at once, from the caller's own task, so a lone submission (the
latency case) pays no extra loop turns. Under load a flush is nearly always under way,
and items batch per turn.

Several batchers can share one `Turn`: the shards of a sharded store, each with its own
flush (its own script call, in its own hash tag). Their items then wait in one queue, so
"nothing under way" means under way in no shard (a shard that was idle does not send its
first item of a busy turn alone), and the turn ends with one flush per shard that has
items, all sent at once; each caller is answered as soon as its own shard's reply
arrives, not when the slowest shard's does.

Such a turn also keeps one call under way per shard (``one_call_each``): items of a shard
whose call is under way wait for its reply (a round trip of that shard's server at
most, never another shard's) and then go together with that turn's (the next items of
the callers that reply answered, for one). Without this the shards'
replies, arriving at different moments, would each start their callers' next items in a
turn of their own, one call per shard each: with N shards a busy process's calls would
split N ways per round trip, then N ways again, down to a job or two per call (seen with
100 submitters and 3 shards: a script call per 7 jobs against 1 per 90 with one shard).
Items are held ``hold_for`` seconds at most (a round trip is far shorter): past that
they go on their own, so a call that hangs (its server frozen) does not add its whole
deadline to theirs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from async_endpoints._errors import JobStoreError

Item = TypeVar("Item")
Reply = TypeVar("Reply")

Flush = Callable[[Sequence[Item]], Awaitable[Sequence[Reply]]]


class Turn(Generic[Item, Reply]):
    """The items of the current event-loop turn, of every batcher sharing it, and the
    flushes under way.

    Args:
        max_batch: The most items one turn's queue holds (and one batcher's held items,
            with ``one_call_each``); more start another flush.
        one_call_each: Keep at most one call of each batcher under way: its items of
            later turns wait for it (see the module docstring).
        hold_for: The most seconds an item waits for a call under way, with
            ``one_call_each``; then it goes on its own.
    """

    def __init__(
        self, max_batch: int = 500, *, one_call_each: bool = False, hold_for: float = 0.1
    ) -> None:
        self._max_batch = max_batch
        self._one_call_each = one_call_each
        self._hold_for = hold_for
        self._release_at: dict[Flush[Item, Reply], asyncio.TimerHandle] = {}
        self._pending: list[tuple[Flush[Item, Reply], Item, asyncio.Future[Reply]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._sending_alone = 0
        self._under_way: dict[Flush[Item, Reply], int] = {}  # calls of each flush
        self._held: dict[Flush[Item, Reply], list[tuple[Item, asyncio.Future[Reply]]]] = {}

    async def submit(self, flush: Flush[Item, Reply], item: Item) -> Reply:
        """Send ``item`` with ``flush`` now when nothing else is under way, else with this
        turn's flush of its kind; wait for its reply."""
        if not self._pending and not self._tasks and not self._sending_alone:
            self._sending_alone += 1
            self._begin(flush)
            try:
                replies = await flush([item])
            finally:
                self._sending_alone -= 1
                self._end(flush)
            if len(replies) != 1:
                raise JobStoreError(f"{len(replies)} replies for a batch of 1")
            return replies[0]
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        self._pending.append((flush, item, future))
        if len(self._pending) == 1:
            loop.call_soon(self._start_flush)
        elif len(self._pending) >= self._max_batch:
            self._start_flush()
        return await future

    def _start_flush(self) -> None:
        batch, self._pending = self._pending, []
        groups: dict[Flush[Item, Reply], list[tuple[Item, asyncio.Future[Reply]]]] = {}
        for flush, item, future in batch:
            groups.setdefault(flush, []).append((item, future))
        for flush, group in groups.items():  # one call per flush, all sent at once
            if self._one_call_each and self._under_way.get(flush):
                held = self._held.setdefault(flush, [])
                held += group
                if len(held) < self._max_batch:
                    if flush not in self._release_at:
                        self._release_at[flush] = asyncio.get_running_loop().call_later(
                            self._hold_for, self._release, flush
                        )
                    continue  # sent when its call under way returns (or hold_for passed)
                group = self._take_held(flush)
            self._launch(flush, group)

    def _take_held(self, flush: Flush[Item, Reply]) -> list[tuple[Item, asyncio.Future[Reply]]]:
        """The items held for ``flush``'s call under way (none left held)."""
        if (timer := self._release_at.pop(flush, None)) is not None:
            timer.cancel()
        return self._held.pop(flush, [])

    def _release(self, flush: Flush[Item, Reply]) -> None:
        """``hold_for`` passed and ``flush``'s call is still under way: its held items go
        on their own."""
        self._release_at.pop(flush, None)
        if held := self._take_held(flush):
            self._launch(flush, held)

    def _launch(
        self, flush: Flush[Item, Reply], group: list[tuple[Item, asyncio.Future[Reply]]]
    ) -> None:
        self._begin(flush)
        task = asyncio.get_running_loop().create_task(_send(flush, group))
        self._tasks.add(task)

        def ended(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            self._end(flush)

        task.add_done_callback(ended)

    def _begin(self, flush: Flush[Item, Reply]) -> None:
        self._under_way[flush] = self._under_way.get(flush, 0) + 1

    def _end(self, flush: Flush[Item, Reply]) -> None:
        """A call of ``flush`` ended: the items held for it go now, when it was the last."""
        left = self._under_way.pop(flush) - 1
        if left:
            self._under_way[flush] = left
        elif held := self._take_held(flush):
            # Back in the turn's queue: the callers this reply answered submit their
            # next items in this turn, and those of the same flush join them.
            if not self._pending:
                asyncio.get_running_loop().call_soon(self._start_flush)
            self._pending[:0] = [(flush, item, future) for item, future in held]


class Batcher(Generic[Item, Reply]):
    """Sends a lone item at once; collects the items of a busy turn and flushes them
    together.

    Args:
        flush: Sends a batch and returns one reply per item, in order.
        max_batch: The most items one flush carries; more start another flush.
        turn: The turn this batcher shares with others (the other shards of a store);
            one of its own when not given (then ``max_batch`` applies).
    """

    def __init__(
        self,
        flush: Flush[Item, Reply],
        max_batch: int = 500,
        *,
        turn: Turn[Item, Reply] | None = None,
    ) -> None:
        self._flush = flush
        self._turn: Turn[Item, Reply] = Turn(max_batch) if turn is None else turn

    async def submit(self, item: Item) -> Reply:
        """Send ``item`` now when nothing else is under way, else with this turn's flush;
        wait for its reply."""
        return await self._turn.submit(self._flush, item)


async def _send(flush: Flush[Item, Reply], batch: list[tuple[Item, asyncio.Future[Reply]]]) -> None:
    try:
        replies = await flush([item for item, _ in batch])
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
