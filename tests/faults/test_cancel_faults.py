"""Cancels that meet a fault: the worker killed, or cut off from Redis, as the cancel goes.

A worker SIGKILLed while a cancel of its running job is in flight, in three orderings of
the cancel and the kill: the worker frozen (SIGSTOP) when the cancel is pushed to it, then
killed (the message dies unread in its socket); the kill and the cancel sent at the same
moment; the worker killed first, its claim still live when the cancel arrives. In every
case the job ends ``Canceled`` and never runs again: the stale-claim recovery that re-runs
the dead worker's other job elsewhere does not resurrect it.

A worker whose connections to Redis are cut when the cancel is published misses the
pushed message; once it reconnects, its next lease renewal finds the claim gone and
cancels the handler: the push is the fast path, the renewal the fallback.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as redis

from tests.e2e.processes import Proc, start_api, start_worker
from tests.redis_servers import RedisServer

from .figures import report
from .harness import runs_of, submit, wait_for, wait_terminal
from .proxy import CutMode, TcpProxy

pytestmark = [
    pytest.mark.slow,
    pytest.mark.redis,
    pytest.mark.timeout(180),
]

APP = "tests.apps.control_app"


async def cancel(client: httpx.AsyncClient, api: Proc, job_id: str) -> httpx.Response:
    return await client.post(f"{api.url}/jobs/{job_id}/cancel")


async def frozen_then_killed(client: httpx.AsyncClient, api: Proc, doomed: Proc, job: str) -> Any:
    doomed.signal(signal.SIGSTOP)
    answer = await cancel(client, api, job)
    doomed.kill()
    return answer


async def together(client: httpx.AsyncClient, api: Proc, doomed: Proc, job: str) -> Any:
    answer, _ = await asyncio.gather(cancel(client, api, job), asyncio.to_thread(doomed.kill))
    return answer


async def killed_first(client: httpx.AsyncClient, api: Proc, doomed: Proc, job: str) -> Any:
    doomed.kill()
    return await cancel(client, api, job)


ORDERINGS = {
    "frozen-then-killed": frozen_then_killed,
    "together": together,
    "killed-first": killed_first,
}


@pytest.mark.parametrize("ordering", ORDERINGS)
async def test_a_job_cancelled_while_its_worker_is_killed_ends_canceled_and_is_not_rerun(
    ordering: str, env: dict[str, str], procs: list[Proc], records: redis.Redis, tmp_path: Path
) -> None:
    """The cancelled job ends Canceled, ran once; the dead worker's other job, not
    cancelled, is recovered and completed by the survivor (so recovery did run over the
    dead worker's claims)."""
    prefix = env["AE_PREFIX"]
    api = start_api({**env, "RUN_WORKERS": "0"}, tmp_path, module=APP)
    doomed = start_worker(env, tmp_path, "doomed", module=APP)
    procs.extend([api, doomed])
    async with httpx.AsyncClient(timeout=10) as client:
        held = await submit(client, api, "/hold", {})
        other = await submit(client, api, "/slow", {"seconds": 3600})

        async def both_running() -> bool:
            runs = await runs_of(records, prefix, [held, other])
            return runs == {held: [doomed.pid], other: [doomed.pid]}

        await wait_for(both_running, 30, "both jobs running in the doomed worker")
        survivor = start_worker(env, tmp_path, "survivor", module=APP)
        procs.append(survivor)

        answer = await ORDERINGS[ordering](client, api, doomed, held)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "Canceled"

        recovered = await wait_terminal(client, api, [other], timeout=60)
        finished = await wait_terminal(client, api, [held], timeout=10)
        stats = (await client.get(f"{api.url}/admin/stats")).json()["default"]
    assert recovered[other]["status"] == "Completed"
    assert recovered[other]["result"] == survivor.pid, "recovery ran over the dead worker"
    job = finished[held]
    assert job["status"] == "Canceled" and job["completedAt"] is not None
    assert (await runs_of(records, prefix, [held]))[held] == [doomed.pid], "never run again"
    assert await records.get(f"{prefix}-test:returned:{held}") is None
    assert stats["in_progress"] == 0 and stats["queued"] == 0 and stats["canceled"] == 1
    report(f"cancel during a kill ({ordering})", status=job["status"], runs=1)


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[TcpProxy]:
    """A breakable proxy in front of the test's Redis."""
    with TcpProxy(redis_server.port) as running:
        yield running


async def test_a_cancel_published_while_the_worker_is_cut_off_still_reaches_its_handler(
    env: dict[str, str], procs: list[Proc], records: redis.Redis, proxy: TcpProxy, tmp_path: Path
) -> None:
    """The worker's connections to Redis (its subscription too) are cut when the cancel is
    published; once they are back, the handler is cancelled (at the next renewal), the job
    stays Canceled and never runs again."""
    prefix = env["AE_PREFIX"]
    api = start_api({**env, "RUN_WORKERS": "0"}, tmp_path, module=APP)
    isolated = start_worker({**env, "STORE_URL": proxy.url}, tmp_path, "isolated", module=APP)
    procs.extend([api, isolated])
    async with httpx.AsyncClient(timeout=10) as client:
        held = await submit(client, api, "/hold", {})

        async def running() -> bool:
            return (await runs_of(records, prefix, [held]))[held] == [isolated.pid]

        await wait_for(running, 30, "the held job running in the isolated worker")
        proxy.cut(CutMode.REFUSE)
        cancelled_at = time.monotonic()
        answer = await cancel(client, api, held)
        assert answer.status_code == 200 and answer.json()["status"] == "Canceled"
        proxy.restore()

        async def handler_cancelled() -> bool:
            return await records.get(f"{prefix}-test:cancelled:{held}") is not None

        await wait_for(handler_cancelled, 30, "the handler saw its cancellation")
        seen = time.monotonic() - cancelled_at
        survivor = start_worker(env, tmp_path, "survivor", module=APP)
        procs.append(survivor)
        probe = await submit(client, api, "/default", {})
        finished = await wait_terminal(client, api, [held, probe], timeout=30)
    assert finished[held]["status"] == "Canceled"
    assert finished[probe]["status"] == "Completed", "the workers are up and idle"
    assert (await runs_of(records, prefix, [held]))[held] == [isolated.pid], "never run again"
    assert await records.get(f"{prefix}-test:returned:{held}") is None
    report("cancel while the worker is cut off", handler_cancelled_after_s=round(seen, 2))
