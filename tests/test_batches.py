"""Batches through the engine: submit_batch, continuations run once, cancel_batch, the
batch-details route; bad input stores nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    BatchStatus,
    ConfigurationError,
    InMemoryJobStore,
    JobSpec,
    JobStatus,
    JobValidationError,
    UnknownJobNameError,
)
from async_endpoints import _batches as batches_module
from async_endpoints.testing import ManualClock
from async_endpoints_redis import RedisJobStore


class Part(BaseModel):
    n: int


class Recorder:
    def __init__(self) -> None:
        self.ran: list[tuple[str, Any, uuid.UUID | None]] = []
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()


def engine_with(
    recorder: Recorder, app: Any = None, store: Any = None, **settings: Any
) -> AsyncEndpoints:
    store = store or InMemoryJobStore(clock=ManualClock())
    engine = AsyncEndpoints(app, store=store, max_retries=0, **settings)

    async def part(ctx: AsyncContext[Part]) -> int:
        recorder.ran.append(("part", ctx.request.n, ctx.batch_id))
        if ctx.request.n < 0:
            raise RuntimeError("negative part")
        return ctx.request.n * 10

    async def join(ctx: AsyncContext) -> str:
        recorder.ran.append(("join", None, ctx.batch_id))
        return "joined"

    async def slow(ctx: AsyncContext) -> None:
        recorder.started.set()
        try:
            await recorder.release.wait()
        except asyncio.CancelledError:
            recorder.cancelled.set()
            raise

    for handler in (part, join, slow):
        engine.add_handler(handler)
    return engine


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def endpoints(recorder: Recorder) -> AsyncIterator[AsyncEndpoints]:
    engine = engine_with(recorder)
    async with engine.running(workers=False):
        yield engine


async def test_the_continuation_runs_once_after_every_job_with_the_batch_id(
    endpoints: AsyncEndpoints, recorder: Recorder
) -> None:
    """Three parts, then the join: it sees ctx.batch_id; the batch ends Finished."""
    batch = await endpoints.submit_batch(
        [JobSpec("part", {"n": n}) for n in range(3)], continue_with=[JobSpec("join")]
    )
    assert (batch.status, batch.total, batch.queued) == (BatchStatus.RUNNING, 3, 3)
    while await endpoints.drain():
        pass
    assert [name for name, _, _ in recorder.ran] == ["part", "part", "part", "join"]
    assert {batch_id for _, _, batch_id in recorder.ran} == {batch.id}
    done = await endpoints.get_batch(batch.id)
    assert done is not None and done.status is BatchStatus.FINISHED
    assert (done.completed, done.unfinished) == (3, 0) and done.finished_at is not None
    (join_id,) = done.continuation_ids
    join = await endpoints.get_job(join_id)
    assert join is not None and join.status is JobStatus.COMPLETED and join.batch_id == batch.id


async def test_a_continuation_with_run_at_is_refused_and_nothing_is_stored(
    endpoints: AsyncEndpoints,
) -> None:
    """A continuation is queued when its batch ends, its delay counted from then: a
    ``run_at`` (a moment given in advance, which would come late by the batch's time) is a
    `ValueError` naming why, and no job of the batch is stored; a delay is taken."""
    soon = datetime.now(UTC) + timedelta(seconds=30)
    with pytest.raises(ValueError, match="give it a delay"):
        await endpoints.submit_batch(
            [JobSpec("part", {"n": 1})], continue_with=[JobSpec("join", run_at=soon)]
        )
    assert (await endpoints.list_jobs(limit=10)).jobs == []
    batch = await endpoints.submit_batch(
        [JobSpec("part", {"n": 1})], continue_with=[JobSpec("join", delay=30)]
    )
    assert batch.total == 1


async def test_all_completed_cancels_the_continuation_when_a_job_failed(
    endpoints: AsyncEndpoints, recorder: Recorder
) -> None:
    """continue_when="all_completed" and a failed part: the join is stored Canceled."""
    batch = await endpoints.submit_batch(
        [JobSpec("part", {"n": 1}), JobSpec("part", {"n": -1})],
        continue_with=[JobSpec("join")],
        continue_when="all_completed",
    )
    while await endpoints.drain():
        pass
    done = await endpoints.get_batch(batch.id)
    assert done is not None and (done.completed, done.failed) == (1, 1)
    join = await endpoints.get_job(done.continuation_ids[0])
    assert join is not None and join.status is JobStatus.CANCELED
    assert "join" not in [name for name, _, _ in recorder.ran]


@pytest.mark.parametrize(
    ("specs", "error"),
    [
        ([], ValueError),
        ([JobSpec("part", {"n": 1}), JobSpec("nobody")], UnknownJobNameError),
        ([JobSpec("part", {"n": 1}), JobSpec("part", {"n": "x"})], JobValidationError),
        ([JobSpec("part", {"n": 1}, queue="elsewhere")], ValueError),
        (["part"], ValueError),
    ],
)
async def test_a_bad_batch_stores_nothing(
    endpoints: AsyncEndpoints, specs: list[Any], error: type[Exception]
) -> None:
    """Empty, an unknown name, a bad body, an unknown queue, not a JobSpec: ValueError
    (JobValidationError and UnknownJobNameError are ValueErrors), nothing stored."""
    with pytest.raises(error):
        await endpoints.submit_batch(specs)
    assert issubclass(error, ValueError)
    assert (await endpoints.queue_stats())[0].queued == 0
    assert (await endpoints.list_batches()).batches == []


async def test_a_bad_continue_when_is_a_value_error(endpoints: AsyncEndpoints) -> None:
    """Only "all_terminal" and "all_completed" are accepted."""
    with pytest.raises(ValueError, match="continue_when"):
        await endpoints.submit_batch([JobSpec("part", {"n": 1})], continue_when="some")


async def test_append_is_refused_once_the_batch_finished(endpoints: AsyncEndpoints) -> None:
    """append_to_batch adds while running; after the last job ended it raises ValueError."""
    batch = await endpoints.submit_batch([JobSpec("part", {"n": 1})])
    grown = await endpoints.append_to_batch(batch.id, [JobSpec("part", {"n": 2})])
    assert grown.total == 2
    while await endpoints.drain():
        pass
    with pytest.raises(ValueError):
        await endpoints.append_to_batch(batch.id, [JobSpec("part", {"n": 3})])
    with pytest.raises(ValueError):
        await endpoints.append_to_batch(uuid.uuid4(), [JobSpec("part", {"n": 3})])


async def test_jobs_take_the_batch_tenant_unless_their_spec_names_one(
    endpoints: AsyncEndpoints,
) -> None:
    """tenant= on the batch labels the jobs that do not name their own."""
    batch = await endpoints.submit_batch(
        [JobSpec("part", {"n": 1}), JobSpec("part", {"n": 2}, tenant="other")], tenant="acme"
    )
    page = await endpoints.list_jobs(batch_id=batch.id)
    assert sorted(job.tenant or "" for job in page.jobs) == ["acme", "other"]
    assert (await endpoints.list_batches(tenant="acme")).batches[0].id == batch.id


async def test_cancel_batch_cancels_a_running_job_and_the_continuations(
    recorder: Recorder,
) -> None:
    """A running job of the batch sees CancelledError; the rest and the join are Canceled."""
    engine = engine_with(recorder)
    async with engine.running():
        batch = await engine.submit_batch(
            [JobSpec("slow"), JobSpec("part", {"n": 1}, delay=3600)],
            continue_with=[JobSpec("join")],
        )
        async with asyncio.timeout(10):
            await recorder.started.wait()
        canceled = await engine.cancel_batch(batch.id)
        async with asyncio.timeout(10):
            await recorder.cancelled.wait()
    assert canceled is not None and canceled.status is BatchStatus.CANCELED
    assert canceled.canceled == 2 and canceled.unfinished == 0
    join = await engine.get_job(canceled.continuation_ids[0])
    assert join is not None and join.status is JobStatus.CANCELED


async def test_unknown_batches_read_as_none(endpoints: AsyncEndpoints) -> None:
    """get_batch and cancel_batch of an unknown id or a non-UUID: None."""
    assert await endpoints.get_batch(uuid.uuid4()) is None
    assert await endpoints.get_batch("not-a-uuid") is None
    assert await endpoints.cancel_batch(uuid.uuid4()) is None


async def test_the_batch_details_route_answers_the_batch_json(
    http_client_for, recorder: Recorder
) -> None:
    """GET /batches/{id}: 200 with the camelCase batch JSON; 404 unknown or not a UUID."""
    app = FastAPI()
    engine = engine_with(recorder, app, run_workers=False)
    engine.map_batch_details()
    async with http_client_for(app) as client:
        batch = await engine.submit_batch([JobSpec("part", {"n": 1})], tenant="acme")
        found = await client.get(f"/batches/{batch.id}")
        unknown = await client.get(f"/batches/{uuid.uuid4()}")
        malformed = await client.get("/batches/nope")
    assert found.status_code == 200
    body = found.json()
    assert body["id"] == str(batch.id) and body["status"] == "Running"
    assert (body["total"], body["queued"], body["inProgress"], body["tenant"]) == (1, 1, 0, "acme")
    assert set(body) == {
        "id",
        "tenant",
        "status",
        "total",
        "queued",
        "scheduled",
        "inProgress",
        "completed",
        "failed",
        "canceled",
        "createdAt",
        "finishedAt",
        "continuationIds",
    }
    assert unknown.status_code == malformed.status_code == 404


@pytest.mark.parametrize("is_async", [False, True])
async def test_the_batch_details_route_asks_its_authorize_and_refuses_as_unknown(
    http_client_for, recorder: Recorder, is_async: bool
) -> None:
    """map_batch_details(authorize=fn(request, batch)): a batch it refuses answers 404
    exactly as an unknown one (same body), one it allows its JSON."""
    app = FastAPI()
    engine = engine_with(recorder, app, run_workers=False)

    def allowed(request: Any, batch: Any) -> bool:
        return bool(batch.tenant == request.headers.get("x-tenant"))

    async def allowed_async(request: Any, batch: Any) -> bool:
        return allowed(request, batch)

    engine.map_batch_details(authorize=allowed_async if is_async else allowed)
    async with http_client_for(app) as client:
        batch = await engine.submit_batch([JobSpec("part", {"n": 1})], tenant="acme")
        own = await client.get(f"/batches/{batch.id}", headers={"x-tenant": "acme"})
        foreign = await client.get(f"/batches/{batch.id}", headers={"x-tenant": "globex"})
        anonymous = await client.get(f"/batches/{batch.id}")
        unknown = await client.get(f"/batches/{uuid.uuid4()}", headers={"x-tenant": "acme"})
    assert own.status_code == 200 and own.json()["id"] == str(batch.id)
    assert foreign.status_code == anonymous.status_code == unknown.status_code == 404
    assert foreign.json() == anonymous.json() == unknown.json()


def test_a_batch_route_without_authorize_beside_guarded_jobs_is_warned_of(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """With the authorize setting guarding jobs, mapping the batch route without an
    authorize of its own logs a warning (every caller could read every batch)."""
    engine = engine_with(recorder, FastAPI(), authorize=lambda request, job: False)
    with caplog.at_level("WARNING", logger="async_endpoints"):
        engine.map_batch_details()
        engine.map_batch_details("/guarded/{batch_id}", authorize=lambda request, batch: True)
    warned = [r.getMessage() for r in caplog.records if "every batch" in r.getMessage()]
    assert len(warned) == 1 and "/batches/{batch_id}" in warned[0]


def test_the_batch_route_needs_a_path_with_batch_id() -> None:
    """map_batch_details checks its path."""
    engine = AsyncEndpoints(FastAPI())
    with pytest.raises(ConfigurationError):
        engine.map_batch_details("/batches")


@pytest.mark.parametrize("store_kind", ["memory", "redis"])
async def test_a_call_of_more_than_max_batch_jobs_is_refused_whole_and_appends_grow_a_batch(
    recorder: Recorder,
    store_kind: str,
    redis_server: Any,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A store writes one call's jobs in one atomic step (on Redis one script, which holds
    the server): submit_batch past MAX_BATCH_JOBS jobs and continuations, or an append past
    it, raises a ValueError naming the bound and stores nothing; up to the bound it is
    stored, and appends grow the batch past it. (The bound is lowered to 10 here.)"""
    monkeypatch.setattr(batches_module, "MAX_BATCH_JOBS", 10)
    store = RedisJobStore(redis_server.url, prefix=prefix) if store_kind == "redis" else None
    engine = engine_with(recorder, store=store, max_queue_size=None)
    parts = [JobSpec("part", {"n": n}) for n in range(10)]
    async with engine.running(workers=False):
        with pytest.raises(ValueError, match="submit_batch takes at most 10 jobs"):
            await engine.submit_batch(parts, continue_with=[JobSpec("join")])
        with pytest.raises(ValueError, match="at most 10 jobs"):
            await engine.submit_batch([*parts, JobSpec("part", {"n": 10})])
        assert (await engine.queue_stats())[0].queued == 0
        assert (await engine.list_batches()).batches == []
        batch = await engine.submit_batch(parts[:9], continue_with=[JobSpec("join")])
        with pytest.raises(ValueError, match="append_to_batch takes at most 10 jobs"):
            await engine.append_to_batch(batch.id, [*parts, JobSpec("part", {"n": 10})])
        grown = await engine.append_to_batch(batch.id, parts)
        assert grown.total == 19 and (await engine.queue_stats())[0].queued == 19


def test_the_bound_on_one_batch_call_is_ten_thousand_jobs() -> None:
    """The bound documented in the README: 10,000 jobs and continuations per call."""
    assert batches_module.MAX_BATCH_JOBS == 10_000


@pytest.fixture(params=["memory", "redis", "sharded"])
def batch_store(request: pytest.FixtureRequest) -> Any:
    """A fresh store of each kind that keeps batches."""
    if request.param == "memory":
        return InMemoryJobStore()
    url, prefix = request.getfixturevalue("redis_server").url, request.getfixturevalue("prefix")
    return RedisJobStore(url, prefix=prefix, shards=3 if request.param == "sharded" else 1)


async def test_wait_for_a_continuation_waits_until_the_batch_stored_and_ran_it(
    recorder: Recorder, batch_store: Any
) -> None:
    """A continuation's id is known from the batch's creation: ``wait_for`` on it waits
    (it is not an unknown job) and returns it once stored and run; a pending one still
    pending at the timeout is a TimeoutError, an id of no job a KeyError at once."""
    engine = engine_with(recorder, store=batch_store)
    async with engine.running():
        batch = await engine.submit_batch([JobSpec("slow")], continue_with=[JobSpec("join")])
        (join_id,) = batch.continuation_ids
        assert await engine.get_job(join_id) is None
        waiting = asyncio.create_task(engine.wait_for(join_id, timeout=30))
        async with asyncio.timeout(10):
            await recorder.started.wait()
        with pytest.raises(TimeoutError, match="not queued yet"):
            await engine.wait_for(join_id, timeout=0.3)
        with pytest.raises(KeyError):
            await engine.wait_for(uuid.uuid4(), timeout=5)
        assert not waiting.done()
        recorder.release.set()
        async with asyncio.timeout(30):
            join = await waiting
    assert join.id == join_id and join.status is JobStatus.COMPLETED
    assert join.result == "joined" and join.batch_id == batch.id


async def test_wait_for_a_continuation_stored_between_its_two_looks_finds_it(
    recorder: Recorder,
) -> None:
    """The batch ends after ``wait_for`` found no job and before it asked whether the id
    is a pending continuation: it looks again rather than raising KeyError."""
    store = InMemoryJobStore()
    engine = engine_with(recorder, store=store)
    async with engine.running():
        batch = await engine.submit_batch([JobSpec("slow")], continue_with=[JobSpec("join")])
        (join_id,) = batch.continuation_ids
        async with asyncio.timeout(10):
            await recorder.started.wait()
        look = store.wait_until_terminal

        async def batch_ends_after_the_look(job_id: uuid.UUID, timeout: float) -> Any:
            found = await look(job_id, timeout)
            if found is None and not recorder.release.is_set():
                recorder.release.set()
                for _ in range(1000):  # up to 10 s: the continuation is stored
                    if await store.get(join_id) is not None:
                        break
                    await asyncio.sleep(0.01)
            return found

        store.wait_until_terminal = batch_ends_after_the_look  # type: ignore[method-assign]
        join = await engine.wait_for(join_id, timeout=30)
    assert join.status is JobStatus.COMPLETED and join.result == "joined"


async def test_a_batch_given_an_owner_gives_it_to_its_jobs_appended_jobs_and_continuations(
    recorder: Recorder, batch_store: Any, http_client_for: Any
) -> None:
    """submit_batch(owner=...) and append_to_batch(owner=...) record the owner on every
    job and continuation, as submit does: the README's ``authorize`` comparing
    ``job.owner`` with the caller then shows them to their owner over HTTP, and to no one
    else (404)."""
    app = FastAPI()
    engine = engine_with(
        recorder,
        app,
        store=batch_store,
        authorize=lambda request, job: job.owner == request.headers.get("x-user"),
    )
    engine.map_job_details()
    async with http_client_for(app) as client:
        batch = await engine.submit_batch(
            [JobSpec("slow")], continue_with=[JobSpec("join")], owner="alice"
        )
        await engine.append_to_batch(batch.id, [JobSpec("part", {"n": 2})], owner="alice")
        recorder.release.set()  # the slow job held the batch open for the append
        (join_id,) = batch.continuation_ids
        join = await engine.wait_for(join_id, timeout=30)
        parts = (await engine.list_jobs(batch_id=batch.id)).jobs
        ids = [job.id for job in parts]
        assert len(ids) == 3 and join_id in ids
        own = [await client.get(f"/jobs/{job_id}", headers={"x-user": "alice"}) for job_id in ids]
        foreign = [await client.get(f"/jobs/{job_id}", headers={"x-user": "bob"}) for job_id in ids]
    assert join.owner == "alice" and {job.owner for job in parts} == {"alice"}
    assert [answer.status_code for answer in own] == [200, 200, 200]
    assert [answer.status_code for answer in foreign] == [404, 404, 404]


async def test_an_owner_that_is_not_text_stores_no_batch(endpoints: AsyncEndpoints) -> None:
    """owner must be text or None: anything else is a ValueError and nothing is stored."""
    with pytest.raises(ValueError, match="owner must be text"):
        await endpoints.submit_batch([JobSpec("part", {"n": 1})], owner=42)  # type: ignore[arg-type]
    assert (await endpoints.list_jobs()).jobs == []
