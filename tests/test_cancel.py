"""endpoints.cancel: waiting jobs never run, running handlers are cancelled at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from redis.asyncio import Redis

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    Claim,
    ClaimCancelStore,
    ConfigurationError,
    ControlStore,
    InMemoryJobStore,
    Job,
    JobStatus,
    JobStore,
    NewJob,
    StoreUnavailableError,
)
from async_endpoints._cancels import CancelledClaims
from async_endpoints._events import AttemptOutcome, EventKind, LifecycleEvent
from async_endpoints._retry import RetryPolicy
from async_endpoints._slots import Slots
from async_endpoints._worker import AttemptRunner
from async_endpoints.testing import ManualClock
from async_endpoints_redis import RedisJobStore
from async_endpoints_redis._keys import Keys
from tests.redis_servers import RedisServer


def engine_with(**settings: Any) -> AsyncEndpoints:
    return AsyncEndpoints(**{"polling_interval": 60.0, **settings})


class Blocking:
    """A handler that waits until released, noting what happened to it."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.saw_cancellation = asyncio.Event()
        self.attempts = 0

    async def run(self, ctx: AsyncContext[None]) -> str:
        self.attempts += 1
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.saw_cancellation.set()
            raise
        return "finished"


class FinishedAttempts:
    """The outcomes of the ``finished`` events of ``engine``, in order."""

    def __init__(self, engine: AsyncEndpoints) -> None:
        self.outcomes: list[AttemptOutcome | None] = []
        self.finished = asyncio.Event()
        engine.events.subscribe(self._heard)

    def _heard(self, event: LifecycleEvent) -> None:
        if event.kind is EventKind.FINISHED:
            self.outcomes.append(event.outcome)
            self.finished.set()


async def test_a_queued_job_cancelled_becomes_canceled_and_never_runs() -> None:
    """Cancel of a Queued job: Canceled at once, with completedAt; draining runs nothing."""
    engine = engine_with()
    ran: list[str] = []

    async def work(ctx: AsyncContext[None]) -> None:
        ran.append("ran")

    engine.add_handler(work)
    async with engine.running(workers=False):
        job = await engine.submit("work")
        canceled = await engine.cancel(job.id)
        assert await engine.drain() == 0
        stored = await engine.get_job(job.id)
    assert canceled.status is JobStatus.CANCELED and canceled.completed_at is not None
    assert stored.status is JobStatus.CANCELED and ran == []


async def test_a_scheduled_job_cancelled_never_runs_even_once_due() -> None:
    """A delayed job cancelled before it is due stays Canceled when its time comes."""
    clock = ManualClock()
    engine = engine_with(store=InMemoryJobStore(clock=clock))
    ran: list[str] = []

    async def work(ctx: AsyncContext[None]) -> None:
        ran.append("ran")

    engine.add_handler(work)
    async with engine.running(workers=False):
        job = await engine.submit("work", delay=60)
        assert job.status is JobStatus.SCHEDULED
        canceled = await engine.cancel(job.id)
        clock.advance(61)
        assert await engine.drain() == 0
    assert canceled.status is JobStatus.CANCELED and canceled.run_at is None and ran == []


class IdPushStore:
    """A store whose cancel pushes name the job only (`ControlStore`, not
    `ClaimCancelStore`), as a third-party store's may."""

    def __init__(self) -> None:
        self._inner = InMemoryJobStore()

    def __getattr__(self, name: str) -> Any:
        if name == "add_claim_cancel_listener":
            raise AttributeError(name)
        return getattr(self._inner, name)


@pytest.mark.parametrize("pushes", ["naming-the-claim", "naming-the-job"])
async def test_a_running_handler_sees_cancelled_error_and_its_job_is_not_retried(
    caplog: pytest.LogCaptureFixture, pushes: str
) -> None:
    """Cancel of an InProgress job: the handler's task is cancelled at once (pushed, not
    found at a renewal), the job stays Canceled, it is not retried, nothing is warned;
    also on a store whose pushes name the job only."""
    store = InMemoryJobStore() if pushes == "naming-the-claim" else IdPushStore()
    assert isinstance(store, ClaimCancelStore) is (pushes == "naming-the-claim")
    engine = engine_with(store=store, claim_timeout=60, max_retries=3)
    handler = Blocking()
    engine.add_handler(handler.run, name="blocking")
    attempts = FinishedAttempts(engine)
    with caplog.at_level(logging.WARNING, logger="async_endpoints"):
        async with engine.running():
            job = await engine.submit("blocking")
            async with asyncio.timeout(5):
                await handler.started.wait()
            canceled = await engine.cancel(job.id)
            async with asyncio.timeout(5):  # a renewal would come after 20 s
                await handler.saw_cancellation.wait()
                await attempts.finished.wait()
            stored = await engine.get_job(job.id)
            assert engine.pool.running == 0
    assert canceled.status is JobStatus.CANCELED and stored == canceled
    assert handler.attempts == 1 and stored.retry_count == 0
    assert attempts.outcomes == [AttemptOutcome.CANCELED] and caplog.records == []


