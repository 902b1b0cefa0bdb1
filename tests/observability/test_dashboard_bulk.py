"""The dashboard's bulk actions over HTTP: tick Failed or Canceled jobs on a jobs page and
queue them all again with one form, or tick waiting and running ones and cancel them;
what each does with jobs it cannot take, with too many, with none, with a cross-site
post, and when the store stops part way. (The browser tests of the same are in
test_dashboard_browser.py.)"""

from __future__ import annotations

import html
import re
import uuid
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from async_endpoints import AsyncEndpoints, Job, JobStatus, StoreUnavailableError
from async_endpoints._dashboard_actions import MAX_FORM
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
    return {
        "token": token,
        "next": back,
        "job_id": [str(each) for each in job_ids],
        "confirmed": "1",
    }


async def post_bulk(client: httpx.AsyncClient, action: str, ticked: Any) -> tuple[str, str]:
    """Post a bulk form; the address it sends the browser back to and that page's notice
    (which names no job: it only counts)."""
    answer = await client.post(action, data=ticked, headers=SAME_ORIGIN)
    assert answer.status_code == 303
    location = answer.headers["location"]
    notice = (await client.get(location)).text.split('class="notice"')[1].split("</p>")[0]
    assert 'class="id"' not in notice
    return location, " ".join(notice.split())


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
    assert (
        'action="/dashboard/actions/requeue-selected" class="inline" id="requeue-selected"'
        in page.text
    )
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
    location, notice = await post_bulk(client, ACTION, ticked)
    assert location == "/dashboard/jobs?status=Canceled&done=requeued-2-of-3"
    for job in (first, second, waiting):
        assert await status_of(engine, job) is JobStatus.QUEUED
    assert notice.endswith(
        "2 jobs of the 3 selected queued again; the others were no longer Failed or "
        "Canceled (or no longer exist) and were left as they were."
    )


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
    assert answer.headers["location"].endswith("done=none-selected-requeue")
    assert "No job was selected" in (await client.get(answer.headers["location"])).text
    assert await status_of(engine, job) is JobStatus.CANCELED


