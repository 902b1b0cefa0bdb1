"""The example app, driven over HTTP with its lifespan running: every endpoint does its job."""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A freshly imported ``example_app.main`` on the in-memory store."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    return importlib.reload(importlib.import_module("example_app.main"))


async def finished(example: ModuleType, client: Any, response: Any) -> dict[str, Any]:
    """The job JSON, read from the Location URL, of the job a 202 announced once it ended."""
    assert response.status_code == 202, response.text
    await example.endpoints.wait_for(response.json()["id"], timeout=5)
    details = await client.get(response.headers["location"])
    assert details.status_code == 200
    job: dict[str, Any] = details.json()
    return job


async def test_process_data_completes_with_the_processed_text(example, http_client_for) -> None:
    """POST /api/process-data/{tenant} ends Completed with the upper-cased data."""
    async with http_client_for(example.app) as client:
        response = await client.post(
            "/api/process-data/acme", json={"data": "hello", "processing_priority": 2}
        )
        job = await finished(example, client, response)
    assert job["name"] == "ProcessData" and job["status"] == "Completed"
    assert job["result"] == {
        "tenant": "acme",
        "processed_data": "HELLO",
        "character_count": 5,
        "processing_priority": 2,
    }


async def test_a_finished_jobs_event_stream_tells_its_status_and_ends(
    example, http_client_for
) -> None:
    """GET /jobs/{id}/events of a finished job: one status event with its JSON, then the
    stream ends."""
    async with http_client_for(example.app) as client:
        response = await client.post("/api/process-data/acme", json={"data": "hi"})
        job = await finished(example, client, response)
        events = await client.get(f"/jobs/{job['id']}/events")
    assert events.status_code == 200
    assert events.headers["content-type"].startswith("text/event-stream")
    assert "event: status" in events.text and '"status":"Completed"' in events.text


async def test_process_data_refuses_a_blocked_tenant_with_403(example, http_client_for) -> None:
    """The validator answers 403 with a JSON error for a blocked tenant; nothing is queued."""
    async with http_client_for(example.app) as client:
        response = await client.post("/api/process-data/blocked", json={"data": "hello"})
    assert response.status_code == 403 and "blocked" in response.json()["detail"]
    assert await example.endpoints.store.count_waiting() == 0


@pytest.mark.parametrize(
    ("address", "country", "city"),
    [
        ("8.8.8.8", "United States", "Mountain View"),
        ("192.168.1.20", "Private network", "-"),
        ("2606:4700:4700::1111", "Unknown", "Unknown"),
    ],
)
async def test_geo_lookup_completes_with_a_location(
    example, http_client_for, address: str, country: str, city: str
) -> None:
    """POST /api/geo-lookup ends Completed with the simulated location of the address."""
    async with http_client_for(example.app) as client:
        response = await client.post("/api/geo-lookup", json={"ip_address": address})
        job = await finished(example, client, response)
    assert job["status"] == "Completed"
    assert job["result"] == {"ip_address": address, "country": country, "city": city}


async def test_geo_lookup_refuses_an_invalid_ip_address_with_422(example, http_client_for) -> None:
    """A string that is not an IP address fails validation; nothing is queued."""
    async with http_client_for(example.app) as client:
        response = await client.post("/api/geo-lookup", json={"ip_address": "999.1.1.1"})
    assert response.status_code == 422
    assert await example.endpoints.store.count_waiting() == 0


async def test_the_nightly_report_needs_no_body(example, http_client_for) -> None:
    """POST /api/reports/nightly without a body ends Completed, using query and headers."""
    async with http_client_for(example.app) as client:
        response = await client.post(
            "/api/reports/nightly", params={"date": "2026-11-22"}, headers={"x-requested-by": "ops"}
        )
        job = await finished(example, client, response)
    assert job["status"] == "Completed"
    assert job["result"] == {
        "report_date": "2026-11-22",
        "requested_by": "ops",
        "job_id": job["id"],
    }


async def test_the_sync_route_answers_with_the_job_result(example, http_client_for) -> None:
    """POST /api/process-data-sync/{tenant} submits the job, waits, and answers its result."""
    async with http_client_for(example.app) as client:
        response = await client.post("/api/process-data-sync/acme", json={"data": "abc"})
    assert response.status_code == 200
    assert response.json() == {
        "tenant": "acme",
        "processed_data": "ABC",
        "character_count": 3,
        "processing_priority": 1,
    }


async def test_the_sync_route_refuses_a_blocked_tenant_with_403(example, http_client_for) -> None:
    """The synchronous route applies the same tenant rule as the async one."""
    async with http_client_for(example.app) as client:
        response = await client.post("/api/process-data-sync/blocked", json={"data": "abc"})
    assert response.status_code == 403
    assert await example.endpoints.store.count_waiting() == 0


async def test_an_unknown_job_id_answers_404(example, http_client_for) -> None:
    """GET /jobs/{job_id} of an id that names no job answers 404."""
    async with http_client_for(example.app) as client:
        response = await client.get("/jobs/00000000-0000-4000-8000-000000000000")
    assert response.status_code == 404


