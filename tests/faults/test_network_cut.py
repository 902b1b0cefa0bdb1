"""Network faults between one instance and Redis, through a breakable TCP proxy."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as redis

from tests.e2e.processes import Proc, start_api, start_worker
from tests.redis_servers import RedisServer

from .figures import report
from .harness import fetch_jobs, log_count, runs_of, submit, wait_for, wait_terminal
from .proxy import CutMode, TcpProxy

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(180)]

CONCURRENCY = 4
JOB_SECONDS = 2.0  # shorter than the cut: the isolated worker finishes while cut off


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[TcpProxy]:
    """A breakable proxy in front of the test's Redis."""
    with TcpProxy(redis_server.port) as running:
        yield running


@pytest.mark.parametrize("mode", list(CutMode))
async def test_a_worker_cut_off_from_redis_has_its_jobs_rerun_elsewhere_and_overwrites_nothing(
    env: dict[str, str],
    procs: list[Proc],
    records: redis.Redis,
    proxy: TcpProxy,
    tmp_path: Path,
    mode: CutMode,
) -> None:
    """Another worker reruns its jobs; the cut-off one cancels the handlers whose lease ran
    out (self-fencing), and once reconnected its late results are rejected."""
    env = {**env, "MAX_CONCURRENCY": str(CONCURRENCY)}
    prefix = env["AE_PREFIX"]
    api = start_api({**env, "RUN_WORKERS": "0"}, tmp_path)
    procs.append(api)
    isolated = start_worker({**env, "STORE_URL": proxy.url}, tmp_path, "isolated")
    procs.append(isolated)
    async with httpx.AsyncClient(timeout=10) as client:
        body = {"seconds": JOB_SECONDS}
        ids = [await submit(client, api, "/work", body) for _ in range(CONCURRENCY)]

        async def all_running() -> bool:
            return all((await runs_of(records, prefix, ids)).values())

        await wait_for(all_running, 30, "the isolated worker running every job")
        proxy.cut(mode)
        cut_at = time.monotonic()
        rescuer = start_worker(env, tmp_path, "rescuer")
        procs.append(rescuer)
        rescued = await wait_terminal(client, api, ids, timeout=60)
        rescued_after = time.monotonic() - cut_at
        proxy.restore()
        for job_id in ids:
            assert rescued[job_id]["result"] == {"pid": rescuer.pid, "attempt": 1}

        async def late_results_rejected_or_fenced() -> bool:
            # A handler still running when its lease ran out was cancelled by its own
            # worker (self-fencing); one that finished first had its result refused.
            rejected = log_count([isolated], "claim lost before settling")
            fenced = log_count([isolated], "lease ran out unrenewed")
            return rejected + fenced == len(ids)

        await wait_for(
            late_results_rejected_or_fenced, 40, "the isolated worker's results rejected"
        )
        final = await fetch_jobs(client, api, ids)

        async def isolated_worker_took_a_job() -> bool:
            job_id = await submit(client, api, "/work", {})
            done = await wait_terminal(client, api, [job_id], timeout=30)
            return bool(done[job_id]["result"]["pid"] == isolated.pid)

        await wait_for(isolated_worker_took_a_job, 30, "the isolated worker working again")
    runs = await runs_of(records, prefix, ids)
    report(f"network-cut-{mode}", jobs=len(ids), rerun_elsewhere_s=round(rescued_after, 2))
    assert final == rescued, "the late results changed nothing"
    for job_id in ids:
        assert final[job_id]["status"] == "Completed" and final[job_id]["retryCount"] == 1
        assert runs[job_id] == [isolated.pid, rescuer.pid]


async def test_a_submission_whose_reply_from_redis_is_lost_is_answered_202_or_503(
    env: dict[str, str], procs: list[Proc], proxy: TcpProxy, tmp_path: Path
) -> None:
    """The enqueue ran but its reply never came back: the client gets 202 or 503, never 500."""
    api = start_api({**env, "RUN_WORKERS": "0", "STORE_URL": proxy.url}, tmp_path)
    procs.append(api)
    async with httpx.AsyncClient(timeout=30) as client:
        await submit(client, api, "/work", {})  # the API's connection to Redis is open
        proxy.lose_replies()
        response = await client.post(f"{api.url}/work", json={})
    assert response.status_code in {202, 503}, response.text
