"""The metrics of real worker processes on one Redis: a worker SIGKILLed on a job's last
attempt counts nothing (it is dead); the worker whose recovery takes the job back serves
the lost attempt and the Failed job on its own ``/metrics`` (``--metrics-port``)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
import redis.asyncio as redis
from prometheus_client.parser import text_string_to_metric_families

from .processes import Proc, free_port, start_api, start_worker
from .test_multiprocess import submit, wait_terminal

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(180)]


async def scraped(client: httpx.AsyncClient, port: int) -> dict[tuple[str, frozenset], float]:
    """Every sample a worker's metrics endpoint serves, by name and labels."""
    response = await client.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


async def test_a_killed_workers_last_attempt_is_counted_by_the_worker_that_recovers_it(
    env: dict[str, str], procs: list[Proc], records: redis.Redis, tmp_path: Path
) -> None:
    """No retries: the job ends Failed by recovery in the survivor, whose metrics count
    one lost attempt and one Failed job of ``Slow``; nothing ran to completion."""
    settings = {**env, "MAX_RETRIES": "0"}
    api = start_api({**settings, "RUN_WORKERS": "0"}, tmp_path)
    doomed = start_worker(settings, tmp_path, "doomed")
    procs.extend([api, doomed])
    port = free_port()
    async with httpx.AsyncClient(timeout=10) as client:
        job_id = await submit(client, api, "/slow", json={"seconds": 60})
        pids_key = f"{env['AE_PREFIX']}-test:pids:{job_id}"
        deadline = time.monotonic() + 30
        while await records.llen(pids_key) == 0:  # its handler started in the doomed worker
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        survivor = start_worker(settings, tmp_path, "survivor", args=("--metrics-port", str(port)))
        procs.append(survivor)
        doomed.kill()
        (finished,) = (await wait_terminal(client, api, [job_id], timeout=60)).values()
        assert finished["status"] == "Failed"
        assert finished["error"]["type"] == "ClaimExpired"  # type: ignore[index]
        lost = (
            "async_endpoints_job_attempts_total",
            frozenset({("name", "Slow"), ("outcome", "lost")}),
        )
        failed = (
            "async_endpoints_jobs_finished_total",
            frozenset({("name", "Slow"), ("queue", "default"), ("status", "Failed")}),
        )
        deadline = time.monotonic() + 30
        while (samples := await scraped(client, port)).get(lost) != 1:  # read back after the pass
            assert time.monotonic() < deadline, samples
            await asyncio.sleep(0.05)
    assert samples.get(failed) == 1
    completed = (
        "async_endpoints_job_attempts_total",
        frozenset({("name", "Slow"), ("outcome", "completed")}),
    )
    assert completed not in samples
