"""How a jobs page of the dashboard is filled from the store's listing: read on while
the store answers short pages, within a bound of calls (the Redis test of the same rule
is in test_dashboard.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from async_endpoints import JobPage
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
