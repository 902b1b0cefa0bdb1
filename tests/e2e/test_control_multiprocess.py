"""Job control across real processes on one real Redis: cancel, pause and resume, queues.

API-only uvicorn instances (``run_workers=False``) take the control calls; separate
``python -m async_endpoints worker`` processes run the jobs (tests.apps.control_app, whose
handlers record every run, and when a held handler saw its cancellation, in Redis).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as redis

from tests.faults.harness import submit, wait_for, wait_terminal

from .processes import Proc, start_api, start_worker

pytestmark = [
    pytest.mark.slow,
    pytest.mark.redis,
    pytest.mark.timeout(180),
]

APP = "tests.apps.control_app"
# A claim whose lease runs 30 s is renewed every few seconds: a cancel seen within a second
# came through the push, not through a renewal finding the claim lost.
PUSH_ONLY = {"CLAIM_TIMEOUT": "30"}


def api(env: dict[str, str], tmp_path: Path, name: str = "api") -> Proc:
    return start_api({**env, "RUN_WORKERS": "0"}, tmp_path, name, module=APP)


def worker(env: dict[str, str], tmp_path: Path, name: str = "worker", *args: str) -> Proc:
    return start_worker(env, tmp_path, name, module=APP, args=args)


async def started(records: redis.Redis, prefix: str, job_id: str, timeout: float = 30) -> None:
    """Wait until the job's handler has begun."""

    async def begun() -> bool:
        return bool(await records.get(f"{prefix}-test:runs:{job_id}"))

    await wait_for(begun, timeout, f"job {job_id} started")


async def cancel_seen(records: redis.Redis, prefix: str, job_id: str) -> tuple[int, float]:
    """(pid, unix time) at which the held handler saw its CancelledError."""
    seen: list[str] = []

    async def recorded() -> bool:
        value = await records.get(f"{prefix}-test:cancelled:{job_id}")
        seen.append(value or "")
        return value is not None

    await wait_for(recorded, 10, f"job {job_id}'s handler saw its cancellation", every=0.005)
    pid, at = seen[-1].split()
    return int(pid), float(at)


async def starts(records: redis.Redis, prefix: str) -> list[tuple[int, float, str, str]]:
    """Every run begun, in order: (pid, unix time, job id, queue)."""
    entries = await records.lrange(f"{prefix}-test:starts", 0, -1)
    return [(int(pid), float(at), job, queue) for pid, at, job, queue in map(str.split, entries)]


async def queue_stats(client: httpx.AsyncClient, instance: Proc) -> dict[str, dict[str, Any]]:
    response = await client.get(f"{instance.url}/admin/stats")
    assert response.status_code == 200, response.text
    found: dict[str, dict[str, Any]] = response.json()
    return found


async def control(client: httpx.AsyncClient, instance: Proc, verb: str, queue: str | None) -> None:
    response = await client.post(f"{instance.url}/admin/{verb}", json={"queue": queue})
    assert response.status_code == 200, response.text


async def test_a_cancel_from_an_api_instance_reaches_the_handler_in_a_worker_process(
    env: dict[str, str], procs: list[Proc], records: redis.Redis, tmp_path: Path
) -> None:
    """POST /jobs/{id}/cancel on an API-only instance: the handler running in a separate
    worker process sees CancelledError within 1 s, the job is Canceled, it never runs
    again; cancelling from two instances at once leaves one Canceled job and no error."""
    env = {**env, **PUSH_ONLY}
    prefix = env["AE_PREFIX"]
    first, second = api(env, tmp_path, "api1"), api(env, tmp_path, "api2")
    running = worker(env, tmp_path)
    procs.extend([first, second, running])
    async with httpx.AsyncClient(timeout=10) as client:
        job_id = await submit(client, first, "/hold", {})
        await started(records, prefix, job_id)
        before = time.time()
        response = await client.post(f"{first.url}/jobs/{job_id}/cancel")
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "Canceled"
        assert response.json()["completedAt"] is not None
        pid, seen_at = await cancel_seen(records, prefix, job_id)
        latency = seen_at - before
        print(f"the handler saw its cancellation {latency * 1000:.1f} ms after the call")
        assert pid == running.pid
        assert latency < 1.0, "pushed to the worker within 1 s"

        again = await client.post(f"{second.url}/jobs/{job_id}/cancel")
        assert again.status_code == 409, again.text

        both_id = await submit(client, first, "/hold", {})
        await started(records, prefix, both_id)
        answers = await asyncio.gather(
            client.post(f"{first.url}/jobs/{both_id}/cancel"),
            client.post(f"{second.url}/jobs/{both_id}/cancel"),
        )
        assert sorted(answer.status_code for answer in answers) in ([200, 200], [200, 409])
        await cancel_seen(records, prefix, both_id)

        # The worker is idle and alive: a job queued now runs, and nothing else does.
        probe = await submit(client, first, "/default", {})
        finished = await wait_terminal(client, first, [job_id, both_id, probe], timeout=30)
        stats = await queue_stats(client, first)
    assert finished[probe]["status"] == "Completed"
    assert {finished[job]["status"] for job in (job_id, both_id)} == {"Canceled"}
    for job in (job_id, both_id):
        assert await records.get(f"{prefix}-test:runs:{job}") == "1", "never run again"
        assert await records.get(f"{prefix}-test:returned:{job}") is None
    assert stats["default"]["canceled"] == 2
    assert stats["default"]["in_progress"] == 0 and stats["default"]["queued"] == 0


