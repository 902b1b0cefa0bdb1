"""What the fault scenarios share: submitting, waiting with deadlines, reading outcomes.

Job outcomes are read through the public HTTP surface (job details); how often each job
ran, and where, comes from the records tests.apps.redis_app keeps in Redis; whether any
job is still waiting or claimed comes from the store's own sets (`Keys`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpx
import redis.asyncio as redis

from async_endpoints_redis._keys import Keys
from tests.e2e.processes import Proc

TERMINAL = {"Completed", "Failed", "Canceled"}
Job = dict[str, Any]


async def submit(client: httpx.AsyncClient, api: Proc, path: str, body: Any = None) -> str:
    """POST a job and return its id; anything but 202 fails the test."""
    response = await client.post(f"{api.url}{path}", json=body)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


async def submit_many(
    client: httpx.AsyncClient, api: Proc, path: str, count: int, body: Any = None
) -> list[str]:
    """POST ``count`` jobs, a few dozen at a time (httpx's pool slows down badly when a
    thousand requests wait on it at once), and return their ids in submission order."""
    gate = asyncio.Semaphore(32)

    async def one() -> str:
        async with gate:
            return await submit(client, api, path, body)

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def fetch_jobs(client: httpx.AsyncClient, api: Proc, ids: Iterable[str]) -> dict[str, Job]:
    """The job JSON of each id, fetched concurrently (a few dozen requests at a time)."""
    gate = asyncio.Semaphore(32)

    async def one(job_id: str) -> tuple[str, Job]:
        async with gate:
            response = await client.get(f"{api.url}/jobs/{job_id}")
        assert response.status_code == 200, f"{job_id}: {response.status_code} {response.text}"
        return job_id, response.json()

    return dict(await asyncio.gather(*(one(job_id) for job_id in ids)))


async def wait_for(
    condition: Callable[[], Awaitable[bool]], timeout: float, what: str, every: float = 0.05
) -> float:
    """Poll ``condition`` until true; return the seconds it took. Fails after ``timeout``."""
    began = time.monotonic()
    while not await condition():
        assert time.monotonic() - began < timeout, f"not within {timeout} s: {what}"
        await asyncio.sleep(every)
    return time.monotonic() - began


async def wait_terminal(
    client: httpx.AsyncClient, api: Proc, ids: list[str], timeout: float
) -> dict[str, Job]:
    """Poll job details until every job in ``ids`` is terminal; return their JSON."""
    finished: dict[str, Job] = {}

    async def all_terminal() -> bool:
        pending = [job_id for job_id in ids if job_id not in finished]
        for job_id, job in (await fetch_jobs(client, api, pending)).items():
            if job["status"] in TERMINAL:
                finished[job_id] = job
        return len(finished) == len(ids)

    await wait_for(all_terminal, timeout, f"{len(ids)} jobs terminal", every=0.1)
    return finished


async def unsettled(records: redis.Redis, prefix: str) -> int:
    """How many jobs are Queued, Scheduled or claimed (InProgress) in the store now."""
    keys = Keys(prefix)
    async with records.pipeline(transaction=False) as pipe:
        pipe.llen(keys.queue)
        pipe.zcard(keys.scheduled)
        pipe.zcard(keys.active)
        counts = await pipe.execute()
    return int(sum(counts))


async def wait_all_settled(records: redis.Redis, prefix: str, timeout: float) -> float:
    """Wait until no job of the store is waiting or claimed; return the seconds it took."""

    async def settled() -> bool:
        return await unsettled(records, prefix) == 0

    return await wait_for(settled, timeout, "every job terminal", every=0.1)


async def runs_of(records: redis.Redis, prefix: str, ids: Iterable[str]) -> dict[str, list[int]]:
    """The pids that ran each job, one per execution, in the order the runs began."""
    ids = list(ids)
    async with records.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.lrange(f"{prefix}-test:pids:{job_id}", 0, -1)
        lists = await pipe.execute()
    return {job_id: [int(pid) for pid in pids] for job_id, pids in zip(ids, lists, strict=True)}


async def starts(records: redis.Redis, prefix: str, last: int = 0) -> list[tuple[int, float, str]]:
    """Every run begun so far (or the ``last`` ones), in order: (pid, unix time, job id)."""
    entries = await records.lrange(f"{prefix}-test:starts", -last, -1)
    return [(int(pid), float(at), job_id) for pid, at, job_id in map(str.split, entries)]


async def first_start_after(records: redis.Redis, prefix: str, moment: float) -> dict[int, float]:
    """Per process, the earliest run it began at or after ``moment`` (unix time)."""
    first: dict[int, float] = {}
    for pid, at, _ in await starts(records, prefix):
        if at >= moment and at < first.get(pid, float("inf")):
            first[pid] = at
    return first


async def busiest(records: redis.Redis, prefix: str, workers: list[Proc]) -> Proc:
    """The worker that began the most jobs in the last second: the kill that hurts most."""
    now = time.time()
    recent = [pid for pid, at, _ in await starts(records, prefix, last=500) if at > now - 1]
    return max(workers, key=lambda worker: recent.count(worker.pid))


def log_count(procs: Iterable[Proc], text: str) -> int:
    """How many times ``text`` appears in the logs of ``procs``."""
    return sum(proc.output().count(text) for proc in procs)


def kept_last_attempt(job: Job, pids: list[int]) -> bool:
    """True when a Completed job holds the result of its last attempt, run by the last
    process that ran it: no superseded attempt overwrote a newer one."""
    result = job["result"]
    return (
        isinstance(result, dict)
        and result["attempt"] == job["retryCount"]
        and bool(pids)
        and result["pid"] == pids[-1]
    )
