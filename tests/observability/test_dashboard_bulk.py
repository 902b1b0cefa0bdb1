"""The dashboard's bulk requeue over HTTP: tick Failed or Canceled jobs on a jobs page,
queue them all again with one form; what it does with jobs it cannot requeue, with
too many, with none, with a cross-site post, and when the store stops part way.
(The browser test of the same is in test_dashboard_browser.py.)"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from async_endpoints import AsyncEndpoints, Job, JobStatus, StoreUnavailableError
from async_endpoints._dashboard_bulk import MAX_SELECTED, bulk_notice
from async_endpoints_redis import RedisJobStore
from tests.observability.dashboard_app import Gate
from tests.observability.dashboard_client import (  # the fixtures too
    SAME_ORIGIN,
    client,
    dashboard_on,
    engine,
    gate,
    token_of,
)

__all__ = ["client", "engine", "gate"]

ACTION = "/dashboard/actions/requeue-selected"


async def canceled(engine: AsyncEndpoints, count: int) -> list[Job]:
    """``count`` Hold jobs, each cancelled while queued (no worker runs)."""
    jobs = [await engine.submit("Hold") for _ in range(count)]
    for job in jobs:
        await engine.cancel(job.id)
    return jobs


async def status_of(engine: AsyncEndpoints, job: Job) -> JobStatus:
    found = await engine.get_job(job.id)
    assert found is not None
    return found.status


def form(token: str, *job_ids: object, back: str = "/dashboard/jobs?status=Canceled") -> Any:
    """The bulk form as a browser posts it: ``job_id`` once per ticked box."""
    return {"token": token, "next": back, "job_id": [str(each) for each in job_ids]}


def ticked_boxes(html: str) -> list[str]:
    return re.findall(r'name="job_id" value="([^"]+)" form="requeue-selected"', html)


async def test_the_jobs_page_offers_a_box_for_each_failed_or_canceled_job_only(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """Two Canceled jobs and a Queued one: a box for each Canceled one, none for the
    Queued one; a page without such jobs has no bulk form at all."""
    first, second = await canceled(engine, 2)
    waiting = await engine.submit("Hold")
    page = await client.get("/dashboard/jobs")
    assert sorted(ticked_boxes(page.text)) == sorted([str(first.id), str(second.id)])
    assert 'action="/dashboard/actions/requeue-selected" id="requeue-selected"' in page.text
    assert str(waiting.id) not in ticked_boxes(page.text)
    queued_only = await client.get("/dashboard/jobs?status=Queued")
    assert "requeue-selected" not in queued_only.text


async def test_requeue_selected_queues_each_ticked_job_again_and_leaves_the_others(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """Two Canceled jobs, a Queued one, a repeat and a malformed id ticked: the two are
    Queued again (retry count 0), the Queued one is untouched, and the notice counts
    2 of the 3 jobs asked, naming none of them."""
    token = await token_of(client)
    first, second = await canceled(engine, 2)
    waiting = await engine.submit("Hold")
    ticked = form(token, first.id, second.id, waiting.id, first.id, "not-a-job")
    answer = await client.post(ACTION, data=ticked, headers=SAME_ORIGIN)
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert location == "/dashboard/jobs?status=Canceled&done=requeued-2-of-3"
    for job in (first, second, waiting):
        assert await status_of(engine, job) is JobStatus.QUEUED
    back = await client.get(location)
    assert (
        "2 jobs of the 3 selected queued again; the others were no longer Failed or "
        "Canceled (or no longer exist) and were left as they were." in back.text
    )
    assert 'class="id"' not in back.text.split('class="notice"')[1].split("</p>")[0]


async def test_every_ticked_job_requeued_says_how_many(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    token = await token_of(client)
    jobs = await canceled(engine, 3)
    answer = await client.post(ACTION, data=form(token, *(j.id for j in jobs)), headers=SAME_ORIGIN)
    assert "3 jobs queued again." in (await client.get(answer.headers["location"])).text
    assert {await status_of(engine, job) for job in jobs} == {JobStatus.QUEUED}


async def test_nothing_ticked_changes_nothing_and_says_so(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    token = await token_of(client)
    (job,) = await canceled(engine, 1)
    answer = await client.post(ACTION, data=form(token, "junk"), headers=SAME_ORIGIN)
    assert answer.headers["location"].endswith("done=none-selected")
    assert "No job was selected" in (await client.get(answer.headers["location"])).text
    assert await status_of(engine, job) is JobStatus.CANCELED


async def test_more_than_the_limit_ticked_changes_nothing(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """A form with more ids than `MAX_SELECTED` (hand-made: a page lists 50) is refused
    whole: not even the first ones are requeued."""
    token = await token_of(client)
    (job,) = await canceled(engine, 1)
    many = [job.id, *(uuid.uuid4() for _ in range(MAX_SELECTED))]
    answer = await client.post(ACTION, data=form(token, *many), headers=SAME_ORIGIN)
    assert answer.headers["location"].endswith("done=too-many-selected")
    page = await client.get(answer.headers["location"])
    assert f"At most {MAX_SELECTED} jobs can be queued again at once" in page.text
    assert await status_of(engine, job) is JobStatus.CANCELED


async def test_a_cross_site_or_tokenless_bulk_requeue_is_refused_and_changes_nothing(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    token = await token_of(client)
    (job,) = await canceled(engine, 1)
    cross = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    assert (await client.post(ACTION, data=form(token, job.id), headers=cross)).status_code == 403
    tokenless = form("guessed", job.id)
    assert (await client.post(ACTION, data=tokenless, headers=SAME_ORIGIN)).status_code == 403
    assert await status_of(engine, job) is JobStatus.CANCELED


async def test_a_bulk_requeue_answers_404_when_authorize_says_no(
    engine: AsyncEndpoints, client: httpx.AsyncClient, gate: Gate
) -> None:
    token = await token_of(client)
    (job,) = await canceled(engine, 1)
    gate.allowed = False
    answer = await client.post(ACTION, data=form(token, job.id), headers=SAME_ORIGIN)
    assert answer.status_code == 404
    assert await status_of(engine, job) is JobStatus.CANCELED


async def test_a_store_that_stops_answering_part_way_keeps_what_was_requeued_and_says_so(
    engine: AsyncEndpoints, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store answers the first requeue and then is cut off: the first job stays
    requeued, the notice says the store stopped then (the one it did not answer may or
    may not have been requeued: a write can be applied and its answer lost); cut off
    from the start, the notice says the action may or may not have been applied, never
    that nothing changed."""
    token = await token_of(client)
    first, second, third = await canceled(engine, 3)
    requeue = engine.store.requeue  # type: ignore[attr-defined]
    answered: list[uuid.UUID] = []

    async def once_then_cut_off(job_id: uuid.UUID) -> Any:
        if answered:
            raise StoreUnavailableError("cut off", retry_after=1)
        answered.append(job_id)
        return await requeue(job_id)

    monkeypatch.setattr(engine.store, "requeue", once_then_cut_off)
    ticked = form(token, first.id, second.id, third.id)
    answer = await client.post(ACTION, data=ticked, headers=SAME_ORIGIN)
    assert answer.headers["location"].endswith("done=requeued-1-of-3-cut")
    page = await client.get(answer.headers["location"])
    assert "1 job of the 3 selected queued again; then the job store stopped answering" in (
        page.text
    )
    assert "the next may or may not have been queued again" in page.text
    statuses = [await status_of(engine, job) for job in (first, second, third)]
    assert statuses == [JobStatus.QUEUED, JobStatus.CANCELED, JobStatus.CANCELED]
    answer = await client.post(ACTION, data=form(token, second.id), headers=SAME_ORIGIN)
    assert answer.headers["location"].endswith("done=unavailable")  # naming no job
    told = (await client.get(answer.headers["location"])).text
    assert "may or may not have been applied" in told and "nothing was changed" not in told


