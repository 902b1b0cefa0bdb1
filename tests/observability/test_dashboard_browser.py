"""The dashboard in a real browser (Debian's chromium, driven by Playwright; no browser is
ever downloaded): counts, pause/resume, cancel, requeue, paging, the job's JSON, CSRF,
authorize, live updates, and no script from job data."""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.async_api import (
    Browser,
    Dialog,
    Page,
    Response,
    Route,
    async_playwright,
    expect,
)

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    Job,
    JobSpec,
    JobStatus,
    StoreUnavailableError,
)
from async_endpoints._events import EventKind, LifecycleEvent
from tests.observability.dashboard_app import Gate, make_app
from tests.redis.support import eventually
from tests.serving import served

CHROMIUM = "/usr/bin/chromium"
#: The dashboard's promise: a page shows a change within 2 s without reloading.
LIVE_WITHIN_MS = 2000
#: Any other wait for the browser (a click, a navigation).
PATIENCE_MS = 10_000

pytestmark = pytest.mark.slow


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
async def site(gate: Gate) -> AsyncIterator[tuple[str, AsyncEndpoints]]:
    """The app served on a loopback port, its workers running; the held handlers are let
    go before it stops (else its shutdown waits out their 30 s grace period)."""
    app, endpoints = make_app(gate, max_concurrency=4)
    async with served(app) as base:
        try:
            yield base, endpoints
        finally:
            gate.open.set()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        # As the Valkey tests: a developer's machine may lack it (no browser is downloaded);
        # CI, which installs it, fails instead.
        missing = "no /usr/bin/chromium here: apt-get install chromium (Debian's) to run these"
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1366, "height": 768})
    page = await context.new_page()
    page.set_default_timeout(PATIENCE_MS)
    yield page
    await context.close()


async def running_hold(engine: AsyncEndpoints) -> Job:
    """Submit a Hold job (the test's only one) and return it once its attempt has started
    (woken by the lifecycle event, not polled)."""
    started = asyncio.Event()

    def note(event: LifecycleEvent) -> None:
        if event.kind is EventKind.STARTED and event.job.name == "Hold":
            started.set()

    unsubscribe = engine.events.subscribe(note)
    try:
        job = await engine.submit("Hold")
        await started.wait()
    finally:
        unsubscribe()
    return job


async def next_fragment_held(page: Page, pattern: str) -> Route:
    """Hold the page's next request for its live part (to ``pattern``) and return it,
    once sent: the caller lets it go on (``continue_``) when the test has done what must
    happen while it is on its way. Later requests pass."""
    held: asyncio.Queue[Route] = asyncio.Queue()
    holding = [True]

    async def hold(route: Route) -> None:
        if route.request.headers.get("x-dashboard-fragment") == "1" and holding[0]:
            holding[0] = False
            await held.put(route)
        else:
            await route.continue_()

    await page.route(pattern, hold)
    return await asyncio.wait_for(held.get(), PATIENCE_MS / 1000)


