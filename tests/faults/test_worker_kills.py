"""Worker kills: SIGKILL one of three worker processes every ~2 s while short jobs run."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
import redis.asyncio as redis

from tests.e2e.processes import Proc, start_api, start_worker

from .figures import report, spread
from .harness import (
    busiest,
    fetch_jobs,
    kept_last_attempt,
    runs_of,
    starts,
    submit,
    unsettled,
    wait_all_settled,
)
from .scale import Scale

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(900)]

CONCURRENCY = 8
JOB_SECONDS = 0.2


async def submit_paced(
    client: httpx.AsyncClient, api: Proc, count: int, seconds: float
) -> list[str]:
    """POST ``count`` short jobs spread evenly over ``seconds``; return their ids."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    posts = []
    for n in range(count):
        await asyncio.sleep(max(0.0, began + n * seconds / count - loop.time()))
        posts.append(asyncio.create_task(submit(client, api, "/work", {"seconds": JOB_SECONDS})))
    return list(await asyncio.gather(*posts))


def recovery_seconds(
    killed_pid: int, killed_at: float, runs: list[tuple[int, float, str]]
) -> float | None:
    """Seconds from a kill until every job the killed worker had begun was running again
    in another worker; None when the kill interrupted no job."""
    begun_there = {job_id for pid, _, job_id in runs if pid == killed_pid}
    rerun_at: dict[str, float] = {}
    for pid, at, job_id in runs:
        if job_id in begun_there and pid != killed_pid and at > killed_at:
            rerun_at.setdefault(job_id, at)
    return max(rerun_at.values()) - killed_at if rerun_at else None


async def test_killing_a_worker_every_two_seconds_loses_no_job_and_bounds_duplicates(
    env: dict[str, str], procs: list[Proc], records: redis.Redis, tmp_path: Path, scale: Scale
) -> None:
    """SIGKILL a worker every ~2 s: no job lost, reruns within kills x max_concurrency."""
    env = {**env, "MAX_CONCURRENCY": str(CONCURRENCY)}
    prefix = env["AE_PREFIX"]
    api = start_api({**env, "RUN_WORKERS": "0"}, tmp_path)
    procs.append(api)
    spawned = 0

    async def spawn() -> Proc:
        nonlocal spawned
        spawned += 1
        proc = await asyncio.to_thread(start_worker, env, tmp_path, f"worker{spawned}")
        procs.append(proc)
        return proc

    live = list(await asyncio.gather(*(spawn() for _ in range(3))))
    kills: list[tuple[int, float]] = []
    replacements: list[asyncio.Task[Proc]] = []
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        load_seconds = scale.kills * scale.kill_interval + 1
        submitting = asyncio.create_task(submit_paced(client, api, scale.kill_jobs, load_seconds))
        try:
            for _ in range(scale.kills):
                await asyncio.sleep(scale.kill_interval)  # the scenario's rhythm
                live += [task.result() for task in replacements if task.done()]
                replacements = [task for task in replacements if not task.done()]
                if not live:  # all killed before a replacement came up (a busy machine)
                    live.append(await replacements.pop(0))
                victim = await busiest(records, prefix, live)
                live.remove(victim)
                kills.append((victim.pid, time.time()))
                victim.kill()
                replacements.append(asyncio.create_task(spawn()))
            accepted = await submitting
        finally:
            await asyncio.gather(*replacements, return_exceptions=True)
        drain_seconds = await wait_all_settled(records, prefix, timeout=180)
        jobs = await fetch_jobs(client, api, accepted)
    runs = await runs_of(records, prefix, accepted)
    duplicates = sum(len(pids) - 1 for pids in runs.values())
    begun = await starts(records, prefix)
    recoveries = [recovery_seconds(pid, at, begun) for pid, at in kills]
    measured = [seconds for seconds in recoveries if seconds is not None]
    report(
        "worker-kills",
        scale=scale.name,
        jobs=len(accepted),
        kills=len(kills),
        lost=sum(job["status"] != "Completed" for job in jobs.values()),
        duplicate_executions=duplicates,
        duplicate_bound=len(kills) * CONCURRENCY,
        claims_lost_before_running=sum(
            job["retryCount"] - (len(runs[job_id]) - 1) for job_id, job in jobs.items()
        ),
        kills_that_hit_running_jobs=len(measured),
        recovery_s=spread(measured),
        recovery_per_kill_s=[None if s is None else round(s, 2) for s in recoveries],
        drain_after_last_submission_s=round(drain_seconds, 2),
    )
    assert len(set(accepted)) == scale.kill_jobs
    assert {job["status"] for job in jobs.values()} == {"Completed"}
    assert await unsettled(records, prefix) == 0, "a job is still waiting or claimed"
    assert all(runs[job_id] for job_id in accepted), "a Completed job never ran"
    assert all(kept_last_attempt(jobs[job_id], runs[job_id]) for job_id in accepted)
    assert duplicates <= len(kills) * CONCURRENCY
    assert measured, "no kill hit a running job: the scenario tested nothing"
