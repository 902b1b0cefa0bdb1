"""Every log record the library writes about a job carries ``job_id`` and ``job_name``
(API.md Part 2, Observability), wherever it is written: in an attempt, or outside one (a
lost lease, a listener that fails, a follow-up or continuation whose id is taken, a
malformed message or a corrupt record in Redis).

Each scenario makes the library write one kind of record about a job, in a real situation,
and says which record it expects (text, job id, job name). The check is the same for all:
every record of the library's loggers (``async_endpoints*``) whose message holds an id
names one of those ids in ``job_id`` and has ``job_name``. The name is the job's when the
library has it at hand, and None when it knows only the id (a message in Redis or a
listener that got only the id): no store read is made just to write a log record.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import dataclasses
import logging
import pathlib
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette

from async_endpoints import AsyncContext, AsyncEndpoints, InMemoryJobStore, JobStore
from async_endpoints._batch import NewBatch
from async_endpoints._errors import StoreUnavailableError
from async_endpoints._events import LifecycleEvents
from async_endpoints._job import Job, NewJob
from async_endpoints._job_watch import JobNotice
from async_endpoints._recovery import recover_forever
from async_endpoints._store import Claim
from async_endpoints.testing import ManualClock
from async_endpoints_redis import RedisJobStore
from async_endpoints_redis._keys import Keys
from tests.lost_claims import a_lost_claim
from tests.redis_servers import RedisServer

LEASE = 30.0
_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclasses.dataclass(frozen=True)
class Expected:
    """The record a scenario makes the library write: a part of its message, and the
    ``job_id`` and ``job_name`` it must carry."""

    text: str
    job_id: uuid.UUID
    job_name: str | None


@dataclasses.dataclass
class Situation:
    """What a scenario may use: the shared Redis server and a key prefix of its own, the
    records written so far, and the stores to close at the end."""

    redis_url: str
    prefix: str
    caplog: pytest.LogCaptureFixture
    closing: list[JobStore] = dataclasses.field(default_factory=list)

    async def memory_store(self, store: InMemoryJobStore | None = None) -> InMemoryJobStore:
        """A started in-memory store (``store`` if given), closed after the scenario."""
        store = store or InMemoryJobStore()
        await store.start()
        self.closing.append(store)
        return store

    async def redis_store(self) -> RedisJobStore:
        """A started Redis store on this scenario's prefix, closed after the scenario."""
        store = RedisJobStore(self.redis_url, prefix=self.prefix)
        await store.start()
        self.closing.append(store)
        return store

    async def written(self, text: str) -> None:
        """Wait (5 s at most) until a library record holding ``text`` is written: some
        are written by another task (a pub/sub message, the lease fence)."""
        if any(text in r.getMessage() for r in library_records(self.caplog)):
            return
        seen = asyncio.Event()

        class Watch(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if text in record.getMessage():
                    seen.set()

        watch = Watch(logging.DEBUG)
        logging.getLogger().addHandler(watch)
        try:
            async with asyncio.timeout(5):
                await seen.wait()
        finally:
            logging.getLogger().removeHandler(watch)


Scenario = Callable[[Situation], Awaitable[Expected]]


def library_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The records of the library's loggers (``async_endpoints``, ``async_endpoints_redis``
    and their children)."""
    return [r for r in caplog.records if r.name.startswith("async_endpoints")]


def broken(*_: Any) -> None:
    """A listener with a bug."""
    raise RuntimeError("a listener bug")


async def running_job(store: JobStore, name: str = "Echo", **fields: Any) -> tuple[Job, Claim]:
    """A job stored and claimed."""
    job = await store.enqueue(NewJob(uuid.uuid4(), name, 0, **fields))
    (claim,) = await store.claim(1, lease=LEASE)
    assert claim.job.id == job.id
    return job, claim


# --- Scenarios: the in-memory store and the engine --------------------------------------


async def attempt_failed(situation: Situation) -> Expected:
    """In an attempt: the handler raises (the context names the job)."""
    engine = AsyncEndpoints(store=InMemoryJobStore(), max_retries=0)

    async def fails(ctx: AsyncContext[None]) -> None:
        raise RuntimeError("fails")

    engine.add_handler(fails, name="Fails")
    async with engine.running(workers=False):
        job = await engine.submit("Fails")
        await engine.drain()
    return Expected("attempt 1 failed", job.id, "Fails")


class RenewalsCutOff(InMemoryJobStore):
    """A store every lease renewal of which finds it unreachable (claims still work)."""

    async def renew(self, claims: Any, *, lease: float) -> set[str]:
        raise StoreUnavailableError("renewals are cut off")


async def lease_ran_out(situation: Situation) -> Expected:
    """The pool fences a handler whose lease ran out unrenewed (outside the attempt's
    context: the renewal task writes it)."""
    engine = AsyncEndpoints(store=RenewalsCutOff(), claim_timeout=0.3, max_retries=0)
    fenced = asyncio.Event()

    async def waits(ctx: AsyncContext[None]) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            fenced.set()

    engine.add_handler(waits, name="Waits")
    async with engine.running():
        job = await engine.submit("Waits")
        async with asyncio.timeout(5):
            await fenced.wait()
    return Expected("lease ran out", job.id, "Waits")


async def recovered(situation: Situation, events: LifecycleEvents | None) -> Job:
    """A job whose worker died (claimed, never renewed) taken back by a recovery pass."""
    clock = ManualClock()
    store = await situation.memory_store(InMemoryJobStore(clock=clock))
    job, _ = await running_job(store, "Dead")
    clock.advance(LEASE + 1)
    recovery = asyncio.create_task(recover_forever(store, 60, events))
    try:
        await situation.written("stopped renewing its claim")
    finally:
        recovery.cancel()
    return job


async def recovered_without_listeners(situation: Situation) -> Expected:
    """A recovery pass with nobody listening names each job it took back by id alone
    (no store read just for the record)."""
    job = await recovered(situation, None)
    return Expected("stopped renewing its claim", job.id, None)


async def recovered_with_listeners(situation: Situation) -> Expected:
    """With listeners (metrics, say) the jobs are read back for them: the record names
    the job too."""
    events = LifecycleEvents()
    events.subscribe(lambda event: None)
    job = await recovered(situation, events)
    return Expected("stopped renewing its claim", job.id, "Dead")


async def claim_lost(situation: Situation) -> Expected:
    """A renewal finds the claim of a running attempt recovered elsewhere: the record of
    its handler being cancelled names the job."""
    async with a_lost_claim() as (_, job):
        await situation.written("lost the claim")
    return Expected("lost the claim", job.id, "Hangs")


class ReadBackFails(InMemoryJobStore):
    """A store whose reads fail (recovery still works)."""

    async def get(self, job_id: Any) -> Any:
        raise StoreUnavailableError("reads are cut off")


async def recovered_unread(situation: Situation) -> Expected:
    """Listeners want the recovered jobs read back but the read fails: each job is still
    named by id in a record of its own."""
    clock = ManualClock()
    store = await situation.memory_store(ReadBackFails(clock=clock))
    job = await store.enqueue(NewJob(uuid.uuid4(), "Dead", 0))
    await store.claim(1, lease=LEASE)
    clock.advance(LEASE + 1)
    events = LifecycleEvents()
    events.subscribe(lambda event: None)
    recovery = asyncio.create_task(recover_forever(store, 60, events))
    try:
        await situation.written("stopped renewing its claim")
    finally:
        recovery.cancel()
    return Expected("stopped renewing its claim", job.id, None)


async def memory_cancel_listener_failed(situation: Situation) -> Expected:
    """A cancel listener raises when a running job is cancelled (in-memory store)."""
    store = await situation.memory_store()
    store.add_cancel_listener(broken)
    job, _ = await running_job(store)
    await store.cancel(job.id)
    return Expected("cancel listener failed", job.id, "Echo")


async def memory_job_listener_failed(situation: Situation) -> Expected:
    """A job event listener raises when the watched job's status changes."""
    store = await situation.memory_store()
    job = await store.enqueue(NewJob(uuid.uuid4(), "Echo", 0))
    await store.watch_job(job.id, broken)
    await store.claim(1, lease=LEASE)
    return Expected("job event listener failed", job.id, "Echo")


