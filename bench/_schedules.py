"""The cron scheduler's cost per tick (issue 12), ours alone, on the shared Redis.

Two stores (two key prefixes) hold 10 and 10,000 schedules; in both, the same 10 are due
at every tick (the others are due next New Year). A tick is what every worker process's
scheduler does once per cycle: read the store's clock, ask for the due schedules, and
fire each (one script per schedule, its job enqueued in the same script). Between ticks
(untimed) the 10 are made due again by removing and re-adding them with a due time in
the past. Ticks of the two stores alternate; the figures are the tick's median wall time
seen by the client and the Redis time spent in scripts per tick (commandstats), and their
ratio 10,000 / 10: O(due) means about 1.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from async_endpoints import AsyncContext, AsyncEndpoints, Schedule
from async_endpoints._scheduler import Scheduler
from async_endpoints_redis import RedisJobStore

from ._driver import log
from ._queues import Plan
from ._redis import Server
from ._report import Target
from ._stats import latency_ms

SIZES = (10, 10_000)
DUE = 10
TICKS = 200  # per size and repeat


def run(server: Server, plan: Plan) -> dict[str, Any]:
    """Tick times with 10 and with 10,000 schedules defined, 10 due at each tick (by
    store: "10", "10000")."""
    server.flush()
    found = asyncio.run(_measure(server, plan.repeats, TICKS if plan.repeats > 1 else 50))
    server.flush()
    for figures in found.values():
        log(
            f"schedules: {figures['defined']:,} defined, {DUE} due: tick p50 "
            f"{figures['tick']['p50']:.3f} ms, Redis {figures['redis_us_per_tick']:.0f} us per tick"
        )
    return found


async def _measure(server: Server, repeats: int, ticks: int) -> dict[str, Any]:
    stores = {size: RedisJobStore(server.url, prefix=f"bench-cron-{size}") for size in SIZES}
    samples: dict[int, list[float]] = {size: [] for size in SIZES}
    redis_us: dict[int, float] = dict.fromkeys(SIZES, 0.0)
    try:
        schedulers = {size: await _defined(store, size) for size, store in stores.items()}
        for _ in range(repeats * ticks):
            for size in SIZES:
                await _make_due(stores[size])
                _, usec_before = server.script_time()
                began = time.perf_counter()
                await schedulers[size].tick()
                samples[size].append(time.perf_counter() - began)
                redis_us[size] += server.script_time()[1] - usec_before
    finally:
        for store in stores.values():
            await store.aclose()
    return {
        str(size): {
            "defined": size,
            "due": DUE,
            "tick": latency_ms(samples[size]),
            "redis_us_per_tick": redis_us[size] / len(samples[size]),
        }
        for size in SIZES
    }


async def _defined(store: RedisJobStore, size: int) -> Scheduler:
    """``size`` schedules in ``store``, all due next New Year; a scheduler over them."""
    endpoints = AsyncEndpoints(store=store)

    @endpoints.add_handler
    async def noop(ctx: AsyncContext[None]) -> None:
        pass

    await store.start()
    new_year = datetime(datetime.now(UTC).year + 1, 1, 1, tzinfo=UTC)
    for n in range(size):
        yearly = Schedule(f"yearly-{n}", "noop", "0 0 1 1 *", next_run_at=new_year)
        await store.upsert_schedule(yearly)
    scheduler = endpoints.scheduler()
    assert scheduler is not None
    return scheduler


async def _make_due(store: RedisJobStore) -> None:
    """The ``DUE`` every-second schedules, due a minute ago."""
    past = (datetime.now(UTC) - timedelta(minutes=1)).replace(microsecond=0)
    for n in range(DUE):
        await store.remove_schedule(f"due-{n}")
        schedule = Schedule(f"due-{n}", "noop", "* * * * * *", unique=False, next_run_at=past)
        await store.upsert_schedule(schedule)


def summary(found: dict[Any, Any]) -> tuple[list[str], list[Target]]:
    """The lines that show the issue-12 scheduler figures, and its target judged on them."""
    small, large = found.get(str(SIZES[0])), found.get(str(SIZES[1]))
    if not (small and large):
        return [], []
    ratio = large["tick"]["p50"] / small["tick"]["p50"]
    redis_ratio = large["redis_us_per_tick"] / max(small["redis_us_per_tick"], 1e-9)
    lines = [
        f"scheduler tick, {DUE} due, 10,000 / 10 schedules defined: p50 "
        f"{large['tick']['p50']:.3f} / {small['tick']['p50']:.3f} ms = {ratio:.2f}x; Redis "
        f"{large['redis_us_per_tick']:.0f} / {small['redis_us_per_tick']:.0f} us per tick = "
        f"{redis_ratio:.2f}x"
    ]
    goal = Target("scheduler tick, 10,000 schedules <= 1.5x 10", f"{ratio:.2f}x", ratio <= 1.5)
    return lines, [goal]
