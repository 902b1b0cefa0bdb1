"""The worker pool running for real: wake-ups, concurrency, leases, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any

import pytest

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    Claim,
    InMemoryJobStore,
    Job,
    JobError,
    JobStatus,
    JobStore,
    JobStoreError,
    StoreUnavailableError,
)
from async_endpoints._recovery import _Leases
from async_endpoints._slots import Slots
from async_endpoints._worker import AttemptRunner, Outcome
from async_endpoints.testing import ManualClock
from tests.hanging import PartDown, hangs_until_cancelled
from tests.test_job import make_job


def engine_with(**settings: Any) -> AsyncEndpoints:
    return AsyncEndpoints(**{"polling_interval": 60.0, **settings})


async def test_an_idle_pool_is_woken_by_a_submission_not_a_polling_tick() -> None:
    """With a 60 s polling interval, a submitted job still completes at once."""
    engine = engine_with()

    async def noop(ctx: AsyncContext[None]) -> str:
        return "ran"

    engine.add_handler(noop)
    async with engine.running():
        await asyncio.sleep(0.05)  # let the dispatcher go idle
        job = await engine.submit("noop")
        assert (await engine.wait_for(job.id, timeout=5)).result == "ran"


async def test_no_more_than_max_concurrency_handlers_run_at_once() -> None:
    """Ten blocked jobs with max_concurrency=3: three run, the rest wait their turn."""
    engine = engine_with(max_concurrency=3)
    running = 0
    peak = 0
    three_started = asyncio.Event()
    release = asyncio.Event()

    async def block(ctx: AsyncContext[None]) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == 3:
            three_started.set()
        await release.wait()
        running -= 1

    engine.add_handler(block)
    async with engine.running():
        jobs = [await engine.submit("block") for _ in range(10)]
        async with asyncio.timeout(5):
            await three_started.wait()
        assert engine.pool.running == 3
        assert await engine.store.count_waiting() == 7
        release.set()
        done = [await engine.wait_for(job.id, timeout=5) for job in jobs]
    assert peak == 3 and all(job.status is JobStatus.COMPLETED for job in done)


async def test_a_handler_outliving_claim_timeout_is_not_run_twice() -> None:
    """A live worker renews its lease, so recovery never steals a long-running job."""
    engine = engine_with(claim_timeout=1.0, recovery_interval=0.1)
    runs = 0

    async def slow(ctx: AsyncContext[None]) -> str:
        nonlocal runs
        runs += 1
        await asyncio.sleep(3.5)  # three and a half claim timeouts of real time
        return "once"

    engine.add_handler(slow)
    async with engine.running():
        job = await engine.submit("slow")
        done = await engine.wait_for(job.id, timeout=10)
    assert (done.status, done.result, done.retry_count, runs) == (JobStatus.COMPLETED, "once", 0, 1)


async def test_shutdown_lets_running_handlers_finish_and_records_their_results() -> None:
    """Leaving the pool waits (within the grace period) for in-flight jobs and settles them."""
    engine = engine_with(shutdown_grace_period=10)
    started = asyncio.Event()
    finish = asyncio.Event()

    async def in_flight(ctx: AsyncContext[None]) -> str:
        started.set()
        await finish.wait()
        return "recorded"

    engine.add_handler(in_flight)
    async with engine.running():
        job = await engine.submit("in_flight")
        async with asyncio.timeout(5):
            await started.wait()
        asyncio.get_running_loop().call_later(0.1, finish.set)
    done = await engine.store.get(job.id)
    assert done.status is JobStatus.COMPLETED and done.result == "recorded"


async def stopped_past_grace(engine: AsyncEndpoints) -> Job:
    """Run an endless handler's job on ``engine`` (whose grace period is short) and stop
    the pool while it runs; the job as submitted."""
    started = asyncio.Event()

    async def endless(ctx: AsyncContext[None]) -> None:
        started.set()
        await asyncio.Event().wait()

    engine.add_handler(endless)
    async with engine.running():
        job = await engine.submit("endless")
        async with asyncio.timeout(5):
            await started.wait()
    return job


async def test_jobs_whose_handlers_outlive_the_grace_period_are_given_back_uncounted(
    store: JobStore,
) -> None:
    """Memory and a real Redis: past the grace period a handler is cancelled and its job
    given back, the attempt not counted (a rolling restart uses up no retry of a job that
    never failed): Scheduled for when its lease would have run out (``claim_timeout``
    after the stop: work a cancellation does not stop, in a thread say, has that long),
    then run to completion by the next worker with retry count 0."""
    engine = engine_with(store=store, shutdown_grace_period=0.05, claim_timeout=1.0)
    started = asyncio.Event()
    runs = 0

    async def long_job(ctx: AsyncContext[None]) -> str:
        nonlocal runs
        runs += 1
        started.set()
        if runs == 1:
            await asyncio.Event().wait()  # outlives the first worker
        return "done"

    engine.add_handler(long_job)
    async with engine.running():
        job = await engine.submit("long_job")
        async with asyncio.timeout(5):
            await started.wait()
    given = engine_with(store=store)
    given.add_handler(long_job)
    async with given.running(workers=False):
        back = await given.get_job(job.id)
        assert back is not None and back.status is JobStatus.SCHEDULED
        assert back.retry_count == 0 and back.error is None
        assert back.run_at is not None and back.last_updated_at is not None
        due_in = (back.run_at - back.last_updated_at).total_seconds()
        assert 0.9 <= due_in <= 1.1, due_in
    async with given.running():
        done = await given.wait_for(job.id, timeout=10)
    assert done.status is JobStatus.COMPLETED and done.retry_count == 0 and runs == 2


class UnansweringGiveBack(InMemoryJobStore):
    """A store that does not answer when a claim is given back."""

    async def give_back(self, claim: Claim, *, retry_in: float) -> Job | None:
        raise StoreUnavailableError("cut off")


async def test_a_job_the_store_does_not_take_back_is_left_for_recovery() -> None:
    """Past the grace period, a give-back the store does not answer leaves the job to
    stale-claim recovery, which re-queues it once its lease ran out (one attempt lost)."""
    clock = ManualClock()
    store = UnansweringGiveBack(clock=clock)
    engine = engine_with(store=store, shutdown_grace_period=0.05, claim_timeout=30)
    job = await stopped_past_grace(engine)
    assert (await store.get(job.id)).status is JobStatus.IN_PROGRESS
    clock.advance(31)
    assert await store.recover() == [job.id]
    recovered = await store.get(job.id)
    assert recovered.status is JobStatus.QUEUED and recovered.retry_count == 1


class SilentGiveBack(InMemoryJobStore):
    """A store that never answers a give-back (a frozen server without a call deadline)."""

    async def give_back(self, claim: Claim, *, retry_in: float) -> Job | None:
        await asyncio.Event().wait()
        raise AssertionError("never answered")


async def test_a_give_back_unanswered_within_claim_timeout_ends_the_stop_cleanly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The stop waits ``claim_timeout`` for the give-back, then leaves the job to recovery
    with a warning and ends normally (what runs after it, the app's lifespan shutdown,
    still runs), its job still InProgress for recovery to take back."""
    store = SilentGiveBack()
    engine = engine_with(store=store, shutdown_grace_period=0.05, claim_timeout=0.2)
    job = await stopped_past_grace(engine)
    assert (await store.get(job.id)).status is JobStatus.IN_PROGRESS
    assert "may not have been given back (the store did not answer in time)" in caplog.text


