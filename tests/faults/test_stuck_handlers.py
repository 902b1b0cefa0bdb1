"""Slow and stuck handlers: past job_timeout, blocking the event loop, ignoring
cancellation, raising SystemExit or KeyboardInterrupt. Nothing is lost, nothing is stuck
and no worker dies or hangs."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest
import redis.asyncio as redis

from tests.e2e.processes import Proc, start_api, start_worker

from .figures import report
from .harness import runs_of, submit, wait_for, wait_terminal

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(120)]


def api_and_worker(
    env: dict[str, str], procs: list[Proc], tmp_path: Path, workers: int = 1
) -> tuple[Proc, list[Proc]]:
    """An API-only instance and ``workers`` worker processes, all registered for cleanup."""
    api = start_api({**env, "RUN_WORKERS": "0"}, tmp_path)
    procs.append(api)
    started = [start_worker(env, tmp_path, f"worker{n}") for n in range(workers)]
    procs.extend(started)
    return api, started


async def test_an_attempt_beyond_job_timeout_fails_as_job_timeout_and_is_retried(
    env: dict[str, str], procs: list[Proc], records: redis.Redis, tmp_path: Path
) -> None:
    """An overrunning attempt fails as JobTimeout and is retried; always overrunning: Failed."""
    env = {**env, "JOB_TIMEOUT": "1", "MAX_RETRIES": "1"}
    api, (worker,) = api_and_worker(env, procs, tmp_path)
    async with httpx.AsyncClient(timeout=10) as client:
        once = await submit(client, api, "/slow", {"seconds": 60})  # overruns once only
        always = await submit(client, api, "/work", {"seconds": 60})
        jobs = await wait_terminal(client, api, [once, always], timeout=60)
    assert (jobs[once]["status"], jobs[once]["retryCount"]) == ("Completed", 1)
    assert (jobs[always]["status"], jobs[always]["retryCount"]) == ("Failed", 1)
    assert jobs[always]["error"]["type"] == "JobTimeout"
    assert await runs_of(records, env["AE_PREFIX"], [once, always]) == {
        once: [worker.pid] * 2,
        always: [worker.pid] * 2,
    }


async def test_a_handler_blocking_the_event_loop_past_claim_timeout_is_rerun_elsewhere(
    env: dict[str, str], procs: list[Proc], records: redis.Redis, tmp_path: Path
) -> None:
    """Its lease lapses, another worker completes the job; the late result is rejected."""
    api, workers = api_and_worker(env, procs, tmp_path, workers=2)
    prefix = env["AE_PREFIX"]
    async with httpx.AsyncClient(timeout=10) as client:
        blocker = await submit(client, api, "/block", {"seconds": 6})
        others = [await submit(client, api, "/work", {"seconds": 0.1}) for _ in range(10)]
        jobs = await wait_terminal(client, api, [blocker, *others], timeout=60)
        blocked_pid, rerun_pid = (await runs_of(records, prefix, [blocker]))[blocker]
        (blocked,) = [worker for worker in workers if worker.pid == blocked_pid]

        async def late_result_rejected() -> bool:
            return "claim lost before settling" in blocked.output()

        await wait_for(late_result_rejected, 30, "the blocked worker's late result rejected")
        final = (await wait_terminal(client, api, [blocker], timeout=10))[blocker]

        async def blocked_worker_took_a_job() -> bool:
            job_id = await submit(client, api, "/work", {})
            done = await wait_terminal(client, api, [job_id], timeout=30)
            return bool(done[job_id]["result"]["pid"] == blocked_pid)

        await wait_for(blocked_worker_took_a_job, 30, "the blocked worker taking jobs again")
    assert rerun_pid != blocked_pid
    assert final["status"] == "Completed" and final["retryCount"] == 1
    assert final["result"] == {"pid": rerun_pid, "attempt": 1}
    assert final == jobs[blocker], "the late result changed nothing"
    assert {jobs[job_id]["status"] for job_id in others} == {"Completed"}
    assert all(worker.process.poll() is None for worker in workers)


async def test_a_handler_ignoring_cancellation_still_ends_its_attempt_at_job_timeout(
    env: dict[str, str], procs: list[Proc], records: redis.Redis, tmp_path: Path
) -> None:
    """The attempt fails as JobTimeout and is retried while the abandoned handler runs on."""
    env = {**env, "JOB_TIMEOUT": "1"}
    api, (worker,) = api_and_worker(env, procs, tmp_path)
    prefix = env["AE_PREFIX"]
    async with httpx.AsyncClient(timeout=10) as client:
        job_id = await submit(client, api, "/stubborn", {"seconds": 8})
        done = (await wait_terminal(client, api, [job_id], timeout=30))[job_id]
        still_running = await records.llen(f"{prefix}-test:ended:{job_id}") == 0

        async def abandoned_handler_ended() -> bool:
            return await records.llen(f"{prefix}-test:ended:{job_id}") == 1

        await wait_for(abandoned_handler_ended, 30, "the abandoned handler running to its end")
    assert done["status"] == "Completed" and done["result"] == {"pid": worker.pid, "attempt": 1}
    assert still_running, "the retry completed while the first attempt's handler ran on"
    assert "the handler ignores cancellation" in worker.output()
    assert (await runs_of(records, prefix, [job_id]))[job_id] == [worker.pid] * 2


async def test_a_worker_stops_soon_after_its_grace_period_despite_a_handler_ignoring_cancellation(
    env: dict[str, str], procs: list[Proc], records: redis.Redis, tmp_path: Path
) -> None:
    """SIGTERM: the worker exits 0 though the handler ignores cancellation; recovery reruns."""
    grace = 1.0
    env = {**env, "GRACE_PERIOD": str(grace)}
    api, (doomed,) = api_and_worker(env, procs, tmp_path)
    prefix = env["AE_PREFIX"]
    async with httpx.AsyncClient(timeout=10) as client:
        job_id = await submit(client, api, "/stubborn", {"seconds": 600})

        async def started() -> bool:
            return await records.llen(f"{prefix}-test:pids:{job_id}") == 1

        await wait_for(started, 30, "the stubborn handler starting")
        began = time.monotonic()
        doomed.signal(signal.SIGTERM)
        status = doomed.wait(timeout=30)  # the handler would run for ten minutes
        took = time.monotonic() - began
        survivor = start_worker(env, tmp_path, "survivor")
        procs.append(survivor)
        done = (await wait_terminal(client, api, [job_id], timeout=60))[job_id]
    report("stubborn-handler-shutdown", grace_period_s=grace, exit_after_sigterm_s=round(took, 2))
    assert status == 0
    assert "the handler ignores cancellation" in doomed.output()
    assert done["status"] == "Completed" and done["retryCount"] == 1
    assert done["result"] == {"pid": survivor.pid, "attempt": 1}


@pytest.mark.parametrize("host", ["worker", "uvicorn"])
@pytest.mark.parametrize("kind", ["SystemExit", "KeyboardInterrupt"])
async def test_system_exit_or_keyboard_interrupt_in_a_handler_fails_the_attempt_not_the_process(
    env: dict[str, str],
    procs: list[Proc],
    records: redis.Redis,
    tmp_path: Path,
    kind: str,
    host: str,
) -> None:
    """The attempt fails with that error type and is retried; the process runs on."""
    env = {**env, "MAX_RETRIES": "1"}
    if host == "worker":
        api, (runner,) = api_and_worker(env, procs, tmp_path)
    else:
        api = runner = start_api(env, tmp_path)
        procs.append(api)
    async with httpx.AsyncClient(timeout=10) as client:
        retried = await submit(client, api, "/exit", {"kind": kind, "attempts": 1})
        failed = await submit(client, api, "/exit", {"kind": kind, "attempts": 2})
        jobs = await wait_terminal(client, api, [retried, failed], timeout=30)
        after = await submit(client, api, "/work", {})
        later = await wait_terminal(client, api, [after], timeout=30)
    assert jobs[retried]["status"] == "Completed" and jobs[retried]["retryCount"] == 1
    assert jobs[failed]["status"] == "Failed" and jobs[failed]["error"]["type"] == kind
    runs = await runs_of(records, env["AE_PREFIX"], [retried, failed])
    assert runs == {retried: [runner.pid] * 2, failed: [runner.pid] * 2}
    assert later[after]["result"]["pid"] == runner.pid and runner.process.poll() is None
