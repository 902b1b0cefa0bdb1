"""An app on a sharded store (``shards=3``) on a real 3-master Redis Cluster: every job
runs once, each partition key's jobs in order, a batch's continuation once, and each
master does its share of the work."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from pydantic import BaseModel
from redis.asyncio import Redis

from async_endpoints import AsyncContext, AsyncEndpoints, JobSpec, JobStatus
from async_endpoints_redis import RedisJobStore
from tests.redis_servers import RedisClusterProcesses

pytestmark = pytest.mark.redis

JOBS = 300


class Step(BaseModel):
    key: str
    n: int


async def script_calls(cluster: RedisClusterProcesses) -> list[int]:
    calls = []
    for master in cluster.masters():
        async with Redis(port=master.port) as probe:
            stats = await probe.info("commandstats")
        calls.append(stats.get("cmdstat_evalsha", {}).get("calls", 0))
    return calls


async def test_an_app_on_three_shards_runs_every_job_once_keys_in_order(
    redis_cluster: RedisClusterProcesses, prefix: str
) -> None:
    store = RedisJobStore(redis_cluster.url, prefix=prefix, shards=3)
    endpoints = AsyncEndpoints(FastAPI(), store=store, max_concurrency=20)
    ran: dict[str, list[int]] = defaultdict(list)
    running: set[str] = set()

    @endpoints.map_async_post("/step", name="Step")
    async def step(ctx: AsyncContext[Step]) -> int:
        key = ctx.request.key
        assert key not in running  # one job of a key at a time
        running.add(key)
        await asyncio.sleep(0.001)
        ran[key].append(ctx.request.n)
        running.discard(key)
        return ctx.request.n

    before = await script_calls(redis_cluster)
    async with LifespanManager(endpoints.app):
        jobs = []
        for n in range(JOBS):
            key = f"acct-{n % 7}"
            keyed = n % 2 == 0
            jobs.append(
                await endpoints.submit(
                    "Step",
                    {"key": key if keyed else f"free-{n}", "n": n},
                    partition_key=key if keyed else None,
                )
            )
        batch = await endpoints.submit_batch(
            [JobSpec("Step", {"key": f"b-{n}", "n": n}) for n in range(10)],
            continue_with=[JobSpec("Step", {"key": "after", "n": -1})],
        )
        done = await asyncio.gather(*(endpoints.wait_for(job.id, 60) for job in jobs))
        assert all(job.status is JobStatus.COMPLETED for job in done)
        for _ in range(600):
            found = await endpoints.get_batch(batch.id)
            # Its continuation's id is known from the start; the job exists once the
            # batch has finished (waiting on it before then finds no job).
            if found is not None and found.finished_at is not None:
                (continuation,) = found.continuation_ids
                finished = await endpoints.wait_for(continuation, 30)
                assert finished.status is JobStatus.COMPLETED
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the batch never finished")
    for n in range(7):
        key = f"acct-{n}"
        assert ran[key] == sorted(ran[key]) and len(ran[key]) == len(
            [m for m in range(0, JOBS, 2) if m % 7 == n]
        )
    assert ran["after"] == [-1]
    after = await script_calls(redis_cluster)
    shares = [b - a for a, b in zip(before, after, strict=True)]
    assert min(shares) > sum(shares) / 6, shares  # every master works (a third each, roughly)