async def test_a_handler_whose_claim_was_recovered_elsewhere_is_cancelled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When renewal finds the claim lost, the stale attempt stops instead of running on."""
    clock = ManualClock()
    store = InMemoryJobStore(clock=clock)
    engine = engine_with(store=store, claim_timeout=0.3, recovery_interval=60)
    attempts: list[int] = []
    cancelled = asyncio.Event()
    first_started = asyncio.Event()

    async def long(ctx: AsyncContext[None]) -> int:
        attempts.append(ctx.retry_count)
        if ctx.retry_count > 0:
            return ctx.retry_count
        first_started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        return -1

    engine.add_handler(long)
    async with engine.running():
        job = await engine.submit("long")
        async with asyncio.timeout(5):
            await first_started.wait()
        clock.advance(1)  # the lease lapses as if this worker had hung
        assert await store.recover() == [job.id]
        with caplog.at_level(logging.WARNING, logger="async_endpoints"):
            async with asyncio.timeout(5):
                await cancelled.wait()
        done = await engine.wait_for(job.id, timeout=5)
    assert attempts == [0, 1] and done.result == 1 and done.retry_count == 1
    assert f"job {job.id}: lost the claim of its running attempt" in caplog.text


class RenewalCrossingStore(InMemoryJobStore):
    """Renewals answer 0.2 s after they are sent, as the store stands then (a slow trip)."""

    def __init__(self) -> None:
        super().__init__()
        self.renewing = asyncio.Event()
        self.answered: list[set[str]] = []
        self.first_answer = asyncio.Event()

    async def renew(self, claims: Sequence[Claim], *, lease: float) -> set[str]:
        self.renewing.set()
        await asyncio.sleep(0.2)
        lost = await super().renew(claims, lease=lease)
        self.answered.append(lost)
        self.first_answer.set()
        return lost


async def test_a_renewal_crossing_the_settlement_of_its_job_reports_no_lost_claim(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The store calls the claim of a job recorded meanwhile lost; nothing was: no warning."""
    store = RenewalCrossingStore()
    engine = engine_with(store=store, claim_timeout=0.3)  # a renewal every 0.1 s

    async def brief(ctx: AsyncContext[None]) -> str:
        await store.renewing.wait()  # ends, and is recorded, while a renewal is on its way
        return "recorded"

    engine.add_handler(brief)
    with caplog.at_level(logging.WARNING, logger="async_endpoints"):
        async with engine.running():
            job = await engine.submit("brief")
            done = await engine.wait_for(job.id, timeout=5)
            async with asyncio.timeout(5):
                await store.first_answer.wait()
    assert done.result == "recorded" and len(store.answered[0]) == 1
    assert "lost the claim" not in caplog.text