async def memory_follow_up_id_taken(situation: Situation) -> Expected:
    """A job ends and its follow-up's id was taken meanwhile (in-memory store)."""
    store = await situation.memory_store()
    then = NewJob(uuid.uuid4(), "Then", 0)
    job, claim = await running_job(store, "Parent", follow_up=then)
    await store.enqueue(NewJob(then.id, "Other", 0))
    await store.complete(claim, "ok")
    return Expected("follow-up id", job.id, "Parent")


async def memory_continuation_id_taken(situation: Situation) -> Expected:
    """A batch ends and its continuation's id was taken meanwhile (in-memory store; its
    reservation dropped by hand, which no submission can do): the record is about the
    continuation, which is not stored."""
    store = await situation.memory_store()
    batch_id = uuid.uuid4()
    member = NewJob(uuid.uuid4(), "Member", 0, batch_id=batch_id)
    then = NewJob(uuid.uuid4(), "Continue", 0, batch_id=batch_id)
    await store.create_batch(NewBatch(batch_id, [member], [then]))
    store._batch_book.reserved.discard(then.id.int)
    await store.enqueue(NewJob(then.id, "Other", 0))
    claims = await store.claim(5, lease=LEASE)
    for claim in claims:
        if claim.job.id == member.id:
            await store.complete(claim, "ok")
    return Expected("continuation id", then.id, "Continue")


