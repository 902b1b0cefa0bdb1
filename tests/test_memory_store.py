"""The in-memory store's finished jobs: bounded in number, read back whole, and invisible to
the cyclic garbage collector (the contract suite covers everything the stores share)."""

from __future__ import annotations

import dataclasses
import gc
import uuid
from datetime import UTC, datetime

import pytest

from async_endpoints import (
    ConfigurationError,
    DuplicateJobError,
    InMemoryJobStore,
    Job,
    JobError,
    JobRequest,
    JobStatus,
    NewJob,
)
from async_endpoints._job import WebhookState, WebhookStatus
from async_endpoints._retained import FIELDS, RetainedJobs
from async_endpoints.testing import ManualClock

REQUEST = JobRequest(
    body='{"data": "x"}',
    headers=(("content-type", "application/json"), ("x-trace", "a")),
    query_string="q=1",
    route_params={"tenant": "acme"},
    owner="alice",
)


def new_job(request: JobRequest = REQUEST) -> NewJob:
    return NewJob(uuid.uuid4(), "Echo", 3, request)


async def finish(store: InMemoryJobStore, count: int, *, fail_every: int = 0) -> list[str]:
    """Enqueue, claim and settle ``count`` jobs: Completed, or Failed every ``fail_every``;
    return their ids as text (a list of UUID objects would itself be tracked)."""
    ids = [str((await store.enqueue(new_job())).id) for _ in range(count)]
    for index, claim in enumerate(await store.claim(count, lease=30)):
        if fail_every and index % fail_every == 0:
            await store.fail(claim, JobError(f"boom {index}", "RuntimeError"), retry_in=None)
        else:
            await store.complete(claim, {"index": index, "text": f"result {index}"})
    return ids


async def kept(store: InMemoryJobStore, ids: list[str]) -> list[JobStatus | None]:
    """The status of each job, None for those the store no longer has."""
    jobs = [await store.get(uuid.UUID(job_id)) for job_id in ids]
    return [None if job is None else job.status for job in jobs]


async def test_at_most_max_retained_finished_jobs_are_kept_oldest_first_dropped() -> None:
    """With max_retained=3, finishing five jobs drops the two that finished first."""
    store = InMemoryJobStore(max_retained=3, clock=ManualClock())
    ids = await finish(store, 5)
    assert await kept(store, ids) == [None, None] + [JobStatus.COMPLETED] * 3


async def test_waiting_and_running_jobs_are_never_dropped_to_honour_max_retained() -> None:
    """max_retained counts finished jobs only: waiting and running jobs beyond it stay."""
    store = InMemoryJobStore(max_retained=1, clock=ManualClock())
    ids = [str((await store.enqueue(new_job())).id) for _ in range(6)]
    claims = await store.claim(6, lease=30)
    for claim in claims[3:]:  # Scheduled for a retry an hour from now
        await store.fail(claim, JobError("boom", "RuntimeError"), retry_in=3600)
    finished = await finish(store, 3)
    assert await kept(store, ids) == [JobStatus.IN_PROGRESS] * 3 + [JobStatus.SCHEDULED] * 3
    assert await kept(store, finished) == [None, None, JobStatus.COMPLETED]


async def test_a_recovery_pass_lets_go_of_a_bursts_jobs_once_their_retention_passed() -> None:
    """Jobs a burst stored leave every listing structure at the first recovery pass after
    their retention, with no submission after them (the log was trimmed only on every
    64th submission: a quiet app kept the whole burst's ids and tenants)."""
    clock = ManualClock()
    store = InMemoryJobStore(retention=5, clock=clock)
    burst = 3_000 + 17  # not a multiple of 64: no submission trims the log at the end
    for index in range(burst):
        await store.enqueue(dataclasses.replace(new_job(), tenant=f"tenant-{index}"))
    for claim in await store.claim(burst, lease=30):
        await store.complete(claim, {"n": 1})
    assert len(store._created) == burst
    clock.advance(6)
    await store.recover()
    assert (await store.list_jobs(limit=10)).jobs == []
    assert len(store._created) == 0 and len(store._created.keys) == 0


async def test_retained_jobs_give_the_garbage_collector_nothing_to_traverse() -> None:
    """2,000 more finished jobs (results, errors, requests) add almost no tracked objects."""
    store = InMemoryJobStore(clock=ManualClock())
    await finish(store, 100, fail_every=2)  # the store's own containers exist by now
    gc.collect()
    before = len(gc.get_objects())
    ids = await finish(store, 2_000, fail_every=2)
    gc.collect()
    assert len(gc.get_objects()) - before < 100  # a Job each would be thousands
    assert None not in await kept(store, ids)