class UnreachableForRenewals(InMemoryJobStore):
    """Claims work; every renewal fails as if the store could not be reached."""

    async def renew(self, claims: Sequence[Claim], *, lease: float) -> set[str]:
        raise StoreUnavailableError("cut off")


async def test_a_handler_whose_lease_runs_out_unrenewed_is_cancelled_by_its_own_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Self-fencing: a worker that cannot renew a claim for a whole lease cancels the
    handler itself (another process may run the job by then), without waiting to hear
    from the store."""
    store = UnreachableForRenewals()
    engine = engine_with(store=store, claim_timeout=0.6, recovery_interval=3600)
    started, cancelled = asyncio.Event(), asyncio.Event()
    engine.add_handler(hangs_until_cancelled(started, cancelled), name="long")
    with caplog.at_level(logging.WARNING, logger="async_endpoints"):
        async with engine.running():
            await engine.submit("long")
            async with asyncio.timeout(10):
                await started.wait()
                await cancelled.wait()
    assert "ran out unrenewed" in caplog.text


def test_a_lease_not_renewed_yet_counts_from_when_its_claim_was_sent() -> None:
    """Self-fencing's count for a claim the renewal sees for the first time (it looks
    every third of a lease, so up to a third of a lease after the claim): from when the
    claim was sent, which the pool knows, not from the renewal's look. A claim whose
    sending is not known counts from a third of a lease before the look."""
    leases = _Leases(3.0)
    sent = {"known": 98.5}
    job = make_job()
    leases.track([Claim(job, "known"), Claim(job, "unknown")], 100.0, sent.get)
    assert leases.expired(101.49) == set()
    assert leases.expired(101.5) == {"known"}  # 98.5 + 3.0
    assert leases.expired(102.0) == {"known", "unknown"}  # 100.0 - 1.0 + 3.0


async def test_the_pools_lease_renewal_knows_when_each_claim_was_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pool passes each held claim's sending (loop time) to the lease renewal's
    count: after the job was submitted, before its handler began."""
    seen: dict[str, float | None] = {}
    counted = asyncio.Event()
    track = _Leases.track

    def recording(leases: _Leases, held: Sequence[Claim], now: float, leased_from: Any) -> None:
        for claim in held:
            seen[claim.token] = leased_from(claim.token)
        if held:
            counted.set()
        track(leases, held, now, leased_from)

    monkeypatch.setattr(_Leases, "track", recording)
    engine = engine_with(claim_timeout=0.3)
    began: list[float] = []

    async def held(ctx: AsyncContext[None]) -> None:
        began.append(asyncio.get_running_loop().time())
        await counted.wait()

    engine.add_handler(held)
    async with engine.running():
        submitted = asyncio.get_running_loop().time()
        job = await engine.submit("held")
        await engine.wait_for(job.id, timeout=5)
    (sent,) = seen.values()
    assert sent is not None and submitted <= sent <= began[0]


class PartlyReachable(PartDown, InMemoryJobStore):
    """A store of parts, one of them down (`PartDown`)."""


async def test_a_part_of_the_store_down_fences_only_the_handlers_of_its_claims() -> None:
    """PartialRenewalError: the claims of the parts that answered count as renewed, so
    their handlers run on past several leases; those of the part that is down are not
    renewed, and their handlers are fenced when their lease runs out."""
    engine = engine_with(store=PartlyReachable(), claim_timeout=0.6, recovery_interval=3600)
    up_finished, down_cancelled = asyncio.Event(), asyncio.Event()
    finish_up = asyncio.Event()

    async def up(ctx: AsyncContext[None]) -> str:
        await finish_up.wait()
        up_finished.set()
        return "ran on"

    async def down(ctx: AsyncContext[None]) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            down_cancelled.set()
            raise

    engine.add_handler(up)
    engine.add_handler(down)
    async with engine.running():
        up_job = await engine.submit("up")
        await engine.submit("down")
        async with asyncio.timeout(10):
            await down_cancelled.wait()  # fenced after one lease unrenewed
            await asyncio.sleep(1.2)  # two more leases: "up" must still be held
            assert not up_finished.is_set()
            finish_up.set()
        done = await engine.wait_for(up_job.id, timeout=10)
    assert done.status is JobStatus.COMPLETED
    assert done.result == "ran on" and done.retry_count == 0


