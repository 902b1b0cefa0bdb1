"""Partition keys and tenants across real processes on one real Redis.

An API-only uvicorn instance takes the POSTs; separate ``python -m async_endpoints worker``
processes run the jobs of tests.apps.partition_app, whose handler records when each
attempt began and ended (CLOCK_MONOTONIC, one clock for every process) with its key and
tenant.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
import redis.asyncio as redis

from tests.faults.harness import submit, submit_many, wait_for, wait_terminal

from .partitions import (
    APP,
    attempts,
    by_key,
    job_order,
    mentions,
    most_at_once,
    overlaps,
    wait_idle,
)
from .processes import Proc, start_api, start_worker

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(240)]

KEYS = [f"account-{n}" for n in range(6)]
PER_KEY = 8


def api(env: dict[str, str], tmp_path: Path) -> Proc:
    return start_api({**env, "RUN_WORKERS": "0"}, tmp_path, module=APP)


async def workers(env: dict[str, str], tmp_path: Path, count: int) -> list[Proc]:
    return list(
        await asyncio.gather(
            *(
                asyncio.to_thread(start_worker, env, tmp_path, f"worker{n}", module=APP)
                for n in range(count)
            )
        )
    )


async def test_the_jobs_of_a_key_run_one_at_a_time_in_order_across_worker_processes(
    env: dict[str, str], procs: list[Proc], records: redis.Redis, tmp_path: Path
) -> None:
    """Eight jobs on each of six keys, each key's submitted one after the other, keys side
    by side, plus jobs without a key; three worker processes with four slots each: per
    key, no two attempts overlap and the jobs run in submission order, while jobs of
    different keys do run at the same time, and a key's jobs are run by several
    processes. Once they are done, nothing in Redis names a key but the jobs' records."""
    env = {**env, "MAX_CONCURRENCY": "4"}
    instance = api(env, tmp_path)
    procs.append(instance)
    procs.extend(await workers(env, tmp_path, 3))
    async with httpx.AsyncClient(timeout=30) as client:

        async def one_key(key: str) -> list[str]:
            body = {"key": key, "seconds": 0.05}
            return [await submit(client, instance, "/keyed", body) for _ in range(PER_KEY)]

        submitted = dict(zip(KEYS, await asyncio.gather(*map(one_key, KEYS)), strict=True))
        plain = [await submit(client, instance, "/keyed", {"seconds": 0.05}) for _ in range(10)]
        every = [job for jobs in submitted.values() for job in jobs] + plain
        finished = await wait_terminal(client, instance, every, timeout=120)
    assert {job["status"] for job in finished.values()} == {"Completed"}
    assert {finished[job]["partitionKey"] for job in submitted["account-0"]} == {"account-0"}
    runs = await attempts(records, env["AE_PREFIX"])
    assert len(runs) == len(every) and all(run.ended is not None for run in runs)
    lanes = by_key(runs)
    for key, jobs in submitted.items():
        assert overlaps(lanes[key]) == [], f"{key}: two attempts at once"
        assert job_order(lanes[key]) == jobs, f"{key}: not in submission order"
    keyed = [run for run in runs if run.key is not None]
    peak = most_at_once(keyed)
    spread = max(len({run.pid for run in lane}) for lane in lanes.values())
    print(f"at most {peak} keyed jobs at once; a key's jobs ran in up to {spread} processes")
    assert peak >= 2, "jobs of different keys never ran side by side"
    assert spread >= 2, "no key's jobs were shared between processes: order untested"
    assert await mentions(records, env["AE_PREFIX"], KEYS) == [], "left behind for a key"


