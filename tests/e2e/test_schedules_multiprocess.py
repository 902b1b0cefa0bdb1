"""Cron schedules across real worker processes on one real Redis: each cycle of a one-second
schedule enqueues exactly one job however many processes run the scheduler, and a process
killed with SIGKILL costs no cycle (there is no leader to lose).

On one server the run lasts the 60 s the issue asks for with ``FAULTS_SCALE=full`` (two
processes for 20 s, three for 20 s, then one of them killed and two for 20 s more), 15 s
by default (5 s each: every transition is covered, and the whole suite stays within its
time budget); on a Redis Cluster 15 s. The jobs are
counted by the second their ``created_at`` falls in (the Redis server's clock, which
fires them).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from async_endpoints import AsyncEndpoints
from async_endpoints_redis import RedisJobStore
from tests.faults.scale import current_scale
from tests.redis_servers import RedisClusterProcesses

from .processes import Proc, start_worker

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(180)]

APP = "tests.apps.schedule_app"


async def jobs_per_second(url: str, prefix: str) -> Counter[int]:
    """How many jobs were created in each second (unix time), read through the store."""
    store = RedisJobStore(url, prefix=prefix)
    reader = AsyncEndpoints(store=store)
    seconds: Counter[int] = Counter()
    cursor = None
    try:
        while True:
            page = await reader.list_jobs(limit=200, cursor=cursor)
            seconds.update(int(job.created_at.timestamp()) for job in page.jobs)
            cursor = page.next_cursor
            if cursor is None:
                return seconds
    finally:
        await store.aclose()


def start(env: dict[str, str], tmp_path: Path, name: str) -> Proc:
    return start_worker(env, tmp_path, name, module=APP)


async def test_one_job_per_second_with_two_then_three_processes_and_one_killed(
    env: dict[str, str], procs: list[Proc], tmp_path: Path
) -> None:
    """Two scheduler processes for a phase, three for a phase, then one of them SIGKILLed
    and two for a phase more (20 s each at the full scale, 5 s by default): every second
    from the first job to the end has exactly one job, and the kill costs no cycle (at
    most the one in flight, which the issue allows)."""
    phase = 20.0 if current_scale().name == "full" else 5.0
    await two_then_three_then_one_killed(env, procs, tmp_path, phase=phase)


async def test_one_job_per_second_on_a_redis_cluster(
    redis_cluster: RedisClusterProcesses, procs: list[Proc], tmp_path: Path
) -> None:
    """The same on a 3-master Redis Cluster (the schedule's keys in the store's slot)."""
    env = {"REDIS_URL": redis_cluster.url, "AE_PREFIX": f"e2e-{uuid.uuid4().hex[:8]}"}
    await two_then_three_then_one_killed(env, procs, tmp_path, phase=5.0)


async def two_then_three_then_one_killed(
    env: dict[str, str], procs: list[Proc], tmp_path: Path, *, phase: float
) -> None:
    first = await asyncio.to_thread(start, env, tmp_path, "worker0")
    procs.append(first)
    procs.append(await asyncio.to_thread(start, env, tmp_path, "worker1"))
    await asyncio.sleep(phase)  # the length of each phase of the scenario, not a wait for it
    procs.append(await asyncio.to_thread(start, env, tmp_path, "worker2"))
    await asyncio.sleep(phase)
    killed_at = time.time()
    first.kill()
    await asyncio.sleep(phase)
    ended_at = time.time()
    for proc in procs:
        proc.kill()
    counts = await jobs_per_second(env["REDIS_URL"], env["AE_PREFIX"])
    assert counts, "no schedule fired"
    span = range(min(counts), int(ended_at))
    print(f"{sum(counts.values())} jobs over {len(span)} s; per second: {sorted(counts.items())}")
    assert len(span) >= 3 * phase - 3
    assert max(counts.values()) == 1, f"a cycle fired twice: {counts}"
    missing = [second for second in span if counts[second] == 0]
    assert all(abs(second - killed_at) <= 1.5 for second in missing), missing
    assert len(missing) <= 1, f"cycles lost: {missing}"