async def test_a_handler_whose_lease_is_renewed_runs_past_its_lease() -> None:
    """With renewals answered, a handler runs for several leases and is not fenced."""
    engine = engine_with(claim_timeout=0.3)

    async def longer_than_a_lease(ctx: AsyncContext[None]) -> str:
        await asyncio.sleep(1.0)
        return "finished"

    engine.add_handler(longer_than_a_lease)
    async with engine.running():
        job = await engine.submit("longer_than_a_lease")
        done = await engine.wait_for(job.id, timeout=10)
    assert done.result == "finished" and done.retry_count == 0


class LoopTurns:
    """Counts event-loop iterations: a callback that schedules itself for the next one."""

    def __init__(self) -> None:
        self.now = 0
        self._next: asyncio.Handle | None = None

    def start(self) -> None:
        self.now += 1
        self._next = asyncio.get_running_loop().call_soon(self.start)

    def stop(self) -> None:
        if self._next is not None:
            self._next.cancel()


async def test_a_job_that_waits_on_nothing_holds_its_slot_for_one_event_loop_turn() -> None:
    """Handler and settlement in one turn, freed slots refilled in that turn: six such jobs
    on two slots run within three turns (fewer when a job task takes the next job itself)."""
    turns = LoopTurns()
    ran_in: list[int] = []
    settled_in: list[int] = []

    class Recording(InMemoryJobStore):
        async def complete(self, claim: Claim, result: Any) -> Any:
            settled_in.append(turns.now)
            return await super().complete(claim, result)

    engine = engine_with(store=Recording(), max_concurrency=2)

    async def quick(ctx: AsyncContext[None]) -> None:
        ran_in.append(turns.now)

    engine.add_handler(quick)
    jobs = [await engine.submit("quick") for _ in range(6)]
    turns.start()
    try:
        async with engine.running():
            for job in jobs:
                await engine.wait_for(job.id, timeout=5)
    finally:
        turns.stop()
    assert len(ran_in) == 6 and ran_in == sorted(ran_in) and ran_in[-1] - ran_in[0] <= 2
    assert settled_in == ran_in


class HeldCompletions(InMemoryJobStore):
    """Completions wait until the test releases them."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def complete(self, claim: Claim, result: Any) -> Any:
        await self.release.wait()
        return await super().complete(claim, result)


async def test_a_slot_is_free_once_the_handler_returns_while_its_outcome_is_recorded() -> None:
    """One slot, a slow settlement: the next job starts before the first is recorded."""
    store = HeldCompletions()
    engine = engine_with(store=store, max_concurrency=1)
    started: list[int] = []
    second_started = asyncio.Event()

    async def step(ctx: AsyncContext[None]) -> int:
        started.append(len(started))
        if len(started) == 2:
            second_started.set()
        return len(started)

    engine.add_handler(step)
    async with engine.running():
        first, second = [await engine.submit("step") for _ in range(2)]
        async with asyncio.timeout(5):
            await second_started.wait()
        assert (await store.get(first.id)).status is JobStatus.IN_PROGRESS
        store.release.set()
        done = [await engine.wait_for(job.id, timeout=5) for job in (first, second)]
    assert [job.result for job in done] == [1, 2]


TENANT: ContextVar[str | None] = ContextVar("tenant", default=None)


async def test_each_job_runs_in_a_context_of_its_own() -> None:
    """A context variable one handler sets is not seen by the next job's handler (also when
    one task runs several jobs)."""
    engine = engine_with(max_concurrency=1)
    seen: list[str | None] = []

    async def tagged(ctx: AsyncContext[None]) -> None:
        seen.append(TENANT.get())
        TENANT.set(str(ctx.job_id))

    engine.add_handler(tagged)
    async with engine.running():
        jobs = [await engine.submit("tagged") for _ in range(3)]
        for job in jobs:
            await engine.wait_for(job.id, timeout=5)
    assert seen == [None, None, None]


class StumblingStore(InMemoryJobStore):
    """An in-memory store whose first idle wait and first claims fail, as in an outage."""

    def __init__(self) -> None:
        super().__init__()
        self.wait_failures = 1
        self.claim_failures = 2

    async def wait_for_work(self, timeout: float, **options: Any) -> list[Claim]:
        if self.wait_failures:
            self.wait_failures -= 1
            raise StoreUnavailableError("connection refused")
        return await super().wait_for_work(timeout, **options)

    async def claim(self, limit: int, **options: Any) -> list[Any]:
        if self.claim_failures:
            self.claim_failures -= 1
            raise (
                RuntimeError("unexpected reply")
                if self.claim_failures
                else (StoreUnavailableError("connection reset"))
            )
        return await super().claim(limit, **options)


async def test_the_pool_outlives_store_failures_while_idle_and_while_claiming() -> None:
    """A failing wait or claim pauses the dispatcher; it never dies, and jobs still run."""
    store = StumblingStore()
    engine = engine_with(store=store)

    async def noop(ctx: AsyncContext[None]) -> str:
        return "ran"

    engine.add_handler(noop)
    async with engine.running():
        job = await engine.submit("noop")
        assert (await engine.wait_for(job.id, timeout=10)).result == "ran"
        assert store.claim_failures == 0
        later = await engine.submit("noop")
        assert (await engine.wait_for(later.id, timeout=10)).result == "ran"
    assert store.wait_failures == 0


class SlowToSettleStore(InMemoryJobStore):
    """Completions take a while, and nothing works once the store is closed (as with Redis)."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = False
        self.settling = asyncio.Event()

    async def complete(self, claim: Any, result: Any) -> Any:
        self.settling.set()
        await asyncio.sleep(0.3)
        if self.closed:
            raise JobStoreError("the store is closed")
        return await super().complete(claim, result)

    async def aclose(self) -> None:
        self.closed = True
        await super().aclose()