async def test_unconfirmed_it_asks_about_the_jobs_ticked_and_nothing_when_none_is(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """Without the page's script the form comes unconfirmed: with jobs ticked the page
    asking says how many; with none ticked there is nothing to ask about, and the answer
    is at once that none was selected."""
    token = await token_of(client)
    jobs = await canceled(engine, 3)
    fields = form(token, *(job.id for job in jobs))
    del fields["confirmed"]
    asked = await client.post(ACTION, data=fields, headers=SAME_ORIGIN)
    assert asked.status_code == 200
    assert "Queue the 3 selected Failed or Canceled jobs again?" in asked.text
    assert {await status_of(engine, job) for job in jobs} == {JobStatus.CANCELED}
    empty = {key: value for key, value in fields.items() if key != "job_id"}
    answer = await client.post(ACTION, data=empty, headers=SAME_ORIGIN)
    assert answer.status_code == 303
    assert answer.headers["location"].endswith("done=none-selected-requeue")


async def test_more_than_the_limit_ticked_changes_nothing(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """A form with more ids than `MAX_SELECTED` (hand-made: a page lists 50) is refused
    whole: not even the first ones are requeued."""
    token = await token_of(client)
    (job,) = await canceled(engine, 1)
    many = [job.id, *(uuid.uuid4() for _ in range(MAX_SELECTED))]
    answer = await client.post(ACTION, data=form(token, *many), headers=SAME_ORIGIN)
    assert answer.headers["location"].endswith("done=too-many-selected-requeue")
    page = await client.get(answer.headers["location"])
    assert f"At most {MAX_SELECTED} jobs can be queued again at once" in page.text
    assert await status_of(engine, job) is JobStatus.CANCELED


async def test_the_most_jobs_ticked_on_a_page_of_the_longest_tenant_filter_are_requeued(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """`MAX_SELECTED` jobs ticked on the second page of a listing filtered by a tenant of
    255 four-byte characters (its address, sent back as the form's ``next``, is several
    kilobytes once form-encoded): the dashboard takes its own form, requeues them all and
    goes back to that page."""
    token = await token_of(client)
    tenant = "\U0001d518" * 255
    jobs = [await engine.submit("Hold", tenant=tenant) for _ in range(MAX_SELECTED)]
    for job in jobs:
        await engine.cancel(job.id)
    first = await client.get("/dashboard/jobs", params={"status": "Canceled", "tenant": tenant})
    following = re.search(r'href="([^"]*)"[^>]*>Next', first.text)
    assert following is not None
    second = await client.get(html.unescape(following.group(1)))
    (back,) = {
        html.unescape(here) for here in re.findall(r'name="next" value="([^"]*)"', second.text)
    }
    ticked = form(token, *(job.id for job in jobs), back=back)
    assert len(urlencode(ticked, doseq=True)) > 8192
    location, notice = await post_bulk(client, ACTION, ticked)
    assert location.startswith(back) and f"{MAX_SELECTED} jobs queued again." in notice
    assert {await status_of(engine, job) for job in jobs} == {JobStatus.QUEUED}


async def test_a_form_larger_than_the_dashboard_reads_is_refused_as_such_and_changes_nothing(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """A form past `MAX_FORM` (hand-made: the dashboard's own stay far below it) is
    answered 413 with a page saying it was too large, not that it came from elsewhere;
    the same form from another site is the usual 403. No job changes."""
    token = await token_of(client)
    (job,) = await canceled(engine, 1)
    ticked = form(token, job.id, back="/dashboard/jobs?name=" + "x" * MAX_FORM)
    answer = await client.post(ACTION, data=ticked, headers=SAME_ORIGIN)
    assert answer.status_code == 413 and "larger than the dashboard reads" in answer.text
    cross_site = {"Origin": "https://elsewhere.example"}
    assert (await client.post(ACTION, data=ticked, headers=cross_site)).status_code == 403
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
        assert bulk_notice(code.replace("requeued", "canceled")) is None, code
    for code in ("deleted-1-of-2", "none-selected-delete", "canceled-1-of-2-cuts"):
        assert bulk_notice(code) is None, code
    assert bulk_notice("requeued-5-of-5") == "5 jobs queued again."
    assert bulk_notice("canceled-1-of-1") == "1 job canceled."


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


# ---- cancel-selected ------------------------------------------------------------------

CANCEL = "/dashboard/actions/cancel-selected"


def cancel_boxes(html: str) -> list[str]:
    return re.findall(r'name="job_id" value="([^"]+)" form="cancel-selected"', html)


async def test_the_jobs_page_offers_a_cancel_box_for_each_waiting_or_running_job_only(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """A running job, two Queued ones, a Scheduled one and a Canceled one: a cancel box
    for each of the first four, a requeue box for the last; a page of finished jobs has no
    cancel form."""
    running = await engine.submit("Hold")
    await engine.store.claim(1, lease=60)  # type: ignore[attr-defined]
    waiting = [await engine.submit("Hold") for _ in range(2)]
    later = await engine.submit("Hold", delay=3600)
    (gone,) = await canceled(engine, 1)
    assert await status_of(engine, running) is JobStatus.IN_PROGRESS
    page = await client.get("/dashboard/jobs")
    expected = sorted(str(job.id) for job in (running, *waiting, later))
    assert sorted(cancel_boxes(page.text)) == expected
    assert (
        'action="/dashboard/actions/cancel-selected" class="inline" id="cancel-selected"'
        in page.text
    )
    assert ticked_boxes(page.text) == [str(gone.id)]
    finished = await client.get("/dashboard/jobs?status=Canceled")
    assert "cancel-selected" not in finished.text


async def test_cancel_selected_cancels_each_ticked_waiting_job_and_leaves_the_others(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """Two Queued jobs, a Scheduled one, an already Canceled one, a repeat and a malformed
    id ticked: the three are Canceled, the notice counts 3 of the 4 jobs asked, naming
    none of them; a job not ticked still waits."""
    token = await token_of(client)
    waiting = [await engine.submit("Hold") for _ in range(2)]
    later = await engine.submit("Hold", delay=3600)
    (gone,) = await canceled(engine, 1)
    untouched = await engine.submit("Hold")
    ids = [job.id for job in (*waiting, later, gone)]
    ticked = form(token, *ids, waiting[0].id, "not-a-job", back="/dashboard/jobs?status=Queued")
    location, notice = await post_bulk(client, CANCEL, ticked)
    assert location == "/dashboard/jobs?status=Queued&done=canceled-3-of-4"
    for job in (*waiting, later, gone):
        assert await status_of(engine, job) is JobStatus.CANCELED
    assert await status_of(engine, untouched) is JobStatus.QUEUED
    assert notice.endswith(
        "3 jobs of the 4 selected canceled; the others were no longer Queued, Scheduled "
        "or Running (or no longer exist) and were left as they were."
    )


async def test_cancel_selected_cancels_a_running_job_whose_end_then_changes_nothing(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """A job claimed by a worker (InProgress) ticked: it is Canceled, and the worker's
    completion that comes afterwards does not bring it back. (That the handler's task is
    cancelled is the browser test's and the cancel tests' to show.)"""
    token = await token_of(client)
    job = await engine.submit("Hold")
    (claim,) = await engine.store.claim(1, lease=60)  # type: ignore[attr-defined]
    assert await status_of(engine, job) is JobStatus.IN_PROGRESS
    answer = await client.post(CANCEL, data=form(token, job.id), headers=SAME_ORIGIN)
    assert answer.headers["location"].endswith("done=canceled-1-of-1")
    await engine.store.complete(claim, "done")  # type: ignore[attr-defined]
    final = await engine.get_job(job.id)
    assert final is not None and final.status is JobStatus.CANCELED and final.result is None


async def test_nothing_or_too_much_ticked_to_cancel_changes_nothing_and_says_so(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    token = await token_of(client)
    job = await engine.submit("Hold")
    answer = await client.post(CANCEL, data=form(token, "junk"), headers=SAME_ORIGIN)
    assert answer.headers["location"].endswith("done=none-selected-cancel")
    told = (await client.get(answer.headers["location"])).text
    assert "No job was selected: tick the Queued, Scheduled or Running jobs to be canceled." in told
    many = [job.id, *(uuid.uuid4() for _ in range(MAX_SELECTED))]
    answer = await client.post(CANCEL, data=form(token, *many), headers=SAME_ORIGIN)
    assert answer.headers["location"].endswith("done=too-many-selected-cancel")
    told = (await client.get(answer.headers["location"])).text
    assert f"At most {MAX_SELECTED} jobs can be canceled at once; nothing was changed." in told
    assert await status_of(engine, job) is JobStatus.QUEUED


async def test_a_cross_site_tokenless_or_unauthorized_bulk_cancel_changes_nothing(
    engine: AsyncEndpoints, client: httpx.AsyncClient, gate: Gate
) -> None:
    token = await token_of(client)
    job = await engine.submit("Hold")
    cross = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    assert (await client.post(CANCEL, data=form(token, job.id), headers=cross)).status_code == 403
    tokenless = form("guessed", job.id)
    assert (await client.post(CANCEL, data=tokenless, headers=SAME_ORIGIN)).status_code == 403
    gate.allowed = False
    answer = await client.post(CANCEL, data=form(token, job.id), headers=SAME_ORIGIN)
    assert answer.status_code == 404
    assert await status_of(engine, job) is JobStatus.QUEUED


async def test_a_store_that_stops_answering_part_way_keeps_what_was_canceled_and_says_so(
    engine: AsyncEndpoints, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store answers the first cancel and then is cut off: the first job stays
    Canceled, the others wait, and the notice says the store stopped then."""
    token = await token_of(client)
    jobs = [await engine.submit("Hold") for _ in range(3)]
    try_cancel = engine.store.try_cancel  # type: ignore[attr-defined]
    answered: list[uuid.UUID] = []

    async def once_then_cut_off(job_id: uuid.UUID) -> Any:
        if answered:
            raise StoreUnavailableError("cut off", retry_after=1)
        answered.append(job_id)
        return await try_cancel(job_id)

    monkeypatch.setattr(engine.store, "try_cancel", once_then_cut_off)
    answer = await client.post(CANCEL, data=form(token, *(j.id for j in jobs)), headers=SAME_ORIGIN)
    assert answer.headers["location"].endswith("done=canceled-1-of-3-cut")
    page = await client.get(answer.headers["location"])
    assert "1 job of the 3 selected canceled; then the job store stopped answering" in page.text
    statuses = [await status_of(engine, job) for job in jobs]
    assert statuses == [JobStatus.CANCELED, JobStatus.QUEUED, JobStatus.QUEUED]


@pytest.mark.redis
async def test_cancel_selected_on_redis(redis_server: Any, prefix: str, gate: Gate) -> None:
    """The same form on a RedisJobStore: Queued jobs ticked are Canceled."""
    store = RedisJobStore(redis_server.url, prefix=prefix)
    async with dashboard_on(store, gate) as (endpoints, client):
        token = await token_of(client)
        jobs = [await endpoints.submit("Hold") for _ in range(2)]
        page = await client.get("/dashboard/jobs?status=Queued")
        assert sorted(cancel_boxes(page.text)) == sorted(str(job.id) for job in jobs)
        answer = await client.post(
            CANCEL, data=form(token, *(j.id for j in jobs)), headers=SAME_ORIGIN
        )
        assert answer.headers["location"].endswith("done=canceled-2-of-2")
        assert {await status_of(endpoints, job) for job in jobs} == {JobStatus.CANCELED}
