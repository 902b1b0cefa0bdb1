"""What the dashboard's pages show: the filters a jobs page reads from its query string, the
page of jobs they select, and the little formatting the templates need (relative times,
pretty JSON). No HTTP here: `async_endpoints._dashboard` serves these."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from ._job import MAX_LABEL_LENGTH, Job, JobStatus, format_time, parse_job_id
from ._listing import JobPage, QueueStats

#: Jobs per dashboard page.
PAGE_SIZE = 50
#: With a name filter (the store lists by status, queue and tenant only), the most jobs
#: one page reads while it looks for ``PAGE_SIZE`` of that name.
NAME_SCAN_LIMIT = 1000
#: The most listing calls one page makes while it fills itself: a store whose filtered
#: pages come back short (Redis with a tenant, queue or batch filter reads a bounded run
#: of entries per call) is read on, so a page is empty only past this many reads.
FILL_CALLS = 5
#: The earlier pages a jobs page remembers for its Previous link (their cursors ride in
#: its address; past this many back, Previous gives way to First).
TRAIL_PAGES = 10
#: And at most this many characters of them (cursors of long tenant names are long): the
#: page's address rides in each of its action forms, which must stay small.
TRAIL_CHARS = 3000
_CURSOR = re.compile(r"[A-Za-z0-9_-]{1,2048}")
_PAGE = re.compile(r"[0-9]{1,7}")
_MAX_PAGE = 10**6


class Lister(Protocol):
    """`AsyncEndpoints.list_jobs` as the dashboard calls it."""

    async def __call__(
        self,
        *,
        status: JobStatus | None = None,
        queue: str | None = None,
        tenant: str | None = None,
        batch_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage: ...


@dataclass(frozen=True, slots=True)
class Filters:
    """What a jobs page lists: its status, queue, tenant and name filters (None: any) and
    where it starts (a cursor from the previous page)."""

    status: JobStatus | None = None
    queue: str | None = None
    tenant: str | None = None
    name: str | None = None
    #: A batch id (stores that keep batches).
    batch: str | None = None
    cursor: str | None = None
    #: The cursors of the pages before this one, after the first (which needs none),
    #: oldest first: at most `TRAIL_PAGES` of them.
    trail: tuple[str, ...] = ()
    #: This page's number (1: the first).
    page: int = 1

    def query(self, **changes: str | None) -> dict[str, str]:
        """The query string of these filters with ``changes`` applied (None left out)."""
        values: dict[str, str | None] = {
            "status": None if self.status is None else self.status.value,
            "queue": self.queue,
            "tenant": self.tenant,
            "name": self.name,
            "batch": self.batch,
            "cursor": self.cursor,
            "trail": ".".join(self.trail),
            "page": str(self.page) if self.page > 1 else None,
        }
        values.update(changes)
        return {key: value for key, value in values.items() if value}

    @property
    def first(self) -> Filters:
        """The first page of the same filters."""
        return replace(self, cursor=None, trail=(), page=1)

    def following(self, cursor: str) -> Filters:
        """The page after this one, which starts at ``cursor``."""
        trail = (*self.trail, self.cursor) if self.cursor else self.trail
        return replace(self, cursor=cursor, trail=_kept(trail), page=self.page + 1)

    def previous(self) -> Filters | None:
        """The page before this one, when it is known: the first page's has no cursor;
        past `TRAIL_PAGES` back it is not remembered (None)."""
        if self.cursor is None:
            return None
        if self.trail:
            return replace(self, cursor=self.trail[-1], trail=self.trail[:-1], page=self.page - 1)
        return self.first if self.page <= 2 else None


def read_filters(
    params: Mapping[str, str], queues: Sequence[str], names: Sequence[str] = ()
) -> Filters:
    """The filters of a query string; unknown or malformed values are ignored (a hand-made
    URL shows all jobs rather than an error). A name is read without the blanks around
    it, and as the one handler of ``names`` it matches ignoring case when it is none of
    them exactly (the store filters by the exact name)."""
    status = params.get("status") or ""
    queue = params.get("queue") or None
    cursor = params.get("cursor") or None
    trail = _trail(params.get("trail")) if cursor else ()
    return Filters(
        status=JobStatus(status) if status in JobStatus._value2member_map_ else None,
        queue=queue if queue in queues else None,
        tenant=label(params.get("tenant")),
        name=_name(label((params.get("name") or "").strip()), names),
        batch=_uuid(params.get("batch")),
        cursor=cursor,
        trail=trail,
        # A page is at least the one after the pages of its trail and the first.
        page=max(_page(params.get("page")), len(trail) + 2) if cursor else 1,
    )


def _trail(value: str | None) -> tuple[str, ...]:
    """The cursors of a ``trail`` parameter (a malformed one is dropped whole)."""
    cursors = tuple(value.split(".")) if value else ()
    return _kept(cursors) if all(_CURSOR.fullmatch(cursor) for cursor in cursors) else ()


def _kept(trail: tuple[str, ...]) -> tuple[str, ...]:
    """The newest cursors of ``trail`` within `TRAIL_PAGES` and `TRAIL_CHARS`."""
    trail = trail[-TRAIL_PAGES:]
    while trail and sum(len(cursor) + 1 for cursor in trail) > TRAIL_CHARS:
        trail = trail[1:]
    return trail


def _page(value: str | None) -> int:
    """A ``page`` parameter: a number from 2 up (a page with a cursor is not the first);
    anything else reads as 2, the least it can be."""
    number = int(value) if value and _PAGE.fullmatch(value) else 0
    return min(max(number, 2), _MAX_PAGE)


def countable(filters: Filters) -> bool:
    """Whether the per-queue counts tell how many jobs ``filters`` select: by status and
    queue they do, by tenant, name or batch they do not."""
    return filters.tenant is None and filters.name is None and filters.batch is None


def total(stats: Sequence[QueueStats], filters: Filters) -> int:
    """How many jobs the `countable` ``filters`` select, from the per-queue counts."""
    fields = _COUNTS.values() if filters.status is None else [_COUNTS[filters.status]]
    chosen = [queue for queue in stats if filters.queue in (None, queue.name)]
    return sum(int(getattr(queue, field)) for queue in chosen for field in fields)


_COUNTS = {
    JobStatus.QUEUED: "queued",
    JobStatus.SCHEDULED: "scheduled",
    JobStatus.IN_PROGRESS: "in_progress",
    JobStatus.COMPLETED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELED: "canceled",
}


async def list_page(list_jobs: Lister, filters: Filters) -> tuple[list[Job], str | None]:
    """One page of the jobs ``filters`` select and the cursor of the next one.

    A page the store answered short (with a cursor) is read on, up to `FILL_CALLS` calls,
    until it holds `PAGE_SIZE` jobs. With a name filter, pages of `PAGE_SIZE` are read
    until `PAGE_SIZE` jobs of that name are found, `NAME_SCAN_LIMIT` jobs were read or as
    many calls made as reading them takes (a page may then hold fewer jobs than
    `PAGE_SIZE`). A page never holds more: when a store page holds more jobs of the name
    than the page lacks, the same call is made again for the jobs up to the last one the
    page takes (one call more), so that the store's cursor follows that job.

    Raises:
        ValueError: the cursor was made for another listing (or tampered with).
    """
    kwargs: dict[str, Any] = {"status": filters.status, "queue": filters.queue}
    if filters.tenant is not None:
        kwargs["tenant"] = filters.tenant
    if filters.batch is not None:
        kwargs["batch_id"] = filters.batch
    name = filters.name
    found: list[Job] = []
    cursor, scanned, calls = filters.cursor, 0, 0
    while True:
        lacking = PAGE_SIZE - len(found)
        # Without a name filter every job listed is shown: ask for what the page lacks.
        page = await list_jobs(
            **kwargs, limit=lacking if name is None else PAGE_SIZE, cursor=cursor
        )
        calls += 1
        taken = [job for job in page.jobs if name in (None, job.name)]
        if len(taken) > lacking:
            last = taken[lacking - 1]
            cut = next(place for place, job in enumerate(page.jobs) if job is last) + 1
            page = await list_jobs(**kwargs, limit=cut, cursor=cursor)
            taken = [job for job in page.jobs if job.name == name][:lacking]
        scanned += len(page.jobs)
        found += taken
        cursor = page.next_cursor
        if cursor is None or len(found) >= PAGE_SIZE:
            return found, cursor
        if name is None and calls >= FILL_CALLS:
            return found, cursor
        # Also bounded in calls: with a tenant filter too, a call may list no job at all.
        if name is not None and (
            scanned >= NAME_SCAN_LIMIT or calls >= NAME_SCAN_LIMIT // PAGE_SIZE
        ):
            return found, cursor


def ago(moment: datetime | None, now: datetime | None) -> str:
    """``moment`` relative to ``now``: "3 s ago", "in 5 min", "1 h 59 min ago"; "" for None.

    Without ``now`` (the live part a page fetches again every second), the absolute time:
    the page's script writes the relative one, and an unchanged part stays the same text.
    """
    if moment is None:
        return ""
    if now is None:
        return absolute(moment)
    seconds = (now - moment).total_seconds()
    size = abs(seconds)
    if size < 1:
        return "just now"
    amount = _amount(int(size))
    return f"{amount} ago" if seconds > 0 else f"in {amount}"


def _amount(seconds: int) -> str:
    """A length of time in its largest unit, with the next one from an hour up: "42 s",
    "5 min", "1 h 59 min", "2 d 3 h" (the page's script writes the same)."""
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        hours, minutes = divmod(seconds // 60, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(seconds // 3600, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def absolute(moment: datetime | None) -> str:
    """``moment`` as readable UTC ("2026-12-03 09:14:05.123 UTC"); "" for None."""
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def iso(moment: datetime | None) -> str:
    """``moment`` as the job JSON writes it ("" for None)."""
    return format_time(moment) or ""


#: The explicit direction controls (embeddings, overrides, isolates and their ends): text
#: holding one may read otherwise than it is ("\u202eemca-live" shows as "evil-acme").
_DIRECTION_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


class Verbatim(str):
    """Text a page must send unchanged (a form field's value, sent back as it was)."""

    __slots__ = ()


def verbatim(value: Any) -> Any:
    """``value`` (text) exempt from `shown`: the template filter for form field values."""
    return Verbatim(value) if isinstance(value, str) else value


def shown(value: Any) -> Any:
    """What a page shows of ``value`` (the templates' ``finalize``): text with its
    direction controls written as visible escapes (``\u202e``), so that a tenant, a name
    or an error cannot read as something it is not; right-to-left text keeps its own
    direction (the page isolates it). Markup (already rendered, its values shown) and
    `Verbatim` text pass unchanged."""
    if type(value) is not str or not _DIRECTION_CONTROLS.search(value):
        return value
    return _DIRECTION_CONTROLS.sub(lambda found: f"\\u{ord(found.group()):04x}", value)


def pretty_json(value: Any) -> str:
    """Indented JSON text of ``value`` (for <pre>; the template escapes it)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def compact_json(value: Any) -> str:
    """JSON text of ``value`` on one line, as written (keys in their order, characters
    as they are: the template escapes it), for a progress value in a table cell."""
    return json.dumps(value, ensure_ascii=False, default=str)


#: The names a progress object may give its count done and its count in all.
_DONE_NAMES = ("done", "current", "completed")
_OF_NAMES = ("of", "total")


def progress_share(value: Any) -> float | None:
    """How much of its work a job reported done, from 0.0 to 1.0, when its progress value
    says it in a shape the dashboard knows, else None (the value is then shown as JSON
    only): an object with a count done (``done``, ``current`` or ``completed``) and a
    count in all (``of`` or ``total``, above 0), as ``{"done": 2, "of": 5}``; an object
    with ``percent`` (0 to 100); or a fraction, a float from 0.0 to 1.0 (an integer such
    as ``3`` could be a step's number, so it gets no bar). A share outside 0-1 is None."""
    if isinstance(value, float):
        share: float | None = _number(value)
    elif isinstance(value, Mapping):
        share = _share_of(value)
    else:
        return None
    return share if share is not None and 0.0 <= share <= 1.0 else None


def _share_of(value: Mapping[Any, Any]) -> float | None:
    percent = _number(value.get("percent"))
    done = _number(next((value[name] for name in _DONE_NAMES if name in value), None))
    of = _number(next((value[name] for name in _OF_NAMES if name in value), None))
    try:
        if percent is not None:
            return percent / 100
        if done is not None and of is not None and of > 0:
            return done / of  # exact for integers of any size
    except OverflowError:  # a share too large for a float: no bar, the JSON says it
        pass
    return None


def _number(value: Any) -> int | float | None:
    """``value`` when it is a finite JSON number (not a bool, which Python counts as an
    int), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def timeline(job: Job) -> list[tuple[str, datetime]]:
    """The moments of ``job``'s life that are known, oldest first."""
    moments = [
        ("Created", job.created_at),
        ("Due (runAt)", job.run_at),
        ("First started", job.started_at),
        ("Last status change", job.last_updated_at),
        ("Finished", job.completed_at),
    ]
    known = [(label, moment) for label, moment in moments if moment is not None]
    return sorted(known, key=lambda pair: pair[1])


#: What a filter of a tenant too long to be one says (jobs and batches pages).
TOO_LONG_TENANT = (
    "A tenant filter is at most 255 characters (no tenant is longer); showing every tenant's."
)


def label(value: str | None) -> str | None:
    """``value`` as a tenant or name filter: None when empty or too long."""
    if not value or len(value) > MAX_LABEL_LENGTH:
        return None
    return value


def _name(value: str | None, names: Sequence[str]) -> str | None:
    """``value`` as a name filter: itself when a handler has it (or when no handler
    matches it: jobs of a handler no longer in the code), else the one handler whose name
    it is in another case."""
    if value is None or value in names:
        return value
    folded = value.casefold()
    matches = [name for name in names if name.casefold() == folded]
    return matches[0] if len(matches) == 1 else value


def _uuid(value: str | None) -> str | None:
    parsed = parse_job_id(value)
    return None if parsed is None else str(parsed)


def label_of(status: JobStatus) -> str:
    """How a page names jobs of ``status`` (the navigation's words: ``InProgress`` jobs
    are "Running")."""
    return "Running" if status is JobStatus.IN_PROGRESS else status.value
