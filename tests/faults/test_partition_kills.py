"""Worker kills with partition keys: SIGKILL one of three worker processes every ~2 s while
the jobs of many keys run; no job lost, and never two attempts of one key at once.

A killed process runs nothing after its SIGKILL, so an attempt it had begun ends at the
kill: the recovered attempt (after the claim's lease, `claim_timeout`) must begin after
it, and the key's next job after that one. (The overlap the README allows, a recovered
attempt beside an old one that is still running in a process cut off from Redis, cannot
arise here.)
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import httpx
import pytest
import redis.asyncio as redis

from tests.e2e.partitions import APP, attempts, by_key, job_order, mentions, overlaps, wait_idle
from tests.e2e.processes import Proc, start_api, start_worker

from .figures import report, spread
from .harness import busiest, fetch_jobs, submit
from .scale import Scale

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(900)]

CONCURRENCY = 8
JOB_SECONDS = 0.2
KEYS = 30


async def submit_in_lanes(
    client: httpx.AsyncClient, api: Proc, count: int, seconds: float
) -> dict[str, list[str]]:
    """POST ``count`` jobs over ``KEYS`` keys, spread evenly over ``seconds``: each key's
    jobs one after the other (its submission order), the keys side by side."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    per_key = count // KEYS

    async def lane(index: int) -> list[str]:
        body = {"key": f"key-{index}", "seconds": JOB_SECONDS}
        ids = []
        for n in range(per_key):
            at = began + (n * KEYS + index) * seconds / count
            await asyncio.sleep(max(0.0, at - loop.time()))
            ids.append(await submit(client, api, "/keyed", body))
        return ids

    lanes = await asyncio.gather(*(lane(index) for index in range(KEYS)))
    return {f"key-{index}": ids for index, ids in enumerate(lanes)}


async def test_killing_workers_never_runs_two_jobs_of_a_key_at_once_and_loses_none(
    env: dict[str, str], procs: list[Proc], records: redis.Redis, tmp_path: Path, scale: Scale
) -> None:
    """SIGKILL the busiest of three workers every ~2 s: every job Completed, each key's
    jobs in submission order, and no attempt of a key begun before the previous one
    ended (a killed attempt ends at its kill); nothing left behind for a key."""
    env = {**env, "MAX_CONCURRENCY": str(CONCURRENCY)}
    prefix = env["AE_PREFIX"]
    api = start_api({**env, "RUN_WORKERS": "0"}, tmp_path, module=APP)
    procs.append(api)
    spawned = 0

    async def spawn() -> Proc:
        nonlocal spawned
        spawned += 1
        name = f"worker{spawned}"
        proc = await asyncio.to_thread(start_worker, env, tmp_path, name, module=APP)
        procs.append(proc)
        return proc

    live = list(await asyncio.gather(*(spawn() for _ in range(3))))
    cut: dict[int, float] = {}
    replacements: list[asyncio.Task[Proc]] = []
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as client:
        load_seconds = scale.kills * scale.kill_interval + 1
        submitting = asyncio.create_task(
            submit_in_lanes(client, api, scale.kill_jobs, load_seconds)
        )
        try:
            for _ in range(scale.kills):
                await asyncio.sleep(scale.kill_interval)  # the scenario's rhythm
                live += [task.result() for task in replacements if task.done()]
                replacements = [task for task in replacements if not task.done()]
                if not live:  # all killed before a replacement came up (a busy machine)
                    live.append(await replacements.pop(0))
                victim = await busiest(records, prefix, live)
                live.remove(victim)
                victim.kill()  # returns once the process is gone
                cut[victim.pid] = time.monotonic()
                replacements.append(asyncio.create_task(spawn()))
            lanes = await submitting
        finally:
            await asyncio.gather(*replacements, return_exceptions=True)
        drain_seconds = await wait_idle(client, api, timeout=300)
        accepted = [job_id for ids in lanes.values() for job_id in ids]
        jobs = await fetch_jobs(client, api, accepted)
    runs = await attempts(records, prefix)
    keyed = by_key(runs)
    killed = [run for run in runs if run.ended is None]
    clashes = {key: overlaps(keyed[key], cut) for key in lanes}
    out_of_order = [key for key, ids in lanes.items() if job_order(keyed[key]) != ids]
    gaps = [
        later.began - earlier.end(cut)
        for lane in keyed.values()
        for earlier, later in itertools.pairwise(lane)
        if earlier.ended is None
    ]
    report(
        "partition-kills",
        scale=scale.name,
        jobs=len(accepted),
        keys=len(lanes),
        kills=len(cut),
        lost=sum(job["status"] != "Completed" for job in jobs.values()),
        attempts=len(runs),
        attempts_cut_by_kills=len(killed),
        keys_hit=len({run.key for run in killed}),
        overlapping_attempts=sum(map(len, clashes.values())),
        keys_out_of_order=len(out_of_order),
        key_resumed_after_kill_s=spread(gaps),
        drain_after_last_submission_s=round(drain_seconds, 2),
    )
    assert len(set(accepted)) == len(accepted) == scale.kill_jobs // KEYS * KEYS
    assert {job["status"] for job in jobs.values()} == {"Completed"}
    assert all(run.pid in cut for run in killed), "an attempt ended only in a killed process"
    assert not any(clashes.values()), {key: pairs for key, pairs in clashes.items() if pairs}
    assert not out_of_order, f"keys whose jobs ran out of submission order: {out_of_order}"
    assert killed, "no kill hit a running job: the scenario tested nothing"
    assert await mentions(records, prefix, lanes) == [], "left behind for a key"
