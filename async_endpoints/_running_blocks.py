"""The `running` blocks of one `AsyncEndpoints` open in its event loop, and the worker pool
they share.

Blocks may nest (a test starting workers inside a block without them) or overlap without
nesting (blocks of two tasks, ending in either order). The pool, with the cron scheduler,
starts with the first block that wants workers and stops with the last of them, whichever
started it; while it runs it serves the queues of the block that started it (a block asking
for others is told so in a warning). A block that wants workers while the pool is stopping
(the last block ended, its jobs are finishing) waits for that stop, then starts it anew.
While no pool runs, the queues `drain` serves are those of the block entered last of the
open ones (the ``queues`` setting when none is), so they follow the blocks whatever order
they end in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass

from ._runner import WorkerPool

logger = logging.getLogger("async_endpoints")


@dataclass(slots=True, eq=False)
class RunningBlock:
    """One open `running` block: the queues it serves, whether it named them, and whether
    it was told that a pool of other queues serves instead (told once)."""

    queues: tuple[str, ...]
    asked: bool
    told: bool = False


class RunningBlocks:
    """The open blocks, in the order they were entered, and the pool they hold."""

    def __init__(
        self,
        pool: WorkerPool,
        scheduling: Callable[[], AbstractAsyncContextManager[None]],
        all_queues: tuple[str, ...],
    ) -> None:
        self._pool = pool
        self._scheduling = scheduling
        self._all_queues = all_queues
        self._open: list[RunningBlock] = []
        self._held: AsyncExitStack | None = None  # the pool and the scheduler, while held
        self._users = 0  # the open blocks that want workers
        self._stopped: asyncio.Event | None = None  # set when a stop under way has ended

    def enter(self, queues: tuple[str, ...], *, asked: bool) -> RunningBlock:
        """A block opens, serving ``queues`` (``asked``: it named them)."""
        block = RunningBlock(queues, asked=asked)
        self._open.append(block)
        if self._held is None:
            self._pool.queues = queues
        else:
            self._told_kept(block)
        return block

    async def join(self, block: RunningBlock) -> None:
        """``block`` wants workers: the pool (and the scheduler) start with its queues,
        unless a block holds them already (after the stop under way, if any)."""
        while self._held is None and self._stopped is not None:
            await self._stopped.wait()
        if self._held is None:
            self._pool.queues = block.queues
            async with AsyncExitStack() as starting:
                await starting.enter_async_context(self._pool)
                await starting.enter_async_context(self._scheduling())
                self._held = starting.pop_all()
        else:
            self._told_kept(block)
        self._users += 1

    async def leave(self, block: RunningBlock, *, joined: bool) -> None:
        """``block`` ends; when it was the last one with workers, the pool stops (draining
        within the grace period) and the scheduler with it. The block is closed however
        the stop ends (a cancellation of the task included)."""
        try:
            if joined:
                self._users -= 1
                if self._users == 0 and self._held is not None:
                    held, self._held = self._held, None
                    stopped = self._stopped = asyncio.Event()
                    try:
                        await held.aclose()
                    finally:
                        stopped.set()
                        if self._stopped is stopped:
                            self._stopped = None
        finally:
            self._open.remove(block)
            if self._held is None:
                self._pool.queues = self._open[-1].queues if self._open else self._all_queues

    def forget(self) -> None:
        """Drop what a loop closed while blocks were open left behind."""
        self._open.clear()
        self._held, self._users, self._stopped = None, 0, None
        self._pool.queues = self._all_queues

    def _told_kept(self, block: RunningBlock) -> None:
        if block.asked and not block.told and block.queues != self._pool.queues:
            block.told = True
            logger.warning(
                "running(queues=%s) while another block's pool serves %s: that pool keeps "
                "its queues",
                ",".join(block.queues),
                ",".join(self._pool.queues),
            )