async def test_shutdown_waits_for_results_being_recorded_before_closing_the_store() -> None:
    """A result whose settlement outlives the grace period still lands before the store closes."""
    store = SlowToSettleStore()
    engine = engine_with(store=store, shutdown_grace_period=0.01)

    async def quick(ctx: AsyncContext[None]) -> str:
        return "kept"

    engine.add_handler(quick)
    async with engine.running():
        job = await engine.submit("quick")
        async with asyncio.timeout(5):
            await store.settling.wait()
    assert store.closed
    done = await store.get(job.id)  # read past close: the record as the settlement left it
    assert done.status is JobStatus.COMPLETED and done.result == "kept"


async def test_a_job_task_s_next_claim_counts_its_lease_from_when_the_claim_was_sent() -> None:
    """A job task that takes its next job itself (`next_claim`) holds it with the lease
    start the claimer gives (when the claim, or a slow one's renewal, was sent), not the
    later moment the claim returned: self-fencing never counts a lease as starting late."""
    from async_endpoints._job import NewJob
    from async_endpoints._retry import RetryPolicy
    from async_endpoints._worker import AttemptRunner

    store = InMemoryJobStore()
    for _ in range(2):
        await store.enqueue(NewJob(uuid.uuid4(), "work", 0))
    first, second = await store.claim(2, lease=60)
    sent_long_ago = asyncio.get_running_loop().time() - 30
    seen: dict[str, float | None] = {}

    class Noting(AttemptRunner):
        """Runs nothing: notes the lease start the slots hold for each claim."""

        async def run(self, claim: Claim, handler_ended: Any = None) -> None:
            seen[claim.token] = slots.leased_from(claim.token)

    async def next_claim(began: float) -> tuple[Claim, float] | None:
        return None if second.token in seen else (second, sent_long_ago)

    slots = Slots(Noting(store, {}, RetryPolicy(), job_timeout=60), next_claim)
    await slots.start(first, asyncio.get_running_loop().time())
    assert seen[second.token] == sent_long_ago


async def test_a_given_back_attempt_is_told_once_as_lost() -> None:
    """The stopping pool tells the job it gave back as a RECOVERED event (outcome lost),
    the job Scheduled, so the metrics count the attempt ``lost`` once, as recovery would."""
    from async_endpoints._events import AttemptOutcome, EventKind

    engine = engine_with(shutdown_grace_period=0.05)
    heard: list[tuple[EventKind, AttemptOutcome | None, JobStatus]] = []
    engine.events.subscribe(lambda e: heard.append((e.kind, e.outcome, e.job.status)))
    await stopped_past_grace(engine)
    recovered = [entry for entry in heard if entry[0] is EventKind.RECOVERED]
    assert recovered == [(EventKind.RECOVERED, AttemptOutcome.LOST, JobStatus.SCHEDULED)]


