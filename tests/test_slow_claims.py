"""A claim answered late: its lease ran while the answer was on its way.

The store grants a lease when it carries out the claim; the worker learns of it only when
the answer arrives. An answer held up (a stalled store, a slow network) may bring a lease
that is nearly over, or that the store already took back and handed to another worker.
Such a claim is renewed before its handler starts; one found lost is not run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    Claim,
    InMemoryJobStore,
    JobStatus,
    StoreUnavailableError,
)
from async_endpoints._claimer import SLOW_CLAIM
from async_endpoints.testing import ManualClock
from tests.hanging import PartDown, hangs_until_cancelled

LEASE = 0.3  # claim_timeout: an answer later than a third of it is a slow one
HELD_UP = LEASE * SLOW_CLAIM + 0.1  # seconds the first claim's answer is held up, at least


class HeldUpAnswers(InMemoryJobStore):
    """The first claim that takes a job is answered only once the test lets it through;
    the order of claims, renewals and handler starts is written down."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock=clock)
        self.taken = asyncio.Event()
        self.let_through = asyncio.Event()
        self.held = False
        self.held_claims: list[Claim] = []  # what the held-up answer carries
        self.log: list[str] = []
        self.claim_dropped = asyncio.Event()  # a renewal reported a claim lost
        self.renewals_fail = False  # every renewal raises, as if the store were cut off

    async def claim(
        self, limit: int, *, lease: float, queues: Sequence[str] = ("default",)
    ) -> list[Claim]:
        claims = await super().claim(limit, lease=lease, queues=queues)
        if claims and not self.held:
            self.held = True
            self.held_claims = claims
            self.taken.set()
            await self.let_through.wait()
        self.log += [f"claimed {claim.token}" for claim in claims]
        return claims

    async def renew(self, claims: Sequence[Claim], *, lease: float) -> set[str]:
        if self.renewals_fail:
            raise StoreUnavailableError("cut off")
        lost = await super().renew(claims, lease=lease)
        self.log += [f"renewed {claim.token}" for claim in claims if claim.token not in lost]
        if lost:
            asyncio.get_running_loop().call_soon(self.claim_dropped.set)  # after the answer
        return lost


def engine_on(store: HeldUpAnswers) -> AsyncEndpoints:
    return AsyncEndpoints(
        store=store, claim_timeout=LEASE, recovery_interval=3600, polling_interval=60
    )


async def test_a_claim_answered_after_another_worker_took_its_job_is_not_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The lease ran out while the answer was held up; the job was recovered and claimed
    by another worker, which settles it. This worker never starts the handler."""
    clock = ManualClock()
    store = HeldUpAnswers(clock)
    engine = engine_on(store)
    runs: list[str] = []

    async def work(ctx: AsyncContext[None]) -> str:
        runs.append("here")
        return "here"

    engine.add_handler(work)
    with caplog.at_level(logging.WARNING, logger="async_endpoints"):
        async with engine.running():
            job = await engine.submit("work")
            async with asyncio.timeout(5):
                await store.taken.wait()
            clock.advance(LEASE + 1)  # the lease runs out while the answer is on its way
            assert await store.recover() == [job.id]
            (elsewhere,) = await store.claim(1, lease=30)  # another worker's claim
            await asyncio.sleep(HELD_UP)
            store.let_through.set()
            async with asyncio.timeout(5):
                await store.claim_dropped.wait()
            await store.complete(elsewhere, "elsewhere")
            done = await engine.wait_for(job.id, timeout=5)
    assert runs == []
    assert done.status is JobStatus.COMPLETED and done.result == "elsewhere"
    assert f"job {job.id}: not started: its claim took" in caplog.text


async def test_a_claim_answered_late_is_renewed_before_its_handler_starts() -> None:
    """Its lease may be nearly over: it is extended first, then the job runs, once."""
    clock = ManualClock()
    store = HeldUpAnswers(clock)
    engine = engine_on(store)

    async def work(ctx: AsyncContext[None]) -> str:
        store.log.append("started")
        clock.advance(LEASE * 0.9)  # past the first lease's end, not the renewed one's
        assert await store.recover() == []
        return "ran"

    engine.add_handler(work)
    async with engine.running():
        job = await engine.submit("work")
        async with asyncio.timeout(5):
            await store.taken.wait()
        clock.advance(LEASE * 0.5)
        await asyncio.sleep(HELD_UP)
        store.let_through.set()
        done = await engine.wait_for(job.id, timeout=5)
    assert done.status is JobStatus.COMPLETED and done.result == "ran"
    claimed = next(entry for entry in store.log if entry.startswith("claimed "))
    token = claimed.removeprefix("claimed ")
    assert store.log.index(f"renewed {token}") < store.log.index("started")
    assert store.log.count("started") == 1


async def test_a_claim_answered_at_once_starts_without_an_extra_renewal() -> None:
    """The common case costs nothing: no renewal between a prompt claim and its handler."""
    clock = ManualClock()
    store = HeldUpAnswers(clock)
    store.held = True  # nothing is held up
    store.let_through.set()
    engine = AsyncEndpoints(store=store, claim_timeout=30, recovery_interval=3600)

    async def work(ctx: AsyncContext[None]) -> str:
        store.log.append("started")
        return "ran"

    engine.add_handler(work)
    async with engine.running():
        job = await engine.submit("work")
        done = await engine.wait_for(job.id, timeout=5)
    assert done.result == "ran"
    assert [entry.split()[0] for entry in store.log] == ["claimed", "started"]


async def test_a_late_claim_whose_renewal_fails_runs_fenced_from_the_claims_sending(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The store cannot be reached for the renewal: the job still starts (recovery would
    count an attempt it never had), and with no renewal getting through its handler is
    cancelled when the lease, counted from when the claim was sent, runs out."""
    clock = ManualClock()
    store = HeldUpAnswers(clock)
    store.renewals_fail = True
    engine = engine_on(store)
    started, cancelled = asyncio.Event(), asyncio.Event()
    engine.add_handler(hangs_until_cancelled(started, cancelled), name="work")
    with caplog.at_level(logging.WARNING, logger="async_endpoints"):
        async with engine.running():
            await engine.submit("work")
            async with asyncio.timeout(5):
                await store.taken.wait()
            await asyncio.sleep(HELD_UP)
            store.let_through.set()
            async with asyncio.timeout(5):
                await started.wait()
                await cancelled.wait()
    assert "could not be renewed" in caplog.text and "ran out unrenewed" in caplog.text