def listing_cut_off(engine: AsyncEndpoints, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Make ``engine``'s store unreachable for listings; the real listing, to put back."""
    listing = engine.store.list_jobs  # type: ignore[attr-defined]

    async def unreachable(*args: object, **kwargs: object) -> object:
        raise StoreUnavailableError("cut off", retry_after=1)

    monkeypatch.setattr(engine.store, "list_jobs", unreachable)
    return listing


def fragment_statuses(page: Page) -> list[int]:
    """The statuses of the answers to the page's script asking for its live part, as
    they come."""
    statuses: list[int] = []

    def note(answer: Response) -> None:
        if answer.request.headers.get("x-dashboard-fragment") == "1":
            statuses.append(answer.status)

    page.on("response", note)
    return statuses


def accept_dialogs(page: Page) -> list[str]:
    """Accept every dialog the page opens (a confirm); the list of their questions."""
    asked: list[str] = []

    async def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await dialog.accept()

    page.on("dialog", accept)
    return asked


async def test_the_queues_page_shows_the_counts(
    site: tuple[str, AsyncEndpoints], page: Page
) -> None:
    """With the queues paused: 3 queued in default, 1 in high, shown in their rows."""
    base, engine = site
    await engine.pause()
    for name, queue in (("Ok", "default"), ("Ok", "default"), ("Ok", "default"), ("Ok", "high")):
        await engine.submit(name, {}, queue=queue)
    await page.goto(f"{base}/dashboard/")
    await expect(page.locator('tr[data-queue="default"] td.count-queued')).to_have_text("3")
    await expect(page.locator('tr[data-queue="high"] td.count-queued')).to_have_text("1")
    await expect(page.locator('tr[data-queue="high"]')).to_contain_text("Paused")


async def test_pause_and_resume_from_the_page_and_from_elsewhere(
    site: tuple[str, AsyncEndpoints], page: Page
) -> None:
    """Clicking Pause pauses the queue (shown after the form's round trip); a resume by
    another instance shows on the open page within 2 s, without reloading."""
    base, engine = site
    await page.goto(f"{base}/dashboard/")
    row = page.locator('tr[data-queue="high"]')
    await row.get_by_role("button", name="Pause").click()
    await expect(row).to_contain_text("Paused")
    assert [q.paused for q in await engine.queue_stats()] == [True, False]
    await expect(page.locator(".notice")).to_have_text("Queue high: paused.")
    await engine.resume("high")
    await expect(row).to_contain_text("Active", timeout=LIVE_WITHIN_MS)
    await row.get_by_role("button", name="Pause").click()
    await expect(row).to_contain_text("Paused")
    await row.get_by_role("button", name="Resume").click()
    await expect(row).to_contain_text("Active")
    assert [q.paused for q in await engine.queue_stats()] == [False, False]


async def test_a_running_jobs_cancel_button_cancels_it(
    site: tuple[str, AsyncEndpoints], page: Page
) -> None:
    """A Hold job running; Cancel on its page: the page shows Canceled, the store agrees."""
    base, engine = site
    job = await running_hold(engine)
    await page.goto(f"{base}/dashboard/jobs/{job.id}")
    await expect(page.locator(".job-head .status")).to_have_text("Running")
    await page.get_by_role("button", name="Cancel").click()
    await expect(page.locator(".job-head .status")).to_have_text("Canceled")
    assert (await engine.get_job(job.id)).status is JobStatus.CANCELED  # type: ignore[union-attr]


async def test_a_failed_jobs_requeue_button_runs_it_again(
    site: tuple[str, AsyncEndpoints], page: Page, gate: Gate
) -> None:
    """A Flaky job Failed; listed under Failed with Requeue; requeued it completes, and
    its page shows Completed by itself."""
    base, engine = site
    job = await engine.submit("Flaky")
    await engine.wait_for(job.id, timeout=10)
    gate.flaky_fails = False
    await page.goto(f"{base}/dashboard/jobs?status=Failed")
    row = page.locator(f'tr[data-job="{job.id}"]')
    await expect(row).to_contain_text("RuntimeError")
    await row.get_by_role("button", name="Requeue", exact=True).click()
    notice = f"{str(job.id)[:8]}: The job was queued again."  # names the job acted on
    await expect(page.locator(".notice")).to_have_text(notice)
    await page.goto(f"{base}/dashboard/jobs/{job.id}")
    await expect(page.locator(".job-head .status")).to_have_text("Completed")


async def test_paging_through_the_jobs(site: tuple[str, AsyncEndpoints], page: Page) -> None:
    """110 queued jobs: 50 on the first page, Next to the second and the third (10);
    Previous shows the second page's jobs again, First the first page's; the pager says
    the page's number and how many jobs there are in all."""
    base, engine = site
    await engine.pause()
    for _ in range(110):
        await engine.submit("Ok", {})
    await page.goto(f"{base}/dashboard/jobs?status=Queued")
    rows, pager = page.locator("tr[data-job]"), page.locator(".pager .page-of")
    await expect(rows).to_have_count(50)
    await expect(pager).to_have_text("Page 1 · 110 jobs in all")
    first_page = await rows.first.get_attribute("data-job")
    await page.get_by_role("link", name="Next page »").click()
    await expect(pager).to_have_text("Page 2 · 110 jobs in all")
    second_page = await rows.first.get_attribute("data-job")
    await page.get_by_role("link", name="Next page »").click()
    await expect(rows).to_have_count(10)
    await page.get_by_role("link", name="Previous page").click()
    await expect(pager).to_have_text("Page 2 · 110 jobs in all")
    await expect(rows.first).to_have_attribute("data-job", second_page or "")
    await page.get_by_role("link", name="Previous page").click()
    await expect(rows.first).to_have_attribute("data-job", first_page or "")
    await page.get_by_role("link", name="Next page »").click()
    await page.get_by_role("link", name="Next page »").click()
    await page.get_by_role("link", name="« First page").click()
    await expect(pager).to_have_text("Page 1 · 110 jobs in all")
    await expect(rows.first).to_have_attribute("data-job", first_page or "")


async def test_the_job_page_shows_its_json_and_times(
    site: tuple[str, AsyncEndpoints], page: Page
) -> None:
    """The job JSON is on the page; times read "… ago" with the absolute time on hover,
    in UTC and in the browser's time zone."""
    base, engine = site
    job = await engine.submit("Ok", {"text": "hello"})
    await engine.wait_for(job.id, timeout=10)
    await page.goto(f"{base}/dashboard/jobs/{job.id}")
    json_text = page.locator("#job-json")
    await expect(json_text).to_contain_text(f'"id": "{job.id}"')
    await expect(json_text).to_contain_text('"result": "hello"')
    created = page.locator(".timeline time").first
    await expect(created).to_have_text(re.compile(r"^(just now|\d+ s ago)$"))
    # On hover: the moment in UTC, then in the browser's own time zone.
    await expect(created).to_have_attribute("title", re.compile(r"^[\d: .-]+ UTC · .+$"))


async def test_a_job_due_later_reads_in_hours_and_minutes(
    site: tuple[str, AsyncEndpoints], page: Page
) -> None:
    """The page's script writes times as the server does: a job due in 1 h 59 min reads
    "in 1 h 59 min" (not "in 1 h"), with the absolute time on hover."""
    base, engine = site
    job = await engine.submit("Ok", {}, delay=7170)
    await page.goto(f"{base}/dashboard/jobs?status=Scheduled")
    due = page.locator(f'tr[data-job="{job.id}"] time').first
    await expect(due).to_have_text("in 1 h 59 min")
    await expect(due).to_have_attribute("title", re.compile(r"^[\d: .-]+ UTC · .+$"))


async def test_a_times_hover_names_it_in_the_browsers_own_time_zone_too(
    site: tuple[str, AsyncEndpoints], browser: Browser
) -> None:
    """A browser in Tokyo sees the moment in UTC and in its own zone (nine hours ahead)."""
    base, engine = site
    job = await engine.submit("Ok", {}, delay=7170)
    context = await browser.new_context(timezone_id="Asia/Tokyo", locale="en-GB")
    page = await context.new_page()
    page.set_default_timeout(PATIENCE_MS)
    try:
        await page.goto(f"{base}/dashboard/jobs/{job.id}")
        due = page.locator(".timeline time").nth(1)
        await expect(due).to_have_attribute("title", re.compile(r" UTC · .+ (JST|GMT\+9)$"))
    finally:
        await context.close()


async def test_a_cross_site_form_post_is_refused(
    site: tuple[str, AsyncEndpoints], page: Page
) -> None:
    """A page of another origin (localhost vs 127.0.0.1) posting a cancel: 403, the job
    still waits."""
    base, engine = site
    await engine.pause()
    job = await engine.submit("Ok", {})
    await page.goto(f"{base}/dashboard/")  # the browser has its dashboard token cookie
    other_origin = base.replace("127.0.0.1", "localhost")
    target = f"{base}/dashboard/actions/cancel"
    await page.goto(f"{other_origin}/elsewhere?target={target}&job_id={job.id}")
    async with page.expect_response(target) as answer:
        await page.click("#attack")
    assert (await answer.value).status == 403
    assert (await engine.get_job(job.id)).status is JobStatus.QUEUED  # type: ignore[union-attr]


async def test_authorize_false_answers_404(
    site: tuple[str, AsyncEndpoints], page: Page, gate: Gate
) -> None:
    """Refused by authorize: the pages are Not Found."""
    base, _ = site
    gate.allowed = False
    for path in ("/dashboard/", "/dashboard/jobs", "/dashboard/assets/dashboard.css"):
        answer = await page.goto(f"{base}{path}")
        assert answer is not None and answer.status == 404


async def test_the_page_updates_by_itself_when_a_job_finishes(
    site: tuple[str, AsyncEndpoints], page: Page, gate: Gate
) -> None:
    """The job page of a running Hold job and the running list: when it finishes they
    show it within 2 s, without reloading."""
    base, engine = site
    job = await running_hold(engine)
    await page.goto(f"{base}/dashboard/jobs/{job.id}")
    status = page.locator(".job-head .status")
    await expect(status).to_have_text("Running")
    reloads: list[str] = []
    page.on("framenavigated", lambda frame: reloads.append(frame.url))
    gate.open.set()
    await expect(status).to_have_text("Completed", timeout=LIVE_WITHIN_MS)
    await expect(page.locator("#job-json")).to_contain_text('"result": "released"')
    assert reloads == []


async def test_a_job_page_is_sent_its_live_part_again_only_when_it_changed(
    site: tuple[str, AsyncEndpoints], page: Page, gate: Gate
) -> None:
    """The page asks every second: while the running job does not change the server
    answers 304 (nothing sent), the change (Completed) comes as a 200 and shows within
    2 s, and from then on the finished job is not sent again."""
    base, engine = site
    job = await running_hold(engine)
    answers = fragment_statuses(page)
    await page.goto(f"{base}/dashboard/jobs/{job.id}")
    status = page.locator(".job-head .status")
    await expect(status).to_have_text("Running")

    async def unchanged_twice(since: int) -> bool:
        return answers[since:].count(304) >= 2

    await eventually(lambda: unchanged_twice(0))
    gate.open.set()
    await expect(status).to_have_text("Completed", timeout=LIVE_WITHIN_MS)
    changed = len(answers)
    assert 200 in answers[-2:]
    await eventually(lambda: unchanged_twice(changed))
    assert set(answers[changed:]) == {304}
    await expect(page.locator("#job-json")).to_contain_text('"result": "released"')


async def test_a_change_fetched_while_the_page_is_in_use_is_shown_once_it_is_free(
    site: tuple[str, AsyncEndpoints], page: Page, gate: Gate
) -> None:
    """The job completes while the answer carrying it is on its way and the pointer then
    rests on a link (updates held): that part is not drawn, so its entity tag is not
    kept either; once the pointer moves on the page asks for the part whole again and
    shows Completed (not answered 304 on a part it never showed)."""
    base, engine = site
    job = await running_hold(engine)
    slow = asyncio.Event()
    delayed: list[str] = []

    async def delay(route: Route) -> None:
        if route.request.headers.get("x-dashboard-fragment") == "1" and slow.is_set():
            delayed.append(route.request.url)
            await asyncio.sleep(0.6)
        await route.continue_()

    await page.route("**/dashboard/jobs/*", delay)
    fragments = fragment_statuses(page)
    await page.goto(f"{base}/dashboard/jobs/{job.id}")
    status = page.locator(".job-head .status")
    await expect(status).to_have_text("Running")

    async def answered(kind: int) -> bool:
        return kind in fragments

    await eventually(lambda: answered(304))  # the Running part's tag is held
    gate.open.set()
    await engine.wait_for(job.id, timeout=10)
    slow.set()

    async def on_its_way() -> bool:
        return bool(delayed)

    await eventually(on_its_way)  # the Completed part is on its way
    await page.locator("#live a").first.hover()  # the page is in use when it arrives
    await page.wait_for_timeout(900)
    await expect(status).to_have_text("Running")
    slow.clear()
    await page.mouse.move(0, 0)
    await expect(status).to_have_text("Completed", timeout=LIVE_WITHIN_MS)


async def test_a_page_whose_access_ends_says_so_rather_than_reconnecting(
    site: tuple[str, AsyncEndpoints], page: Page, gate: Gate
) -> None:
    """Once `authorize` says no to the open page's browser (signed out), the page's next
    refresh meets the app's own 404: the corner says *no access* within 2 s, the list is
    greyed, and it stops asking (not *reconnecting* forever, as for an outage)."""
    base, _ = site
    asked: list[str] = []
    page.on(
        "request",
        lambda request: (
            asked.append(request.url)
            if request.headers.get("x-dashboard-fragment") == "1"
            else None
        ),
    )
    await page.goto(f"{base}/dashboard/")
    state = page.locator("#live-state")
    await expect(state).to_have_text("live")
    gate.allowed = False
    await expect(state).to_have_text("no access", timeout=LIVE_WITHIN_MS)
    await expect(page.locator("#live")).to_have_class(re.compile(r"\bstale\b"))
    count = len(asked)
    await page.wait_for_timeout(2500)  # two refresh periods: none is sent
    assert len(asked) == count


async def test_job_data_never_runs_as_script(site: tuple[str, AsyncEndpoints], page: Page) -> None:
    """A result holding <script> and an error holding an onerror image: shown as text on
    every page, and nothing runs."""
    base, engine = site
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    done = await engine.submit("Ok", {"text": "<script>window.pwned = 1; alert(1)</script>"})
    failed = await engine.submit("Broken", tenant="<img src=x onerror=alert(2)>")
    await engine.wait_for(done.id, timeout=10)
    await engine.wait_for(failed.id, timeout=10)
    for path in ("/jobs", f"/jobs/{done.id}", f"/jobs/{failed.id}", "/jobs?status=Failed"):
        await page.goto(f"{base}/dashboard{path}")
        await asyncio.sleep(0)  # let any injected script have its turn (none should exist)
        assert await page.evaluate("window.pwned") is None
    await expect(page.locator("tr[data-job]").first).to_contain_text("<img src=x")
    await page.goto(f"{base}/dashboard/jobs/{done.id}")
    await expect(page.locator(".result")).to_contain_text("<script>window.pwned")
    assert dialogs == []


async def test_direction_controls_in_job_data_show_as_escapes_and_filters_keep_them(
    site: tuple[str, AsyncEndpoints], page: Page
) -> None:
    """A tenant "\\u202eemca-live" (a right-to-left override: it would read "evil-acme")
    and a result holding one: the list, the job page and the hover show the override as
    the escape ``\\u202e``, never as a character that reorders the text; the tenant
    filter keeps the real value, so the filtered list finds the job."""
    base, engine = site
    tenant = "\u202eemca-live"
    job = await engine.submit("Ok", {"text": "paid \u202e0001$"}, tenant=tenant)
    await engine.wait_for(job.id, timeout=10)
    await page.goto(f"{base}/dashboard/jobs")
    row = page.locator(f'tr[data-job="{job.id}"]')
    await expect(row).to_contain_text("\\u202eemca-live")
    assert "\u202e" not in await row.inner_text()
    assert await row.locator("td.label[title]").last.get_attribute("title") == "\\u202eemca-live"
    await page.goto(f"{base}/dashboard/jobs/{job.id}")
    await expect(page.locator(".result")).to_contain_text("paid \\u202e0001$")
    assert "\u202e" not in await page.locator("main").inner_text()
    await page.goto(f"{base}/dashboard/jobs?{urlencode({'tenant': tenant})}")
    assert await page.locator('input[name="tenant"]').input_value() == tenant
    await page.locator("form.filters button[type=submit]").click()
    await expect(page.locator(f'tr[data-job="{job.id}"]')).to_have_count(1)


async def test_a_batch_page_follows_its_jobs(
    site: tuple[str, AsyncEndpoints], page: Page, gate: Gate
) -> None:
    """A batch of two Hold jobs: its page shows Running, then Finished with both jobs
    Completed within 2 s of their end, without reloading."""
    base, engine = site
    batch = await engine.submit_batch([JobSpec("Hold"), JobSpec("Hold")], tenant="acme")
    await page.goto(f"{base}/dashboard/batches")
    await page.get_by_role("link", name=str(batch.id)[:8]).click()
    status = page.locator(".job-head .status")
    await expect(status).to_have_text("Running")
    await expect(page.locator("tr[data-job]")).to_have_count(2)
    gate.open.set()
    await expect(status).to_have_text("Finished", timeout=LIVE_WITHIN_MS)
    await expect(page.locator("tr[data-job] .status-completed")).to_have_count(2)


async def test_the_list_waits_while_the_pointer_rests_on_a_button(
    site: tuple[str, AsyncEndpoints], page: Page
) -> None:
    """The failed list with the pointer on a job's Requeue button: another job failing
    does not redraw the list (it would put another job's button under the pointer, and
    the click would requeue that one); once the pointer leaves, the list catches up."""
    base, engine = site
    await engine.wait_for((await engine.submit("Broken")).id, timeout=10)
    await page.goto(f"{base}/dashboard/jobs?status=Failed")
    rows = page.locator("tr[data-job]")
    await expect(rows).to_have_count(1)
    await page.get_by_role("button", name="Requeue", exact=True).hover()
    second = await engine.wait_for((await engine.submit("Broken")).id, timeout=10)
    assert second.status is JobStatus.FAILED
    await page.wait_for_timeout(2 * LIVE_WITHIN_MS)  # two refreshes would have come
    await expect(rows).to_have_count(1)
    await page.mouse.move(0, 0)
    await expect(rows).to_have_count(2, timeout=LIVE_WITHIN_MS)


async def test_requeue_selected_runs_the_ticked_failed_jobs_again(
    site: tuple[str, AsyncEndpoints], page: Page, gate: Gate
) -> None:
    """Three Flaky jobs Failed: the header's box ticks all three and unticks them; two
    ticked stay ticked while the live list redraws (another job fails meanwhile); the
    button counts them, asks first, and the two run again and complete, the third is
    left Failed."""
    base, engine = site
    jobs = [await engine.submit("Flaky") for _ in range(3)]
    for job in jobs:
        assert (await engine.wait_for(job.id, timeout=10)).status is JobStatus.FAILED
    gate.flaky_fails = False
    await page.goto(f"{base}/dashboard/jobs?status=Failed")
    rows = page.locator("tr[data-job]")
    await expect(rows).to_have_count(3)
    button = page.get_by_role("button", name="Requeue selected")
    every = page.get_by_label("Select every job on this page a bulk action takes")
    await every.check()
    await expect(button).to_have_text("Requeue selected (3)")
    await every.uncheck()
    await expect(page.locator('input[name="job_id"]:checked')).to_have_count(0)
    await expect(button).to_be_disabled()  # nothing ticked: nothing to ask about
    picked, left = jobs[:2], jobs[2]
    for job in picked:
        await page.locator(f'tr[data-job="{job.id}"] input[type=checkbox]').check()
    await expect(button).to_have_text("Requeue selected (2)")
    await page.mouse.move(0, 0)  # the pointer on a box holds the updates
    await engine.wait_for((await engine.submit("Broken")).id, timeout=10)
    await expect(rows).to_have_count(4, timeout=LIVE_WITHIN_MS)  # redrawn
    ticked = page.locator('input[name="job_id"]:checked')
    assert sorted(await ticked.evaluate_all("boxes => boxes.map(b => b.value)")) == sorted(
        str(job.id) for job in picked
    )
    await expect(button).to_have_text("Requeue selected (2)")
    asked = accept_dialogs(page)
    await button.click()
    await expect(page.locator(".notice")).to_have_text("2 jobs queued again.")
    assert asked == ["Queue the selected Failed or Canceled jobs again?"]
    for job in picked:
        assert (await engine.wait_for(job.id, timeout=10)).status is JobStatus.COMPLETED
    assert (await engine.get_job(left.id)).status is JobStatus.FAILED  # type: ignore[union-attr]


async def test_cancel_selected_cancels_the_ticked_waiting_and_running_jobs(
    site: tuple[str, AsyncEndpoints], page: Page
) -> None:
    """A running Hold job and three waiting behind a paused queue, plus a Completed one:
    the header's box ticks the four that can be canceled (the Completed one has no box),
    the button counts them and asks first, and all four end Canceled."""
    base, engine = site
    done = await engine.wait_for((await engine.submit("Ok", {"text": "a"})).id, timeout=10)
    running = await running_hold(engine)
    await engine.pause()
    waiting = [await engine.submit("Hold") for _ in range(3)]
    await page.goto(f"{base}/dashboard/jobs")
    await expect(page.locator("tr[data-job]")).to_have_count(5)
    await expect(page.locator(f'tr[data-job="{done.id}"] input[type=checkbox]')).to_have_count(0)
    await page.get_by_label("Select every job on this page a bulk action takes").check()
    button = page.get_by_role("button", name="Cancel selected")
    await expect(button).to_have_text("Cancel selected (4)")
    asked = accept_dialogs(page)
    await button.click()
    await expect(page.locator(".notice")).to_have_text("4 jobs canceled.")
    assert asked == ["Cancel the selected waiting or running jobs? Running ones are stopped."]
    for job in (running, *waiting):
        found = await engine.get_job(job.id)
        assert found is not None and found.status is JobStatus.CANCELED, job.id
    await expect(page.locator('tr[data-status="Canceled"]')).to_have_count(4)


async def test_each_bulk_button_counts_its_own_boxes_and_a_job_changing_side_drops_out(
    site: tuple[str, AsyncEndpoints], page: Page
) -> None:
    """A Failed job and two waiting ones on one page: ticking one of each counts one on
    each button. The ticked waiting job is then canceled elsewhere: when the list redraws
    its box (now a requeue box) is not ticked, so Requeue still counts one (the Failed
    job) and Cancel none; a tick is kept for the action it was given to only."""
    base, engine = site
    failed = await engine.wait_for((await engine.submit("Broken")).id, timeout=10)
    await engine.pause()
    first, second = [await engine.submit("Hold") for _ in range(2)]
    await page.goto(f"{base}/dashboard/jobs")
    await expect(page.locator("tr[data-job]")).to_have_count(3)
    requeue = page.get_by_role("button", name="Requeue selected")
    cancel = page.get_by_role("button", name="Cancel selected")
    for job in (failed, first):
        await page.locator(f'tr[data-job="{job.id}"] input[type=checkbox]').check()
    await expect(requeue).to_have_text("Requeue selected (1)")
    await expect(cancel).to_have_text("Cancel selected (1)")
    await page.mouse.move(0, 0)  # the pointer on a box holds the updates
    await engine.cancel(first.id)
    box = page.locator(f'tr[data-job="{first.id}"] input[type=checkbox]')
    await expect(box).to_have_attribute("form", "requeue-selected", timeout=LIVE_WITHIN_MS)
    await expect(box).not_to_be_checked()
    await expect(requeue).to_have_text("Requeue selected (1)")
    await expect(cancel).to_have_text("Cancel selected")
    assert (await engine.get_job(second.id)).status is JobStatus.QUEUED  # type: ignore[union-attr]


async def test_a_job_page_says_so_when_its_job_is_gone(page: Page, gate: Gate) -> None:
    """The page of a completed job whose retention ends while it is open: within 2 s the
    page says there is no such job (not "reconnecting" forever), and stops asking (no
    404 a second in the console)."""
    from async_endpoints import InMemoryJobStore

    app, engine = make_app(gate, store=InMemoryJobStore(max_retained=1))
    async with served(app) as base:
        done = await engine.wait_for((await engine.submit("Ok", {"text": "a"})).id, timeout=10)
        await page.goto(f"{base}/dashboard/jobs/{done.id}")
        await expect(page.locator(".job-head .status")).to_have_text("Completed")
        await engine.wait_for((await engine.submit("Ok", {"text": "b"})).id, timeout=10)
        assert await engine.get_job(done.id) is None  # dropped: one job retained
        await expect(page.locator("#live")).to_contain_text(
            "There is no such job", timeout=LIVE_WITHIN_MS
        )
        await expect(page.locator("#live-state")).to_have_text("stopped")
        asked: list[str] = []
        page.on("request", lambda request: asked.append(request.url))
        await page.wait_for_timeout(2 * LIVE_WITHIN_MS)  # two refreshes would have come
        assert asked == []
        gate.open.set()


async def test_a_page_that_never_existed_says_so_and_does_not_follow_anything(
    site: tuple[str, AsyncEndpoints], page: Page
) -> None:
    """An unknown dashboard path, and the page of a job id never submitted: each says there
    is no such page or job, its corner shows no live state (not "stopped", as if something
    it followed had gone), and it asks the server nothing more."""
    base, _ = site
    for path, says in [
        ("/dashboard/no-such-page", "no such page"),
        (f"/dashboard/jobs/{uuid.uuid4()}", "There is no such job"),
    ]:
        answer = await page.goto(base + path)
        assert answer is not None and answer.status == 404
        await expect(page.locator("#live")).to_contain_text(says)
        await expect(page.locator("#live-state")).to_have_count(0)
        asked: list[str] = []
        page.on("request", lambda request, asked=asked: asked.append(request.url))
        await page.wait_for_timeout(2 * LIVE_WITHIN_MS)  # two refreshes would have come
        assert asked == []


async def test_wide_lists_scroll_inside_their_box_on_a_laptop_screen(
    site: tuple[str, AsyncEndpoints], page: Page
) -> None:
    """At 1366 px wide, the list of every job (a long tenant name among them) never makes
    the page wider than the screen: the table scrolls in its own box, long labels are cut
    with the whole text on hover."""
    base, engine = site
    tenant = "a-tenant-with-a-rather-long-name-" + "x" * 40
    await engine.wait_for((await engine.submit("Ok", {}, tenant=tenant)).id, timeout=10)
    await page.set_viewport_size({"width": 1366, "height": 768})
    await page.goto(f"{base}/dashboard/jobs")
    await expect(page.locator("tr[data-job]")).to_have_count(1)
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1366
    cell = page.locator(f'td[title="{tenant}"]')
    await expect(cell).to_have_count(1)
    box = await cell.bounding_box()
    assert box is not None and box["width"] < 300  # cut at 14em, not 73 characters wide


async def test_a_page_loads_without_a_console_error_or_a_failed_request(
    site: tuple[str, AsyncEndpoints], page: Page
) -> None:
    """The queues page and a jobs page, loaded fresh: every request the browser makes (its
    icon too) succeeds, and the console shows no error."""
    base, _ = site
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("response", lambda answer: answer.status >= 400 and errors.append(answer.url))
    for path in ("/dashboard/", "/dashboard/jobs"):
        await page.goto(f"{base}{path}")
        await expect(page.locator("#live-state")).to_have_text("live")
        await page.wait_for_load_state("networkidle")
    assert errors == []


async def test_without_javascript_the_page_does_not_say_it_is_live(
    site: tuple[str, AsyncEndpoints], browser: Browser
) -> None:
    """The corner's "live" is the script's to say: with JavaScript off nothing updates the
    page, and it does not claim to (the page, its forms and links are all there)."""
    base, _ = site
    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()
    page.set_default_timeout(PATIENCE_MS)
    try:
        await page.goto(f"{base}/dashboard/jobs")
        await expect(page.get_by_role("link", name="Failed")).to_be_visible()
        await expect(page.locator("#live-state")).to_be_hidden()
    finally:
        await context.close()


async def test_without_javascript_pause_all_and_requeue_selected_ask_first_on_a_page(
    site: tuple[str, AsyncEndpoints], browser: Browser
) -> None:
    """With JavaScript off, Pause all queues answers a page asking the question: "No, go
    back" leads back with nothing paused, "Yes" pauses every queue; Requeue selected asks
    the same way and then queues again exactly the ticked jobs."""
    base, engine = site
    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()
    page.set_default_timeout(PATIENCE_MS)
    try:
        await page.goto(f"{base}/dashboard/")
        pause_all = page.get_by_role("button", name="Pause all queues")
        await pause_all.click()
        await expect(page.locator("h1")).to_have_text("Are you sure?")
        await expect(page.locator(".notice")).to_contain_text("Pause every queue?")
        await page.get_by_role("link", name="No, go back").click()
        await expect(page.locator("h1")).to_have_text("Queues")
        assert not any(stats.paused for stats in await engine.queue_stats())
        await pause_all.click()
        await page.get_by_role("button", name="Yes, go ahead").click()
        await expect(page.locator(".notice")).to_have_text("Every queue is paused.")
        assert all(stats.paused for stats in await engine.queue_stats())
        await engine.resume()
        failed = [await engine.submit("Broken") for _ in range(3)]
        for job in failed:
            assert (await engine.wait_for(job.id, timeout=10)).status is JobStatus.FAILED
        await page.goto(f"{base}/dashboard/jobs?status=Failed")
        for job in failed[:2]:
            await page.locator(f'tr[data-job="{job.id}"] input[type=checkbox]').check()
        await page.get_by_role("button", name="Requeue selected").click()
        await expect(page.locator(".notice")).to_contain_text(
            "Queue the 2 selected Failed or Canceled jobs again?"
        )
        await page.get_by_role("button", name="Yes, go ahead").click()
        await expect(page.locator(".notice")).to_contain_text("2 jobs queued again.")
        statuses = [(await engine.get_job(job.id)) for job in failed]
        assert [found.status if found else None for found in statuses][2] is JobStatus.FAILED
        assert all(found and found.retry_count == 0 for found in statuses[:2])
    finally:
        await context.close()


async def test_a_running_jobs_progress_changes_on_the_open_pages_without_reloading(
    site: tuple[str, AsyncEndpoints], page: Page, gate: Gate
) -> None:
    """A running job reports {"done": n, "of": 4} step by step: its own page and the
    queues page show each step within 2 s, as JSON text and as a bar that grows (25 %,
    50 %, 75 %), with no navigation."""
    base, engine = site
    job = await engine.submit("Steps")
    reloads: list[str] = []
    page.on("framenavigated", lambda frame: reloads.append(frame.url))
    places = [
        (f"{base}/dashboard/jobs/{job.id}", "table.facts td.progress"),
        (f"{base}/dashboard/", f'tr[data-job="{job.id}"] td.progress'),
    ]
    for number, (address, cell) in enumerate(places):
        await page.goto(address)
        loaded = len(reloads)
        text, bar = page.locator(f"{cell} code"), page.locator(f"{cell} svg.progress-bar")
        if number == 0:
            await expect(page.locator(".job-head .status")).to_have_text("Running")
        for done in range(1 + 2 * number, 3 + number):
            gate.step.put_nowait(None)
            said = f'{{"done": {done}, "of": 4}}'
            await expect(text).to_have_text(said, timeout=LIVE_WITHIN_MS)
            await expect(bar).to_have_attribute("aria-label", f"{25 * done} % done")
            width = await bar.locator("rect.done").evaluate("r => r.getBBox().width")
            assert width == pytest.approx(25 * done)
        assert len(reloads) == loaded  # the script redrew the page's live part only
    gate.open.set()


async def test_a_running_jobs_cancel_button_stays_on_a_laptop_screen_beside_long_progress(
    site: tuple[str, AsyncEndpoints], page: Page
) -> None:
    """At 1366 px, a running job whose progress is long: the queues page is no wider than
    the screen, the Cancel button is on it, and the progress reads as reported (markup
    and non-ASCII as text), whole on hover."""
    base, engine = site
    message = "step 46 <b>bold</b> ✓ " + "and a long explanation " * 12
    job = await engine.submit("Report", {"text": message})
    await page.goto(f"{base}/dashboard/")
    cell = page.locator(f'tr[data-job="{job.id}"] td.progress code')
    await expect(cell).to_contain_text("step 46 <b>bold</b> ✓", timeout=LIVE_WITHIN_MS)
    assert message in (await cell.get_attribute("title") or "")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 1366
    cancel = page.locator(f'tr[data-job="{job.id}"]').get_by_role("button", name="Cancel")
    box = await cancel.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 1366
    await cancel.click()
    await expect(page.locator(".notice")).to_contain_text("The job was canceled.")


async def test_a_batch_page_with_a_long_job_name_fits_a_laptop_screen(
    gate: Gate, page: Page
) -> None:
    """A batch whose jobs have a 130-character name: at 1366 px its page is no wider than
    the screen and each job's Cancel button is on it; the name is cut, whole on hover."""
    app, engine = make_app(gate)
    long_name = "ImportTheQuarterlyLedgerFromTheRegionalWarehouse" * 3

    async def ledger(ctx: AsyncContext[None]) -> None:
        return None

    engine.add_handler(ledger, name=long_name)
    await engine.pause()  # the batch's jobs stay Queued, each with its Cancel button
    async with served(app) as base:
        batch = await engine.submit_batch([JobSpec(long_name) for _ in range(3)])
        await page.goto(f"{base}/dashboard/batches/{batch.id}")
        await expect(page.locator("tr[data-job]")).to_have_count(3)
        assert await page.evaluate("document.documentElement.scrollWidth") <= 1366
        box = page.locator("#live .scroll").last  # the jobs' table fits its box too
        widths = await box.evaluate("b => [b.scrollWidth, b.clientWidth]")
        assert widths[0] <= widths[1], widths
        await expect(page.locator(f'td[title="{long_name}"]')).to_have_count(3)
        for button in await page.get_by_role("button", name="Cancel").all():
            box = await button.bounding_box()
            assert box is not None and box["x"] + box["width"] <= 1366
        gate.open.set()


async def test_the_batches_list_fits_a_laptop_screen_with_cancel_beside_finished(
    gate: Gate, page: Page
) -> None:
    """A running batch of a long tenant (with its Cancel batch button) and a finished one
    of hundreds of jobs: at 1366 px the list fits its box (no column under the pinned
    button, Finished readable); wider screens show Created too."""
    app, engine = make_app(gate)
    async with served(app) as base:
        done = await engine.submit_batch([JobSpec("Ok", {}) for _ in range(250)], tenant="acme")

        async def finished() -> bool:
            batch = await engine.get_batch(done.id)
            return batch is not None and batch.status.value == "Finished"

        await eventually(finished, timeout=30)
        await engine.pause()  # the next batch's jobs stay Queued: it runs, with its button
        tenant = "northwind-traders-europe-" + "x" * 30
        running = await engine.submit_batch([JobSpec("Ok", {}) for _ in range(3)], tenant=tenant)
        await page.goto(f"{base}/dashboard/batches")
        await expect(page.locator("tr[data-batch]")).to_have_count(2)
        box = page.locator("#live .scroll")
        assert await box.evaluate("b => b.scrollWidth <= b.clientWidth")
        finished = page.get_by_role("columnheader", name="Finished")
        cancel = page.locator(f'tr[data-batch="{running.id}"]').get_by_role("button")
        head, button = await finished.bounding_box(), await cancel.bounding_box()
        assert head is not None and button is not None
        assert head["x"] + head["width"] <= button["x"]
        await page.set_viewport_size({"width": 1600, "height": 900})
        await expect(page.get_by_role("columnheader", name="Created")).to_be_visible()
        gate.open.set()


async def test_failed_jobs_with_long_names_keep_requeue_in_view_on_a_laptop_screen(
    gate: Gate, page: Page
) -> None:
    """Failed jobs with a long name, a long tenant and an error quoting a long unbroken
    token: at 1366 px the dead-letter list fits its box (no sideways scrolling to reach
    Requeue), and the job's own page, title and error wrapped, is no wider than the
    screen."""
    app, engine = make_app(gate)
    long_name = "ReconcileTheQuarterlyLedgerOfTheRegionalWarehouse" * 2
    token = "eyJhbGciOiJIUzI1NiJ9." + "A" * 180

    async def reconcile(ctx: AsyncContext[None]) -> None:
        raise RuntimeError(f"upstream refused the token {token}")

    engine.add_handler(reconcile, name=long_name)
    async with served(app) as base:
        tenant = "northwind-traders-europe-" + "x" * 30
        jobs = [await engine.submit(long_name, tenant=tenant) for _ in range(3)]
        for job in jobs:
            assert (await engine.wait_for(job.id, timeout=10)).status is JobStatus.FAILED
        await page.goto(f"{base}/dashboard/jobs?status=Failed")
        await expect(page.locator("tr[data-job]")).to_have_count(3)
        box = page.locator("#live .scroll")
        assert await box.evaluate("b => b.scrollWidth <= b.clientWidth")
        edge = await box.bounding_box()
        assert edge is not None
        for button in await page.get_by_role("button", name="Requeue", exact=True).all():
            place = await button.bounding_box()
            assert place is not None and place["x"] + place["width"] <= edge["x"] + edge["width"]
        await page.goto(f"{base}/dashboard/jobs/{jobs[0].id}")
        await expect(page.locator(".error-box")).to_contain_text(token[:40])
        assert await page.evaluate("document.documentElement.scrollWidth") <= 1366
        gate.open.set()


async def test_the_running_list_with_long_progress_fits_a_laptop_screen(
    gate: Gate, page: Page
) -> None:
    """Running jobs reporting long progress, of a long tenant: at 1366 px the list of
    running jobs fits its box, with no Status column (every row would say Running) and
    each row's Cancel button right of its Error cell, not over it."""
    app, engine = make_app(gate, max_concurrency=4)
    async with served(app) as base:
        tenant = "northwind-traders-europe-" + "x" * 30
        text = "step 123 of 456: importing ledger lines " + "x" * 80
        jobs = [await engine.submit("Report", {"text": text}, tenant=tenant) for _ in range(3)]
        for job in jobs:
            await eventually(lambda job=job: _reported(engine, job.id))
        await page.goto(f"{base}/dashboard/jobs?status=InProgress")
        await expect(page.locator("tr[data-job]")).to_have_count(3)
        await expect(page.get_by_role("columnheader", name="Status")).to_have_count(0)
        box = page.locator("#live .scroll")
        widths = await box.evaluate("b => [b.scrollWidth, b.clientWidth]")
        assert widths[0] <= widths[1], widths
        for row in await page.locator("tr[data-job]").all():
            error = await row.locator("td.error").bounding_box()
            cancel = await row.get_by_role("button", name="Cancel").bounding_box()
            assert error is not None and cancel is not None
            assert error["x"] + error["width"] <= cancel["x"] + 1
        gate.open.set()


async def test_a_list_of_every_status_with_long_labels_fits_a_laptop_screen(
    gate: Gate, page: Page
) -> None:
    """Failed and Completed jobs together (every column: created, started, finished,
    retries, error, Requeue) with a long name, tenant and queue: at 1366 px the list fits
    its box, so Requeue is in view without scrolling sideways."""
    queue = "q<b>\"odd'&\u00fc-" + "x" * 30
    app, engine = make_app(gate, queues=("default", queue))
    long_name = "N\u00e9v<script>alert('x')</script>" + "y" * 40

    async def fails(ctx: AsyncContext[None]) -> None:
        raise RuntimeError('"><img src=x onerror=alert(1)> ' + "z" * 60)

    async def works(ctx: AsyncContext[None]) -> str:
        return "ok"

    engine.add_handler(fails, name=long_name)
    engine.add_handler(works, name=long_name + "-ok")
    async with served(app) as base:
        tenant = "\u00fc" * 60
        jobs = [
            await engine.submit(name, tenant=tenant, queue=queue)
            for name in (long_name, long_name + "-ok") * 2
        ]
        for job in jobs:
            await engine.wait_for(job.id, timeout=10)
        await page.goto(f"{base}/dashboard/jobs")
        await expect(page.locator("tr[data-job]")).to_have_count(4)
        box = page.locator("#live .scroll")
        widths = await box.evaluate("b => [b.scrollWidth, b.clientWidth]")
        assert widths[0] <= widths[1], widths
        gate.open.set()


async def test_on_a_narrow_screen_no_button_covers_the_error_and_scrolling_reaches_it(
    site: tuple[str, AsyncEndpoints], browser: Browser
) -> None:
    """At 800 px the failed list is wider than its box: the columns that say least give
    way, nothing is pinned over the error (the dead letter's point: each row's error cell
    is what the browser finds at its middle), and scrolling the list sideways brings each
    row's Requeue button into the box."""
    base, engine = site
    for _ in range(2):
        await engine.wait_for((await engine.submit("Broken")).id, timeout=10)
    context = await browser.new_context(viewport={"width": 800, "height": 600})
    page = await context.new_page()
    page.set_default_timeout(PATIENCE_MS)
    try:
        await page.goto(f"{base}/dashboard/jobs?status=Failed")
        await expect(page.locator("tr[data-job]")).to_have_count(2)
        await expect(page.locator("th.wide-only").first).to_be_hidden()
        for cell in await page.locator("td.error").all():
            await expect(cell).to_contain_text("RuntimeError")
            uncovered = await cell.evaluate(
                """c => { const r = c.getBoundingClientRect();
                   const hit = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
                   return r.right <= window.innerWidth ? c.contains(hit) : true; }"""
            )
            assert uncovered
        # Scrolled and measured in one step: a live update may replace the list between
        # two calls (a box read after it has none).
        edges = await page.locator("#live .scroll").evaluate(
            """b => { b.scrollLeft = b.scrollWidth;
               const right = b.getBoundingClientRect().right;
               return [...b.querySelectorAll("button")]
                 .filter(button => button.textContent.trim() === "Requeue")
                 .map(button => [button.getBoundingClientRect().right, right]); }"""
        )
        assert len(edges) == 2
        assert all(button <= box + 0.5 for button, box in edges)
    finally:
        await context.close()


async def test_on_a_phone_the_header_wraps_and_the_page_never_runs_off_the_screen(
    site: tuple[str, AsyncEndpoints], browser: Browser
) -> None:
    """At 390 px (a phone) every navigation link is inside the screen and the page is no
    wider than it, on the queues page, a job's page (one whose progress is long too), the
    jobs list and a batch's page (wide tables scroll in their own box); the buttons an
    operator acts with (a queue's Pause, a running job's Cancel, Cancel batch) are in view
    without scrolling sideways, and a long progress value scrolls in its own box."""
    base, engine = site
    await engine.upsert_schedule("nightly", "Hold", "0 3 * * *")
    job = await engine.wait_for((await engine.submit("Broken")).id, timeout=10)
    batch = await engine.submit_batch([JobSpec("Hold") for _ in range(2)], tenant="globex")
    long = await engine.submit("Report", {"text": "y" * 3000})
    await eventually(lambda: _reported(engine, long.id))
    context = await browser.new_context(viewport={"width": 390, "height": 844})
    page = await context.new_page()
    page.set_default_timeout(PATIENCE_MS)
    pages = (
        "/dashboard/",
        f"/dashboard/jobs/{job.id}",
        f"/dashboard/jobs/{long.id}",
        "/dashboard/jobs",
        f"/dashboard/batches/{batch.id}",
    )
    try:
        for path in pages:
            await page.goto(base + path)
            assert await page.evaluate("document.documentElement.scrollWidth") <= 390, path
            links = await page.locator("header nav a").all()
            assert len(links) >= 5
            for link in links:
                place = await link.bounding_box()
                assert place is not None and place["x"] + place["width"] <= 390, path
        for path, button in (
            ("/dashboard/", page.locator('tr[data-queue="high"]').get_by_role("button")),
            ("/dashboard/", page.locator(f'tr[data-job="{long.id}"]').get_by_role("button")),
            (f"/dashboard/batches/{batch.id}", page.get_by_role("button", name="Cancel batch")),
        ):
            await page.goto(base + path)
            place = await button.bounding_box()
            assert place is not None and place["x"] + place["width"] <= 390, path
        await page.goto(f"{base}/dashboard/jobs/{long.id}")
        progress = page.locator("table.facts td.progress code")
        assert await progress.evaluate("b => b.scrollHeight > b.clientHeight")  # scrolls
        assert (await progress.bounding_box() or {"height": 1e9})["height"] <= 400
    finally:
        await context.close()


async def _reported(engine: AsyncEndpoints, job_id: uuid.UUID) -> bool:
    found = await engine.store.get(job_id)
    return found is not None and found.progress is not None


async def test_an_action_says_it_is_working_and_then_that_a_silent_store_may_have_applied_it(
    site: tuple[str, AsyncEndpoints], page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pause while the store is slow: the button says "Working…" until the answer; when
    the store then does not answer, the notice says the action may or may not have been
    applied (a write can be applied and its answer lost), never that nothing changed."""
    base, engine = site
    answered = asyncio.Event()

    async def silent(*args: object, **kwargs: object) -> object:
        await answered.wait()
        raise StoreUnavailableError("timed out", retry_after=1)

    # What the button says once the page's own submit handler ran, told from inside the
    # page (the page is then on its way to the form's answer: Playwright's locators and
    # evaluations wait for that navigation, which waits for the store).
    said: asyncio.Queue[str] = asyncio.Queue()
    await page.expose_function("noteButton", said.put_nowait)
    await page.goto(f"{base}/dashboard/")
    await page.evaluate(
        """() => document.addEventListener("submit", (event) => {
             const b = event.target.querySelector('button[type="submit"]');
             window.noteButton(b.getAttribute("aria-busy") + " " + b.textContent);
           })"""
    )
    monkeypatch.setattr(engine.store, "pause", silent)
    button = page.locator('tr[data-queue="high"]').get_by_role("button", name="Pause")
    try:
        await button.click(no_wait_after=True)  # the form's answer waits for the store
        async with asyncio.timeout(PATIENCE_MS / 1000):
            assert await said.get() == "true Working…"
    finally:
        answered.set()  # the request ends either way (the server waits for it to stop)
    notice = page.locator(".notice")
    await expect(notice).to_contain_text("may or may not have been applied")
    await expect(notice).not_to_contain_text("nothing was changed")


async def test_an_action_whose_answer_never_comes_frees_the_page_after_its_wait(
    site: tuple[str, AsyncEndpoints], page: Page
) -> None:
    """The action is answered with no page (204: the browser stays on this one, as after
    a stopped navigation): the button reads "Working…" and a second click sends nothing;
    30 s later (the page's clock run on) the button is itself again and a click acts."""
    base, engine = site
    await page.clock.install()
    await page.goto(f"{base}/dashboard/")
    dropped: list[str] = []

    async def drop(route: Any) -> None:
        dropped.append(route.request.url)
        await route.fulfill(status=204)

    await page.route("**/actions/pause", drop)
    row = page.locator('tr[data-queue="high"]')
    await row.get_by_role("button", name="Pause").click(no_wait_after=True)
    await expect(row.locator('button[aria-busy="true"]')).to_have_text("Working…")
    await row.locator('button[aria-busy="true"]').click(no_wait_after=True)
    assert len(dropped) == 1
    await page.clock.run_for(31_000)
    await expect(row.locator("button[aria-busy]")).to_have_count(0)
    await page.unroute("**/actions/pause")
    await row.get_by_role("button", name="Pause").click()
    await expect(row).to_contain_text("Paused")
    assert [q.paused for q in await engine.queue_stats()] == [True, False]


async def test_the_schedules_page_fits_a_laptop_screen_with_long_ids(
    site: tuple[str, AsyncEndpoints], page: Page
) -> None:
    """A schedule with an 86-character id and an 80-character tenant: at 1366 px
    the table fits its box, the next run in view."""
    base, engine = site
    await engine.upsert_schedule("purge-" + "x" * 80, "Hold", "0 3 * * *", tenant="t" * 80)
    await page.goto(f"{base}/dashboard/schedules")
    box = page.locator("#live .scroll")
    assert await box.evaluate("b => b.scrollWidth <= b.clientWidth")
    await expect(page.locator("tbody time").first).to_be_in_viewport()


async def test_an_actions_notice_is_told_once_not_again_on_reload(
    site: tuple[str, AsyncEndpoints], page: Page
) -> None:
    """After Pause the page says "Queue high: paused." with the notice codes gone from its
    address (the filters kept): reloading it, or a bookmark of it, tells nothing again."""
    base, _ = site
    await page.goto(f"{base}/dashboard/?x=1")
    await page.locator('tr[data-queue="high"]').get_by_role("button", name="Pause").click()
    await expect(page.locator(".notice")).to_have_text("Queue high: paused.")
    assert page.url == f"{base}/dashboard/?x=1"
    await page.reload()
    await expect(page.locator('tr[data-queue="high"]')).to_contain_text("Paused")
    await expect(page.locator(".notice")).to_have_count(0)


async def test_a_page_the_store_could_not_fill_comes_back_whole(
    gate: Gate, page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A jobs page loaded while the store is unreachable (503) says so and is not shown as
    live; once the store answers, the page comes back whole by itself (its title and its
    filters, not only the list), within 2 s."""
    app, engine = make_app(gate)
    listing = listing_cut_off(engine, monkeypatch)
    async with served(app) as base:
        await page.goto(f"{base}/dashboard/jobs?status=Queued")
        await expect(page.locator("h1")).to_have_text("Unavailable")
        await expect(page.locator("#live-state")).to_have_text("reconnecting")
        await expect(page.locator("form.filters")).to_have_count(0)
        monkeypatch.setattr(engine.store, "list_jobs", listing)
        await expect(page.locator("h1")).to_have_text("Queued jobs", timeout=LIVE_WITHIN_MS)
        await expect(page.locator("form.filters")).to_have_count(1)
        await expect(page.locator("#live-state")).to_have_text("live", timeout=LIVE_WITHIN_MS)
        gate.open.set()


async def test_a_page_that_cannot_reach_the_server_is_greyed_as_out_of_date(
    gate: Gate, page: Page
) -> None:
    """The server stops while a page is open: within 2 s the page says "reconnecting" and
    its live part is greyed (what it shows may be out of date)."""
    app, _ = make_app(gate)
    async with served(app) as base:
        await page.goto(f"{base}/dashboard/")
        await expect(page.locator("#live-state")).to_have_text("live")
    await expect(page.locator("#live-state")).to_have_text("reconnecting", timeout=LIVE_WITHIN_MS)
    await expect(page.locator("#live")).to_have_class(re.compile(r"\bstale\b"))
    gate.open.set()


async def test_pause_all_queues_asks_first(site: tuple[str, AsyncEndpoints], page: Page) -> None:
    """Pause all queues (a change to every worker) asks for confirmation: dismissed,
    nothing is paused; accepted, every queue is."""
    base, engine = site
    await page.goto(f"{base}/dashboard/")
    answers = iter(("dismiss", "accept"))
    asked: list[str] = []

    async def answer(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await (dialog.dismiss() if next(answers) == "dismiss" else dialog.accept())

    page.on("dialog", answer)
    button = page.get_by_role("button", name="Pause all queues")
    await button.click()
    await page.wait_for_timeout(500)  # a form sent anyway would have come back by now
    assert [q.paused for q in await engine.queue_stats()] == [False, False]
    await button.click()
    await expect(page.locator(".notice")).to_have_text("Every queue is paused.")
    assert [q.paused for q in await engine.queue_stats()] == [True, True]
    assert len(asked) == 2 and "Pause every queue?" in asked[0]


#: WCAG's contrast ratio of two CSS colours (``rgb(r, g, b)`` as computed), in the page.
CONTRAST_JS = """([a, b]) => {
  const lum = (c) => {
    const [r, g, bl] = c.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number).map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [hi, lo] = [lum(a), lum(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}"""


async def test_pause_updates_stops_the_page_following_until_resumed(
    site: tuple[str, AsyncEndpoints], page: Page, gate: Gate
) -> None:
    """WCAG 2.2.2: the header's "Pause updates" holds the page as it is (the corner says
    so, for screen readers too: role=status), a job finishing meanwhile does not change
    it; "Resume updates" follows again and shows the change within 2 s."""
    base, engine = site
    job = await running_hold(engine)
    await page.goto(f"{base}/dashboard/jobs/{job.id}")
    status = page.locator(".job-head .status")
    await expect(status).to_have_text("Running")
    pause = page.locator("#live-pause")
    await pause.click()
    await expect(pause).to_have_text("Resume updates")
    await expect(pause).to_have_attribute("aria-pressed", "true")
    await expect(page.locator("#live-state")).to_have_text("paused")
    assert await page.locator("#live-state").get_attribute("role") == "status"
    gate.open.set()
    await engine.wait_for(job.id, timeout=10)
    await page.wait_for_timeout(2 * LIVE_WITHIN_MS)  # what an update would have taken
    await expect(status).to_have_text("Running")
    await pause.click()
    await expect(pause).to_have_text("Pause updates")
    await expect(status).to_have_text("Completed", timeout=LIVE_WITHIN_MS)


async def test_a_bulk_button_with_nothing_ticked_looks_disabled_and_the_ticked_one_not(
    site: tuple[str, AsyncEndpoints], page: Page
) -> None:
    base, engine = site
    job = await engine.submit("Broken")
    await engine.wait_for(job.id, timeout=10)
    await page.goto(f"{base}/dashboard/jobs?status=Failed")
    button = page.get_by_role("button", name="Requeue selected")
    await expect(button).to_be_disabled()
    opacity = "b => Number(getComputedStyle(b).opacity)"
    assert await button.evaluate(opacity) < 0.6
    await page.locator(f'tr[data-job="{job.id}"] input[type=checkbox]').check()
    await expect(button).to_be_enabled()
    assert await button.evaluate(opacity) == 1


async def test_text_badges_and_fields_have_the_contrast_wcag_asks(
    site: tuple[str, AsyncEndpoints], page: Page
) -> None:
    """1.4.3: the Canceled badge's text at least 4.5:1 on its background; 1.4.11: a filter
    field's border at least 3:1 on the page; 2.1.1: the job page's scroll boxes take the
    keyboard's focus and are named regions."""
    base, engine = site
    job = await engine.submit("Hold")
    await engine.cancel(job.id)
    await page.goto(f"{base}/dashboard/jobs")
    badge = page.locator(f'tr[data-job="{job.id}"] .status-canceled')
    colours = await badge.evaluate(
        "b => [getComputedStyle(b).color, getComputedStyle(b).backgroundColor]"
    )
    assert await page.evaluate(CONTRAST_JS, colours) >= 4.5
    field = page.get_by_label("Tenant")
    edge = await field.evaluate(
        "f => [getComputedStyle(f).borderTopColor, getComputedStyle(document.body).backgroundColor]"
    )
    assert await page.evaluate(CONTRAST_JS, edge) >= 3
    await page.goto(f"{base}/dashboard/jobs/{job.id}")
    box = page.get_by_role("region", name="Job JSON")
    await box.focus()
    assert await box.evaluate("b => document.activeElement === b")


async def test_pausing_and_resuming_keeps_what_the_page_had_learnt(
    site: tuple[str, AsyncEndpoints], page: Page, gate: Gate
) -> None:
    """A page whose access ended (*no access*, greyed): Pause keeps it greyed, and Resume
    says *no access* again, not *live* (nothing would update it)."""
    base, _ = site
    await page.goto(f"{base}/dashboard/")
    state = page.locator("#live-state")
    await expect(state).to_have_text("live")
    gate.allowed = False
    await expect(state).to_have_text("no access", timeout=LIVE_WITHIN_MS)
    pause = page.locator("#live-pause")
    await pause.click()
    await expect(state).to_have_text("paused")
    await expect(page.locator("#live")).to_have_class(re.compile(r"\bstale\b"))
    await pause.click()
    await expect(state).to_have_text("no access")
    await expect(page.locator("#live")).to_have_class(re.compile(r"\bstale\b"))


async def test_an_answer_arriving_after_pause_is_not_drawn(
    site: tuple[str, AsyncEndpoints], page: Page
) -> None:
    """Pause pressed while the page's request for its live part is on its way: when the
    answer comes (a job submitted meanwhile in it) the page stays as it was, paused."""
    base, engine = site
    await page.goto(f"{base}/dashboard/jobs")
    state = page.locator("#live-state")
    await expect(state).to_have_text("live")
    held: asyncio.Queue[Route] = asyncio.Queue()

    async def hold(route: Route) -> None:
        if route.request.headers.get("x-dashboard-fragment") == "1":
            await held.put(route)
        else:
            await route.continue_()

    await page.route("**/dashboard/jobs*", hold)
    waiting = await asyncio.wait_for(held.get(), PATIENCE_MS / 1000)  # one on its way
    job = await engine.submit("Ok", {"text": "after pause"})
    await engine.wait_for(job.id, timeout=10)
    await page.locator("#live-pause").click()
    await waiting.continue_()
    await page.wait_for_timeout(LIVE_WITHIN_MS)
    await expect(state).to_have_text("paused")
    await expect(page.locator(f'tr[data-job="{job.id}"]')).to_have_count(0)


async def test_a_job_gone_while_paused_is_shown_gone_once_resumed(page: Page, gate: Gate) -> None:
    """The answer saying the job is gone arrives after Pause: it is not drawn then, and
    not forgotten either: Resume shows "There is no such job" and *stopped*."""
    from async_endpoints import InMemoryJobStore

    app, engine = make_app(gate, store=InMemoryJobStore(max_retained=1))
    async with served(app) as base:
        done = await engine.wait_for((await engine.submit("Ok", {"text": "a"})).id, timeout=10)
        await page.goto(f"{base}/dashboard/jobs/{done.id}")
        await expect(page.locator(".job-head .status")).to_have_text("Completed")
        waiting = await next_fragment_held(page, "**/dashboard/jobs/*")
        await engine.wait_for((await engine.submit("Ok", {"text": "b"})).id, timeout=10)
        assert await engine.get_job(done.id) is None  # dropped: one job retained
        pause = page.locator("#live-pause")
        await pause.click()
        await waiting.continue_()  # the 404 comes while paused
        await page.wait_for_timeout(LIVE_WITHIN_MS)
        await expect(page.locator("#live-state")).to_have_text("paused")
        await expect(page.locator(".job-head .status")).to_have_text("Completed")
        await pause.click()
        await expect(page.locator("#live")).to_contain_text(
            "There is no such job", timeout=LIVE_WITHIN_MS
        )
        await expect(page.locator("#live-state")).to_have_text("stopped")
        gate.open.set()


async def test_a_page_made_during_an_outage_waits_for_resume_to_come_back_whole(
    gate: Gate, page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paused on a page the store could not fill, while its request for the live part is
    on its way: the store answering again does not reload the page under the reader;
    Resume does (the page comes back whole)."""
    app, engine = make_app(gate)
    listing = listing_cut_off(engine, monkeypatch)
    async with served(app) as base:
        await page.goto(f"{base}/dashboard/jobs?status=Queued")
        await expect(page.locator("h1")).to_have_text("Unavailable")
        waiting = await next_fragment_held(page, "**/dashboard/jobs*")
        pause = page.locator("#live-pause")
        await pause.click()
        await expect(page.locator("#live-state")).to_have_text("paused")
        monkeypatch.setattr(engine.store, "list_jobs", listing)
        await waiting.continue_()  # answered now that the store is back
        await page.wait_for_timeout(2 * LIVE_WITHIN_MS)  # two refreshes would have come
        await expect(page.locator("h1")).to_have_text("Unavailable")
        await pause.click()
        await expect(page.locator("h1")).to_have_text("Queued jobs", timeout=2 * LIVE_WITHIN_MS)
        gate.open.set()


async def test_a_pause_is_kept_for_one_dashboard_not_another_of_the_origin(
    gate: Gate, page: Page
) -> None:
    """Two dashboards on one app: paused on the first, pages of the first stay paused (the
    tab's session), the second's follow."""
    app, engine = make_app(gate)
    engine.map_dashboard("/ops", authorize=gate.authorize)
    async with served(app) as base:
        await page.goto(f"{base}/dashboard/")
        await page.locator("#live-pause").click()
        await expect(page.locator("#live-state")).to_have_text("paused")
        await page.goto(f"{base}/dashboard/jobs")
        await expect(page.locator("#live-state")).to_have_text("paused")
        await page.goto(f"{base}/ops/")
        await expect(page.locator("#live-state")).to_have_text("live")
        gate.open.set()


async def test_the_live_corner_is_not_rewritten_while_nothing_changes(
    site: tuple[str, AsyncEndpoints], page: Page
) -> None:
    """The corner is a role=status: a screen reader may announce every rewrite, so while
    the page stays live it is left alone (the page still asks every second)."""
    base, _ = site
    answers = fragment_statuses(page)
    await page.goto(f"{base}/dashboard/")
    await expect(page.locator("#live-state")).to_have_text("live")
    await page.evaluate(
        """() => {
             window.cornerChanges = 0;
             new MutationObserver((m) => { window.cornerChanges += m.length; }).observe(
               document.getElementById("live-state"),
               { childList: true, characterData: true, subtree: true, attributes: true });
           }"""
    )
    asked = len(answers)
    await page.wait_for_timeout(2 * LIVE_WITHIN_MS)
    assert len(answers) - asked >= 2  # it went on asking
    assert await page.evaluate("window.cornerChanges") == 0


async def test_on_a_phone_a_long_queue_name_leaves_its_state_and_pause_button_in_view(
    gate: Gate, browser: Browser
) -> None:
    """At 390 px a queue named with 35 characters is cut (whole on hover), so the row's
    state and its Pause button stay inside the screen (the name took up to 24em, wider
    than a phone's whole table box)."""
    queue = "bulk-imports-and-exports-long-name"
    app, _ = make_app(gate, queues=("default", queue))
    context = await browser.new_context(viewport={"width": 390, "height": 844})
    page = await context.new_page()
    page.set_default_timeout(PATIENCE_MS)
    try:
        async with served(app) as base:
            await page.goto(f"{base}/dashboard/")
            row = page.locator(f'tr[data-queue="{queue}"]')
            pause = row.get_by_role("button", name="Pause", exact=True)
            await expect(pause).to_be_visible()
            place = await pause.bounding_box()
            assert place is not None and place["x"] + place["width"] <= 390
            widths = await page.locator("#live .scroll").first.evaluate(
                "b => [b.scrollWidth, b.clientWidth]"
            )
            assert widths[0] <= widths[1], widths
            gate.open.set()
    finally:
        await context.close()


async def test_the_schedules_page_fits_a_laptop_screen_with_long_names(
    gate: Gate, page: Page
) -> None:
    """Schedules whose id, handler, queue and tenant are all long: at 1366 px the table
    fits its box (each name cut to its cell, whole on hover), so the last column, Unique,
    is in view without scrolling sideways (the table was 1,839 px wide)."""
    queue = "bulk-imports-and-exports-long-name"
    app, engine = make_app(gate, queues=("default", queue))
    async with served(app) as base:
        for number in range(3):
            await engine.upsert_schedule(
                f"nightly-reconciliation-of-ledger-accounts-{number}",
                "Hold",
                "0 3 * * *",
                timezone="America/Argentina/ComodRivadavia",
                queue=queue,
                tenant="tenant-of-a-very-long-customer-name-" + "t" * 20,
            )
        await page.goto(f"{base}/dashboard/schedules")
        await expect(page.locator("table.schedules tbody tr")).to_have_count(3)
        widths = await page.locator("#live .scroll").evaluate("b => [b.scrollWidth, b.clientWidth]")
        assert widths[0] <= widths[1], widths
        gate.open.set()