async def test_a_reminder_is_scheduled_and_can_be_cancelled(example, http_client_for) -> None:
    """POST /api/reminders: 202 Scheduled (runAt an hour on) in the batch queue; the
    cancel route makes it Canceled (200), and a second cancel answers 409."""
    async with http_client_for(example.app) as client:
        response = await client.post("/api/reminders", json={"text": "tea", "in_seconds": 3600})
        job = response.json()
        cancel = await client.post(f"/jobs/{job['id']}/cancel")
        again = await client.post(f"/jobs/{job['id']}/cancel")
    assert response.status_code == 202 and job["status"] == "Scheduled" and job["runAt"]
    assert job["queue"] == "batch"
    assert cancel.status_code == 200 and cancel.json()["status"] == "Canceled"
    assert again.status_code == 409


async def test_a_reminder_due_at_once_runs(example, http_client_for) -> None:
    """in_seconds 0: due at once, it completes with its text."""
    async with http_client_for(example.app) as client:
        response = await client.post("/api/reminders", json={"text": "now", "in_seconds": 0})
        job = await finished(example, client, response)
    assert job["status"] == "Completed" and job["result"] == {"text": "now"}


async def test_process_data_labels_each_job_with_its_tenant(example, http_client_for) -> None:
    """The route's tenant function puts the path's tenant on the job."""
    async with http_client_for(example.app) as client:
        response = await client.post("/api/process-data/acme", json={"data": "x"})
    assert response.status_code == 202 and response.json()["tenant"] == "acme"


async def test_account_updates_run_in_order_one_at_a_time(example, http_client_for) -> None:
    """Updates of one account share a partition key and finish in the order they came."""
    async with http_client_for(example.app) as client:
        ids = []
        for amount in (5, -3, 7):
            response = await client.post("/api/accounts/42/updates", json={"amount": amount})
            assert response.json()["partitionKey"] == "account:42"
            ids.append(response.json()["id"])
        jobs = [await example.endpoints.wait_for(job_id, timeout=10) for job_id in ids]
    assert [job.result["amount"] for job in jobs] == [5, -3, 7]
    starts = [job.started_at for job in jobs]
    ends = [job.completed_at for job in jobs]
    assert all(ends[i] <= starts[i + 1] for i in range(len(jobs) - 1))


async def test_the_monthly_report_fans_out_and_joins_once(example, http_client_for) -> None:
    """A batch of four regions, then the join: it sees every region's result."""
    async with http_client_for(example.app) as client:
        accepted = await client.post("/api/reports/monthly/2026-11")
        assert accepted.status_code == 202
        assert set(accepted.json()) == {"batchId", "location"}  # camelCase, as the batch JSON
        location = accepted.json()["location"]
        for _ in range(200):
            batch = (await client.get(location)).json()
            if batch["status"] == "Finished":
                break
            await asyncio.sleep(0.02)
        (join_id,) = batch["continuationIds"]
        join = await example.endpoints.wait_for(join_id, timeout=10)
    assert batch["completed"] == 4
    assert join.result == {"month": "2026-11", "regions": ["east", "north", "south", "west"]}


async def test_the_dashboard_opens_for_this_machine_only(example, http_client_for) -> None:
    """/dashboard/ answers a request from the loopback address and is not there (404) for
    any other client."""
    async with http_client_for(example.app):
        for client_host, status in (("127.0.0.1", 200), ("::1", 200), ("203.0.113.7", 404)):
            transport = httpx.ASGITransport(app=example.app, client=(client_host, 50000))
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
                response = await client.get("/dashboard/")
            assert response.status_code == status, client_host
    assert "ProcessData" not in response.text  # the 404 shows nothing of the dashboard


async def test_metrics_count_the_jobs_the_example_ran(example, http_client_for) -> None:
    """/metrics serves Prometheus text that counts a finished ProcessData job."""
    async with http_client_for(example.app) as client:
        response = await client.post("/api/process-data/acme", json={"data": "x"})
        await finished(example, client, response)
        metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    finished_line = (
        'async_endpoints_jobs_finished_total{name="ProcessData",queue="default",'
        'status="Completed"} 1.0'
    )
    assert finished_line in metrics.text.splitlines()


async def test_the_nightly_cleanup_is_scheduled_for_three_in_berlin(
    example, http_client_for
) -> None:
    """The example's cron schedule is stored when the app starts, next due at 03:00 in
    Europe/Berlin."""
    async with http_client_for(example.app):
        schedules = {s.id: s for s in await example.endpoints.list_schedules()}
    nightly = schedules["NightlyCleanup"]
    assert (nightly.cron, nightly.timezone) == ("0 3 * * *", "Europe/Berlin")
    due = nightly.next_run_at.astimezone(ZoneInfo("Europe/Berlin"))
    assert (due.hour, due.minute, due.second) == (3, 0, 0)