async def test_a_late_claim_of_a_job_cancelled_meanwhile_lets_its_partition_key_go() -> None:
    """The job was cancelled while its claim's answer was on its way: it is not started,
    and the next job of its partition key runs at once, not when the dropped claim's
    lease would have run out (the store's clock never moves here)."""
    clock = ManualClock()
    store = HeldUpAnswers(clock)
    engine = engine_on(store)
    ran: list[str] = []

    async def work(ctx: AsyncContext[None]) -> str:
        ran.append(str(ctx.job_id))
        return "ran"

    engine.add_handler(work)
    async with engine.running():
        first = await engine.submit("work", partition_key="k")
        second = await engine.submit("work", partition_key="k")
        async with asyncio.timeout(5):
            await store.taken.wait()
        canceled = await engine.cancel(first.id)
        assert canceled is not None and canceled.status is JobStatus.CANCELED
        await asyncio.sleep(HELD_UP)
        store.let_through.set()
        done = await engine.wait_for(second.id, timeout=5)
    assert done.status is JobStatus.COMPLETED
    assert ran == [str(second.id)]


class PartlyLost(PartDown, HeldUpAnswers):
    """A store of parts, for the renewal of a late claim: the part of jobs named ``down``
    cannot be reached (`PartDown`), the others answer as the store stands."""


async def test_a_late_claim_renewed_in_part_starts_the_unknown_and_drops_the_lost() -> None:
    """One late claim call took three jobs: one recovered meanwhile (its part answered:
    lost, not started), one renewed, one in a part that could not be reached (unknown:
    started, as when a renewal fails). The two started run once; the lost one runs
    once, later, on its next claim."""
    clock = ManualClock()
    store = PartlyLost(clock)
    engine = AsyncEndpoints(
        store=store, claim_timeout=LEASE, recovery_interval=3600, max_concurrency=3
    )
    runs: list[tuple[str, int]] = []

    async def up(ctx: AsyncContext[None]) -> None:
        runs.append(("up", ctx.retry_count))

    async def down(ctx: AsyncContext[None]) -> None:
        runs.append(("down", ctx.retry_count))

    engine.add_handler(up)
    engine.add_handler(down)
    await engine.pause()  # all three are taken by one claim call once resumed
    async with engine.running():
        recovered = await engine.submit("up")
        renewed = await engine.submit("up")
        unknown = await engine.submit("down")
        await engine.resume()
        async with asyncio.timeout(5):
            await store.taken.wait()
        # Only the first job's lease runs out: the others' are renewed first, directly
        # (the parts answering meanwhile), then the store's clock moves past the first.
        assert {c.job.id for c in store.held_claims} == {recovered.id, renewed.id, unknown.id}
        others = [c for c in store.held_claims if c.job.id != recovered.id]
        assert await InMemoryJobStore.renew(store, others, lease=30) == set()
        clock.advance(LEASE + 1)
        assert await store.recover() == [recovered.id]
        await asyncio.sleep(HELD_UP)
        store.let_through.set()
        done = [await engine.wait_for(j.id, timeout=5) for j in (recovered, renewed, unknown)]
    assert [job.status for job in done] == [JobStatus.COMPLETED] * 3
    assert sorted(runs) == [("down", 0), ("up", 0), ("up", 1)]
    assert done[0].retry_count == 1 and done[1].retry_count == done[2].retry_count == 0
