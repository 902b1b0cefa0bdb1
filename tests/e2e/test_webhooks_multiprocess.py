"""Webhooks across real processes on one real Redis: an API-only uvicorn process takes
the submissions, two ``python -m async_endpoints worker`` processes run the jobs and
deliver their webhooks to a receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults.harness import wait_for
from tests.webhook_receiver import receiving, signature_is_valid

from .processes import Proc, start_api, start_worker

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(120)]

APP = "tests.apps.webhook_app"
JOBS = 30


async def test_workers_deliver_each_webhook_once_signed(
    env: dict[str, str], tmp_path: Path, procs: list[Proc]
) -> None:
    """30 jobs: 30 signed deliveries, one per job with its own webhook-id, each carrying
    its job's JSON; every job's webhook Delivered after 1 attempt."""
    async with receiving() as receiver:
        env = {**env, "WEBHOOK_HOSTS": receiver.host}
        procs.append(api := start_api({**env, "RUN_WORKERS": "0"}, tmp_path, module=APP))
        workers = [start_worker(env, tmp_path, f"worker-{n}", module=APP) for n in (1, 2)]
        procs.extend(workers)
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
            posts = [client.post("/ping", json={"hook": receiver.url}) for _ in range(JOBS)]
            ids = [response.json()["id"] for response in await asyncio.gather(*posts)]
            jobs: dict[str, dict[str, Any]] = {}

            async def all_delivered() -> bool:
                for job_id in ids:
                    jobs[job_id] = (await client.get(f"/jobs/{job_id}")).json()
                return all(job["webhook"]["status"] != "Pending" for job in jobs.values())

            await wait_for(all_delivered, timeout=60, what="every webhook delivered", every=0.2)
    assert all(job["webhook"] == {"status": "Delivered", "attempts": 1} for job in jobs.values())
    assert sorted(delivery.job["id"] for delivery in receiver.deliveries) == sorted(ids)
    assert len({delivery.headers["webhook-id"] for delivery in receiver.deliveries}) == JOBS
    assert all(signature_is_valid(delivery) for delivery in receiver.deliveries)
    pids = {worker.pid for worker in workers}
    assert {job["result"] for job in jobs.values()} <= pids