class ProgressUnwritable(InMemoryJobStore):
    """A store unreachable for progress writes (everything else works)."""

    async def set_progress(self, claim: Claim, progress: Any) -> bool:
        raise StoreUnavailableError("progress writes are cut off")


async def progress_unrecorded(situation: Situation) -> Expected:
    """A handler's progress report cannot be written."""
    engine = AsyncEndpoints(store=ProgressUnwritable(), max_retries=0)

    async def reports(ctx: AsyncContext[None]) -> None:
        await ctx.report_progress(50)

    engine.add_handler(reports, name="Reports")
    async with engine.running(workers=False):
        job = await engine.submit("Reports")
        await engine.drain()
    return Expected("could not record its progress", job.id, "Reports")


class CompleteUnreachableOnce(InMemoryJobStore):
    """A store unreachable for the first completion (the worker settles again)."""

    refused = False

    async def complete(self, claim: Claim, result: Any) -> Job | None:
        if not self.refused:
            self.refused = True
            raise StoreUnavailableError("unreachable for a moment")
        return await super().complete(claim, result)


async def settled_again(situation: Situation) -> Expected:
    """The store is unreachable when an outcome is recorded: the worker tries again."""
    engine = AsyncEndpoints(store=CompleteUnreachableOnce(), max_retries=0)

    async def echo(ctx: AsyncContext[None]) -> str:
        return "ok"

    engine.add_handler(echo, name="Echo")
    async with engine.running(workers=False):
        job = await engine.submit("Echo")
        await engine.drain()
    return Expected("settling again", job.id, "Echo")


async def abandoned_at_timeout(situation: Situation) -> Expected:
    """A handler ignoring cancellation at job_timeout is abandoned, and its JobTimeout is
    recorded from another task."""
    engine = AsyncEndpoints(store=InMemoryJobStore(), job_timeout=0.05, max_retries=0)
    release = asyncio.Event()

    async def stubborn(ctx: AsyncContext[None]) -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()

    engine.add_handler(stubborn, name="Stubborn")
    async with engine.running(workers=False):
        job = await engine.submit("Stubborn")
        async with asyncio.timeout(5):
            await engine.drain()
        (abandoned,) = engine.pool.attempts.abandoned
        release.set()
        await asyncio.wait_for(abandoned, timeout=5)
    await situation.written("attempt 1 failed")
    return Expected("abandoning it", job.id, "Stubborn")


async def outlived_the_grace_period(situation: Situation) -> Expected:
    """A worker shutting down cancels a handler that outlived the grace period: the job
    it gives back is named (in that record, and in the one saying it was given back)."""
    engine = AsyncEndpoints(store=InMemoryJobStore(), shutdown_grace_period=0.05)
    started = asyncio.Event()

    async def long(ctx: AsyncContext[None]) -> None:
        started.set()
        await asyncio.sleep(60)

    engine.add_handler(long, name="Long")
    async with engine.running():
        job = await engine.submit("Long")
        async with asyncio.timeout(5):
            await started.wait()
    return Expected("outlived the shutdown grace period", job.id, "Long")