def test_a_notice_code_with_impossible_counts_tells_nothing() -> None:
    """Codes come from the address bar: one that no bulk requeue could have made (more
    requeued than asked, more asked than allowed, nothing asked) says nothing."""
    for code in ("requeued-9-of-5", f"requeued-1-of-{MAX_SELECTED + 1}", "requeued-0-of-0"):
        assert bulk_notice(code) is None, code
    assert bulk_notice("requeued-5-of-5") == "5 jobs queued again."


@pytest.mark.redis
async def test_requeue_selected_on_redis(redis_server: Any, prefix: str, gate: Gate) -> None:
    """The same form on a RedisJobStore: Canceled jobs ticked are Queued again."""
    store = RedisJobStore(redis_server.url, prefix=prefix)
    async with dashboard_on(store, gate) as (endpoints, client):
        token = await token_of(client)
        jobs = await canceled(endpoints, 2)
        page = await client.get("/dashboard/jobs?status=Canceled")
        assert sorted(ticked_boxes(page.text)) == sorted(str(job.id) for job in jobs)
        ticked = form(token, *(job.id for job in jobs))
        answer = await client.post(ACTION, data=ticked, headers=SAME_ORIGIN)
        assert answer.headers["location"].endswith("done=requeued-2-of-2")
        assert {await status_of(endpoints, job) for job in jobs} == {JobStatus.QUEUED}
