"""Job events across real processes on one real Redis: a stream served by an API-only
uvicorn process follows a job that a ``python -m async_endpoints worker`` process runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as redis

from .processes import Proc, start_api, start_worker

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(120)]

APP = "tests.apps.events_app"


async def test_a_stream_in_one_process_follows_a_job_run_by_another(
    env: dict[str, str], tmp_path: Path, procs: list[Proc], records: redis.Redis
) -> None:
    procs.append(api := start_api({**env, "RUN_WORKERS": "0"}, tmp_path, module=APP))
    procs.append(start_worker(env, tmp_path, module=APP))
    prefix = env["AE_PREFIX"]
    events: list[tuple[str, Any]] = []
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        job_id = (await http.post("/steps")).json()["id"]
        async with http.stream("GET", f"/jobs/{job_id}/events") as response:
            assert response.status_code == 200
            name = ""
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    events.append((name, json.loads(line[5:])))
                    if events[-1][1].get("progress") == 1:  # in a status or progress event
                        await records.rpush(f"{prefix}-test:go:{job_id}", "go")
    statuses = [data["status"] for name, data in events if name == "status"]
    assert statuses[-2:] == ["InProgress", "Completed"]
    assert set(statuses[:-2]) <= {"Queued"}
    progress = [data["progress"] for name, data in events if name == "progress"]
    assert progress[-1] == 3
    completed = events[-1][1]
    assert completed["progress"] == 3
    assert completed["result"] != api.pid  # run by the worker process
