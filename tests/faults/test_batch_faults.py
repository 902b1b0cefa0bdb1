"""Batches under faults, on one real durable Redis (AOF, fsync always): a worker process
SIGKILLed in the middle of a 1,000-job batch, and the Redis server SIGKILLed and restarted
with an unfinished batch. Either way the batch finishes, its counts end exactly as its
jobs' statuses, and its continuation runs exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError

from async_endpoints import Batch, BatchStatus, JobStatus
from async_endpoints_redis import RedisJobStore
from tests.e2e.batches import APP, counts_of, joins, parts_run, statuses, submit, submitter
from tests.e2e.processes import Proc, start_worker
from tests.redis_servers import RedisServer

from .harness import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(300)]


async def start_workers(env: dict[str, str], tmp_path: Path, procs: list[Proc], n: int) -> None:
    for index in range(n):
        procs.append(
            await asyncio.to_thread(start_worker, env, tmp_path, f"worker{index}", module=APP)
        )


def reachable(check: Callable[[], Awaitable[bool]]) -> Callable[[], Awaitable[bool]]:
    """``check``, answering False while Redis cannot be reached."""

    async def checked() -> bool:
        try:
            return await check()
        except (RedisConnectionError, OSError):
            return False

    return checked


async def finish_exactly_once(
    store: RedisJobStore, records: redis.Redis, prefix: str, batch: Batch, procs: list[Proc]
) -> Batch:
    """Wait for the batch's continuation to complete; then, every worker stopped, check
    that it ran once, that the batch finished, and that its counts are its jobs'
    statuses. The batch as it ended."""
    (continuation_id,) = batch.continuation_ids

    async def continuation_done() -> bool:
        job = await store.get(continuation_id)
        return job is not None and job.status is JobStatus.COMPLETED

    await wait_for(reachable(continuation_done), 180, "the continuation completed")
    for proc in procs:
        proc.kill()
    finished = await store.get_batch(batch.id)
    assert finished is not None and finished.status is BatchStatus.FINISHED
    assert finished.total == batch.total and finished.unfinished == 0
    assert counts_of(finished) == await statuses(store, batch)

    async def records_answer() -> bool:
        return bool(await records.ping())

    await wait_for(reachable(records_answer), 10, "the run records readable")
    (ran,) = await joins(records, prefix)
    assert ran.split(" ")[1:] == [str(continuation_id), str(batch.id)]
    return finished


async def test_a_worker_killed_in_the_middle_of_a_batch(
    env: dict[str, str], procs: list[Proc], records: redis.Redis, tmp_path: Path
) -> None:
    """Three workers on a 1,000-job batch (claim_timeout 2 s); once 200 jobs have started
    the busiest process is SIGKILLed: its jobs are recovered and run again elsewhere, every
    job completes, and the continuation runs once."""
    await start_workers(env, tmp_path, procs, 3)
    url, prefix = env["REDIS_URL"], env["AE_PREFIX"]
    async with submitter(url, prefix) as (engine, store):
        batch = await submit(engine, 1000, seconds=0.1)

        async def started(count: int) -> bool:
            return len(await parts_run(records, prefix)) >= count

        await wait_for(lambda: started(200), 60, "200 jobs of the batch started")
        runs = [entry.split(" ")[0] for entry in await parts_run(records, prefix)]
        victim = max(procs, key=lambda proc: runs.count(str(proc.pid)))
        victim.kill()
        during = await store.get_batch(batch.id)
        assert during is not None and during.status is BatchStatus.RUNNING
        finished = await finish_exactly_once(store, records, prefix, batch, procs)
    assert finished.completed == 1000
    killed = {
        job_id
        for pid, job_id in map(str.split, await parts_run(records, prefix))
        if pid == str(victim.pid)
    }
    assert killed, "the killed process had run jobs of the batch"


async def test_an_unfinished_batch_survives_a_redis_restart(
    env: dict[str, str],
    procs: list[Proc],
    records: redis.Redis,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    """Redis SIGKILLed and restarted (AOF) while a 300-job batch runs: the batch reads back
    Running with its jobs, and finishes; the continuation runs once."""
    await start_workers(env, tmp_path, procs, 2)
    url, prefix = env["REDIS_URL"], env["AE_PREFIX"]
    async with submitter(url, prefix) as (engine, store):
        batch = await submit(engine, 300, seconds=0.05)

        async def started() -> bool:
            return len(await parts_run(records, prefix)) >= 50

        await wait_for(started, 60, "50 jobs of the batch started")
        redis_server.stop()
        redis_server.start()

        async def survived() -> bool:
            found = await store.get_batch(batch.id)
            assert found is not None and found.total == 300
            return True

        await wait_for(reachable(survived), 30, "the batch read back after the restart")
        await finish_exactly_once(store, records, prefix, batch, procs)