async def test_pause_in_one_instance_stops_starts_in_a_worker_process_and_resume_restarts(
    env: dict[str, str], procs: list[Proc], records: redis.Redis, tmp_path: Path
) -> None:
    """A queue paused through an API-only instance: within 1 s the worker process starts
    none of its jobs (it keeps taking jobs of other queues), submissions are still
    accepted; resumed, its jobs start within 1 s."""
    env = {**env, "MAX_CONCURRENCY": "2"}
    prefix = env["AE_PREFIX"]
    instance = api(env, tmp_path)
    running = worker(env, tmp_path)
    procs.extend([instance, running])
    async with httpx.AsyncClient(timeout=10) as client:
        high = [await submit(client, instance, "/high", {"seconds": 0.2}) for _ in range(40)]
        await started(records, prefix, high[0])
        await control(client, instance, "pause", "high")
        paused_at = time.time()
        high.append(await submit(client, instance, "/high", {"seconds": 0.2}))  # still 202

        # Strict priority: while a high job is queued and not paused, no low job starts.
        # So every low job that runs shows a claim that skipped the paused queue; keep
        # them coming until one has started 1.5 s after the pause.
        async def low_ran_late() -> bool:
            probe = await submit(client, instance, "/low", {})
            await wait_terminal(client, instance, [probe], timeout=10)
            runs = await starts(records, prefix)
            return any(q == "low" and at > paused_at + 1.5 for _, at, _, q in runs)

        await wait_for(low_ran_late, 30, "a low job 1.5 s after the pause")
        paused_stats = (await queue_stats(client, instance))["high"]
        high_starts = [at for _, at, _, q in await starts(records, prefix) if q == "high"]

        await control(client, instance, "resume", None)
        resumed_at = time.time()
        finished = await wait_terminal(client, instance, high, timeout=60)
    assert paused_stats["paused"] is True and paused_stats["queued"] > 0
    late = [at - paused_at for at in high_starts if at > paused_at + 1.0]
    assert not late, f"high jobs started {late} s after the pause"
    runs = await starts(records, prefix)
    after = min(at for _, at, _, q in runs if q == "high" and at > resumed_at)
    print(f"first high job started {(after - resumed_at) * 1000:.0f} ms after resume")
    assert after - resumed_at < 1.0
    assert {job["status"] for job in finished.values()} == {"Completed"}


async def test_pausing_every_queue_then_resuming_one_runs_only_that_one(
    env: dict[str, str], procs: list[Proc], records: redis.Redis, tmp_path: Path
) -> None:
    """pause(None) holds every queue; resume("low") lets low jobs run while the queued
    high job (which strict priority would take first) stays held; resume(None) ends it."""
    prefix = env["AE_PREFIX"]
    instance = api(env, tmp_path)
    running = worker(env, tmp_path)
    procs.extend([instance, running])
    async with httpx.AsyncClient(timeout=10) as client:
        await control(client, instance, "pause", None)
        held = await submit(client, instance, "/high", {})
        low = await submit(client, instance, "/low", {})
        await control(client, instance, "resume", "low")
        await wait_terminal(client, instance, [low], timeout=30)
        stats = await queue_stats(client, instance)
        await control(client, instance, "resume", None)
        finished = await wait_terminal(client, instance, [held], timeout=30)
    assert stats["high"]["paused"] is True and stats["high"]["queued"] == 1
    assert stats["low"]["paused"] is False
    assert [q for _, _, _, q in await starts(records, prefix)] == ["low", "high"]
    assert finished[held]["status"] == "Completed"


async def test_a_worker_with_queues_takes_higher_priority_queues_first(
    env: dict[str, str], procs: list[Proc], records: redis.Redis, tmp_path: Path
) -> None:
    """Jobs queued in low, default and high (oldest in low): a worker with
    ``--queues high,default`` and one slot runs every high job, then every default one,
    and never a low one; a worker with ``--queues low`` runs those."""
    env = {**env, "MAX_CONCURRENCY": "1"}
    prefix = env["AE_PREFIX"]
    instance = api(env, tmp_path)
    procs.append(instance)
    async with httpx.AsyncClient(timeout=10) as client:
        by_queue: dict[str, list[str]] = {"low": [], "default": [], "high": []}
        for _ in range(5):
            for queue, ids in by_queue.items():
                ids.append(await submit(client, instance, f"/{queue}", {}))
        first = worker(env, tmp_path, "first", "--queues", "high,default")
        procs.append(first)
        await wait_terminal(client, instance, by_queue["high"] + by_queue["default"], timeout=60)
        second = worker(env, tmp_path, "second", "--queues", "low")
        procs.append(second)
        finished = await wait_terminal(client, instance, by_queue["low"], timeout=60)
    order = [(pid, queue) for pid, _, _, queue in await starts(records, prefix)]
    assert order[:10] == [(first.pid, "high")] * 5 + [(first.pid, "default")] * 5
    assert order[10:] == [(second.pid, "low")] * 5
    assert {job["result"] for job in finished.values()} == {second.pid}
