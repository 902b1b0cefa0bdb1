"""The dashboard over HTTP: authorize, CSRF refusals, actions, escaping, paging."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from markupsafe import escape
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.schemas import SchemaGenerator

from async_endpoints import (
    AsyncEndpoints,
    InMemoryJobStore,
    JobSpec,
    JobStatus,
    StoreUnavailableError,
)
from async_endpoints import _dashboard_views as views
from async_endpoints._dashboard import _as_path as dashboard_path
from async_endpoints.testing import ManualClock
from async_endpoints_redis import RedisJobStore
from tests.observability.dashboard_app import Gate, make_app
from tests.observability.dashboard_client import (  # the fixtures too
    BASE,
    SAME_ORIGIN,
    client,
    dashboard_on,
    engine,
    gate,
    token_of,
)

__all__ = ["client", "engine", "gate"]
from tests.redis.support import eventually


async def test_every_route_answers_404_when_authorize_says_no(
    engine: AsyncEndpoints, client: httpx.AsyncClient, gate: Gate
) -> None:
    """Pages, assets, actions and the bare path: 404, and nothing changes."""
    token = await token_of(client)
    gate.allowed = False
    job = await engine.submit("Hold")
    for path in ("/dashboard", "/dashboard/", "/dashboard/jobs", f"/dashboard/jobs/{job.id}"):
        assert (await client.get(path)).status_code == 404, path
    for method, path in [
        ("POST", "/dashboard/"),
        ("DELETE", "/dashboard"),
        ("GET", "/dashboard/actions/cancel"),
        ("GET", "/dashboard/jobs/"),
        ("GET", "/dashboard/nothing-here"),
        *[  # methods no route names: no 405 with Allow (which would show the dashboard)
            (method, path)
            for method in ("TRACE", "PROPFIND", "BREW")
            for path in (
                "/dashboard",
                "/dashboard/",
                "/dashboard/jobs",
                "/dashboard/assets/dashboard.js",
                "/dashboard/actions/pause",
            )
        ],
    ]:
        answer = await client.request(method, path)
        assert answer.status_code == 404 and "allow" not in answer.headers, (method, path)
    assert (await client.get("/dashboard/assets/dashboard.js")).status_code == 404
    form = {"token": token, "job_id": str(job.id)}
    answer = await client.post("/dashboard/actions/cancel", data=form, headers=SAME_ORIGIN)
    assert answer.status_code == 404
    assert (await engine.get_job(job.id)).status is JobStatus.QUEUED  # type: ignore[union-attr]


async def test_a_refused_dashboard_answers_as_the_apps_own_404_on_fastapi() -> None:
    """Refused, every dashboard path answers exactly what a path the app does not have
    answers (FastAPI's JSON 404, not a text one), so its presence does not show."""
    app = FastAPI()
    endpoints = AsyncEndpoints(app, run_workers=False)
    endpoints.map_dashboard("/dashboard", authorize=lambda request: False)
    transport = httpx.ASGITransport(app=app)
    async with (
        endpoints.running(workers=False),
        httpx.AsyncClient(transport=transport, base_url=BASE) as client,
    ):
        absent = await client.get("/no-such-path")
        for method, path in [
            ("GET", "/dashboard"),
            ("GET", "/dashboard/"),
            ("GET", "/dashboard/jobs"),
            ("POST", "/dashboard/actions/cancel"),
            ("GET", "/dashboard/assets/dashboard.js"),
            ("GET", "/dashboard/nothing-here"),
            ("TRACE", "/dashboard"),
            ("PROPFIND", "/dashboard/jobs"),
        ]:
            answer = await client.request(method, path)
            seen = (answer.status_code, answer.headers["content-type"], answer.content)
            expected = (404, absent.headers["content-type"], absent.content)
            assert seen == expected, (method, path)


def test_the_dashboards_routes_name_their_methods_and_stay_out_of_the_schemas() -> None:
    """Code that lists an app's routes finds methods on the dashboard's too; neither
    FastAPI's OpenAPI document nor Starlette's schema generator lists a dashboard path."""
    fastapi_app = FastAPI()
    AsyncEndpoints(fastapi_app, run_workers=False).map_dashboard(
        "/dashboard", authorize=lambda request: True
    )
    assert not [path for path in fastapi_app.openapi()["paths"] if "dashboard" in path]
    starlette_app = Starlette()
    AsyncEndpoints(starlette_app, run_workers=False).map_dashboard(
        "/dashboard", authorize=lambda request: True
    )
    schema = SchemaGenerator({"openapi": "3.0.0"}).get_schema(starlette_app.routes)
    assert not [path for path in schema.get("paths", {}) if "dashboard" in path]
    mount = next(r for r in starlette_app.routes if isinstance(r, Mount))
    for route in [*starlette_app.routes, *mount.routes]:
        if not isinstance(route, Mount):
            assert route.methods and "GET" in route.methods, route  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Origin": BASE, "Sec-Fetch-Site": "cross-site"},
        {"Origin": "https://evil.example"},
        {"Referer": "https://evil.example/page"},
        {"Origin": "null"},
        {"Origin": "null", "Referer": f"{BASE}/dashboard/"},
        {"Sec-Fetch-Site": "same-site", "Origin": "https://sub.example"},
        {"Sec-Fetch-Site": "same-site", "Origin": BASE},
        {},
    ],
)
async def test_a_cross_site_action_is_refused_with_403(
    engine: AsyncEndpoints, client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    """Cross-site (or same-site from a sibling host) by Sec-Fetch-Site, which decides when
    sent; else by Origin or Referer; or none of the three (an old browser may send none on
    a cross-site form): 403 even with the token, the job still Queued."""
    token = await token_of(client)
    job = await engine.submit("Hold")
    form = {"token": token, "job_id": str(job.id)}
    answer = await client.post("/dashboard/actions/cancel", data=form, headers=headers)
    assert answer.status_code == 403
    assert (await engine.get_job(job.id)).status is JobStatus.QUEUED  # type: ignore[union-attr]
    # Said on a page of the dashboard's own (an operator can land here from a stale tab),
    # with a way back, no form, and no token cookie.
    assert answer.headers["content-type"].startswith("text/html")
    assert "<h1>Action refused</h1>" in answer.text and "nothing was changed" in answer.text
    assert 'href="/dashboard/"' in answer.text and "<form" not in answer.text
    assert "set-cookie" not in answer.headers
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]


