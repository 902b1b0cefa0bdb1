"""A store that keeps refusing claims (not an outage: Redis refusing the credentials, a
bug) is logged with its traceback once per spell, then one line per try; the pool keeps
trying and runs the jobs once the store answers."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pytest

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    InMemoryJobStore,
    JobStoreError,
    StoreUnavailableError,
)
from async_endpoints._store import Claim
from tests.redis.support import eventually


class RefusingClaims(InMemoryJobStore):
    """Refuses its first ``refusals`` claims."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals

    async def claim(
        self, limit: int, *, lease: float, queues: Sequence[str] = ("default",)
    ) -> list[Claim]:
        if self.refusals:
            self.refusals -= 1
            raise JobStoreError("Redis refused the store's credentials: WRONGPASS")
        return await super().claim(limit, lease=lease, queues=queues)


async def claim_failures_logged(
    store: InMemoryJobStore, caplog: pytest.LogCaptureFixture
) -> list[Any]:
    """Run one job through a pool on ``store`` (it completes once the store answers); the
    "claiming failed" records logged meanwhile."""
    endpoints = AsyncEndpoints(store=store, polling_interval=0.05)

    async def ok(ctx: AsyncContext[None]) -> str:
        return "ok"

    endpoints.add_handler(ok, name="Ok")
    with caplog.at_level(logging.ERROR, logger="async_endpoints"):
        async with endpoints.running():
            job = await endpoints.submit("Ok")
            assert (await endpoints.wait_for(job.id, timeout=20)).result == "ok"
    return [r for r in caplog.records if "claiming failed" in r.getMessage()]


async def test_a_lasting_refusal_logs_its_traceback_once_then_a_line_per_try(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failed = await claim_failures_logged(RefusingClaims(refusals=4), caplog)
    assert [r.getMessage().split(":")[0] for r in failed] == [
        f"claiming failed ({n} in a row)" for n in range(1, 5)
    ]
    assert [bool(r.exc_info) for r in failed] == [True, False, False, False]
    assert "JobStoreError: Redis refused the store's credentials" in failed[-1].getMessage()


class RefusingSchedules(InMemoryJobStore):
    """Refuses its first ``refusals`` readings of the schedules' clock."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals

    async def schedule_time(self) -> Any:
        if self.refusals:
            self.refusals -= 1
            raise JobStoreError("NOPERM this user has no permissions to run the 'time' command")
        return await super().schedule_time()


async def test_a_lasting_refusal_of_the_cron_scheduler_logs_its_traceback_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = RefusingSchedules(refusals=4)
    endpoints = AsyncEndpoints(store=store)

    @endpoints.cron("* * * * *")
    async def tidy(ctx: AsyncContext[None]) -> None:
        return None

    with caplog.at_level(logging.ERROR, logger="async_endpoints"):
        async with endpoints.running():

            async def refused_four_times() -> bool:
                return store.refusals == 0

            await eventually(refused_four_times)
    failed = [r for r in caplog.records if "cron scheduler tick failed" in r.getMessage()]
    assert len(failed) >= 3  # a refusal or so may fall on the start, before the ticks
    assert [r.getMessage().split(":")[0] for r in failed] == [
        f"cron scheduler tick failed ({n} in a row)" for n in range(1, len(failed) + 1)
    ]
    assert [bool(r.exc_info) for r in failed] == [True] + [False] * (len(failed) - 1)


class OutageThenRefusal(InMemoryJobStore):
    """Its first claims: unavailable twice, then refused twice."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[Exception] = [
            StoreUnavailableError("down"),
            StoreUnavailableError("down"),
            JobStoreError("NOPERM"),
            JobStoreError("NOPERM"),
        ]

    async def claim(
        self, limit: int, *, lease: float, queues: Sequence[str] = ("default",)
    ) -> list[Claim]:
        if self.answers:
            raise self.answers.pop(0)
        return await super().claim(limit, lease=lease, queues=queues)


async def test_a_refusal_after_an_outage_still_logs_its_traceback_first(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failed = await claim_failures_logged(OutageThenRefusal(), caplog)
    assert [r.getMessage().split(":")[0] for r in failed] == [
        "claiming failed (1 in a row)",
        "claiming failed (2 in a row)",
    ]
    assert [bool(r.exc_info) for r in failed] == [True, False]
