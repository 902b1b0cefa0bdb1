"""A worker killed while a webhook is being delivered: the delivery is durable work, so
another worker delivers it (again) once the dead worker's claim is stale."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response

from tests.e2e.processes import Proc, start_api, start_worker
from tests.webhook_receiver import receiving, signature_is_valid

from .harness import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(180)]

APP = "tests.apps.webhook_app"


async def test_a_worker_killed_mid_delivery_leaves_the_webhook_to_another_worker(
    env: dict[str, str], tmp_path: Path, procs: list[Proc]
) -> None:
    """The job completes; its worker sends the webhook, the receiver holds that request
    open, the worker is SIGKILLed. After claim_timeout another worker delivers it: the
    same webhook-id, signed, webhook Delivered after 2 attempts, the job Completed."""
    release = asyncio.Event()

    async def answer(number: int, _request: Request) -> Response:
        if number == 1:
            await release.wait()  # never acknowledged: its sender dies first
        return Response(status_code=200)

    async with receiving(answer) as receiver:
        env = {**env, "WEBHOOK_HOSTS": receiver.host}
        try:
            procs.append(api := start_api({**env, "RUN_WORKERS": "0"}, tmp_path, module=APP))
            procs.append(first := start_worker(env, tmp_path, "worker-1", module=APP))
            async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
                response = await client.post("/ping", json={"hook": f"{receiver.url}/hook"})
                assert response.status_code == 202, response.text
                job_id = response.json()["id"]
                await receiver.wait_for(1)
                completed = (await client.get(f"/jobs/{job_id}")).json()
                assert completed["status"] == "Completed"
                assert completed["webhook"] == {"status": "Pending", "attempts": 1}
                first.signal(signal.SIGKILL)
                first.wait(timeout=10)
                procs.append(start_worker(env, tmp_path, "worker-2", module=APP))

                async def delivered() -> bool:
                    job = (await client.get(f"/jobs/{job_id}")).json()
                    return bool(job["webhook"]["status"] != "Pending")

                await wait_for(delivered, timeout=60, what="the webhook delivered again")
                final = (await client.get(f"/jobs/{job_id}")).json()
        finally:
            release.set()
    assert final["status"] == "Completed" and final["result"] == first.pid
    assert final["webhook"] == {"status": "Delivered", "attempts": 2}
    held, taken = receiver.deliveries
    assert held.headers["webhook-id"] == taken.headers["webhook-id"]
    assert signature_is_valid(held) and signature_is_valid(taken)
    assert taken.job["id"] == job_id and taken.job["status"] == "Completed"
