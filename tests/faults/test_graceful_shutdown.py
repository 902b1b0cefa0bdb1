"""Graceful shutdown of uvicorn (SIGTERM) with jobs in flight in its embedded workers."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest
import redis.asyncio as redis

from tests.e2e.processes import Proc, start_api, start_worker

from .figures import report
from .harness import fetch_jobs, runs_of, submit, wait_for, wait_terminal

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(180)]

CONCURRENCY = 4
JOBS = 12
JOB_SECONDS = 2.0


async def test_sigterm_to_uvicorn_records_in_flight_jobs_and_leaves_the_rest_queued(
    env: dict[str, str], procs: list[Proc], records: redis.Redis, tmp_path: Path
) -> None:
    """Jobs running at SIGTERM are recorded by that instance, the rest stay Queued; none reruns."""
    env = {**env, "MAX_CONCURRENCY": str(CONCURRENCY), "GRACE_PERIOD": "30"}
    prefix = env["AE_PREFIX"]
    stopping = start_api(env, tmp_path, "stopping")  # serves HTTP and runs workers
    reader = start_api({**env, "RUN_WORKERS": "0"}, tmp_path, "reader")
    procs.extend([stopping, reader])
    async with httpx.AsyncClient(timeout=10) as client:
        body = {"seconds": JOB_SECONDS}
        ids = [await submit(client, stopping, "/work", body) for _ in range(JOBS)]

        async def pool_full() -> bool:
            return sum(map(len, (await runs_of(records, prefix, ids)).values())) == CONCURRENCY

        await wait_for(pool_full, 30, "the embedded pool running its fill of jobs")
        running = await runs_of(records, prefix, ids)
        in_flight = [job_id for job_id in ids if running[job_id]]
        began = time.monotonic()
        stopping.signal(signal.SIGTERM)
        status = stopping.wait(timeout=60)
        stopped_in = time.monotonic() - began
        at_exit = await fetch_jobs(client, reader, ids)
        worker = start_worker(env, tmp_path)
        procs.append(worker)
        final = await wait_terminal(client, reader, ids, timeout=60)
    runs = await runs_of(records, prefix, ids)
    ran_there = [job_id for job_id in ids if at_exit[job_id]["status"] == "Completed"]
    report(
        "uvicorn-sigterm",
        in_flight=len(in_flight),
        completed_before_exit=len(ran_there),
        stopped_in_s=round(stopped_in, 2),
        exit_status=status,  # uvicorn re-raises the signal it drained on: -15
    )
    assert set(in_flight) <= set(ran_there), "every job running at SIGTERM was recorded"
    assert {at_exit[job_id]["status"] for job_id in ids} <= {"Completed", "Queued"}
    assert all(at_exit[job_id]["result"]["pid"] == stopping.pid for job_id in ran_there)
    assert {job["status"] for job in final.values()} == {"Completed"}
    assert all(job["retryCount"] == 0 for job in final.values()), "no attempt was lost"
    assert all(len(runs[job_id]) == 1 for job_id in ids), "no job ran twice"


async def test_a_worker_stopped_past_its_grace_period_gives_its_job_back_uncounted(
    env: dict[str, str], procs: list[Proc], records: redis.Redis, tmp_path: Path
) -> None:
    """SIGTERM to a worker process whose job outlives its grace period: it exits 0, the
    job given back (Scheduled, retryCount 0, due when its lease would have run out), and
    another worker process runs it to completion, still at retryCount 0: a rolling
    restart uses up no retry of a job that never failed."""
    env = {**env, "GRACE_PERIOD": "0.5", "CLAIM_TIMEOUT": "2"}
    prefix = env["AE_PREFIX"]
    api = start_api({**env, "RUN_WORKERS": "0"}, tmp_path)
    first = start_worker(env, tmp_path, "first")
    procs.extend([api, first])
    async with httpx.AsyncClient(timeout=10) as client:
        job_id = await submit(client, api, "/slow", {"seconds": 3})

        async def started() -> bool:
            return bool((await runs_of(records, prefix, [job_id]))[job_id])

        await wait_for(started, 30, "the job started in the first worker")
        first.signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
        (given,) = (await fetch_jobs(client, api, [job_id])).values()
        second = start_worker(env, tmp_path, "second")
        procs.append(second)
        (final,) = (await wait_terminal(client, api, [job_id], timeout=60)).values()
    assert given["status"] == "Scheduled" and given["retryCount"] == 0, given
    assert final["status"] == "Completed" and final["retryCount"] == 0, final
    assert (await runs_of(records, prefix, [job_id]))[job_id] == [first.pid, second.pid]