async def test_a_handler_ignoring_its_cancellation_at_shutdown_is_not_given_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the grace period a handler that swallows its cancellation is abandoned, still
    running: its job is not given back (that would run it twice at once) but left
    InProgress for stale-claim recovery, its retry count untouched."""
    monkeypatch.setattr("async_endpoints._slots.CANCEL_WAIT", 0.05)
    engine = engine_with(shutdown_grace_period=0.05)
    started, release = asyncio.Event(), asyncio.Event()

    async def stubborn(ctx: AsyncContext[None]) -> None:
        started.set()
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # ignores it

    engine.add_handler(stubborn)
    async with engine.running():
        job = await engine.submit("stubborn")
        async with asyncio.timeout(5):
            await started.wait()
    left = await engine.store.get(job.id)
    release.set()
    assert left is not None and left.status is JobStatus.IN_PROGRESS and left.retry_count == 0


async def test_a_handler_that_swallows_the_shutdowns_cancellation_and_returns_is_given_back() -> (
    None
):
    """Past the grace period the pool cancels a handler that catches the cancellation and
    returns a value at once: the pool asked for it, so the attempt is not recorded as
    Completed with that value; its job is given back (due again, retry count 0), as for a
    handler that let the cancellation out."""
    engine = engine_with(shutdown_grace_period=0.05)
    started = asyncio.Event()

    async def catches(ctx: AsyncContext[None]) -> str:
        started.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        return "returned after the cancellation"

    engine.add_handler(catches)
    async with engine.running():
        job = await engine.submit("catches")
        async with asyncio.timeout(5):
            await started.wait()
    left = await engine.store.get(job.id)
    assert left is not None and left.status is JobStatus.SCHEDULED
    assert left.retry_count == 0 and left.result is None


class SlowToFail(InMemoryJobStore):
    """A store whose failures land only once ``landing`` is set; it counts give-backs."""

    def __init__(self) -> None:
        super().__init__()
        self.failing, self.landing = asyncio.Event(), asyncio.Event()
        self.given_back = 0

    async def fail(self, claim: Claim, error: JobError, *, retry_in: float | None) -> Job | None:
        self.failing.set()
        await self.landing.wait()
        return await super().fail(claim, error, retry_in=retry_in)

    async def give_back(self, claim: Claim, *, retry_in: float) -> Job | None:
        self.given_back += 1
        return await super().give_back(claim, retry_in=retry_in)


async def test_a_job_whose_timeout_is_being_recorded_at_shutdown_is_not_given_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A handler ignores its cancellation at ``job_timeout`` and is still running when the
    pool stops; it is abandoned and its JobTimeout recorded from a task of its own, then it
    ends while that record is on its way. Its job is not given back (that would undo the
    timeout: an attempt that ran out of time, not counted): the JobTimeout lands."""
    monkeypatch.setattr("async_endpoints._deadline.CANCEL_WAIT", 0.3)
    store = SlowToFail()
    engine = engine_with(store=store, shutdown_grace_period=0.05, max_retries=0)
    timed_out, release = asyncio.Event(), asyncio.Event()

    async def overlong(ctx: AsyncContext[None]) -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                timed_out.set()  # ignores it, and the shutdown's too

    engine.add_handler(overlong, job_timeout=0.2)
    stopped = asyncio.Event()
    cancel_running = Slots.cancel_running

    async def cancelled_running(slots: Slots) -> list[Claim]:
        try:
            return await cancel_running(slots)
        finally:
            stopped.set()

    monkeypatch.setattr(Slots, "cancel_running", cancelled_running)

    async def then_land() -> None:
        await store.failing.wait()  # abandoned at its timeout: the JobTimeout on its way
        release.set()  # the handler ends: the shutdown's wait for it is over
        await stopped.wait()  # the stop has chosen what to give back
        store.landing.set()

    async with asyncio.timeout(10):
        landing = asyncio.create_task(then_land())
        async with engine.running():
            job = await engine.submit("overlong")
            await timed_out.wait()  # the timeout cancelled it: stop now
        await landing
    settled = await store.get(job.id)
    assert store.given_back == 0
    assert settled is not None and settled.status is JobStatus.FAILED
    assert settled.error is not None and settled.error.type == "JobTimeout"


class RenewalsDownFor(InMemoryJobStore):
    """A store whose lease renewals, for ``outage`` seconds from the first one, each hang
    ``hang`` seconds and fail (a socket timeout; everything else works). It notes when each
    renewal was sent, and sets ``back`` at the first that succeeds after the outage."""

    def __init__(self, outage: float, hang: float) -> None:
        super().__init__()
        self.outage, self.hang = outage, hang
        self.down_until: float | None = None
        self.renewals: list[float] = []
        self.back = asyncio.Event()

    async def renew(self, claims: Sequence[Claim], *, lease: float) -> set[str]:
        now = asyncio.get_running_loop().time()
        self.renewals.append(now)
        if self.down_until is None:
            self.down_until = now + self.outage
        if now < self.down_until:
            await asyncio.sleep(self.hang)
            raise StoreUnavailableError("renewal timed out (the test's outage)")
        lost = await super().renew(claims, lease=lease)
        self.back.set()
        return lost


