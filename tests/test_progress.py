"""``ctx.report_progress``: JSON values only, no larger than a result, coalesced to at
most one store write per 100 ms per job with the last value kept, written only while the
claim is held."""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from async_endpoints import AsyncContext, AsyncEndpoints, InMemoryJobStore, JobStore
from async_endpoints._job import NewJob
from async_endpoints._progress import ProgressReporter
from async_endpoints._store import Claim, ControlStore
from async_endpoints._store_features import ProgressStore


class CountingStore(InMemoryJobStore):
    """Counts the progress writes that reach the store."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[Any] = []

    async def set_progress(self, claim: Claim, progress: Any) -> bool:
        self.writes.append(progress)
        return await super().set_progress(claim, progress)


@pytest.fixture
async def counting() -> AsyncIterator[tuple[AsyncEndpoints, CountingStore]]:
    store = CountingStore()
    engine = AsyncEndpoints(store=store)
    async with engine.running(workers=False):
        yield engine, store


async def test_reports_within_100_ms_cost_at_most_two_writes_and_keep_the_last(
    counting: tuple[AsyncEndpoints, CountingStore],
) -> None:
    endpoints, store = counting

    async def busy(ctx: AsyncContext) -> str:
        for percent in range(0, 101, 10):
            await ctx.report_progress({"percent": percent})
        return "done"

    endpoints.add_handler(busy)
    job = await endpoints.submit("busy")
    assert await endpoints.drain() == 1
    done = await endpoints.get_job(job.id)
    assert done is not None and done.result == "done"
    assert done.progress == {"percent": 100}
    assert len(store.writes) <= 2
    assert store.writes[-1] == {"percent": 100}


async def test_the_settled_job_carries_the_last_progress(
    counting: tuple[AsyncEndpoints, CountingStore],
) -> None:
    """What ``wait_for`` (and ``Prefer: wait``) answer shows the last value, too."""
    endpoints, _ = counting

    async def steps(ctx: AsyncContext) -> None:
        await ctx.report_progress("first")
        await ctx.report_progress("last")

    endpoints.add_handler(steps)
    job = await endpoints.submit("steps")
    await endpoints.drain()
    assert (await endpoints.wait_for(job.id, timeout=5)).progress == "last"


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, object(), "\ud800", {1: "a"}, {"done": 10**400}, [2**64]]
)
async def test_a_value_with_no_json_form_is_refused(
    counting: tuple[AsyncEndpoints, CountingStore], value: Any
) -> None:
    endpoints, store = counting
    refused: list[BaseException] = []

    async def odd(ctx: AsyncContext) -> None:
        try:
            await ctx.report_progress(value)
        except ValueError as exc:
            refused.append(exc)

    endpoints.add_handler(odd)
    await endpoints.submit("odd")
    await endpoints.drain()
    assert len(refused) == 1
    assert store.writes == []


class Step(BaseModel):
    done: int
    at: datetime


@dataclass
class Tally:
    seen: set[int]
    cost: Decimal


async def test_a_value_pydantic_writes_as_json_is_kept_as_it_writes_it(
    counting: tuple[AsyncEndpoints, CountingStore],
) -> None:
    """As for a result: a model, a dataclass, a date, a decimal, a set or a UUID is kept
    as pydantic writes it as JSON (not refused as having no JSON form)."""
    endpoints, _ = counting
    job_ids: list[str] = []

    async def rich(ctx: AsyncContext) -> None:
        await ctx.report_progress(
            [
                Step(done=3, at=datetime(2026, 1, 1, tzinfo=UTC)),
                Tally({7}, Decimal("1.50")),
                uuid.UUID(int=1),
            ]
        )
        job_ids.append(str(ctx.job_id))

    endpoints.add_handler(rich)
    job = await endpoints.submit("rich")
    await endpoints.drain()
    done = await endpoints.get_job(job.id)
    assert done is not None and job_ids == [str(job.id)]
    assert done.progress == [
        {"done": 3, "at": "2026-01-01T00:00:00Z"},
        {"seen": [7], "cost": "1.50"},
        "00000000-0000-0000-0000-000000000001",
    ]


async def test_a_value_larger_than_max_result_size_is_refused_and_the_last_one_kept() -> None:
    """Progress is held to the size of a result: a larger value raises ValueError naming
    both sizes, nothing of it is written, and the job keeps the value before."""
    store = CountingStore()
    endpoints = AsyncEndpoints(store=store, max_result_size=64)
    refused: list[str] = []

    async def chatty(ctx: AsyncContext) -> str:
        await ctx.report_progress("x" * 62)  # 64 bytes of JSON: the limit
        try:
            await ctx.report_progress("x" * 63)
        except ValueError as exc:
            refused.append(str(exc))
        return "done"

    endpoints.add_handler(chatty)
    async with endpoints.running(workers=False):
        job = await endpoints.submit("chatty")
        await endpoints.drain()
    assert refused == ["progress is 65 bytes of JSON, over max_result_size (64)"]
    assert store.writes == ["x" * 62]
    done = await endpoints.get_job(job.id)
    assert done is not None and done.result == "done" and done.progress == "x" * 62


async def test_progress_is_written_only_while_the_claim_is_held(store: JobStore) -> None:
    """A claim lost (here: the job was cancelled) writes nothing, and says so."""
    assert isinstance(store, ProgressStore) and isinstance(store, ControlStore)
    await store.start()
    try:
        job = await store.enqueue(NewJob(uuid.uuid4(), "steps", 0))
        (claim,) = await store.claim(1, lease=30)
        assert await store.set_progress(claim, {"step": 1})
        assert (await store.get(job.id)).progress == {"step": 1}  # type: ignore[union-attr]
        await store.cancel(job.id)
        assert not await store.set_progress(claim, {"step": 2})
        assert (await store.get(job.id)).progress == {"step": 1}  # type: ignore[union-attr]
    finally:
        await store.aclose()


async def test_the_progress_of_a_lost_claim_is_dropped_silently() -> None:
    """The handler is not told; the reporter stops writing."""
    store = CountingStore()
    await store.enqueue(NewJob(uuid.uuid4(), "steps", 0))
    (claim,) = await store.claim(1, lease=30)
    await store.cancel(claim.job.id)
    reporter = ProgressReporter(store, claim)
    await reporter.report(1)
    await reporter.report(2)
    await reporter.flush()
    assert store.writes == [1]
    assert not reporter.wrote


async def test_a_progress_write_that_failed_is_made_by_the_next_flush() -> None:
    """The store was unreachable: the value waits, and the flush before the settlement
    (tried again with it) writes it."""
    from async_endpoints import StoreUnavailableError

    class Flaky(CountingStore):
        down = True

        async def set_progress(self, claim: Claim, progress: Any) -> bool:
            if self.down:
                raise StoreUnavailableError("down")
            return await super().set_progress(claim, progress)

    store = Flaky()
    job = await store.enqueue(NewJob(uuid.uuid4(), "steps", 0))
    (claim,) = await store.claim(1, lease=30)
    reporter = ProgressReporter(store, claim)
    await reporter.report("half")
    await reporter.flush()
    assert store.writes == []
    store.down = False
    await reporter.flush()
    assert store.writes == ["half"]
    assert (await store.get(job.id)).progress == "half"  # type: ignore[union-attr]
