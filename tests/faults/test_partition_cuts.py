"""A keyed job whose worker is cut off from Redis, or frozen, while it runs: when may the
recovered attempt run beside the old one?

- Cut off (connections refused or black-holed, through a TCP proxy): the worker fences
  itself, cancelling the handler once its lease has gone unrenewed, which is no later than
  the store may give the job to another worker: the attempts never overlap.
- Frozen (SIGSTOP) past the lease: the process cannot run its fence, the job is recovered
  and run elsewhere, and once thawed the old handler runs on until the fence cancels it:
  the documented overlap. Its outcome is refused; the key's order holds.

The handler records each attempt's start and end straight in Redis (not through the
proxy), on CLOCK_MONOTONIC, one clock for every process of the machine.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as redis

from tests.e2e.partitions import APP, Attempt, attempts, by_key, job_order, overlaps
from tests.e2e.processes import Proc, start_api, start_worker
from tests.redis_servers import RedisServer

from .figures import report
from .harness import submit, wait_for, wait_terminal
from .proxy import CutMode, TcpProxy

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(180)]

KEY = "account-7"


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[TcpProxy]:
    """A breakable proxy in front of the test's Redis."""
    with TcpProxy(redis_server.port) as running:
        yield running


async def begun(records: redis.Redis, prefix: str, job_id: str, attempt: int) -> Attempt:
    """The attempt, once its handler has begun (and, if it has, ended)."""
    found: list[Attempt] = []

    async def there() -> bool:
        found[:] = [
            run
            for run in await attempts(records, prefix)
            if run.job_id == job_id and run.attempt == attempt
        ]
        return bool(found)

    await wait_for(there, 60, f"attempt {attempt} of {job_id} begun")
    return found[0]


async def ended(records: redis.Redis, prefix: str, job_id: str, attempt: int) -> Attempt:
    """The attempt, once its handler has ended."""
    found: list[Attempt] = []

    async def over() -> bool:
        found[:] = [await begun(records, prefix, job_id, attempt)]
        return found[0].ended is not None

    await wait_for(over, 60, f"attempt {attempt} of {job_id} ended")
    return found[0]


async def first_and_next(client: httpx.AsyncClient, api: Proc) -> tuple[str, str]:
    """Two jobs of one key: the first runs 30 s on its first attempt and 0.5 s on the
    next; the second is short."""
    body = {"key": KEY, "seconds": 30, "retry_seconds": 0.5}
    first = await submit(client, api, "/keyed", body)
    return first, await submit(client, api, "/keyed", {"key": KEY, "seconds": 0.1})


@pytest.mark.parametrize("mode", list(CutMode))
async def test_a_keyed_job_cut_off_from_redis_is_stopped_before_its_key_runs_again(
    env: dict[str, str],
    procs: list[Proc],
    records: redis.Redis,
    proxy: TcpProxy,
    tmp_path: Path,
    mode: CutMode,
) -> None:
    """The cut-off worker's handler ends (fenced) before the recovered attempt begins in
    another worker; the key's next job runs after that one: no two attempts overlap."""
    prefix = env["AE_PREFIX"]
    api = start_api({**env, "RUN_WORKERS": "0"}, tmp_path, module=APP)
    isolated = start_worker({**env, "STORE_URL": proxy.url}, tmp_path, "isolated", module=APP)
    procs.extend([api, isolated])
    async with httpx.AsyncClient(timeout=10) as client:
        first, second = await first_and_next(client, api)
        await begun(records, prefix, first, 0)
        proxy.cut(mode)
        rescuer = start_worker(env, tmp_path, "rescuer", module=APP)
        procs.append(rescuer)
        finished = await wait_terminal(client, api, [first, second], timeout=60)
        old = await ended(records, prefix, first, 0)
        proxy.restore()
    new = await begun(records, prefix, first, 1)
    lane = by_key(await attempts(records, prefix))[KEY]
    report(
        f"partition-cut-{mode}",
        fenced_before_recovered_attempt_s=round(new.began - (old.ended or 0.0), 3),
    )
    assert (old.pid, new.pid) == (isolated.pid, rescuer.pid)
    assert {job["status"] for job in finished.values()} == {"Completed"}
    assert finished[first]["result"] == {"pid": rescuer.pid, "attempt": 1}
    assert overlaps(lane) == [], "two attempts of the key at once"
    assert job_order(lane) == [first, second]


async def test_a_frozen_worker_is_the_documented_overlap_and_its_outcome_is_refused(
    env: dict[str, str], procs: list[Proc], records: redis.Redis, tmp_path: Path
) -> None:
    """SIGSTOP the worker running a key's first job past the lease: the job is recovered
    and completed elsewhere, the key's next job runs after it; thawed, the old handler
    runs on until its fence cancels it, overlapping the recovered attempt (and only
    that), and its outcome changes nothing."""
    prefix = env["AE_PREFIX"]
    api = start_api({**env, "RUN_WORKERS": "0"}, tmp_path, module=APP)
    frozen = start_worker(env, tmp_path, "frozen", module=APP)
    procs.extend([api, frozen])
    async with httpx.AsyncClient(timeout=10) as client:
        first, second = await first_and_next(client, api)
        await begun(records, prefix, first, 0)
        frozen.signal(signal.SIGSTOP)
        try:
            rescuer = start_worker(env, tmp_path, "rescuer", module=APP)
            procs.append(rescuer)
            finished = await wait_terminal(client, api, [first, second], timeout=60)
        finally:
            frozen.signal(signal.SIGCONT)
        thawed_at = time.monotonic()
        old = await ended(records, prefix, first, 0)
        after = await wait_terminal(client, api, [first, second], timeout=10)
    new = await begun(records, prefix, first, 1)
    lane = by_key(await attempts(records, prefix))[KEY]
    clashes = overlaps(lane)
    report(
        "partition-freeze",
        old_attempt_ran_on_after_thaw_s=round((old.ended or 0.0) - thawed_at, 3),
        overlapping_pairs=len(clashes),
    )
    assert (old.pid, new.pid) == (frozen.pid, rescuer.pid)
    assert finished[first]["result"] == {"pid": rescuer.pid, "attempt": 1}
    assert after == finished, "the old attempt's outcome was refused"
    assert clashes, "the frozen attempt ended before the recovered one began"
    assert all(frozen.pid in {a.pid, b.pid} for a, b in clashes), clashes
    assert job_order([run for run in lane if run.pid != frozen.pid]) == [first, second]
