"""`TurnCohorts`: the submissions of one event-loop turn answered together, so that the
next turn's submissions are again one cohort.

Each shard batches the submissions of a turn into one script call (`_batch`). With one
shard, 100 concurrent submitters resume in the turn their shared call answers and submit
again in that turn: the batch stays whole. With N shards the N calls answer at different
times; answered on its own, each call resumes only its own submitters, whose next jobs
spread over the N shards, so each batch shrinks by N again (N² smaller than one shard's,
not N). A sharded store therefore holds the answers of a turn's submissions until every
one of them is answered (each with its own reply or error; pointers, limits and
idempotency are as before), so a turn's submitters resume together and their next jobs
make one call per shard again, sent at once. A lone submission is a cohort of one and
waits for nothing; a cancelled one waits for nothing either.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class _Cohort:
    """The submissions begun in one turn: how many are still under way."""

    def __init__(self) -> None:
        self.open = 0
        self.size = 0
        self.done = asyncio.Event()

    def finish(self) -> None:
        self.open -= 1
        if self.open == 0:
            self.done.set()


class TurnCohorts:
    """Groups the submissions begun in one event-loop turn (see the module docstring)."""

    def __init__(self) -> None:
        self._current: _Cohort | None = None

    async def together(self, submission: Awaitable[T]) -> T:
        """``submission``'s reply (or error), given once every submission begun in the
        same turn has its own."""
        cohort = self._current
        if cohort is None:
            cohort = self._current = _Cohort()
            asyncio.get_running_loop().call_soon(self._close, cohort)
        cohort.open += 1
        cohort.size += 1
        try:
            reply = await submission
        except BaseException as exc:
            cohort.finish()
            if isinstance(exc, Exception):
                await self._resume(cohort)
            raise
        cohort.finish()
        await self._resume(cohort)
        return reply

    @staticmethod
    async def _resume(cohort: _Cohort) -> None:
        """Wait for the cohort; its last member, too, resumes in the next turn, with the
        others (a cohort of one goes on at once)."""
        if not cohort.done.is_set():
            await cohort.done.wait()
        elif cohort.size > 1:
            await asyncio.sleep(0)

    def _close(self, cohort: _Cohort) -> None:
        if self._current is cohort:
            self._current = None