async def test_an_action_without_the_token_is_refused_with_403(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """Same origin but no token, or another token: 403."""
    await token_of(client)
    job = await engine.submit("Hold")
    for token in ("", "x" * 43):
        form = {"token": token, "job_id": str(job.id)}
        answer = await client.post("/dashboard/actions/cancel", data=form, headers=SAME_ORIGIN)
        assert answer.status_code == 403
    assert (await engine.get_job(job.id)).status is JobStatus.QUEUED  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://app.internal:8000"},
        {"Sec-Fetch-Site": "none"},
        {"Referer": f"{BASE}/dashboard/jobs"},
    ],
    ids=[
        "fetch-metadata-over-a-rewritten-host",
        "started-by-the-user",
        "referer-of-an-old-browser",
    ],
)
async def test_an_action_with_the_token_from_this_origin_is_done(
    engine: AsyncEndpoints, client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    """Sec-Fetch-Site same-origin decides over an Origin whose host a proxy rewrote, and
    none (started by the user) passes; without fetch metadata a same-origin Referer does."""
    token = await token_of(client)
    job = await engine.submit("Hold")
    form = {"token": token, "job_id": str(job.id)}
    answer = await client.post("/dashboard/actions/cancel", data=form, headers=headers)
    assert answer.status_code == 303
    assert (await engine.get_job(job.id)).status is JobStatus.CANCELED  # type: ignore[union-attr]


async def test_same_origin_actions_work_and_redirect_back(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """cancel, requeue, pause and resume: 303 back to the page named in the form when it
    is a dashboard page, else to the dashboard's first page."""
    token = await token_of(client)
    job = await engine.submit("Hold")
    form = {"token": token, "job_id": str(job.id), "next": "/dashboard/jobs?status=Queued"}
    answer = await client.post("/dashboard/actions/cancel", data=form, headers=SAME_ORIGIN)
    assert answer.status_code == 303
    assert answer.headers["location"] == (
        f"/dashboard/jobs?status=Queued&done=canceled&subject={job.id}"
    )
    # The notice names the job acted on (the list may have moved under the click).
    back = await client.get(answer.headers["location"])
    link = f'<a href="/dashboard/jobs/{job.id}" class="id">{str(job.id)[:8]}</a>'
    assert f"{link}: The job was canceled." in back.text  # a link to the job's page
    assert (await engine.get_job(job.id)).status is JobStatus.CANCELED  # type: ignore[union-attr]
    answer = await client.post("/dashboard/actions/requeue", data=form, headers=SAME_ORIGIN)
    assert (await engine.get_job(job.id)).status is JobStatus.QUEUED  # type: ignore[union-attr]
    pause = {"token": token, "queue": "high", "next": "https://evil.example/"}
    answer = await client.post("/dashboard/actions/pause", data=pause, headers=SAME_ORIGIN)
    assert answer.headers["location"] == "/dashboard/?done=paused&subject_queue=high"
    assert [q.paused for q in await engine.queue_stats()] == [True, False]
    # The notice names the queue paused.
    assert "Queue high: paused." in (await client.get(answer.headers["location"])).text
    elsewheres = (
        "/dashboard/../admin",
        "/dashboard/%2e%2e/admin",
        "/dashboard/%2E%2E%2fadmin",
        "/dashboard/..%5cadmin",
        "//evil.example/dashboard/",
        "/admin",
    )
    for elsewhere in elsewheres:
        resume = {**pause, "next": elsewhere}
        answer = await client.post("/dashboard/actions/resume", data=resume, headers=SAME_ORIGIN)
        assert answer.headers["location"] == "/dashboard/?done=resumed&subject_queue=high"
    assert [q.paused for q in await engine.queue_stats()] == [False, False]


async def test_pausing_or_resuming_every_queue_says_so_and_names_no_other(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """The notice of Pause all queues says every queue is paused; a queue name the settings
    do not have is never echoed into a notice."""
    token = await token_of(client)
    pause = {"token": token, "queue": "", "next": "/dashboard/", "confirmed": "1"}
    answer = await client.post("/dashboard/actions/pause", data=pause, headers=SAME_ORIGIN)
    assert answer.headers["location"] == "/dashboard/?done=paused-all"
    assert "Every queue is paused." in (await client.get(answer.headers["location"])).text
    assert [q.paused for q in await engine.queue_stats()] == [True, True]
    page = await client.get("/dashboard/?done=paused&subject_queue=<b>nope</b>")
    assert '<p class="notice" role="status">Paused.</p>' in page.text


async def test_an_unconfirmed_action_that_asks_first_answers_its_question_and_changes_nothing(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """Pause all sent without ``confirmed`` (no page script) answers 200 with a page
    asking the question; its form sends the same fields again with ``confirmed=1`` and
    the token, and its way back is the form's page (an outside one is not followed).
    Nothing is paused until that form is sent; pausing one queue does not ask."""
    token = await token_of(client)
    pause = {"token": token, "queue": "", "next": "https://elsewhere.example/"}
    asked = await client.post("/dashboard/actions/pause", data=pause, headers=SAME_ORIGIN)
    assert asked.status_code == 200 and "Pause every queue?" in asked.text
    assert not any(stats.paused for stats in await engine.queue_stats())
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', asked.text))
    assert fields == {"token": token, "next": pause["next"], "confirmed": "1"}  # blanks dropped
    assert 'href="/dashboard/">No, go back' in asked.text
    assert 'action="/dashboard/actions/pause"' in asked.text
    told = {**pause, "next": "/dashboard/?done=resumed-all&subject_queue=high&x=1"}
    again = await client.post("/dashboard/actions/pause", data=told, headers=SAME_ORIGIN)
    assert 'href="/dashboard/?x=1">No, go back' in again.text  # no earlier notice told
    answer = await client.post("/dashboard/actions/pause", data=fields, headers=SAME_ORIGIN)
    assert answer.status_code == 303
    assert all(stats.paused for stats in await engine.queue_stats())
    await engine.resume()
    one = {"token": token, "queue": "high", "next": "/dashboard/"}
    answer = await client.post("/dashboard/actions/pause", data=one, headers=SAME_ORIGIN)
    assert answer.status_code == 303 and [q.paused for q in await engine.queue_stats()] == [
        True,
        False,
    ]


async def test_an_unconfirmed_cross_site_action_is_refused_not_asked(
    client: httpx.AsyncClient,
) -> None:
    token = await token_of(client)
    pause = {"token": token, "queue": "", "next": "/dashboard/"}
    cross = {"Origin": "https://elsewhere.example"}
    answer = await client.post("/dashboard/actions/pause", data=pause, headers=cross)
    assert answer.status_code == 403 and "Pause every queue?" not in answer.text


async def test_a_queue_whose_jobs_wait_behind_a_busier_one_says_so(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """Workers take the first queue with a due job: a queue whose waiting jobs have none
    running reads "behind high" while high has jobs both running and waiting (the workers
    are busy there), not while nothing runs (no worker takes anything) nor once high is
    paused; high, first, never reads so."""
    for queue in ("high", "high", "default"):
        await engine.submit("Ok", {}, queue=queue)

    def state(page: httpx.Response, queue: str) -> str:
        found = re.search(rf'<tr data-queue="{queue}">.*?</tr>', page.text, re.S)
        assert found is not None
        cell = re.search(r'<td class="state-cell">(.*?)</td>', found.group(0), re.S)
        assert cell is not None
        return re.sub(r"<[^>]+>|\s+", " ", cell.group(1)).strip()

    assert "behind" not in state(await client.get("/dashboard/"), "default")
    (claim,) = await engine.store.claim(1, lease=30, queues=("high", "default"))  # busy on high
    assert claim.job.queue == "high"
    page = await client.get("/dashboard/")
    assert "behind high" in state(page, "default")
    assert "behind" not in state(page, "high")
    await engine.pause("high")
    assert "behind" not in state(await client.get("/dashboard/"), "default")


async def test_a_batch_filter_that_is_not_a_whole_id_says_so(client: httpx.AsyncClient) -> None:
    """The batches page shows short ids; a batch filter given one lists every job, and the
    page says why rather than silently dropping the filter; what was typed stays in the
    field, to be completed."""
    page = await client.get("/dashboard/jobs?batch=3e8b295e")
    assert page.status_code == 200
    assert "A batch filter needs the batch&#39;s whole id" in page.text
    assert 'name="batch" value="3e8b295e"' in page.text


async def test_a_status_or_queue_filter_that_does_not_exist_says_so(
    client: httpx.AsyncClient,
) -> None:
    """A hand-made URL with an unknown status or queue lists every job, and the page says
    which filter it dropped (never echoing the value given)."""
    page = await client.get("/dashboard/jobs?status=Bogus&queue=%3Cb%3Enope")
    assert page.status_code == 200
    assert "There is no such status; showing jobs of every status." in page.text
    assert "There is no such queue; showing jobs of every queue." in page.text
    assert "Bogus" not in page.text and "nope" not in page.text
    plain = await client.get("/dashboard/jobs?status=Failed&queue=default")
    assert "There is no such" not in plain.text


async def test_a_tenant_or_name_filter_too_long_to_match_says_so(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """A hand-made address with a tenant or a name of 256 characters (none is that long)
    lists every job and says which filter it dropped, on the jobs page and, for the
    tenant, the batches page; a name of blanks only is no filter and says nothing."""
    await engine.submit("Ok", {"text": "x"}, tenant="acme")
    too_long = "t" * 256
    page = await client.get("/dashboard/jobs", params={"tenant": too_long, "name": too_long})
    assert page.status_code == 200
    assert "A tenant filter is at most 255 characters" in page.text
    assert "A name filter is at most 255 characters" in page.text
    assert f'value="{too_long}"' not in page.text and "acme" in page.text
    batches = await client.get("/dashboard/batches", params={"tenant": too_long})
    assert "A tenant filter is at most 255 characters" in batches.text
    assert f'value="{too_long}"' not in batches.text
    plain = await client.get("/dashboard/jobs", params={"tenant": "t" * 255, "name": "   "})
    assert "at most 255 characters" not in plain.text


async def reported(engine: AsyncEndpoints, job_id: uuid.UUID) -> None:
    """Wait (10 s at most) until job ``job_id`` has reported progress."""

    async def progress() -> object:
        job = await engine.get_job(job_id)
        return None if job is None else job.progress

    await eventually(progress)


async def test_progress_reads_as_its_json_text_on_the_queues_and_job_pages(
    engine: AsyncEndpoints, client: httpx.AsyncClient, gate: Gate
) -> None:
    """A running job's progress is shown as it was reported (keys in order, characters as
    they are, markup escaped): not as JavaScript-escaped JSON."""
    job = await engine.submit("Report", {"text": "step 3 <b>bold</b> ✓ & more"})
    async with engine.running():
        await reported(engine, job.id)
        expected = str(escape('{"message": "step 3 <b>bold</b> ✓ & more", "done": 3}'))
        for path in ("/dashboard/", f"/dashboard/jobs/{job.id}"):
            page = await client.get(path)
            assert expected in page.text, path
            assert "\\u003c" not in page.text and "\\u2713" not in page.text
        gate.open.set()


async def test_a_name_filter_that_read_its_limit_without_a_match_says_so(
    engine: AsyncEndpoints, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page of a name filter that read as many jobs as it may without finding one of
    that name says so and links the next page, rather than "No jobs match"."""
    monkeypatch.setattr(views, "NAME_SCAN_LIMIT", 50)
    for _ in range(60):
        await engine.submit("Hold")
    page = await client.get("/dashboard/jobs?name=Ok")
    assert "No jobs match" not in page.text
    assert "No job of this name among the 50 read for this page" in page.text
    assert 'rel="next"' in page.text
    last = re.search(r'href="([^"]+)" rel="next"', page.text)
    assert last is not None
    following = await client.get(last.group(1).replace("&amp;", "&"))
    assert "No jobs match" in following.text  # read to the end: none of that name there


async def test_job_data_is_escaped_everywhere(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """A result, an error and a tenant holding markup appear as text, never as markup."""
    done = await engine.submit("Ok", {"text": "<script>alert(1)</script>"}, tenant="<b>t</b>")
    failed = await engine.submit("Broken", tenant="<i>x</i>")
    await engine.drain()
    pages = [
        await client.get("/dashboard/jobs"),
        await client.get(f"/dashboard/jobs/{done.id}"),
        await client.get(f"/dashboard/jobs/{failed.id}"),
        await client.get("/dashboard/jobs?tenant=<b>t</b>"),
    ]
    for page in pages:
        assert page.status_code == 200
        for markup in ("<script>alert", "<b>t</b>", "<i>x</i>", "<img src=x"):
            assert markup not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[1].text
    assert "&lt;img src=x onerror=alert(1)&gt; broke" in pages[2].text


async def test_paging_visits_every_job_once(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """120 queued jobs: three pages of 50, 50 and 20 by following the Next links."""
    ids = {str((await engine.submit("Hold")).id) for _ in range(120)}
    seen: list[str] = []
    url: str | None = "/dashboard/jobs?status=Queued"
    while url is not None:
        page = await client.get(url)
        seen += re.findall(r'<tr data-job="([0-9a-f-]+)"', page.text)
        found = re.search(r'href="([^"]+)" rel="next"', page.text)
        url = None if found is None else found.group(1).replace("&amp;", "&")
    assert len(seen) == 120 and set(seen) == ids


def link(page: httpx.Response, rel: str) -> str | None:
    """The href of the page's pager link ``rel`` (next, prev, first), if it has one."""
    found = re.search(rf'href="([^"]+)" rel="{rel}"', page.text)
    return None if found is None else found.group(1).replace("&amp;", "&")


def rows(page: httpx.Response) -> list[str]:
    return re.findall(r'<tr data-job="([0-9a-f-]+)"', page.text)


@pytest.mark.parametrize("address", ["/dashboard/jobs?status=Queued", "/dashboard/jobs"])
async def test_previous_leads_back_page_by_page_and_the_pager_counts_the_jobs(
    engine: AsyncEndpoints, client: httpx.AsyncClient, address: str
) -> None:
    """120 queued jobs, walked forward with Next to the third page: Previous from there
    shows the second page's jobs again, Previous from that the first's; First appears
    from the third page on (on the second, Previous is the first page); each page says
    its number and the 120 jobs in all; the same on the list of all jobs, whose first
    page's address has no filter at all. A tenant filter is not counted."""
    for _ in range(120):
        await engine.submit("Hold", tenant="acme")
    first = await client.get(address)
    assert "Page 1 · 120 jobs in all" in first.text and link(first, "prev") is None
    second = await client.get(link(first, "next") or "")
    assert "Page 2 · 120 jobs in all" in second.text and link(second, "first") is None
    third = await client.get(link(second, "next") or "")
    assert "Page 3 · 120 jobs in all" in third.text and len(rows(third)) == 20
    assert rows(await client.get(link(third, "first") or "")) == rows(first)
    back = await client.get(link(third, "prev") or "")
    assert "Page 2 ·" in back.text and rows(back) == rows(second)
    assert rows(await client.get(link(back, "prev") or "")) == rows(first)
    tenant = await client.get("/dashboard/jobs?status=Queued&tenant=acme")
    assert "Page 1</span>" in tenant.text and "in all" not in tenant.text


async def test_the_name_filter_keeps_one_handler(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """name=Ok lists only the Ok jobs."""
    ok = await engine.submit("Ok", {})
    await engine.submit("Hold")
    page = await client.get("/dashboard/jobs?name=Ok")
    assert re.findall(r'<tr data-job="([0-9a-f-]+)"', page.text) == [str(ok.id)]


async def test_a_name_typed_in_another_case_or_with_blanks_finds_its_handlers_jobs(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """The store filters by the exact name: the page reads " hold " and "HOLD" as the one
    handler named Hold, and offers the handlers' names to pick from; a name no handler
    has in any case is kept as typed (jobs of a handler gone from the code)."""
    hold = await engine.submit("Hold")
    await engine.submit("Ok", {})
    for typed in ("%20hold%20", "HOLD", "Hold"):
        page = await client.get(f"/dashboard/jobs?name={typed}")
        assert re.findall(r'<tr data-job="([0-9a-f-]+)"', page.text) == [str(hold.id)], typed
        assert 'name="name" value="Hold"' in page.text
    names = re.findall(r'<option value="([^"]+)">', page.text)
    assert {"Hold", "Ok", "Broken", "Report"} <= set(names)
    gone = await client.get("/dashboard/jobs?name=RetiredHandler")
    assert 'name="name" value="RetiredHandler"' in gone.text and "No jobs match" in gone.text
    assert "No handler of this app is named <q>RetiredHandler</q>" in gone.text
    assert "No handler of this app" not in page.text  # a handler's name says nothing


async def test_a_batchs_waiting_jobs_show_their_queue_and_that_it_is_paused(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """A batch whose jobs wait in a paused queue says why it does not move: each job shows
    its queue, tagged paused."""
    await engine.pause("high")
    batch = await engine.submit_batch([JobSpec("Ok", {}, queue="high")])
    page = (await client.get(f"/dashboard/batches/{batch.id}")).text
    rows = re.findall(r'<tr data-job="[0-9a-f-]+">(.*?)</tr>', page, re.S)
    assert len(rows) == 1 and 'title="high"' in rows[0]
    assert '<span class="state paused"' in rows[0]


async def test_a_batchs_failed_job_shows_its_error_message_not_its_type_alone(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """A failed job of a batch reads as in the job lists: its error's type and message
    (escaped), not the type alone with the message only on hover (a phone or a keyboard
    never shows it)."""
    batch = await engine.submit_batch([JobSpec("Broken", {})])
    async with engine.running():
        await engine.drain()
    page = (await client.get(f"/dashboard/batches/{batch.id}")).text
    [row] = re.findall(r'<tr data-job="[0-9a-f-]+">(.*?)</tr>', page, re.S)
    shown = re.sub(r"<[^>]+>", "", row.split('class="error"')[1].split("</td>")[0])
    assert "RuntimeError" in shown and "&lt;img src=x onerror=alert(1)&gt; broke" in shown
    assert "<img" not in row


async def test_a_job_waiting_for_its_retry_shows_its_last_error_in_the_waiting_list(
    gate: Gate,
) -> None:
    """A failed attempt with retries left puts the job back Scheduled with its error: the
    Scheduled list shows that error (why it is retrying)."""
    app, engine = make_app(gate, max_retries=2, retry_base_delay=600)
    transport = httpx.ASGITransport(app=app)
    async with (
        engine.running(),
        httpx.AsyncClient(transport=transport, base_url=BASE) as client,
    ):
        job = await engine.submit("Broken")

        async def retrying() -> bool:
            found = await engine.get_job(job.id)
            return found is not None and found.status is JobStatus.SCHEDULED

        await eventually(retrying)
        page = await client.get("/dashboard/jobs?status=Scheduled")
    row = re.search(rf'<tr data-job="{job.id}"[^>]*>(.*?)</tr>', page.text, re.S)
    assert row is not None and "RuntimeError" in row.group(1)


async def test_a_list_of_one_status_shows_the_columns_that_status_has(
    engine: AsyncEndpoints, client: httpx.AsyncClient, gate: Gate
) -> None:
    """Running jobs: their progress (as reported), no Finished column; waiting jobs: no
    Started or Finished column; every list keeps the Error column (a job waiting for its
    retry keeps its last attempt's error); every status: all of them."""
    job = await engine.submit("Report", {"text": "halfway <b>"})
    queued = await engine.submit("Ok", {})
    async with engine.running():
        await reported(engine, job.id)
        await engine.pause()
        waiting = await engine.submit("Ok", {})
        running = await client.get("/dashboard/jobs?status=InProgress")
        headers = re.findall(r"<th[^>]*>([A-Za-z ]+)</th>", running.text)
        assert "Progress" in headers and "Finished" not in headers and "Error" in headers
        assert str(escape('"message": "halfway <b>"')) in running.text
        queued_page = await client.get("/dashboard/jobs?status=Queued")
        headers = re.findall(r"<th[^>]*>([A-Za-z ]+)</th>", queued_page.text)
        assert {"First started", "Finished", "Progress"}.isdisjoint(headers) and "Error" in headers
        assert str(waiting.id) in queued_page.text
        every = await client.get("/dashboard/jobs")
        headers = re.findall(r"<th[^>]*>([A-Za-z ]+)</th>", every.text)
        assert {"First started", "Finished", "Error"} <= set(headers) and "Progress" not in headers
        assert str(queued.id) in every.text
        gate.open.set()


async def test_an_unknown_job_answers_404_and_a_stale_cursor_the_first_page(
    client: httpx.AsyncClient,
) -> None:
    """A job page for no job is 404; a cursor that does not fit shows the first page."""
    assert (await client.get("/dashboard/jobs/not-a-uuid")).status_code == 404
    page = await client.get("/dashboard/jobs?status=Failed&cursor=garbage")
    assert page.status_code == 200 and "That page link cannot be followed" in page.text


async def test_the_live_fragment_is_the_live_part_alone(client: httpx.AsyncClient) -> None:
    """With X-Dashboard-Fragment: 1 a page answers its live block only."""
    fragment = await client.get("/dashboard/", headers={"X-Dashboard-Fragment": "1"})
    assert "<table" in fragment.text and "<html" not in fragment.text


async def test_a_job_pages_way_back_follows_its_status_as_the_page_refreshes(
    engine: AsyncEndpoints, client: httpx.AsyncClient, gate: Gate
) -> None:
    """The job page's link back to its list is in the part that refreshes: once the
    running job has completed, the refreshed part leads back to the Completed jobs."""
    job = await engine.submit("Hold")
    live = {"X-Dashboard-Fragment": "1"}
    waiting = await client.get(f"/dashboard/jobs/{job.id}", headers=live)
    assert "« Queued jobs" in waiting.text and "status=Queued" in waiting.text
    claim = (await engine.store.claim(1, lease=60))[0]
    await engine.store.complete(claim, "done")
    done = await client.get(f"/dashboard/jobs/{job.id}", headers=live)
    assert "« Completed jobs" in done.text and "status=Completed" in done.text


async def test_an_unchanged_live_part_is_answered_304_with_nothing_sent_again(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """The live part carries an entity tag: asked again with it while the job has not
    changed (a finished job's page, result and all, asked every second) the answer is
    304 with no body; once the job changes, 200 with the new part and a new tag. A
    whole page (no fragment header) is always sent."""
    job = await engine.submit("Hold")
    live = {"X-Dashboard-Fragment": "1"}
    first = await client.get(f"/dashboard/jobs/{job.id}", headers=live)
    tag = first.headers["etag"]
    again = await client.get(f"/dashboard/jobs/{job.id}", headers={**live, "If-None-Match": tag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == tag
    assert again.headers["cache-control"] == "no-store"
    whole = await client.get(f"/dashboard/jobs/{job.id}", headers={"If-None-Match": tag})
    assert whole.status_code == 200 and "<html" in whole.text
    claim = (await engine.store.claim(1, lease=60))[0]
    await engine.store.complete(claim, "x" * 100_000)
    changed = await client.get(f"/dashboard/jobs/{job.id}", headers={**live, "If-None-Match": tag})
    assert changed.status_code == 200 and "Completed" in changed.text
    new_tag = changed.headers["etag"]
    assert new_tag != tag
    held = await client.get(f"/dashboard/jobs/{job.id}", headers={**live, "If-None-Match": new_tag})
    assert held.status_code == 304 and held.content == b""


async def test_pages_forbid_framing_and_outside_assets(client: httpx.AsyncClient) -> None:
    """CSP allows the app's own scripts and styles only, and no framing."""
    page = await client.get("/dashboard/")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "http" not in page.text.replace(BASE, "")


async def test_a_page_while_the_store_is_unreachable_is_503_with_retry_after(
    engine: AsyncEndpoints, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As every other route of the library: 503 with a Retry-After header (and a page
    saying so), not a stack trace."""

    async def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailableError("cut off", retry_after=2.5)

    monkeypatch.setattr(engine.store, "queue_stats", unreachable)
    monkeypatch.setattr(engine.store, "list_jobs", unreachable)
    for path in ("/dashboard/", "/dashboard/jobs"):
        page = await client.get(path)
        assert page.status_code == 503, path
        assert page.headers["retry-after"] == "3" and "unavailable" in page.text.lower()
        # The page reloads itself whole once the store answers, and says it is not live.
        assert 'data-reload-when-back="1"' in page.text and ">reconnecting<" in page.text


@pytest.mark.redis
async def test_the_dashboard_on_redis(redis_server: Any, prefix: str, gate: Gate) -> None:
    """Queues, jobs, one job and a cancel, on a RedisJobStore."""
    store = RedisJobStore(redis_server.url, prefix=prefix)
    async with dashboard_on(store, gate) as (endpoints, client):
        await endpoints.pause("high")
        job = await endpoints.submit("Ok", {}, queue="high", tenant="acme")
        page = await client.get("/dashboard/")
        assert re.search(r'data-queue="high".*?Paused', page.text, re.S)
        listing = await client.get("/dashboard/jobs?tenant=acme&status=Queued")
        assert re.findall(r'<tr data-job="([0-9a-f-]+)"', listing.text) == [str(job.id)]
        assert str(job.id) in (await client.get(f"/dashboard/jobs/{job.id}")).text
        token = await token_of(client)
        form = {"token": token, "job_id": str(job.id)}
        answer = await client.post("/dashboard/actions/cancel", data=form, headers=SAME_ORIGIN)
        assert answer.status_code == 303
        canceled = await endpoints.get_job(job.id)
        assert canceled is not None and canceled.status is JobStatus.CANCELED


async def test_a_tenant_page_on_redis_reads_on_until_full_and_says_when_it_found_none(
    redis_server: Any, prefix: str, gate: Gate
) -> None:
    """On Redis a tenant filter reads a bounded run of jobs per listing call: a page reads
    on (up to FILL_CALLS calls) until it is full, so a tenant's job behind 1,500 of
    another's is on the first page; behind 3,500, the first page found none of the
    tenant's within its reads and says the next page reads on (not a word about a name
    filter), and the next page leads to the tenant's job."""
    store = RedisJobStore(redis_server.url, prefix=prefix)
    async with dashboard_on(store, gate) as (endpoints, client):
        rare = await endpoints.submit("Ok", {}, tenant="rare")
        await endpoints.submit_batch([JobSpec("Ok", {})] * 1500, tenant="busy")  # newer
        page = await client.get("/dashboard/jobs?tenant=rare")
        assert re.findall(r'<tr data-job="([0-9a-f-]+)"', page.text) == [str(rare.id)]
        await endpoints.submit_batch([JobSpec("Ok", {})] * 2000, tenant="busy")
        page = await client.get("/dashboard/jobs?tenant=rare")
        assert 'rel="next"' in page.text and "<tr data-job=" not in page.text
        assert "No job on this page matches; the next page reads on." in page.text
        assert "of this name" not in page.text
        link = re.search(r'href="([^"]+)" rel="next"', page.text)
        assert link is not None
        page = await client.get(link.group(1).replace("&amp;", "&"))
        assert re.findall(r'<tr data-job="([0-9a-f-]+)"', page.text) == [str(rare.id)]


async def test_a_batchs_bar_shows_its_finished_jobs_by_outcome(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """One completed, one failed, one canceled of four: the bar is a quarter green, a
    quarter red, a quarter grey and a quarter empty, on the list and the batch's page
    (not one green bar for every finished job)."""
    batch = await engine.submit_batch(
        [JobSpec("Ok", {}), JobSpec("Broken"), JobSpec("Hold"), JobSpec("Hold")]
    )
    async with engine.running():
        page = await engine.list_jobs(batch_id=batch.id)
        hold = next(job for job in page.jobs if job.name == "Hold")
        await engine.cancel(hold.id)

        async def one_left() -> bool:
            found = await engine.get_batch(batch.id)
            return found is not None and found.unfinished == 1

        await eventually(one_left)
        for path in ("/dashboard/batches", f"/dashboard/batches/{batch.id}"):
            text = (await client.get(path)).text
            widths = dict(
                re.findall(
                    r'<rect class="(\w+)" x="[\d.]+" y="0" height="10" width="([\d.]+)"', text
                )
            )
            assert widths == {"ok": "25.00", "bad": "25.00", "off": "25.00"}, path
        await engine.cancel_batch(batch.id)


async def test_batches_their_jobs_and_cancelling_one(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """The batches page lists a batch with its counts, each a link to those jobs; its page
    and jobs?batch= list its jobs; Cancel batch cancels the unfinished ones."""
    batch = await engine.submit_batch(
        [JobSpec("Hold"), JobSpec("Hold"), JobSpec("Ok", {})], tenant="acme"
    )
    other = await engine.submit("Hold")
    listing = await client.get("/dashboard/batches?tenant=acme")
    row = re.search(rf'<tr data-batch="{batch.id}">(.*?)</tr>', listing.text, re.S)
    assert row is not None and "Running" in row.group(1)
    assert f'<td class="num"><a href="/dashboard/jobs?batch={batch.id}">3</a></td>' in row.group(1)
    page = await client.get(f"/dashboard/batches/{batch.id}")
    in_batch = set(re.findall(r'<tr data-job="([0-9a-f-]+)"', page.text))
    assert len(in_batch) == 3 and str(other.id) not in in_batch
    filtered = await client.get(f"/dashboard/jobs?batch={batch.id}")
    assert set(re.findall(r'<tr data-job="([0-9a-f-]+)"', filtered.text)) == in_batch
    # Each count of a status is a link to the batch's jobs of that status.
    for status, count in re.findall(
        rf'<a href="/dashboard/jobs\?batch={batch.id}&amp;status=(\w+)">(\d+)</a>', page.text
    ):
        listed = await client.get(f"/dashboard/jobs?batch={batch.id}&status={status}")
        shown = re.findall(r'<tr data-job="([0-9a-f-]+)"', listed.text)
        assert len(shown) == int(count) and set(shown) <= in_batch
    form = {"token": await token_of(client), "batch_id": str(batch.id), "confirmed": "1"}
    answer = await client.post("/dashboard/actions/cancel-batch", data=form, headers=SAME_ORIGIN)
    assert (
        answer.status_code == 303 and "done=batch-canceled&subject=" in answer.headers["location"]
    )
    canceled = await engine.get_batch(batch.id)
    assert canceled is not None and canceled.canceled == 3
    back = (await client.get(answer.headers["location"])).text
    assert f'<a href="/dashboard/batches/{batch.id}" class="id">' in back
    # A cancelled batch's bar is all "finished": the page says how it ended.
    after = await client.get(f"/dashboard/batches/{batch.id}")
    assert "100 % finished: 0 completed, 0 failed, 3 canceled" in after.text
    assert (await engine.get_job(other.id)).status is JobStatus.QUEUED  # type: ignore[union-attr]
    assert (await client.get("/dashboard/batches/not-a-batch")).status_code == 404


async def test_running_jobs_are_called_running_as_in_the_navigation(
    engine: AsyncEndpoints, client: httpx.AsyncClient, gate: Gate
) -> None:
    """The navigation's "Running" link leads to a page titled "Running jobs", not the
    wire name "InProgress jobs"; a running job's badge, on the list of every status and on
    its page, and the status filter's choice read "Running" too, the API's name on hover
    (the list of running jobs alone has no Status column: every row would say Running)."""
    page = await client.get("/dashboard/jobs?status=InProgress")
    assert "<title>Running jobs" in page.text and "InProgress jobs" not in page.text
    assert '<option value="InProgress" selected>Running</option>' in page.text
    job = await engine.submit("Report", {"text": "working"})
    async with engine.running():
        await reported(engine, job.id)  # it runs, held by the gate
        badge = (
            '<span class="status status-inprogress" title="InProgress (its status in the'
            ' API)">Running</span>'
        )
        for path in ("/dashboard/jobs", f"/dashboard/jobs/{job.id}"):
            shown = (await client.get(path)).text
            assert badge in shown and ">InProgress<" not in shown, path
        running_list = (await client.get("/dashboard/jobs?status=InProgress")).text
        assert f'data-job="{job.id}"' in running_list and badge not in running_list
        gate.open.set()


async def test_a_wrong_method_answers_405_once_authorized(client: httpx.AsyncClient) -> None:
    """GET on an action, POST (or a method no route names) on a page: 405 with Allow."""
    answer = await client.get("/dashboard/actions/cancel")
    assert (answer.status_code, answer.headers["allow"]) == (405, "POST")
    answer = await client.post("/dashboard/jobs")
    assert (answer.status_code, answer.headers["allow"]) == (405, "GET, HEAD")
    answer = await client.request("TRACE", "/dashboard")
    assert (answer.status_code, answer.headers["allow"]) == (405, "GET, HEAD")


async def test_a_pages_path_with_a_trailing_slash_leads_to_the_page(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """``/jobs/`` goes to ``/jobs`` (query kept); a path that is no page answers the
    dashboard's own 404 page, not bare text; an action's path is never redirected."""
    job = await engine.submit("Hold")
    answer = await client.get("/dashboard/jobs/?status=Queued")
    assert (answer.status_code, answer.headers["location"]) == (
        307,
        "/dashboard/jobs?status=Queued",
    )
    answer = await client.get(f"/dashboard/jobs/{job.id}/")
    assert answer.headers["location"] == f"/dashboard/jobs/{job.id}"
    for path in ("/dashboard/nothing-here", "/dashboard/nothing/", "/dashboard/jobs/a/b"):
        missing = await client.get(path)
        assert missing.status_code == 404, path
        assert missing.headers["content-type"].startswith("text/html")
        assert "The dashboard has no such page" in missing.text
    assert (await client.get("/dashboard/actions/cancel/")).status_code == 404
    assert (await client.post("/dashboard/nothing-here")).status_code == 404


async def test_only_the_pause_all_or_resume_all_that_changes_something_is_offered(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """Every queue running: "Pause all queues" alone; some paused: both; all paused:
    "Resume all queues" alone. The buttons are in the live part (they follow the state)."""

    async def offered() -> set[str]:
        live = await client.get("/dashboard/", headers={"X-Dashboard-Fragment": "1"})
        return set(re.findall(r">((?:Pause|Resume) all queues)<", live.text))

    assert await offered() == {"Pause all queues"}
    await engine.pause("high")
    assert await offered() == {"Pause all queues", "Resume all queues"}
    await engine.pause()
    assert await offered() == {"Resume all queues"}


async def test_waiting_jobs_of_a_paused_queue_are_tagged_paused(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """A Queued job of a paused queue says so in the list and on its page; a job of a
    running queue does not; resuming takes the tag away."""
    held = await engine.submit("Hold", queue="high")
    free = await engine.submit("Hold", queue="default")
    await engine.pause("high")

    def row(page: str, job_id: object) -> str:
        found = re.search(rf'<tr data-job="{job_id}".*?</tr>', page, re.S)
        assert found is not None
        return found.group(0)

    listing = (await client.get("/dashboard/jobs?status=Queued")).text
    assert 'class="state paused"' in row(listing, held.id)
    assert "paused" not in row(listing, free.id)
    assert 'class="state paused"' in (await client.get(f"/dashboard/jobs/{held.id}")).text
    await engine.resume("high")
    listing = (await client.get("/dashboard/jobs?status=Queued")).text
    assert "paused" not in row(listing, held.id)


async def test_the_jobs_of_a_paused_queue_say_it_is_paused_with_a_resume_button(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """Filtered by a paused queue, the jobs page says the queue is paused, with its Resume
    button (which resumes it and comes back to the list); a running queue says nothing."""
    await engine.pause("high")
    listing = (await client.get("/dashboard/jobs?queue=high")).text
    assert "Queue high is paused" in listing
    assert 'name="queue" value="high"' in listing and 'data-action="resume"' in listing
    assert "is paused" not in (await client.get("/dashboard/jobs?queue=default")).text
    form = {"token": await token_of(client), "queue": "high", "next": "/dashboard/jobs?queue=high"}
    answer = await client.post("/dashboard/actions/resume", data=form, headers=SAME_ORIGIN)
    assert answer.headers["location"].startswith("/dashboard/jobs?queue=high&done=resumed")
    assert [q.paused for q in await engine.queue_stats()] == [False, False]
    assert "is paused" not in (await client.get(answer.headers["location"])).text


async def test_continuations_are_marked_in_their_batchs_job_list(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """Once its batch has finished, a continuation is listed among the batch's jobs,
    marked as such (the batch's own jobs are not)."""
    batch = await engine.submit_batch([JobSpec("Hold")], continue_with=[JobSpec("Ok", {})])
    (continuation,) = batch.continuation_ids
    (member,) = [job for job in (await engine.list_jobs(limit=10)).jobs if job.name == "Hold"]
    await engine.cancel(member.id)  # the batch finishes: its continuation is queued
    page = (await client.get(f"/dashboard/batches/{batch.id}")).text
    rows = dict(re.findall(r'<tr data-job="([0-9a-f-]+)">(.*?)</tr>', page, re.S))
    assert set(rows) == {str(continuation), str(member.id)}
    marked = {job_id for job_id, row in rows.items() if ">continuation</span>" in row}
    assert marked == {str(continuation)}


async def test_a_running_batchs_continuations_are_named_but_not_linked_until_queued(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """While its batch runs, a continuation's id is kept for it but no job has it yet: the
    batch page names it as not queued yet (a link would lead to "no such job"); once the
    batch has finished, it links to the job."""
    batch = await engine.submit_batch([JobSpec("Hold")], continue_with=[JobSpec("Ok", {})])
    (continuation,) = batch.continuation_ids
    link = f'href="/dashboard/jobs/{continuation}"'
    page = (await client.get(f"/dashboard/batches/{batch.id}")).text
    assert str(continuation) in page and link not in page and "(not queued yet)" in page
    (member,) = (await engine.list_jobs(limit=10)).jobs
    await engine.cancel(member.id)
    page = (await client.get(f"/dashboard/batches/{batch.id}")).text
    assert link in page and "(not queued yet)" not in page


async def test_a_batch_that_cannot_meet_all_completed_says_its_continuations_will_be_canceled(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """With ``continue_when="all_completed"``, once a job of the batch has failed or been
    cancelled, the page of the still running batch says its continuations will be stored
    Canceled, not that they will be queued; before that, that they will be queued."""
    specs = [JobSpec("Hold"), JobSpec("Hold")]
    batch = await engine.submit_batch(
        specs, continue_with=[JobSpec("Ok", {})], continue_when="all_completed"
    )
    page = (await client.get(f"/dashboard/batches/{batch.id}")).text
    assert "Queued once every job" in page and "(not queued yet)" in page
    assert "Stored Canceled" not in page
    first = (await engine.list_jobs(batch_id=batch.id, limit=10)).jobs[0]
    await engine.cancel(first.id)
    page = (await client.get(f"/dashboard/batches/{batch.id}")).text
    assert "Stored Canceled once every job of the batch has finished" in page
    assert "(to be stored Canceled)" in page
    assert "Queued once every job" not in page and "(not queued yet)" not in page


async def test_cancelling_a_batch_from_the_list_says_it_is_the_batch_and_asks_first(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """The batches list's button cancels every unfinished job of the batch: it is called
    Cancel batch and asks for a confirmation, as on the batch's own page."""
    batch = await engine.submit_batch([JobSpec("Hold")])
    listing = (await client.get("/dashboard/batches")).text
    row = re.search(rf'<tr data-batch="{batch.id}">(.*?)</tr>', listing, re.S)
    assert row is not None
    assert 'data-confirm="Cancel every unfinished job' in row.group(1)
    assert 'data-action="cancel-batch">Cancel batch</button>' in row.group(1)


async def test_the_schedules_page_cuts_long_values_and_names_the_queue_each_fills(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """A schedule's id, job name, queue and tenant sit in cells cut to their width (the
    whole value on hover), its timing first; a schedule without a queue of its own shows
    the queue its jobs go to, its handler's, and says so."""
    long_id = "purge-" + "x" * 80
    await engine.upsert_schedule(long_id, "Hold", "0 3 * * *", tenant="t" * 60)
    await engine.upsert_schedule("hourly", "Hold", "0 * * * *", queue="high")
    page = (await client.get("/dashboard/schedules")).text
    headers = re.findall(r"<th(?: [^>]*)?>([^<]+)</th>", page)
    assert headers[:3] == ["Schedule", "Next run", "Last job"]
    assert '<table class="grid schedules">' in page  # its names cut shorter (four a row)
    rows = re.findall(r"<tr>(.*?)</tr>", page.split("<tbody>")[1], re.S)
    (purge,) = [row for row in rows if long_id in row]
    assert f'<td class="label" title="{long_id}"><span dir="auto">{long_id}</span></td>' in purge
    assert f'<td class="label" title="{"t" * 60}">' in purge
    assert '<td class="label" title="default (its handler\'s)">' in purge
    (hourly,) = [row for row in rows if ">hourly<" in row]
    assert '<td class="label" title="high"><span dir="auto">high</span></td>' in hourly


async def test_the_navigation_marks_the_page_shown(client: httpx.AsyncClient) -> None:
    """The header's link to the page shown carries aria-current="page" (and is styled
    so); a job's own page, which no link leads to, marks none."""
    expected = {
        "/dashboard/": "Queues",
        "/dashboard/jobs": "All jobs",
        "/dashboard/jobs?status=InProgress": "Running",
        "/dashboard/jobs?status=Failed": "Failed",
        "/dashboard/jobs?status=Queued": "All jobs",
        "/dashboard/schedules": "Schedules",
        "/dashboard/batches": "Batches",
    }
    for path, link in expected.items():
        page = (await client.get(path)).text
        assert re.findall(r'aria-current="page">([^<]+)</a>', page) == [link], path
    page = (await client.get(f"/dashboard/jobs/{uuid.uuid4()}")).text
    assert "aria-current" not in page


async def test_a_scheduled_job_past_its_time_reads_as_due_in_the_page_and_its_refresh(
    gate: Gate,
) -> None:
    """A Scheduled job whose time has come (no worker has taken it yet) reads "due … ago",
    not a bare "ago" that looks stuck; one due later reads "in …"; the page's refresh
    (its live part alone) says the same. Times are told against the store's clock (a
    `ManualClock` at 2026-01-01, months behind this host's), which stamps them."""
    clock = ManualClock()
    app, endpoints = make_app(gate, InMemoryJobStore(clock=clock))
    transport = httpx.ASGITransport(app=app)
    async with (
        endpoints.running(workers=False),
        httpx.AsyncClient(transport=transport, base_url=BASE) as client,
    ):
        due = await endpoints.submit("Ok", {}, delay=5)
        later = await endpoints.submit("Ok", {}, delay=3600)
        clock.advance(10)
        page = await client.get("/dashboard/jobs?status=Scheduled")
        assert 'data-server-now="2026-01-01T00:00:10' in page.text
        assert re.search(r">due <time[^>]*>5 s ago</time>", page.text)
        assert re.search(r"<time[^>]*>in 59 min</time>", page.text)
        for headers in ({}, {"X-Dashboard-Fragment": "1"}):
            page = await client.get("/dashboard/jobs?status=Scheduled", headers=headers)
            assert page.status_code == 200
            rows = dict(re.findall(r'<tr data-job="([0-9a-f-]+)"[^>]*>(.*?)</tr>', page.text, re.S))
            assert re.search(r">due <time[^>]*>[^<]+</time>", rows[str(due.id)])
            assert re.search(r'<span class="sub"><time[^>]*>', rows[str(later.id)])
            assert ">due " not in rows[str(later.id)]


class ClocklessStore(InMemoryJobStore):
    """An in-memory store whose clock cannot be read (its jobs can)."""

    async def schedule_time(self) -> Any:
        raise StoreUnavailableError("the clock is out of reach")


async def test_a_page_whose_store_clock_cannot_be_read_tells_times_by_this_hosts(
    gate: Gate,
) -> None:
    """The page's jobs were read: a failing read of the store's clock (which only tells
    "3 s ago" better) does not turn the page into an error."""
    app, endpoints = make_app(gate, ClocklessStore())
    transport = httpx.ASGITransport(app=app)
    async with (
        endpoints.running(workers=False),
        httpx.AsyncClient(transport=transport, base_url=BASE) as client,
    ):
        job = await endpoints.submit("Ok", {})
        for headers in ({}, {"X-Dashboard-Fragment": "1"}):
            page = await client.get("/dashboard/jobs", headers=headers)
            assert page.status_code == 200 and str(job.id) in page.text


async def test_a_finished_batch_says_how_many_of_its_jobs_were_queued_again(
    engine: AsyncEndpoints, client: httpx.AsyncClient
) -> None:
    """A job of a finished batch requeued: the batch stays Finished (its continuations ran
    once), and its page says why it counts an unfinished job."""
    batch = await engine.submit_batch([JobSpec("Hold"), JobSpec("Hold")])
    first, second = (await engine.list_jobs(limit=10)).jobs
    for job in (first, second):
        await engine.cancel(job.id)
    page = (await client.get(f"/dashboard/batches/{batch.id}")).text
    assert "queued again" not in page
    await engine.requeue(first.id)
    page = (await client.get(f"/dashboard/batches/{batch.id}")).text
    assert "Finished" in page and "1 job queued again since it finished" in page


@pytest.mark.parametrize("served", ["proxy-prefix", "outer-mount"])
async def test_links_forms_cookie_and_redirects_keep_the_apps_prefix(
    gate: Gate, served: str
) -> None:
    """Served under /pfx (a proxy's prefix given to the server as its root path, or the
    whole app mounted in another one), every link, asset, form action, redirect and the
    token cookie's path start with /pfx/dashboard: a page is styled, a cancel from it
    reaches the dashboard and comes back to the page."""
    app, endpoints = make_app(gate)
    if served == "proxy-prefix":
        transport = httpx.ASGITransport(app=app, root_path="/pfx")
    else:
        transport = httpx.ASGITransport(app=Starlette(routes=[Mount("/pfx", app=app)]))
    async with (
        endpoints.running(workers=False),
        httpx.AsyncClient(transport=transport, base_url=BASE) as client,
    ):
        job = await endpoints.submit("Hold")
        bare = await client.get("/pfx/dashboard")  # the queues page, as at the slash
        assert bare.status_code == 200
        assert "Path=/pfx/dashboard" in bare.headers["set-cookie"]
        bare_targets = re.findall(r'\s(?:href|src|action)="([^"#]*)"', bare.text)
        assert bare_targets and all(t.startswith("/pfx/dashboard/") for t in bare_targets)
        slash = await client.get("/pfx/dashboard/jobs/?status=Queued")
        assert slash.headers["location"] == "/pfx/dashboard/jobs?status=Queued"
        page = await client.get("/pfx/dashboard/jobs?status=Queued")  # the cookie is set
        targets = re.findall(r'\s(?:href|src|action)="([^"#]*)"', page.text)
        assert targets and all(t.startswith("/pfx/dashboard/") for t in targets), targets
        for asset in ("dashboard.css", "dashboard.js", "favicon.svg"):
            assert f'"/pfx/dashboard/assets/{asset}"' in page.text
            assert (await client.get(f"/pfx/dashboard/assets/{asset}")).status_code == 200
        token = re.search(r'name="token" value="([^"]+)"', page.text)
        here = re.search(r'name="next" value="([^"]+)"', page.text)
        assert token is not None and here is not None
        assert here.group(1).replace("&amp;", "&") == "/pfx/dashboard/jobs?status=Queued"
        form = {"token": token.group(1), "job_id": str(job.id), "next": here.group(1)}
        answer = await client.post(
            "/pfx/dashboard/actions/cancel",
            data={**form, "next": form["next"].replace("&amp;", "&")},
            headers=SAME_ORIGIN,
        )
        assert answer.headers["location"] == (
            f"/pfx/dashboard/jobs?status=Queued&done=canceled&subject={job.id}"
        )
        outside = await client.post(
            "/pfx/dashboard/actions/requeue",
            data={**form, "next": "/dashboard/jobs"},
            headers=SAME_ORIGIN,
        )
        assert outside.headers["location"].startswith("/pfx/dashboard/?done=requeued")


@pytest.mark.parametrize(("prefix", "encoded"), [("/a b", "/a%20b"), ("/é", "/%C3%A9")])
async def test_under_a_prefix_that_needs_encoding_the_page_is_marked_and_actions_come_back(
    gate: Gate, prefix: str, encoded: str
) -> None:
    """Under a root path with a space or a non-ASCII letter (links encoded, the page's own
    path decoded): the navigation marks the page shown, and an action returns to the
    page it came from, not to the dashboard's root."""
    app, endpoints = make_app(gate)
    transport = httpx.ASGITransport(app=app, root_path=prefix)
    async with (
        endpoints.running(workers=False),
        httpx.AsyncClient(transport=transport, base_url=BASE) as client,
    ):
        job = await endpoints.submit("Hold")
        page = await client.get(f"{encoded}/dashboard/jobs?status=Failed")
        assert re.findall(r'aria-current="page">([^<]+)</a>', page.text) == ["Failed"]
        page = await client.get(f"{encoded}/dashboard/jobs?status=Queued")
        token = re.search(r'name="token" value="([^"]+)"', page.text)
        here = re.search(r'name="next" value="([^"]+)"', page.text)
        assert token is not None and here is not None
        form = {"token": token.group(1), "job_id": str(job.id)}
        answer = await client.post(
            f"{encoded}/dashboard/actions/cancel",
            data={**form, "next": here.group(1).replace("&amp;", "&")},
            headers=SAME_ORIGIN,
        )
        assert answer.headers["location"] == (
            f"{encoded}/dashboard/jobs?status=Queued&done=canceled&subject={job.id}"
        )


@pytest.mark.parametrize(
    ("root_path", "base"),
    [
        ("/", ""),
        ("/pfx/", "/pfx"),
        ("//dashboard", "/dashboard"),
        ("/pfx//dashboard", "/pfx/dashboard"),
        ("/a b/dashboard", "/a%20b/dashboard"),
        ("/é/dashboard", "/%C3%A9/dashboard"),
    ],
)
def test_the_dashboards_path_from_a_root_path_is_one_absolute_encoded_path(
    root_path: str, base: str
) -> None:
    """Links and the cookie's path never start with // (another host) nor hold a space
    or a non-ASCII character unencoded (the browser would never send the cookie back)."""
    assert dashboard_path(root_path) == base
