"""A sharded store's wait (`ShardWaits.wait_for_work`) cancelled again while it waits for
its shards' own waits to end: what those hand over or fail with afterwards is still taken
care of. The shards here are stand-ins for the per-shard waits alone (the fan-out is what
is tested; the Redis side is in tests/redis/test_redis_slot_migration.py)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Sequence
from typing import Any

from async_endpoints._errors import StoreUnavailableError
from async_endpoints_redis._shard_waits import ShardWaits


class SlowToEnd:
    """A shard whose wait, once cancelled, takes a while to end its offer, then ends with
    ``outcome``: jobs handed over meanwhile (a cancellation a redis-py call swallowed),
    or an error."""

    def __init__(self, outcome: list[str] | Exception) -> None:
        self.outcome = outcome
        self.given_back: list[list[str]] = []
        self.ended = asyncio.Event()

    async def wait_for_work(self, timeout: float, **options: Any) -> list[str]:
        try:
            await asyncio.sleep(timeout)
            return []
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)
            self.ended.set()
            if isinstance(self.outcome, Exception):
                raise self.outcome from None
            return self.outcome

    def _give_back(self, claims: Sequence[str]) -> None:
        self.given_back.append(list(claims))


async def test_a_wait_cancelled_twice_still_gives_back_what_its_shards_hand_over_later() -> None:
    """Jobs a shard's wait was handed after its caller left go back to their queue (once),
    and a shard's failure after then is taken, not left "never retrieved"."""
    unseen: list[str] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda loop, context: unseen.append(context["message"]))
    handing, failing = SlowToEnd(["a claim"]), SlowToEnd(StoreUnavailableError("down"))
    waits = object.__new__(ShardWaits)

    async def ready_shards() -> list[SlowToEnd]:
        return [handing, failing]

    waits._ready_shards = ready_shards  # type: ignore[method-assign]
    try:
        waiting = asyncio.ensure_future(waits.wait_for_work(10, take=1, lease=30))
        await asyncio.sleep(0.01)
        waiting.cancel()  # it cancels its shards' waits and waits for them to end...
        await asyncio.sleep(0.01)
        waiting.cancel()  # ...and is cancelled again meanwhile: it leaves them
        await asyncio.gather(waiting, return_exceptions=True)
        assert waiting.cancelled()
        await handing.ended.wait()
        await failing.ended.wait()
        await asyncio.sleep(0)  # their done callbacks
        del waiting
        gc.collect()  # an unretrieved failure is reported as its task is collected
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert handing.given_back == [["a claim"]]
    assert failing.given_back == []
    assert unseen == []
