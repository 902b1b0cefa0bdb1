"""Several real processes on one real Redis: API-only uvicorn instances and worker processes."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from pathlib import Path

import httpx
import pytest
import redis.asyncio as redis

from tests.faults.harness import submit_many
from tests.redis_dump import everything_in
from tests.redis_servers import RedisServer

from .processes import Proc, start_api, start_worker

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(180)]


async def submit(client: httpx.AsyncClient, api: Proc, path: str, **kwargs: object) -> str:
    response = await client.post(f"{api.url}{path}", **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


async def job_json(client: httpx.AsyncClient, api: Proc, job_id: str) -> dict[str, object]:
    response = await client.get(f"{api.url}/jobs/{job_id}")
    assert response.status_code == 200, response.text
    data: dict[str, object] = response.json()
    return data


async def wait_terminal(
    client: httpx.AsyncClient, api: Proc, job_ids: list[str], timeout: float = 60
) -> dict[str, dict[str, object]]:
    """Poll job details (the public HTTP surface) until every job is terminal."""
    deadline = time.monotonic() + timeout
    finished: dict[str, dict[str, object]] = {}
    while len(finished) < len(job_ids):
        assert time.monotonic() < deadline, f"{len(job_ids) - len(finished)} jobs unfinished"
        for job_id in [j for j in job_ids if j not in finished]:
            data = await job_json(client, api, job_id)
            if data["status"] in {"Completed", "Failed", "Canceled"}:
                finished[job_id] = data
        await asyncio.sleep(0.05)
    return finished


async def test_jobs_accepted_by_an_api_only_instance_run_in_a_worker_process(
    env: dict[str, str], procs: list[Proc], tmp_path: Path
) -> None:
    """run_workers=False serves HTTP only; a separate worker process runs the jobs."""
    api = start_api({**env, "RUN_WORKERS": "0"}, tmp_path)
    procs.append(api)
    worker = start_worker(env, tmp_path)
    procs.append(worker)
    async with httpx.AsyncClient(timeout=10) as client:
        job_ids = [await submit(client, api, "/count") for _ in range(5)]
        finished = await wait_terminal(client, api, job_ids)
    assert {data["status"] for data in finished.values()} == {"Completed"}
    assert {data["result"] for data in finished.values()} == {worker.pid}


async def test_a_thousand_jobs_over_two_workers_each_run_exactly_once(
    env: dict[str, str], procs: list[Proc], records: redis.Redis, tmp_path: Path
) -> None:
    """1,000 jobs, two worker processes: all complete, each handler ran exactly once."""
    api = start_api({**env, "RUN_WORKERS": "0"}, tmp_path)
    procs.append(api)
    workers = [start_worker(env, tmp_path, f"worker{n}") for n in range(2)]
    procs.extend(workers)
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        job_ids = await submit_many(client, api, "/count", 1000)
        finished = await wait_terminal(client, api, job_ids, timeout=120)
    assert len(set(job_ids)) == 1000
    assert {data["status"] for data in finished.values()} == {"Completed"}
    prefix = env["AE_PREFIX"]
    runs = await records.mget([f"{prefix}-test:runs:{job_id}" for job_id in job_ids])
    assert runs == ["1"] * 1000
    ran_by = {data["result"] for data in finished.values()}
    assert ran_by == {worker.pid for worker in workers}, "both workers should share the load"


async def test_a_job_whose_worker_is_killed_is_completed_by_another(
    env: dict[str, str], procs: list[Proc], records: redis.Redis, tmp_path: Path
) -> None:
    """SIGKILL mid-job: another worker completes it within claim_timeout plus a tick."""
    api = start_api({**env, "RUN_WORKERS": "0"}, tmp_path)
    doomed = start_worker(env, tmp_path, "doomed")
    procs.extend([api, doomed])
    async with httpx.AsyncClient(timeout=10) as client:
        job_id = await submit(client, api, "/slow", json={"seconds": 60})
        pids_key = f"{env['AE_PREFIX']}-test:pids:{job_id}"
        deadline = time.monotonic() + 30
        while await records.llen(pids_key) == 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        survivor = start_worker(env, tmp_path, "survivor")
        procs.append(survivor)
        killed_at = time.monotonic()
        doomed.kill()
        (finished,) = (await wait_terminal(client, api, [job_id], timeout=60)).values()
        recovery = time.monotonic() - killed_at
    assert finished["status"] == "Completed" and finished["result"] == survivor.pid
    assert finished["retryCount"] == 1, "the lost attempt counts as one"
    assert await records.lrange(pids_key, 0, -1) == [str(doomed.pid), str(survivor.pid)]
    claim_timeout, tick = float(env["CLAIM_TIMEOUT"]), float(env["RECOVERY_INTERVAL"])
    print(f"recovered {recovery:.2f} s after SIGKILL (claim_timeout {claim_timeout} s)")
    # Generous slack for a loaded machine; the measured figure is printed above.
    assert recovery < claim_timeout + tick + 10


async def test_jobs_submitted_after_an_idle_worker_is_killed_go_to_the_living_at_once(
    env: dict[str, str], procs: list[Proc], records: redis.Redis, tmp_path: Path
) -> None:
    """A SIGKILLed idle worker leaves its offer behind; no job waits for its lease on it."""
    env = {**env, "CLAIM_TIMEOUT": "60"}  # a job stranded on the dead offer would take 60 s
    api = start_api({**env, "RUN_WORKERS": "0"}, tmp_path)
    doomed = start_worker(env, tmp_path, "doomed")
    survivor = start_worker(env, tmp_path, "survivor")
    procs.extend([api, doomed, survivor])
    offers = "{" + env["AE_PREFIX"] + "}:offers"
    deadline = time.monotonic() + 30
    while await records.hlen(offers) < 2:  # both idle and offering
        assert time.monotonic() < deadline, "the idle workers made no offers"
        await asyncio.sleep(0.02)
    doomed.kill()
    async with httpx.AsyncClient(timeout=10) as client:
        job_ids = [await submit(client, api, "/count") for _ in range(6)]
        finished = await wait_terminal(client, api, job_ids, timeout=20)
    assert {data["result"] for data in finished.values()} == {survivor.pid}
    assert {data["retryCount"] for data in finished.values()} == {0}, "none was recovered"


async def test_the_worker_process_finishes_its_job_on_sigterm_and_exits_zero(
    env: dict[str, str], procs: list[Proc], records: redis.Redis, tmp_path: Path
) -> None:
    """SIGTERM: no new claims, the running handler completes and is recorded, exit 0."""
    api = start_api({**env, "RUN_WORKERS": "0"}, tmp_path)
    worker = start_worker(env, tmp_path)
    procs.extend([api, worker])
    async with httpx.AsyncClient(timeout=10) as client:
        job_id = await submit(client, api, "/slow", json={"seconds": 1.5})
        pids_key = f"{env['AE_PREFIX']}-test:pids:{job_id}"
        deadline = time.monotonic() + 30
        while await records.llen(pids_key) == 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        worker.signal(signal.SIGTERM)
        queued_after = await submit(client, api, "/count")
        assert worker.wait(timeout=30) == 0
        data = await job_json(client, api, job_id)
        assert data["status"] == "Completed" and data["result"] == worker.pid
        assert (await job_json(client, api, queued_after))["status"] == "Queued"


async def test_on_sigterm_an_app_takes_no_more_jobs_and_answers_held_requests_at_once(
    env: dict[str, str], procs: list[Proc], records: redis.Redis, tmp_path: Path
) -> None:
    """SIGTERM to uvicorn while its embedded worker (one slot) runs a 4 s job, three more
    jobs wait, and a POST with ``Prefer: wait=60`` is held: the held POST is answered
    while the process still runs its job (202, its job Queued), not when its wait ends; no
    waiting job starts in this process (uvicorn waits for the held request before the
    lifespan's shutdown, and the pool used to claim meanwhile); the running job completes
    and the process exits. The next instance finds the others Queued."""
    api = start_api({**env, "MAX_CONCURRENCY": "1", "GRACE_PERIOD": "30"}, tmp_path)
    procs.append(api)
    async with httpx.AsyncClient(timeout=90) as client:
        running = await submit(client, api, "/slow", json={"seconds": 4})
        deadline = time.monotonic() + 30
        while await records.llen(f"{env['AE_PREFIX']}-test:pids:{running}") == 0:
            assert time.monotonic() < deadline, "the slow job never started"
            await asyncio.sleep(0.02)
        waiting = [await submit(client, api, "/count") for _ in range(3)]
        held_id = str(uuid.uuid4())
        held = asyncio.create_task(
            client.post(
                f"{api.url}/count", headers={"Prefer": "wait=60", "X-Async-Request-Id": held_id}
            )
        )
        while (await client.get(f"{api.url}/jobs/{held_id}")).status_code != 200:
            assert time.monotonic() < deadline, "the held POST stored no job"
            await asyncio.sleep(0.02)
        api.signal(signal.SIGTERM)
        answer = await held
        still_running = api.process.poll() is None
        assert answer.status_code == 202 and answer.json()["status"] == "Queued", answer.text
        assert still_running, "answered only as the process ended"
        # uvicorn ends by raising the signal it caught again: the exit is SIGTERM's.
        assert api.wait(timeout=30) in (0, -signal.SIGTERM)
        second = start_api({**env, "RUN_WORKERS": "0"}, tmp_path, "second")
        procs.append(second)
        assert (await job_json(client, second, running))["status"] == "Completed"
        for job_id in [*waiting, held_id]:
            assert (await job_json(client, second, job_id))["status"] == "Queued"
            assert await records.get(f"{env['AE_PREFIX']}-test:runs:{job_id}") is None


async def test_accepted_jobs_survive_a_restart_of_the_app(
    env: dict[str, str], procs: list[Proc], tmp_path: Path
) -> None:
    """Jobs accepted by an instance that then stops are run by the instance that follows."""
    first = start_api({**env, "RUN_WORKERS": "0"}, tmp_path, "first")
    procs.append(first)
    async with httpx.AsyncClient(timeout=10) as client:
        job_ids = [await submit(client, first, "/count") for _ in range(20)]
        first.signal(signal.SIGTERM)
        first.wait(timeout=30)
        second = start_api(env, tmp_path, "second")  # with workers this time
        procs.append(second)
        finished = await wait_terminal(client, second, job_ids)
    assert {data["status"] for data in finished.values()} == {"Completed"}
    assert {data["result"] for data in finished.values()} == {second.pid}


async def test_no_accepted_job_is_lost_when_redis_is_killed_and_restarted(
    env: dict[str, str], procs: list[Proc], redis_server: RedisServer, tmp_path: Path
) -> None:
    """Redis SIGKILLed mid-run: submissions get a prompt 503, and every 202 job completes."""
    api = start_api(env, tmp_path)
    worker = start_worker(env, tmp_path)
    procs.extend([api, worker])
    accepted: list[str] = []
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(50):
            accepted.append(await submit(client, api, "/count"))
        redis_server.stop()
        began = time.monotonic()
        refused = await client.post(f"{api.url}/count")
        outage_answer = time.monotonic() - began
        details = await client.get(f"{api.url}/jobs/{accepted[0]}")
        redis_server.start()
        for _ in range(50):
            accepted.append(await submit(client, api, "/count"))
        finished = await wait_terminal(client, api, accepted, timeout=90)
    assert refused.status_code == 503 and "retry-after" in refused.headers
    assert details.status_code == 503 and "retry-after" in details.headers
    print(f"503 answered in {outage_answer * 1000:.0f} ms during the outage")
    assert outage_answer < 5
    assert {data["status"] for data in finished.values()} == {"Completed"}
    assert api.process.poll() is None and worker.process.poll() is None


async def test_no_byte_of_a_secret_header_reaches_redis(
    env: dict[str, str], procs: list[Proc], redis_server: RedisServer, tmp_path: Path
) -> None:
    """Authorization and Cookie values are in no key and no value Redis holds."""
    api = start_api({**env, "RUN_WORKERS": "0"}, tmp_path)
    procs.append(api)
    secret = "s3cr3t-sentinel-7f1c"
    headers = {
        "Authorization": f"Bearer {secret}",
        "Cookie": f"session={secret}",
        "Proxy-Authorization": f"Basic {secret}",
        "X-Api-Key": secret,
        "X-Visible": "kept-sentinel",
    }
    async with httpx.AsyncClient(timeout=10) as client:
        await submit(client, api, "/slow", json={"seconds": 0}, headers=headers)
    dump = await everything_in(redis_server)
    assert b"kept-sentinel" in dump, "the check must see captured headers"
    assert secret.encode() not in dump


async def test_a_live_handler_outlasting_claim_timeout_runs_once_across_workers(
    env: dict[str, str], procs: list[Proc], records: redis.Redis, tmp_path: Path
) -> None:
    """Lease renewal over Redis: a 3 s handler with claim_timeout=1 s is never stolen."""
    fast_env = {**env, "CLAIM_TIMEOUT": "1", "RECOVERY_INTERVAL": "0.1"}
    api = start_api({**fast_env, "RUN_WORKERS": "0"}, tmp_path)
    workers = [start_worker(fast_env, tmp_path, f"worker{n}") for n in range(2)]
    procs.extend([api, *workers])
    async with httpx.AsyncClient(timeout=10) as client:
        job_id = await submit(client, api, "/slow", json={"seconds": 3})
        (finished,) = (await wait_terminal(client, api, [job_id])).values()
    assert finished["status"] == "Completed" and finished["retryCount"] == 0
    assert await records.get(f"{env['AE_PREFIX']}-test:runs:{job_id}") == "1"