async def test_a_tenants_job_is_not_held_up_by_another_tenants_backlog_across_processes(
    env: dict[str, str], procs: list[Proc], records: redis.Redis, tmp_path: Path
) -> None:
    """Tenant A queues 300 jobs, then tenant B one; two worker processes with four slots
    each start afterwards: B's job is among the first two rounds of starts. Later, while
    A's backlog is being worked off, tenant C's new job starts before at most two rounds
    of A's jobs, not after the rest of the backlog."""
    env = {**env, "MAX_CONCURRENCY": "4"}
    slots = 2 * 4
    prefix = env["AE_PREFIX"]
    instance = api(env, tmp_path)
    procs.append(instance)
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        a_body = {"tenant": "A", "seconds": 0.05}
        backlog = await submit_many(client, instance, "/keyed", 300, a_body)
        lone = await submit(client, instance, "/keyed", {"tenant": "B"})
        procs.extend(await workers(env, tmp_path, 2))

        async def a_few_of_a_begun() -> bool:
            return await records.llen(f"{prefix}-test:begun") >= 40

        await wait_for(a_few_of_a_begun, 60, "40 of A's jobs begun")
        submitted_at = time.monotonic()
        late = await submit(client, instance, "/keyed", {"tenant": "C"})
        await wait_terminal(client, instance, [lone, late], timeout=60)
        left = await wait_idle(client, instance, timeout=120)
    runs = await attempts(records, prefix)
    order = [run.job_id for run in runs]
    c_began = next(run.began for run in runs if run.job_id == late)
    a_before_c = [run for run in runs if run.tenant == "A" and submitted_at < run.began < c_began]
    a_after_c = [run for run in runs if run.tenant == "A" and run.began > c_began]
    print(
        f"B's job was start {order.index(lone) + 1} of {len(order)}; C's job started after "
        f"{len(a_before_c)} of A's jobs begun since its submission ({len(a_after_c)} after "
        f"it); backlog worked off {left:.1f} s after"
    )
    assert order.index(lone) < 2 * slots
    assert len(a_before_c) <= 2 * slots + 2
    assert len(a_after_c) > 4 * slots, "the backlog was gone already: nothing tested"
    assert len(runs) == len(backlog) + 2


async def test_a_keys_next_job_waits_for_the_cancelled_handler_to_end_across_processes(
    env: dict[str, str], procs: list[Proc], records: redis.Redis, tmp_path: Path
) -> None:
    """Four keys, each with a long first job whose handler takes 0.3 s to clean up when
    cancelled, and a second job; two worker processes with free slots. The first jobs
    are cancelled through the API instance while they run: each is Canceled at once,
    and each key's second job starts only after the cancelled handler has ended (in
    whichever process), without waiting for the lease (60 s) to run out."""
    env = {**env, "MAX_CONCURRENCY": "4", "CLAIM_TIMEOUT": "60"}
    prefix = env["AE_PREFIX"]
    keys = [f"cancel-{n}" for n in range(4)]
    instance = api(env, tmp_path)
    procs.append(instance)
    procs.extend(await workers(env, tmp_path, 2))
    async with httpx.AsyncClient(timeout=30) as client:
        firsts = [
            await submit(client, instance, "/keyed", {"key": key, "seconds": 60, "unwind": 0.3})
            for key in keys
        ]
        seconds = [
            await submit(client, instance, "/keyed", {"key": key, "seconds": 0.05}) for key in keys
        ]

        async def firsts_begun() -> bool:
            return await records.llen(f"{prefix}-test:begun") >= len(keys)

        await wait_for(firsts_begun, 60, "every first job begun")
        for job_id in firsts:
            response = await client.post(f"{instance.url}/jobs/{job_id}/cancel")
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "Canceled"
        finished = await wait_terminal(client, instance, seconds, timeout=45)
        canceled = await wait_terminal(client, instance, firsts, timeout=5)

        async def every_handler_ended() -> bool:
            return await records.llen(f"{prefix}-test:ended") >= 2 * len(keys)

        await wait_for(every_handler_ended, 10, "every handler ended")
    assert {job["status"] for job in finished.values()} == {"Completed"}
    assert {job["status"] for job in canceled.values()} == {"Canceled"}
    runs = await attempts(records, prefix)
    lanes = by_key(runs)
    gaps = []
    for key, first, second in zip(keys, firsts, seconds, strict=True):
        assert job_order(lanes[key]) == [first, second], f"{key}: not in submission order"
        assert overlaps(lanes[key]) == [], f"{key}: the next job ran beside the cancelled one"
        ended, began = lanes[key][0].ended, lanes[key][1].began
        assert ended is not None
        gaps.append(began - ended)
    print(f"a key's next job started {min(gaps) * 1000:.1f}-{max(gaps) * 1000:.1f} ms after")
    assert await mentions(records, prefix, keys) == [], "left behind for a key"