async def cron_fired(situation: Situation) -> Expected:
    """The cron scheduler enqueues a schedule's job (a DEBUG record)."""
    engine = AsyncEndpoints(store=InMemoryJobStore())
    ran: asyncio.Future[uuid.UUID] = asyncio.get_running_loop().create_future()

    @engine.cron("* * * * * *", name="EverySecond")
    async def every_second(ctx: AsyncContext[None]) -> None:
        if not ran.done():
            ran.set_result(ctx.job_id)

    async with engine.running():
        async with asyncio.timeout(5):
            job_id = await ran
    return Expected("enqueued job", job_id, "EverySecond")


async def memory_progress_listener_failed(situation: Situation) -> Expected:
    """A job event listener raises on a progress notice, which holds only the job's id."""
    store = await situation.memory_store()
    job, claim = await running_job(store)
    await store.watch_job(job.id, broken)
    await store.set_progress(claim, 10)
    return Expected("job event listener failed", job.id, None)


async def event_status_without_body(situation: Situation) -> Expected:
    """The app's ``job_status_response`` gives no body for a job's status event."""
    app = Starlette()
    engine = AsyncEndpoints(
        app, store=InMemoryJobStore(), job_status_response=lambda job, request: None
    )

    async def echo(ctx: AsyncContext[None]) -> str:
        return "ok"

    engine.add_handler(echo, name="Echo")
    engine.map_job_events()
    async with engine.running(workers=False):
        job = await engine.submit("Echo")
        await engine.drain()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            response = await http.get(f"/jobs/{job.id}/events")
    assert response.status_code == 200, response.text
    return Expected("gave no body", job.id, "Echo")


# --- Scenarios: the Redis store ----------------------------------------------------------


async def redis_cancel_listener_failed(situation: Situation) -> Expected:
    """A cancel listener raises on the cancel channel's message (Redis: only the id is
    known)."""
    store = await situation.redis_store()
    store.add_cancel_listener(broken)
    job, _ = await running_job(store)
    await store.cancel(job.id)
    await situation.written("cancel listener failed")
    return Expected("cancel listener failed", job.id, None)


async def redis_job_listener_failed(situation: Situation) -> Expected:
    """A job event listener raises on a status change published by Redis."""
    store = await situation.redis_store()
    job = await store.enqueue(NewJob(uuid.uuid4(), "Echo", 0))
    await store.watch_job(job.id, broken)
    await store.claim(1, lease=LEASE)
    await situation.written("job event listener failed")
    return Expected("job event listener failed", job.id, "Echo")


async def redis_malformed_progress(situation: Situation) -> Expected:
    """A malformed progress message of a watched job on the events channel."""
    store = await situation.redis_store()
    job = await store.enqueue(NewJob(uuid.uuid4(), "Echo", 0))
    heard: list[JobNotice] = []
    await store.watch_job(job.id, heard.append)
    raw = Redis.from_url(situation.redis_url)
    try:
        await raw.publish(Keys(situation.prefix).events_channel, f"p{job.id}{{not json")
    finally:
        await raw.aclose()
    await situation.written("malformed progress message")
    return Expected("malformed progress message", job.id, None)


async def redis_corrupt_follow_up(situation: Situation) -> Expected:
    """A job's stored follow-up is corrupt when read (Redis)."""
    store = await situation.redis_store()
    then = NewJob(uuid.uuid4(), "Then", 0)
    job = await store.enqueue(NewJob(uuid.uuid4(), "Parent", 0, follow_up=then))
    raw = Redis.from_url(situation.redis_url)
    try:
        await raw.hset(Keys(situation.prefix).job(job.id), "follow", "[not a follow-up")
    finally:
        await raw.aclose()
    assert await store.follow_up_of(job.id) is None
    return Expected(str(job.id), job.id, None)


async def redis_corrupt_job(situation: Situation) -> Expected:
    """A stored job record is corrupt when read (Redis)."""
    store = await situation.redis_store()
    job = await store.enqueue(NewJob(uuid.uuid4(), "Echo", 0))
    raw = Redis.from_url(situation.redis_url)
    try:
        await raw.hset(Keys(situation.prefix).job(job.id), "status", "NoSuchStatus")
    finally:
        await raw.aclose()
    assert await store.get(job.id) is None
    return Expected("corrupt", job.id, None)


