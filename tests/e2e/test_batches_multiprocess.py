"""A batch across real worker processes on one real Redis: 1,000 jobs run by three worker
processes, and the continuation runs exactly once, when the last of them has ended,
whichever process ends it."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
import redis.asyncio as redis

from async_endpoints import BatchStatus, JobStatus
from tests.faults.harness import wait_for

from .batches import APP, counts_of, joins, parts_run, statuses, submit, submitter
from .processes import Proc, start_worker

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(180)]

JOBS = 1000
WORKERS = 3


async def test_a_batch_of_a_thousand_jobs_over_three_processes_continues_once(
    env: dict[str, str], procs: list[Proc], records: redis.Redis, tmp_path: Path
) -> None:
    """Every job runs once, in all three processes; the batch finishes with 1,000
    completed, counted exactly; the continuation runs once, with the batch's id."""
    for n in range(WORKERS):
        procs.append(await asyncio.to_thread(start_worker, env, tmp_path, f"worker{n}", module=APP))
    url, prefix = env["REDIS_URL"], env["AE_PREFIX"]
    async with submitter(url, prefix) as (engine, store):
        batch = await submit(engine, JOBS, seconds=0.005)
        assert batch.total == JOBS and batch.status is BatchStatus.RUNNING

        async def continued() -> bool:
            return len(await joins(records, prefix)) >= 1

        await wait_for(continued, 120, "the continuation ran")
        (continuation_id,) = batch.continuation_ids

        async def continuation_done() -> bool:
            job = await store.get(continuation_id)
            return job is not None and job.status is JobStatus.COMPLETED

        await wait_for(continuation_done, 30, "the continuation completed")
        finished = await engine.get_batch(batch.id)
        assert finished is not None and finished.status is BatchStatus.FINISHED
        assert finished.completed == JOBS and finished.total == JOBS
        assert counts_of(finished) == await statuses(store, batch)

    # Every process has stopped taking work before the runs are counted.
    for proc in procs:
        proc.kill()
    (ran,) = await joins(records, prefix)
    assert ran.split(" ")[1:] == [str(continuation_id), str(batch.id)]
    starts = [entry.split(" ") for entry in await parts_run(records, prefix)]
    per_job = Counter(job_id for _, job_id in starts)
    assert len(per_job) == JOBS and set(per_job.values()) == {1}
    assert len({pid for pid, _ in starts}) == WORKERS, "every process ran jobs of the batch"
