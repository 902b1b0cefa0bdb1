"""Redis frozen: SIGSTOP for longer than claim_timeout while handlers run, then SIGCONT.

While Redis is frozen, real time runs on, so every lease it holds lapses. At the thaw the
commands that queued up meanwhile run, which decides whether a worker's late renewal or
result comes before some instance's recovery. Leases are measured on the store's
elapsed-time clock, which each call advances to its caller's reading (see
``async_endpoints_redis/_elapsed.py``). So the test plays the adversarial order on purpose:
right after the freeze (before any handler has finished, so before any result is sent) an
adversary sends a recovery whose reading is a freeze and two leases ahead, as if it had been
sent after the thaw. Renewals queued before it extend a lease only to their own reading
plus a lease, so whichever of them Redis runs first, the adversary's recovery finds every
lease of the freeze lapsed: every running claim is superseded, and each result the workers
finished during the freeze is a late one from a superseded claim.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as redis

from async_endpoints_redis import RedisJobStore
from async_endpoints_redis._keys import Keys
from tests.e2e.processes import Proc, start_api, start_worker
from tests.redis_servers import RedisServer

from .figures import report
from .harness import (
    fetch_jobs,
    kept_last_attempt,
    log_count,
    runs_of,
    submit,
    unsettled,
    wait_all_settled,
    wait_for,
)
from .scale import Scale

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(300)]

WORKERS = 3
JOB_SECONDS = 1.0  # shorter than the freeze: the handlers finish while Redis is frozen
FREEZE_SECONDS = 7.0  # > claim_timeout (2 s), and > the store's 5 s deadline per call
CLAIM_TIMEOUT_SECONDS = 2.0  # the fault suite's (conftest.py)
#: How far ahead of the test process's own reading the adversary's clock reads (ms).
ADVERSARY_AHEAD_MS = int((FREEZE_SECONDS + 2 * CLAIM_TIMEOUT_SECONDS) * 1000)


@contextlib.asynccontextmanager
async def aclosing_store(store: RedisJobStore) -> AsyncIterator[RedisJobStore]:
    """Close ``store`` on leaving, whatever happened."""
    try:
        yield store
    finally:
        await store.aclose()


async def test_redis_frozen_past_claim_timeout_loses_nothing_and_rejects_superseded_results(
    env: dict[str, str],
    procs: list[Proc],
    records: redis.Redis,
    redis_server: RedisServer,
    tmp_path: Path,
    scale: Scale,
) -> None:
    """All jobs complete after the thaw; results of superseded claims are rejected."""
    env = {**env, "MAX_CONCURRENCY": str(scale.frozen_concurrency)}
    prefix = env["AE_PREFIX"]
    api = start_api({**env, "RUN_WORKERS": "0"}, tmp_path)
    procs.append(api)
    workers = [start_worker(env, tmp_path, f"worker{n}") for n in range(WORKERS)]
    procs.extend(workers)
    adversary = RedisJobStore(
        client=redis.Redis.from_url(redis_server.url, socket_timeout=60),
        prefix=prefix,
        socket_timeout=60,
    )
    await adversary.start()
    await adversary.recover()  # opens (and keeps) the connection the recovery goes out on
    assert float(env["CLAIM_TIMEOUT"]) == CLAIM_TIMEOUT_SECONDS
    clock = adversary._connection.elapsed  # the reading its calls carry
    clock.observe(clock.reading() + ADVERSARY_AHEAD_MS)
    assert redis_server.process is not None
    redis_pid = redis_server.process.pid
    async with httpx.AsyncClient(timeout=30) as client, aclosing_store(adversary):
        count = WORKERS * scale.frozen_concurrency
        ids = [await submit(client, api, "/work", {"seconds": JOB_SECONDS}) for _ in range(count)]

        async def all_running() -> bool:
            return all((await runs_of(records, prefix, ids)).values())

        await wait_for(all_running, 30, "every job running")
        try:
            os.kill(redis_pid, signal.SIGSTOP)
            recovering = asyncio.create_task(adversary.recover())
            began = time.monotonic()
            during = await client.post(f"{api.url}/work", json={"seconds": 0})
            answered_in = time.monotonic() - began
            await asyncio.sleep(FREEZE_SECONDS - answered_in)  # the freeze's length
        finally:
            os.kill(redis_pid, signal.SIGCONT)
        recovered_first = await recovering
        settled_in = await wait_all_settled(records, prefix, timeout=120)
        jobs = await fetch_jobs(client, api, ids)
    runs = await runs_of(records, prefix, ids)
    # A claim the adversary (or a worker's own recovery) superseded shows as a retry.
    superseded = [job_id for job_id in ids if jobs[job_id]["retryCount"] >= 1]
    # A superseded attempt's refusal is logged when its handler ends, which may be after
    # the attempt that superseded it settled the job: its log is waited for (10 s at most).
    deadline = time.monotonic() + 10
    while log_count(workers, "claim lost before settling") < len(superseded):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)  # polling another process's log
    rejected = log_count(workers, "claim lost before settling")
    stored = [key async for key in records.scan_iter(Keys(prefix).job_prefix + "*")]
    report(
        "redis-frozen",
        freeze_s=FREEZE_SECONDS,
        jobs_running_at_freeze=len(ids),
        superseded_claims=len(superseded),
        superseded_by_the_recovery_sent_first=len(recovered_first),
        late_results_rejected=rejected,
        lost=sum(job["status"] != "Completed" for job in jobs.values()),
        submission_during_freeze=f"{during.status_code} in {answered_in:.2f} s",
        # Its command reached the frozen server and ran at the thaw: at-least-once.
        stored_despite_503=len(stored) - len(ids),
        all_terminal_after_thaw_s=round(settled_in, 2),
    )
    assert during.status_code == 503 and "retry-after" in during.headers
    assert {job["status"] for job in jobs.values()} == {"Completed"}
    assert await unsettled(records, prefix) == 0, "a job is still waiting or InProgress"
    assert recovered_first, "the adversary's recovery superseded no claim: nothing was tested"
    assert {str(job_id) for job_id in recovered_first} <= set(superseded)
    assert all(len(runs[job_id]) >= 2 for job_id in superseded)
    assert rejected >= len(superseded), "each superseded claim's finished result is refused"
    assert all(kept_last_attempt(jobs[job_id], runs[job_id]) for job_id in ids)