SCENARIOS: list[Scenario] = [
    attempt_failed,
    lease_ran_out,
    recovered_without_listeners,
    recovered_with_listeners,
    claim_lost,
    recovered_unread,
    memory_cancel_listener_failed,
    memory_job_listener_failed,
    memory_follow_up_id_taken,
    memory_continuation_id_taken,
    memory_progress_listener_failed,
    progress_unrecorded,
    settled_again,
    abandoned_at_timeout,
    outlived_the_grace_period,
    cron_fired,
    event_status_without_body,
    redis_cancel_listener_failed,
    redis_job_listener_failed,
    redis_malformed_progress,
    redis_corrupt_follow_up,
    redis_corrupt_job,
]


@pytest.fixture
async def situation(
    redis_server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[Situation]:
    caplog.set_level(logging.DEBUG)
    made = Situation(redis_server.url, prefix, caplog)
    yield made
    for store in made.closing:
        await store.aclose()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.__name__ for s in SCENARIOS])
async def test_every_library_record_mentioning_a_job_names_it(
    scenario: Scenario, situation: Situation, caplog: pytest.LogCaptureFixture
) -> None:
    """The scenario's record is written with the job's id and name (None where only the
    id is known), and every other record of the library that mentions an id names one
    of the ids it mentions in ``job_id`` and has ``job_name``."""
    expected = await scenario(situation)
    records = library_records(caplog)
    wanted = [
        (getattr(r, "job_id", "missing"), getattr(r, "job_name", "missing"))
        for r in records
        if expected.text in r.getMessage() and str(expected.job_id) in r.getMessage()
    ]
    assert wanted and set(wanted) == {(str(expected.job_id), expected.job_name)}, wanted
    unnamed = [
        (r.getMessage(), getattr(r, "job_id", "missing"))
        for r in records
        if _ID.search(r.getMessage())
        and (
            getattr(r, "job_id", None) not in _ID.findall(r.getMessage())
            or not hasattr(r, "job_name")
        )
    ]
    assert unnamed == []


#: The modules whose records are written in the attempt's own context (the filter reads
#: the job from it): their log calls need no ``extra=``.
IN_AN_ATTEMPT = {"async_endpoints/_worker.py", "async_endpoints/_settle.py"}
_NAMES_A_JOB = re.compile(r"\bjob %[sr]|\bid %[sr]")


def _log_calls_naming_a_job(path: pathlib.Path) -> Iterator[tuple[int, str, bool]]:
    """(line, format string, whether it passes ``extra=``) of each ``logger.<level>(...)``
    call in ``path`` whose format string names a job's id; a format string held in a
    variable is read from its assignment in the same function."""
    tree = ast.parse(path.read_text())
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        texts = {
            target.id: node.value.value
            for node in ast.walk(function)
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for call in ast.walk(function):
            if not (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and isinstance(call.func.value, ast.Name)
                and call.func.value.id == "logger"
                and call.args
            ):
                continue
            first = call.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                text = first.value
            elif isinstance(first, ast.Name):
                text = texts.get(first.id, "")
            else:
                text = ""
            if _NAMES_A_JOB.search(text):
                yield call.lineno, text, any(k.arg == "extra" for k in call.keywords)


def test_every_library_log_call_naming_a_job_outside_an_attempt_passes_extra() -> None:
    """A guard for the sites no scenario reaches (a bug's handler, a read that fails on
    reconnection) and for new ones: every log call of the library whose message names a
    job's id passes ``extra=`` (`job_extra` or `job_id_extra`), but in the worker's module,
    whose records are written in the attempt's context."""
    root = pathlib.Path(__file__).resolve().parents[2]
    missing, seen = [], 0
    for package in ("async_endpoints", "async_endpoints_redis"):
        for path in sorted((root / package).rglob("*.py")):
            name = path.relative_to(root).as_posix()
            for line, text, passes in _log_calls_naming_a_job(path):
                seen += 1
                if not passes and name not in IN_AN_ATTEMPT:
                    missing.append(f"{name}:{line}: {text}")
    assert seen > 10  # the scan finds the calls at all
    assert missing == []