async def test_a_handler_that_swallows_the_cancellation_has_its_result_discarded() -> None:
    """Whatever a cancelled handler returns afterwards is refused: the job stays Canceled."""
    engine = engine_with()
    started = asyncio.Event()
    returned = asyncio.Event()

    async def stubborn(ctx: AsyncContext[None]) -> str:
        started.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        returned.set()
        return "late result"

    engine.add_handler(stubborn)
    async with engine.running():
        job = await engine.submit("stubborn")
        async with asyncio.timeout(5):
            await started.wait()
        await engine.cancel(job.id)
        async with asyncio.timeout(5):
            await returned.wait()
        await asyncio.sleep(0)  # its attempt concludes in the next turns
        stored = await engine.get_job(job.id)
    assert stored.status is JobStatus.CANCELED and stored.result is None


async def test_a_handler_ignoring_the_cancellation_is_abandoned_and_frees_its_slot(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A handler that goes on after its job was cancelled is abandoned one CANCEL_WAIT
    later (logged), its slot is freed, and the job stays Canceled."""
    engine = engine_with(max_concurrency=1)
    started = asyncio.Event()
    release = asyncio.Event()

    async def stubborn(ctx: AsyncContext[None]) -> str:
        started.set()
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()
        return "too late"

    async def quick(ctx: AsyncContext[None]) -> str:
        return "quick"

    engine.add_handler(stubborn)
    engine.add_handler(quick)
    with caplog.at_level(logging.ERROR, logger="async_endpoints"):
        async with engine.running():
            job = await engine.submit("stubborn")
            async with asyncio.timeout(5):
                await started.wait()
            await engine.cancel(job.id)
            other = await engine.submit("quick")
            done = await engine.wait_for(other.id, timeout=10)  # the slot was freed
            release.set()
    assert done.result == "quick"
    assert (await engine.get_job(job.id)).status is JobStatus.CANCELED
    assert "ignores cancellation" in caplog.text


async def test_cancelling_twice_returns_the_canceled_job_unchanged() -> None:
    """A second cancel is no error and changes nothing."""
    engine = engine_with()

    async def work(ctx: AsyncContext[None]) -> None:
        pass

    engine.add_handler(work)
    async with engine.running(workers=False):
        job = await engine.submit("work")
        first = await engine.cancel(job.id)
        second = await engine.cancel(job.id)
    assert first.status is JobStatus.CANCELED and second == first


async def test_cancelling_a_finished_job_returns_it_unchanged() -> None:
    """A Completed job stays Completed."""
    engine = engine_with()

    async def work(ctx: AsyncContext[None]) -> str:
        return "done"

    engine.add_handler(work)
    async with engine.running(workers=False):
        job = await engine.submit("work")
        await engine.drain()
        after = await engine.cancel(job.id)
    assert after.status is JobStatus.COMPLETED and after.result == "done"


@pytest.mark.parametrize(
    "job_id",
    [
        uuid.UUID("3f1d9a52-8c4e-4f0b-9d6a-2b7e5c1a9f03"),
        str(uuid.UUID("b7e2c4d8-1a3f-4e5b-8c9d-0f6a2e4b7c15")),
        "not-a-uuid",
        "",
        "x" * 999,
    ],
)
async def test_cancelling_an_unknown_id_returns_none(job_id: Any) -> None:
    """Unknown ids, and ids that are not UUIDs, give None, never an exception."""
    engine = engine_with()
    async with engine.running(workers=False):
        assert await engine.cancel(job_id) is None


class CoreOnlyStore:
    """A store with the core contract only (no control, no inspection)."""

    def __init__(self) -> None:
        self._inner = InMemoryJobStore()

    def __getattr__(self, name: str) -> Any:
        if name in {"cancel", "requeue", "pause", "resume", "paused_queues"}:
            raise AttributeError(name)
        if name in {"add_cancel_listener", "add_claim_cancel_listener"}:
            raise AttributeError(name)
        if name in {"list_jobs", "queue_stats", "count_waiting"}:
            raise AttributeError(name)
        return getattr(self._inner, name)


async def test_a_store_without_the_control_capability_is_named_in_the_error() -> None:
    """cancel, requeue, pause and resume on a core-only store raise ConfigurationError
    naming ControlStore; list_jobs and queue_stats name InspectionStore."""
    store: JobStore = CoreOnlyStore()  # type: ignore[assignment]
    engine = AsyncEndpoints(store=store)
    async with engine.running(workers=False):
        for call in (engine.cancel, engine.requeue):
            with pytest.raises(ConfigurationError, match="ControlStore"):
                await call(uuid.uuid4())
        for steer in (engine.pause, engine.resume):
            with pytest.raises(ConfigurationError, match="ControlStore"):
                await steer()
        with pytest.raises(ConfigurationError, match="InspectionStore"):
            await engine.list_jobs()
        with pytest.raises(ConfigurationError, match="InspectionStore"):
            await engine.queue_stats()


class DeafStore(InMemoryJobStore):
    """A store whose cancel pushes never arrive (a dropped subscription, say)."""

    def add_cancel_listener(self, listener: Any) -> None:
        pass

    def add_claim_cancel_listener(self, listener: Any) -> None:
        pass


async def test_a_missed_cancel_push_is_caught_by_the_next_renewal_without_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without the push, the renewal finds the claim lost, sees the job Canceled and
    cancels the handler as a push would have: no "lost the claim" warning, outcome
    canceled."""
    engine = engine_with(store=DeafStore(), claim_timeout=0.3)  # a renewal every 0.1 s
    handler = Blocking()
    engine.add_handler(handler.run, name="blocking")
    attempts = FinishedAttempts(engine)
    with caplog.at_level(logging.WARNING, logger="async_endpoints"):
        async with engine.running():
            job = await engine.submit("blocking")
            async with asyncio.timeout(5):
                await handler.started.wait()
            await engine.cancel(job.id)
            async with asyncio.timeout(5):
                await handler.saw_cancellation.wait()
                await attempts.finished.wait()
    assert attempts.outcomes == [AttemptOutcome.CANCELED] and caplog.records == []


@pytest.fixture(params=["memory", "redis", "sharded"])
def any_store(request: pytest.FixtureRequest) -> JobStore:
    """A fresh store of each kind: in memory, Redis, and Redis with three shards (one
    real server, a prefix of this test alone)."""
    if request.param == "memory":
        return InMemoryJobStore()
    url, prefix = request.getfixturevalue("redis_server").url, request.getfixturevalue("prefix")
    return RedisJobStore(url, prefix=prefix, shards=3 if request.param == "sharded" else 1)


async def first_of_a_key_claimed_and_cancelled(store: JobStore) -> tuple[Job, Job, Claim]:
    """Two jobs of one partition key; the first claimed, then cancelled in ``store``."""
    first = await store.enqueue(NewJob(uuid.uuid4(), "work", 3, partition_key="k"))
    second = await store.enqueue(NewJob(uuid.uuid4(), "work", 3, partition_key="k"))
    (claim,) = await store.claim(1, lease=60)
    assert isinstance(store, ControlStore)
    await store.cancel(first.id)
    return first, second, claim


async def claimed_once_settled(store: JobStore, attempts: AttemptRunner) -> list[uuid.UUID]:
    """The jobs ``store`` lets a claim take once ``attempts`` has told it every outcome."""
    async with asyncio.timeout(10):
        while attempts.settling:
            await asyncio.gather(*attempts.settling)
    taken = await store.claim(1, lease=60)
    if not taken:  # a sharded store may look at another shard first: its wake comes
        taken = await store.wait_for_work(5, take=1, lease=60) or await store.claim(1, lease=60)
    return [claim.job.id for claim in taken]


def slots_on(store: JobStore) -> tuple[AttemptRunner, Slots]:
    """A worker pool's slots on ``store`` with no handler, taking no further claims."""
    attempts = AttemptRunner(store, {}, RetryPolicy(), job_timeout=60)

    async def no_next_claim(began: float) -> None:
        return None

    return attempts, Slots(attempts, no_next_claim)


class Unwinding:
    """A keyed job's handler that takes a while to unwind when cancelled, and a quick one
    for the key's next job; ``order`` notes what happened, in order."""

    def __init__(self, unwind: float, *, stubborn: bool = False) -> None:
        self.unwind = unwind
        self.stubborn = stubborn
        self.order: list[str] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def slow_exit(self, ctx: AsyncContext[None]) -> None:
        self.order.append("first started")
        self.started.set()
        try:
            if self.stubborn:  # goes on however often it is cancelled, until released
                while not self.release.is_set():
                    with contextlib.suppress(asyncio.CancelledError):
                        await self.release.wait()
            else:
                await self.release.wait()
        except asyncio.CancelledError:
            self.order.append("first unwinding")
            await asyncio.sleep(self.unwind)  # a cleanup that awaits: still running
            raise
        finally:
            self.order.append("first ended")

    async def next_one(self, ctx: AsyncContext[None]) -> None:
        self.order.append("next started")


async def test_a_keys_next_job_starts_only_once_the_cancelled_handler_has_ended(
    any_store: JobStore,
) -> None:
    """The first job of a key is cancelled while its handler runs, and the handler spends
    a while cleaning up: a free worker starts the key's next job only after that handler
    has ended (never beside it), and at once then, not when the lease runs out."""
    engine = engine_with(store=any_store, max_concurrency=2, claim_timeout=60)
    handlers = Unwinding(unwind=0.2)
    engine.add_handler(handlers.slow_exit, name="slow_exit")
    engine.add_handler(handlers.next_one, name="next_one")
    async with engine.running():
        first = await engine.submit("slow_exit", partition_key="k")
        second = await engine.submit("next_one", partition_key="k")
        async with asyncio.timeout(5):
            await handlers.started.wait()
        canceled = await engine.cancel(first.id)
        assert canceled is not None and canceled.status is JobStatus.CANCELED
        done = await engine.wait_for(second.id, timeout=10)
    assert done.status is JobStatus.COMPLETED
    assert handlers.order == ["first started", "first unwinding", "first ended", "next started"]


async def test_a_cancelled_handler_that_ignores_it_keeps_the_key_until_it_ends(
    any_store: JobStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A cancelled handler that goes on is abandoned (its slot is freed), but the key
    stays its own until it has really ended: the key's next job starts after that."""
    engine = engine_with(store=any_store, max_concurrency=1, claim_timeout=60)
    handlers = Unwinding(unwind=0.0, stubborn=True)
    engine.add_handler(handlers.slow_exit, name="slow_exit")
    engine.add_handler(handlers.next_one, name="next_one")
    with caplog.at_level(logging.ERROR, logger="async_endpoints"):
        async with engine.running():
            first = await engine.submit("slow_exit", partition_key="k")
            second = await engine.submit("next_one", partition_key="k")
            async with asyncio.timeout(5):
                await handlers.started.wait()
            try:
                await engine.cancel(first.id)
                unkeyed = await engine.submit("next_one")
                await engine.wait_for(unkeyed.id, timeout=10)  # the abandoned slot was freed
                assert (await engine.get_job(second.id)).status is JobStatus.QUEUED
            finally:
                handlers.release.set()
            done = await engine.wait_for(second.id, timeout=10)
    assert done.status is JobStatus.COMPLETED
    assert handlers.order == ["first started", "next started", "first ended", "next started"]
    assert "ignores cancellation" in caplog.text


async def test_a_job_cancelled_before_its_task_first_ran_lets_its_key_go_and_leaves_no_claim(
    any_store: JobStore,
) -> None:
    """The cancel reaches a job's task before that task's first step (so its attempt never
    began): the slot and the claim are dropped (nothing renews it any more) and the store
    is told, so the key's next job is claimable at once, not after the lease."""
    await any_store.start()
    try:
        first, second, claim = await first_of_a_key_claimed_and_cancelled(any_store)
        attempts, slots = slots_on(any_store)
        task = slots.start(claim, asyncio.get_running_loop().time())
        slots.cancel_job(first.id)  # as the cancel listener would, before the task ran
        (outcome,) = await asyncio.gather(task, return_exceptions=True)
        assert isinstance(outcome, asyncio.CancelledError)
        assert (len(slots), slots.claims()) == (0, [])
        assert await claimed_once_settled(any_store, attempts) == [second.id]
    finally:
        await any_store.aclose()


async def test_a_job_whose_cancel_came_before_its_claim_gets_no_task_and_lets_its_key_go(
    any_store: JobStore,
) -> None:
    """A cancel pushed before its claim arrived: the claim is not given a task at all (an
    eager task factory would run a task's handler up to its first ``await`` at once),
    holds no slot, and the store is told, so the key's next job is claimable at once."""
    await any_store.start()
    loop = asyncio.get_running_loop()
    created: list[str] = []  # the coroutines given tasks
    default_factory = loop.get_task_factory()

    def noting_factory(loop: asyncio.AbstractEventLoop, coro: Any, **options: Any) -> Any:
        created.append(coro.__qualname__)
        if default_factory is not None:
            return default_factory(loop, coro, **options)
        return asyncio.Task(coro, loop=loop, **options)

    try:
        first, second, claim = await first_of_a_key_claimed_and_cancelled(any_store)
        attempts, slots = slots_on(any_store)
        slots.cancel_job(first.id, claim.token)  # the push, before the claim's answer
        loop.set_task_factory(noting_factory)
        try:
            task = slots.start(claim, loop.time())
        finally:
            loop.set_task_factory(default_factory)
        assert task is None and "Slots._run" not in created
        assert (len(slots), slots.claims()) == (0, [])
        assert await claimed_once_settled(any_store, attempts) == [second.id]
        canceled = await any_store.get(first.id)
        assert canceled is not None and canceled.status is JobStatus.CANCELED
    finally:
        await any_store.aclose()


async def test_a_cancel_heard_for_a_job_that_is_not_canceled_fails_nothing() -> None:
    """A cancel heard by job id may be an old one (the job was cancelled, requeued and
    claimed again since): the claim it reaches is not reported ended, so the job, still
    InProgress, is neither failed nor retried by it (recovery sees to the claim)."""
    store = InMemoryJobStore()
    await store.start()
    job = await store.enqueue(NewJob(uuid.uuid4(), "work", 0, partition_key="k"))
    (claim,) = await store.claim(1, lease=60)
    attempts, slots = slots_on(store)
    task = slots.start(claim, asyncio.get_running_loop().time())
    slots.cancel_job(job.id)  # heard, though the store never cancelled this claim
    await asyncio.gather(task, return_exceptions=True)
    async with asyncio.timeout(10):
        while attempts.settling:
            await asyncio.gather(*attempts.settling)
    stored = await store.get(job.id)
    assert stored is not None and stored.status is JobStatus.IN_PROGRESS
    assert await store.renew([claim], lease=60) == set()  # the claim is still the store's


async def test_a_job_requeued_while_its_cancelled_handler_unwinds_runs_again_after_it(
    any_store: JobStore,
) -> None:
    """Requeued while its cancelled handler still unwinds, the job joins the end of its
    key's line: the key's next job starts once that handler has ended (reported, not
    after the 60 s lease), and the requeued job runs after that one."""
    engine = engine_with(store=any_store, max_concurrency=2, claim_timeout=60)
    order: list[str] = []
    started, unwinding, requeued = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def once_slow(ctx: AsyncContext[None]) -> None:
        if started.is_set():
            order.append("first again")
            return
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            unwinding.set()
            await requeued.wait()
            order.append("first ended")
            raise

    async def next_one(ctx: AsyncContext[None]) -> None:
        order.append("next started")

    engine.add_handler(once_slow)
    engine.add_handler(next_one)
    async with engine.running():
        first = await engine.submit("once_slow", partition_key="k")
        second = await engine.submit("next_one", partition_key="k")
        async with asyncio.timeout(5):
            await started.wait()
        await engine.cancel(first.id)
        async with asyncio.timeout(5):
            await unwinding.wait()
        again = await engine.requeue(first.id)
        assert again is not None and again.status is JobStatus.QUEUED
        requeued.set()
        await engine.wait_for(second.id, timeout=10)
        done = await engine.wait_for(first.id, timeout=10)
    assert done.status is JobStatus.COMPLETED
    assert order == ["first ended", "next started", "first again"]


async def test_a_cancelled_handler_that_never_ends_keeps_the_key_only_until_job_timeout(
    any_store: JobStore,
) -> None:
    """A cancelled handler that goes on for good keeps its key no longer than any handler
    may run: at ``job_timeout`` the attempt is given up (its refused JobTimeout lets the
    key go) and the key's next job runs while the old handler still runs."""
    engine = engine_with(store=any_store, max_concurrency=2, claim_timeout=60, job_timeout=1.0)
    handlers = Unwinding(unwind=0.0, stubborn=True)
    engine.add_handler(handlers.slow_exit, name="slow_exit")
    engine.add_handler(handlers.next_one, name="next_one")
    async with engine.running():
        first = await engine.submit("slow_exit", partition_key="k")
        second = await engine.submit("next_one", partition_key="k")
        try:
            async with asyncio.timeout(5):
                await handlers.started.wait()
            await engine.cancel(first.id)
            done = await engine.wait_for(second.id, timeout=15)
            assert done.status is JobStatus.COMPLETED
            assert handlers.order == ["first started", "next started"]  # still running
            assert (await engine.get_job(first.id)).status is JobStatus.CANCELED
        finally:
            handlers.release.set()


class FlakyReads(InMemoryJobStore):
    """The in-memory store, unreachable for its first ``failures`` reads."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def get(self, job_id: uuid.UUID) -> Job | None:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailableError("the store is down for a moment")
        return await super().get(job_id)


@pytest.mark.parametrize(("failures", "let_go"), [(2, True), (3, False)])
async def test_the_end_of_a_cancelled_attempt_is_reported_again_while_the_store_is_down(
    failures: int, let_go: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """The report is tried three times while the store is unreachable: the key goes on
    after two failures; after three it is left to the lease, with a warning saying so."""
    store = FlakyReads(failures)
    await store.start()
    first = await store.enqueue(NewJob(uuid.uuid4(), "work", 3, partition_key="k"))
    second = await store.enqueue(NewJob(uuid.uuid4(), "work", 3, partition_key="k"))
    (claim,) = await store.claim(1, lease=60)
    attempts, slots = slots_on(store)
    await store.cancel(first.id)
    task = slots.start(claim, asyncio.get_running_loop().time())
    slots.cancel_job(first.id)
    await asyncio.gather(task, return_exceptions=True)
    with caplog.at_level(logging.WARNING, logger="async_endpoints"):
        async with asyncio.timeout(10):
            while attempts.settling:
                await asyncio.gather(*attempts.settling)
    taken = [c.job.id for c in await store.claim(1, lease=60)]
    assert taken == ([second.id] if let_go else [])
    assert ("could not report the end" in caplog.text) is not let_go


async def test_a_late_cancel_push_leaves_a_newer_attempt_of_the_job_running(
    redis_server: RedisServer, prefix: str
) -> None:
    """A cancel push names the claim it dropped: one that arrives only after the job was
    requeued and claimed again here (sent again below, as a slow subscription would
    deliver it) leaves the newer attempt alone, which completes."""
    store = RedisJobStore(redis_server.url, prefix=prefix)
    engine = engine_with(store=store, claim_timeout=60)
    runs: list[str] = []
    first_started, second_started, release = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def twice(ctx: AsyncContext[None]) -> str:
        runs.append("started")
        (second_started if first_started.is_set() else first_started).set()
        try:
            await release.wait()
        except asyncio.CancelledError:
            runs.append("cancelled")
            raise
        return "done"

    engine.add_handler(twice)
    heard: asyncio.Queue[tuple[uuid.UUID, str]] = asyncio.Queue()
    raw = Redis.from_url(redis_server.url)
    try:
        async with engine.running():
            store.add_claim_cancel_listener(lambda job_id, token: heard.put_nowait((job_id, token)))
            job = await engine.submit("twice")
            async with asyncio.timeout(5):
                await first_started.wait()
            await engine.cancel(job.id)
            async with asyncio.timeout(5):
                pushed = await heard.get()
            assert await engine.requeue(job.id) is not None
            async with asyncio.timeout(5):
                await second_started.wait()
            await raw.publish(Keys(prefix).cancel_channel, f"{pushed[0]} {pushed[1]}")
            async with asyncio.timeout(5):  # heard here, after the engine's own listener
                assert await heard.get() == pushed
            release.set()
            done = await engine.wait_for(job.id, timeout=10)
    finally:
        await raw.aclose()
    assert done.status is JobStatus.COMPLETED and done.result == "done"
    assert runs == ["started", "cancelled", "started"]


async def test_a_push_that_names_no_claim_cancels_the_jobs_attempt() -> None:
    """A push with an empty token (from a process that named no claim) cancels the
    job's attempt running here, as a push naming the job only does."""
    store = InMemoryJobStore()
    await store.start()
    job = await store.enqueue(NewJob(uuid.uuid4(), "work", 0))
    (claim,) = await store.claim(1, lease=60)
    _, slots = slots_on(store)
    task = slots.start(claim, asyncio.get_running_loop().time())
    slots.cancel_job(job.id, "a-token-of-another-claim")
    assert task.cancelling() == 0 and slots.attempts.canceled == set()
    slots.cancel_job(job.id, "")
    assert task.cancelling() == 1 and slots.attempts.canceled == {claim.token}
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_a_cancel_pushed_while_the_claims_answer_is_on_its_way_keeps_the_job_from_starting(
    any_store: JobStore,
) -> None:
    """The store claimed the job for this worker, then the job was cancelled, and the
    cancel's push arrived before the claim's answer (another connection; a loaded event
    loop): the job does not start when its claim arrives (it ran to its end before, the
    push having found nothing to cancel), its slot is free at once, and it stays
    Canceled. Claims and idle workers' hand-overs alike."""
    engine = engine_with(store=any_store, claim_timeout=60, max_concurrency=1)
    handler = Blocking()
    engine.add_handler(handler.run, name="blocking")
    ran: list[str] = []

    async def marker(ctx: AsyncContext[None]) -> None:
        ran.append("marker")

    engine.add_handler(marker)
    heard: asyncio.Queue[uuid.UUID] = asyncio.Queue()
    cancelled = asyncio.Event()
    assert isinstance(any_store, ClaimCancelStore)

    def cancelled_first(take: Any) -> Any:
        async def taking(*args: Any, **options: Any) -> list[Any]:
            claims = await take(*args, **options)
            for claim in claims or ():
                if claim.job.name == "blocking":
                    await any_store.cancel(claim.job.id)  # type: ignore[attr-defined]
                    async with asyncio.timeout(5):  # the engine's listener heard it first
                        assert await heard.get() == claim.job.id
                    cancelled.set()
            return claims

        return taking

    async with engine.running():
        any_store.add_claim_cancel_listener(lambda job_id, token: heard.put_nowait(job_id))
        any_store.claim = cancelled_first(any_store.claim)  # type: ignore[method-assign]
        any_store.wait_for_work = cancelled_first(any_store.wait_for_work)  # type: ignore[method-assign]
        job = await engine.submit("blocking")
        async with asyncio.timeout(10):  # claimed (in any shard's turn), then cancelled
            await cancelled.wait()
        after = await engine.submit("marker")
        done = await engine.wait_for(after.id, timeout=10)  # the one slot was free
        canceled = await engine.get_job(job.id)
    assert done.status is JobStatus.COMPLETED and ran == ["marker"]
    assert handler.attempts == 0
    assert canceled is not None and canceled.status is JobStatus.CANCELED


async def test_a_cancel_pushed_before_a_running_task_takes_the_next_claim_skips_that_job() -> None:
    """A job's task takes the next claim itself when its job ends (no new task): when the
    cancel of that next job was pushed before the claim's answer came, the job is
    skipped, and the task goes on with the one after it."""
    store = InMemoryJobStore()
    engine = engine_with(store=store, claim_timeout=60, max_concurrency=1)
    gate, handler = Blocking(), Blocking()
    engine.add_handler(gate.run, name="gate")
    engine.add_handler(handler.run, name="blocking")
    ran: list[str] = []

    async def marker(ctx: AsyncContext[None]) -> None:
        ran.append(str(ctx.job_id))

    engine.add_handler(marker)
    real_claim = store.claim

    async def claim(*args: Any, **options: Any) -> list[Any]:
        claims = await real_claim(*args, **options)
        for taken in claims:
            if taken.job.name == "blocking":
                await store.cancel(taken.job.id)  # pushed before this answer arrives
        return claims

    async with engine.running():
        store.claim = claim  # type: ignore[method-assign]
        await engine.submit("gate")
        async with asyncio.timeout(5):
            await gate.started.wait()
        first = await engine.submit("marker")
        skipped = await engine.submit("blocking")
        last = await engine.submit("marker")
        gate.release.set()  # the gate's task goes on with the queue, one claim at a time
        done = await engine.wait_for(last.id, timeout=10)
        canceled = await engine.get_job(skipped.id)
    assert done.status is JobStatus.COMPLETED and ran == [str(first.id), str(last.id)]
    assert handler.attempts == 0
    assert canceled is not None and canceled.status is JobStatus.CANCELED


async def test_an_early_cancel_skips_only_the_claim_of_the_job_it_named() -> None:
    """A cancel push kept for a claim not started yet names its token and its job: a
    claim of another job that happens to carry the same token (a Redis claim call resent
    after its answer was lost makes its tokens again) is started as usual."""
    store = InMemoryJobStore()
    await store.start()
    job = await store.enqueue(NewJob(uuid.uuid4(), "work", 0))
    (claim,) = await store.claim(1, lease=60)
    _, slots = slots_on(store)
    slots.cancel_job(uuid.uuid4(), claim.token)  # another job's claim, same token
    task = slots.start(claim, asyncio.get_running_loop().time())
    assert task.cancelling() == 0 and slots.attempts.canceled == set()
    slots.cancel_job(job.id, claim.token)  # now its own cancel: the running attempt's
    assert task.cancelling() == 1
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_a_remembered_cancel_drops_only_a_claim_of_the_job_it_named() -> None:
    """The Redis store drops a claim reply whose cancel came first; a claim of another
    job with the same token is kept."""
    store = InMemoryJobStore()
    await store.start()
    job = await store.enqueue(NewJob(uuid.uuid4(), "work", 0))
    other = await store.enqueue(NewJob(uuid.uuid4(), "work", 0))
    cancelled = CancelledClaims()
    cancelled.add(job.id, "base.1")
    mine, theirs = Claim(job, "base.1"), Claim(other, "base.1")
    assert cancelled.live([mine, theirs]) == ([theirs], [mine])


def test_remembered_cancels_older_than_their_time_are_let_go_as_new_ones_come(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every process hears every cancel (an API-only one too): pushes older than
    `CancelledClaims.KEEP_FOR` are let go as the next comes, not only once `MOST` are
    kept, so what is kept follows the cancel rate of the last minute."""
    now = [1000.0]
    monkeypatch.setattr("async_endpoints._cancels.time.monotonic", lambda: now[0])
    cancelled = CancelledClaims()
    for n in range(500):
        cancelled.add(uuid.uuid4(), f"old.{n}")
        now[0] += 0.1  # 50 s of pushes
    assert len(cancelled) == 500
    now[0] += 30.0  # the first 200 (the first 20 s) are now more than KEEP_FOR old
    fresh = uuid.uuid4()
    cancelled.add(fresh, "new.1")
    assert len(cancelled) == 301
    job = SimpleNamespace(id=fresh)  # `named` reads the claim's job id alone
    assert cancelled.named(Claim(job, "new.1"))  # type: ignore[arg-type]


async def test_a_remembered_cancel_is_forgotten_after_its_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A push kept longer than `CancelledClaims.KEEP_FOR` no longer drops its claim (a
    claim's answer never takes that long; a slower one is renewed first)."""
    store = InMemoryJobStore()
    await store.start()
    job = await store.enqueue(NewJob(uuid.uuid4(), "work", 0))
    cancelled = CancelledClaims()
    cancelled.add(job.id, "base.1")
    claim = Claim(job, "base.1")
    assert cancelled.named(claim)
    monkeypatch.setattr(CancelledClaims, "KEEP_FOR", -1.0)  # every push is older now
    assert not cancelled.named(claim)
    assert cancelled.live([claim]) == ([claim], [])


async def test_remembered_cancels_are_bounded_oldest_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At most `CancelledClaims.MOST` pushes are kept: a new one beyond it drops the
    oldest (every worker hears of every running job's cancel)."""
    store = InMemoryJobStore()
    await store.start()
    jobs = [await store.enqueue(NewJob(uuid.uuid4(), "work", 0)) for _ in range(3)]
    monkeypatch.setattr(CancelledClaims, "MOST", 2)
    cancelled = CancelledClaims()
    for job in jobs:
        cancelled.add(job.id, f"{job.id}.1")
    kept = [cancelled.named(Claim(job, f"{job.id}.1")) for job in jobs]
    assert kept == [False, True, True]