async def test_renewals_failing_are_retried_soon_so_the_first_after_the_store_is_back_renews(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Lease renewals that fail are sent again within `RETRY_PAUSE` seconds, not a third of
    a lease later: once the store is back a renewal comes at once (here within 0.5 s, where
    a third of the lease is 1 s), in time for a lease counted from before the outage, and
    the handler is neither fenced nor run twice. The retries are not each a warning: one
    a third of a lease at most, and a record when renewals resume."""
    caplog.set_level(logging.DEBUG, logger="async_endpoints")
    monkeypatch.setattr("async_endpoints._recovery.RETRY_PAUSE", 0.05)
    store = RenewalsDownFor(outage=1.25, hang=0.2)
    engine = engine_with(store=store, claim_timeout=3.0, recovery_interval=0.1)
    runs: list[int] = []
    cancelled = asyncio.Event()

    async def long(ctx: AsyncContext[None]) -> str:
        runs.append(ctx.retry_count)
        try:
            async with asyncio.timeout(10):
                await store.back.wait()  # runs through the outage, until a renewal lands
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "done"

    engine.add_handler(long)
    async with engine.running():
        job = await engine.submit("long")
        done = await engine.wait_for(job.id, timeout=15)
    assert not cancelled.is_set() and runs == [0]
    assert done.status is JobStatus.COMPLETED and done.retry_count == 0
    assert store.down_until is not None
    first_after = min(t for t in store.renewals if t >= store.down_until)
    assert first_after - store.down_until <= 0.5
    failed = [r for r in caplog.records if r.getMessage().startswith("lease renewal skipped")]
    warned = [r for r in failed if r.levelno == logging.WARNING]
    assert len(failed) >= 4 and 1 <= len(warned) <= 2
    assert any("lease renewal resumed" in r.getMessage() for r in caplog.records)


class RenewalsBroken(InMemoryJobStore):
    """A store whose every lease renewal fails with an error of its own (a bug)."""

    def __init__(self) -> None:
        super().__init__()
        self.renewals = 0
        self.eight = asyncio.Event()

    async def renew(self, claims: Sequence[Claim], *, lease: float) -> set[str]:
        self.renewals += 1
        if self.renewals >= 8:
            self.eight.set()
        raise RuntimeError("renewal broken for the test")


async def test_a_renewal_failing_with_an_unexpected_error_is_told_once_a_third_of_a_lease(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Renewals failing with an error that is not the store's being unavailable are
    retried as soon as others, but the error and its traceback are logged once a third
    of a lease, not at every retry."""
    caplog.set_level(logging.DEBUG, logger="async_endpoints")
    monkeypatch.setattr("async_endpoints._recovery.RETRY_PAUSE", 0.05)
    store = RenewalsBroken()
    engine = engine_with(store=store, claim_timeout=3.0)

    async def hold(ctx: AsyncContext[None]) -> None:
        async with asyncio.timeout(10):
            await store.eight.wait()

    engine.add_handler(hold)
    async with engine.running():
        job = await engine.submit("hold")
        await engine.wait_for(job.id, timeout=15)
    told = [r for r in caplog.records if r.getMessage() == "lease renewal failed"]
    assert len(told) >= 8
    loud = [r for r in told if r.levelno == logging.ERROR]
    assert 1 <= len(loud) <= 2 and loud[0].exc_info is not None  # 8 retries within ~1 s


async def test_a_spell_of_failed_renewals_ends_untold_when_no_claim_is_left_to_renew(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Renewals fail while a job runs, and the job ends before any succeeds: with no claim
    held nothing is renewed, so the spell ends there; a later job's renewal that succeeds
    does not report renewals "resumed" after a spell it did not see end."""
    caplog.set_level(logging.INFO, logger="async_endpoints")
    monkeypatch.setattr("async_endpoints._recovery.RETRY_PAUSE", 0.05)
    store = RenewalsDownFor(outage=0.5, hang=0.0)
    engine = engine_with(store=store, claim_timeout=0.9)
    failed_twice = asyncio.Event()

    async def brief(ctx: AsyncContext[None]) -> None:
        async with asyncio.timeout(10):
            while len(store.renewals) < 2:  # noqa: ASYNC110 - the store's calls, polled
                await asyncio.sleep(0.01)
        failed_twice.set()

    async def long(ctx: AsyncContext[None]) -> None:
        async with asyncio.timeout(10):
            await store.back.wait()

    engine.add_handler(brief)
    engine.add_handler(long)
    async with engine.running():
        first = await engine.wait_for((await engine.submit("brief")).id, timeout=10)
        assert store.down_until is not None
        await asyncio.sleep(store.down_until - asyncio.get_running_loop().time() + 0.05)
        second = await engine.wait_for((await engine.submit("long")).id, timeout=10)
    assert failed_twice.is_set() and store.back.is_set()
    assert first.status is second.status is JobStatus.COMPLETED
    assert not [r for r in caplog.records if "lease renewal resumed" in r.getMessage()]


async def test_a_retry_is_counted_from_the_moment_it_is_decided() -> None:
    """After a first failed attempt the job is Scheduled through its backoff with
    retryCount 1 already (as the .NET library counts it), and the retry's handler sees
    ``ctx.retry_count == 1``; no count moves while it waits."""
    clock = ManualClock()
    engine = engine_with(store=InMemoryJobStore(clock=clock), retry_base_delay=30.0)
    seen: list[int] = []

    async def flaky(ctx: AsyncContext[None]) -> str:
        seen.append(ctx.retry_count)
        if ctx.retry_count == 0:
            raise RuntimeError("first attempt fails")
        return "ok"

    engine.add_handler(flaky, max_retries=2)
    async with engine.running(workers=False):
        job = await engine.submit("flaky")
        assert await engine.drain() == 1
        waiting = await engine.get_job(job.id)
        assert waiting is not None and waiting.status is JobStatus.SCHEDULED
        assert waiting.retry_count == 1 and waiting.to_json()["retryCount"] == 1
        clock.advance(60)
        assert await engine.drain() == 1
        done = await engine.get_job(job.id)
    assert done is not None and done.status is JobStatus.COMPLETED and done.retry_count == 1
    assert seen == [0, 1]


class RenewalsCut(InMemoryJobStore):
    """A store whose lease renewals fail once ``cut`` (a network cut on that path only),
    counting the claims each renewal is sent."""

    def __init__(self) -> None:
        super().__init__()
        self.cut = False
        self.sent: list[int] = []

    async def renew(self, claims: Sequence[Claim], *, lease: float) -> set[str]:
        self.sent.append(len(claims))
        if self.cut:
            raise StoreUnavailableError("cut off")
        return await super().renew(claims, lease=lease)


async def stubborn_until(release: asyncio.Event, started: asyncio.Event) -> None:
    """A handler that ignores every cancellation until ``release`` is set."""
    started.set()
    while not release.is_set():
        with contextlib.suppress(asyncio.CancelledError):
            await release.wait()


async def test_a_handler_ignoring_the_cancel_of_its_lost_claim_is_abandoned_freeing_its_slot(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One slot; the handler's lease runs out unrenewed (the worker fences it) and it
    ignores the cancel: it is abandoned after `CANCEL_WAIT`, as after a job's cancel, so
    the next job runs now, not at ``job_timeout`` (two minutes here); the fence is told
    once, not at every renewal."""
    store = RenewalsCut()
    engine = engine_with(store=store, max_concurrency=1, claim_timeout=0.6, job_timeout=120)
    release, started = asyncio.Event(), asyncio.Event()

    async def stubborn(ctx: AsyncContext[None]) -> None:
        await stubborn_until(release, started)

    async def quick(ctx: AsyncContext[None]) -> str:
        return "quick"

    engine.add_handler(stubborn)
    engine.add_handler(quick)
    try:
        async with engine.running():
            await engine.submit("stubborn")
            await started.wait()
            store.cut = True
            job = await engine.submit("quick")
            assert (await engine.wait_for(job.id, timeout=30)).result == "quick"
            await asyncio.sleep(1.0)  # renewals go on: the fence is not told again
    finally:
        release.set()
    assert caplog.text.count("its lease ran out unrenewed") == 1
    assert "the handler ignores cancellation; abandoning it" in caplog.text


async def test_an_abandoned_handlers_claim_is_renewed_no_more_once_its_timeout_is_recorded() -> (
    None
):
    """The handler ignores its cancellation at ``job_timeout``: its JobTimeout is recorded
    from a task of its own, and after that its claim is no longer sent for renewal (the
    store would answer "lost" every third of a lease for as long as the handler runs)."""
    store = RenewalsCut()
    engine = engine_with(store=store, claim_timeout=0.6, job_timeout=0.2, max_retries=0)
    release, started = asyncio.Event(), asyncio.Event()

    async def stubborn(ctx: AsyncContext[None]) -> None:
        await stubborn_until(release, started)

    engine.add_handler(stubborn)
    try:
        async with engine.running():
            job = await engine.submit("stubborn")
            failed = await engine.wait_for(job.id, timeout=30)
            assert failed.status is JobStatus.FAILED and failed.error.type == "JobTimeout"
            await asyncio.sleep(0.5)  # a renewal pass or two after the JobTimeout landed
            store.sent.clear()
            await asyncio.sleep(0.6)
            assert sum(store.sent) == 0
    finally:
        release.set()


async def test_a_refused_outcome_is_not_taken_for_another_attempts_same_outcome() -> None:
    """Attempt A runs; the job is cancelled (A does not hear it), requeued and completed
    by attempt B with the very result A then returns: A's refused completion is A's, not
    "recorded by an earlier try" (only a try that went unanswered can have been)."""
    from async_endpoints import NewJob, RetryPolicy

    store = InMemoryJobStore()
    job = await store.enqueue(NewJob(uuid.uuid4(), "Job", max_retries=3))
    (first,) = await store.claim(1, lease=30)
    await store.cancel(job.id)
    await store.requeue(job.id)
    (second,) = await store.claim(1, lease=30)
    await store.complete(second, {"r": 1})
    runner = AttemptRunner(store=store, handlers={}, retry_policy=RetryPolicy(), job_timeout=30)
    assert await runner.settle(first, Outcome(result={"r": 1})) is None