async def test_retained_jobs_do_not_bring_the_next_collection_closer() -> None:
    """The collector runs each time so many tracked objects have been made and kept alive:
    retained jobs are not such objects, so jobs run one by one cause next to no collection."""
    store = InMemoryJobStore(clock=ManualClock())
    jobs = 20 * gc.get_threshold()[0]  # kept as tracked objects, 20 collections at least
    collections = 0

    def count(phase: str, info: dict[str, int]) -> None:
        nonlocal collections
        collections += phase == "start"

    gc.collect()
    gc.callbacks.append(count)
    try:
        for _ in range(jobs):
            await store.enqueue(new_job())
            (claim,) = await store.claim(1, lease=30)
            await store.complete(claim, {"n": 1})
    finally:
        gc.callbacks.remove(count)
    assert collections < 7


async def test_a_finished_job_reads_back_with_its_result_error_times_and_owner() -> None:
    """What complete() and fail() return is what get() reads later, field by field."""
    store = InMemoryJobStore(clock=ManualClock(start=1_767_225_600.123456))
    await store.enqueue(new_job())
    await store.enqueue(new_job())
    first, second = await store.claim(2, lease=30)
    done = await store.complete(first, {"n": [1, 2.5, None, True], "text": "ünïcode \ud800"})
    error = JobError("boom", "RuntimeError", "Traceback (most recent call last): ...")
    failed = await store.fail(second, error, retry_in=None)
    assert await store.get(first.job.id) == done and await store.get(second.job.id) == failed
    assert done.result == {"n": [1, 2.5, None, True], "text": "ünïcode \ud800"}
    assert done.completed_at == done.last_updated_at and done.created_at == first.job.created_at
    assert done.request == JobRequest(owner="alice") and failed.request == REQUEST
    assert failed.error == error and failed.status is JobStatus.FAILED


async def test_a_resent_submission_of_a_finished_job_returns_it_and_a_clash_is_refused() -> None:
    """The same submission again answers the finished job; another one with its id raises."""
    store = InMemoryJobStore(clock=ManualClock())
    spec = new_job()
    await store.enqueue(spec)
    (claim,) = await store.claim(1, lease=30)
    done = await store.complete(claim, "ok")
    assert await store.enqueue(spec) == done
    with pytest.raises(DuplicateJobError):
        await store.enqueue(dataclasses.replace(spec, request=JobRequest(body='{"data": "y"}')))
    assert await store.get(spec.id) == done


@pytest.mark.parametrize("status", [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED])
def test_the_retained_form_reads_back_every_field_set(status: JobStatus) -> None:
    """Queue, run-at time and the reserved fields survive the JSON record, whatever the
    status (a Completed job's request shrinks to its owner)."""
    moment = datetime(2026, 1, 1, 12, 0, 0, 123000, tzinfo=UTC)
    job = Job(
        uuid.uuid4(), "Echo", status, 1, 3, moment, moment, moment, moment,
        result={"n": 1}, error=JobError("boom", "RuntimeError"), request=REQUEST,
        run_at=moment, queue="low", partition_key="p1", tenant="acme",
        batch_id=uuid.uuid4(), progress={"done": 0.5},
        webhook=WebhookState(WebhookStatus.FAILED, 6),
    )  # fmt: skip
    kept = RetainedJobs(60, 10).add(job, 0.0)
    if status is JobStatus.COMPLETED:
        job = job.replace(request=JobRequest(owner="alice"))
    assert kept == job


def test_the_retained_form_covers_every_field_of_a_job() -> None:
    """A field added to Job must be added to the retained form too, or it would be lost."""
    assert tuple(field.name for field in dataclasses.fields(Job)) == FIELDS


@pytest.mark.parametrize(
    "settings",
    [{"retention": 0}, {"retention": -1.0}, {"max_retained": 0}, {"max_retained": 2.5}],
)
def test_a_retention_or_max_retained_out_of_range_is_refused(settings: dict[str, float]) -> None:
    """A retention that is not positive, or max_retained not an integer >= 1: a clear error."""
    with pytest.raises(ConfigurationError):
        InMemoryJobStore(**settings)  # type: ignore[arg-type]
