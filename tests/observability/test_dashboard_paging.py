"""How a jobs page of the dashboard is filled from the store's listing: read on while
the store answers short pages, within a bound of calls (the Redis test of the same rule
is in test_dashboard.py); how its Previous link walks back, and what its count counts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from async_endpoints import JobPage, JobStatus, QueueStats
from async_endpoints import _dashboard_views as views
from async_endpoints._job import Job, NewJob


def job(name: str) -> Job:
    return NewJob(uuid.uuid4(), name, 0).stored(datetime.now(UTC))


class ShortPages:
    """A listing that answers ``per_call`` jobs per call (fewer than asked, as a filtered
    Redis listing may), always with a cursor, and records the limits asked."""

    def __init__(self, per_call: int, name: str = "Ok") -> None:
        self.per_call, self.name = per_call, name
        self.limits: list[int] = []

    async def __call__(self, *, limit: int, cursor: str | None, **filters: Any) -> JobPage:
        self.limits.append(limit)
        return JobPage([job(self.name) for _ in range(min(limit, self.per_call))], "more")


async def test_a_short_page_is_read_on_until_full_asking_only_for_what_it_lacks() -> None:
    """10 jobs a call: five calls fill the page to PAGE_SIZE exactly, each asking for
    what is still missing."""
    listing = ShortPages(per_call=10)
    found, cursor = await views.list_page(listing, views.Filters(tenant="acme"))
    assert len(found) == views.PAGE_SIZE == 50 and cursor == "more"
    assert listing.limits == [50, 40, 30, 20, 10]


async def test_pages_of_nothing_stop_after_fill_calls_with_the_cursor_to_read_on() -> None:
    """A listing that finds nothing (another tenant's backlog) is asked FILL_CALLS times,
    then the page is empty with a cursor: the next page reads on."""
    listing = ShortPages(per_call=0)
    found, cursor = await views.list_page(listing, views.Filters(tenant="rare"))
    assert found == [] and cursor == "more" and len(listing.limits) == views.FILL_CALLS


async def test_a_name_filter_over_pages_of_nothing_stops_after_its_calls_too() -> None:
    """With a name and a tenant filter, a call may list no job at all: the page still
    ends after as many calls as reading NAME_SCAN_LIMIT jobs takes, not at the end of
    the store."""
    listing = ShortPages(per_call=0)
    found, cursor = await views.list_page(listing, views.Filters(tenant="t", name="Ok"))
    assert found == [] and cursor == "more"
    assert len(listing.limits) == views.NAME_SCAN_LIMIT // views.PAGE_SIZE


async def test_a_name_filter_reads_up_to_its_scan_limit() -> None:
    """Full pages of other names: NAME_SCAN_LIMIT jobs read, none shown."""
    listing = ShortPages(per_call=views.PAGE_SIZE, name="Other")
    found, _ = await views.list_page(listing, views.Filters(name="Ok"))
    assert found == [] and sum(listing.limits) == views.NAME_SCAN_LIMIT


class MixedPages:
    """A listing three of whose every five jobs are named Ok, paged by its position (the
    cursor is the number of jobs listed before it)."""

    def __init__(self) -> None:
        self.limits: list[int] = []
        self.jobs = [job("Ok" if n % 5 < 3 else "Other") for n in range(500)]

    async def __call__(self, *, limit: int, cursor: str | None, **filters: Any) -> JobPage:
        self.limits.append(limit)
        first = int(cursor or 0)
        return JobPage(self.jobs[first : first + limit], str(first + limit))


async def test_a_name_filter_never_fills_a_page_past_its_size() -> None:
    """Three jobs listed in five match: the second call of 50 finds 30 where the page
    lacks 20, so that call is made again for the jobs up to the 20th (32 of them); the
    page holds exactly the first 50 jobs of the name, and its cursor goes on right after
    the last, so the next page starts with the next one."""
    listing = MixedPages()
    found, cursor = await views.list_page(listing, views.Filters(name="Ok"))
    named = [each for each in listing.jobs if each.name == "Ok"]
    assert found == named[:50] and listing.limits == [50, 50, 32] and cursor == "82"
    following, _ = await views.list_page(listing, views.Filters(name="Ok", cursor=cursor))
    assert following == named[50:100]


async def test_a_sparse_name_filter_still_reads_its_whole_scan_limit() -> None:
    """One job in thirty matches: the page reads NAME_SCAN_LIMIT jobs in calls of 50 (20
    calls), as many as that takes, and shows the 34 it found."""
    listing = MixedPages()
    listing.jobs = [job("Ok" if n % 30 == 0 else "Other") for n in range(2000)]
    found, cursor = await views.list_page(listing, views.Filters(name="Ok"))
    assert len(found) == 34 and sum(listing.limits) == views.NAME_SCAN_LIMIT
    assert set(listing.limits) == {50} and cursor == str(views.NAME_SCAN_LIMIT)


def test_previous_walks_back_the_pages_next_walked_through() -> None:
    """From the first page on with Next: each page's Previous is the page before it,
    with that page's cursor, trail and number."""
    pages = [views.Filters(status=JobStatus.FAILED)]
    for cursor in ("c2", "c3", "c4"):
        pages.append(pages[-1].following(cursor))
    assert [(p.cursor, p.trail, p.page) for p in pages] == [
        (None, (), 1),
        ("c2", (), 2),
        ("c3", ("c2",), 3),
        ("c4", ("c2", "c3"), 4),
    ]
    assert pages[0].previous() is None
    assert [p.previous() for p in pages[1:]] == pages[:-1]


def test_previous_gives_way_to_first_past_the_pages_remembered() -> None:
    """The address keeps the last TRAIL_PAGES cursors: walking back further than that
    there is no Previous (the pager offers First instead), never a wrong page."""
    page = views.Filters()
    for number in range(2, views.TRAIL_PAGES + 5):
        page = page.following(f"c{number}")
    assert len(page.trail) == views.TRAIL_PAGES
    steps = 0
    while (before := page.previous()) is not None:
        page, steps = before, steps + 1
    assert steps == views.TRAIL_PAGES and page.page > 2 and page.trail == ()


def test_the_address_round_trips_the_trail_and_drops_a_malformed_one() -> None:
    page = views.Filters(queue="default").following("c2").following("c3")
    query = page.query()
    assert query["trail"] == "c2" and query["page"] == "3"
    assert views.read_filters(query, ["default"]) == page
    tampered = {**query, "trail": "c2.<script>"}
    assert views.read_filters(tampered, ["default"]).trail == ()
    assert views.read_filters({**query, "page": "x"}, ["default"]).page == 3  # by the trail
    assert views.read_filters({"page": "7"}, ["default"]).page == 1  # no cursor: first


def test_the_total_is_counted_by_status_and_queue_only() -> None:
    stats = [
        QueueStats("high", queued=2, failed=5),
        QueueStats("default", queued=3, failed=7, completed=11),
    ]
    assert views.total(stats, views.Filters(status=JobStatus.FAILED)) == 12
    assert views.total(stats, views.Filters(status=JobStatus.FAILED, queue="high")) == 5
    assert views.total(stats, views.Filters()) == 28
    assert views.countable(views.Filters(status=JobStatus.QUEUED, queue="high"))
    for uncounted in ({"tenant": "acme"}, {"name": "Ok"}, {"batch": str(uuid.uuid4())}):
        assert not views.countable(views.Filters(**uncounted))  # type: ignore[arg-type]


def test_a_trail_of_long_cursors_is_cut_to_keep_the_address_small() -> None:
    """Cursors of long tenant names are long: the trail keeps the newest that fit in
    TRAIL_CHARS (the page's address rides in every action form of the page)."""
    page = views.Filters(tenant="t")
    for number in range(2, 12):
        page = page.following(f"{number:02d}" + "A" * 998)
    assert 0 < len(page.trail) < views.TRAIL_PAGES
    assert sum(len(cursor) + 1 for cursor in page.trail) <= views.TRAIL_CHARS
    assert page.trail[-1].startswith("10")  # the newest kept, the page before this one
    query = page.query()
    assert views.read_filters(query, []).trail == page.trail


def test_a_hand_made_page_number_is_read_safely() -> None:
    """A page number that is no plain number reads as the least it can be; one smaller
    than its trail allows is raised to fit it (so Previous never leads to a "page 1"
    with a cursor)."""
    for odd in ("\u00b2", "-3", "1e9", "99999999"):
        assert views.read_filters({"cursor": "c", "page": odd}, []).page == 2, odd
    walked = views.read_filters({"cursor": "c5", "trail": "c2.c3.c4", "page": "2"}, [])
    assert walked.page == 5
    previous = walked.previous()
    assert previous is not None and previous.page == 4 and previous.cursor == "c4"
