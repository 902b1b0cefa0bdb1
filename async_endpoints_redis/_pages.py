"""Listing pages of `RedisJobStore`: the cursor positions it makes, checked before Redis
sees them, and the page built from ``lua/list_jobs.lua``'s reply.

A position is where the previous page ended: the last index entry looked at,
``"<ms, 14 digits>:<id>"`` (see ``lua/_index.lua``), or for ``Queued`` jobs the queue and
the place in its claim order: ``[name, 0, round, place, entry]`` among its ready jobs (the
round of the tenants' turns, the tenant's place in them and the job's Queued index entry,
which names it as queued then), or ``[name, 0, round, place, entry, round, place]`` with
the entry, round and place of the job that came next (where the next page resumes: see
``lua/list_jobs.lua``), or ``[name, 1, entry]`` among its
jobs waiting behind their partition key (their Queued index's short entry: 11 hex digits
of time, 4 of its sequence number, none in an entry an older version wrote, then the id's
32 hex digits). A cursor naming anything else raises `ValueError`, so a tampered cursor
never reaches Redis as an error.
"""

from __future__ import annotations

import re
from typing import Any

from async_endpoints._job import Job, JobStatus
from async_endpoints._listing import JobPage, encode_cursor

from ._codec import job_from_text, text

#: Entries a listing with a queue or tenant filter may look at per job of its page.
VISITS_PER_JOB = 10
_INDEX_ENTRY = re.compile(r"\d{14}:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_QUEUED_ENTRY = re.compile(r"[0-9a-f]{47}|[0-9a-f]{43}")


def visit_budget(
    limit: int, queue: str | None, tenant: str | None = None, batch: bool = False
) -> int:
    """How many entries the script may look at for a page of ``limit`` jobs: one past the
    page without a filter, ``limit * 10 + 100`` with a queue, tenant or batch filter (the
    page may be short)."""
    filtered = queue is not None or tenant is not None or batch
    return limit * VISITS_PER_JOB + 100 if filtered else limit + 1


def checked_position(position: list[Any], status: JobStatus | None) -> list[str]:
    """A cursor's position, checked to be one this store makes for ``status``, as the
    script's two position arguments (the entry, then the queue of its index or '').

    Raises:
        ValueError: It is not.
    """
    if status is JobStatus.QUEUED:
        if len(position) >= 3 and isinstance(position[0], str) and position[0]:
            name, section, *place = position
            if (
                section == 0
                and len(place) in (3, 5)
                and all(_is_count(value) for value in (*place[:2], *place[3:]))
                and isinstance(place[2], str)
                and _QUEUED_ENTRY.fullmatch(place[2])
            ):
                return [" ".join(str(value) for value in place), name]
            if (
                section == 1
                and len(place) == 1
                and isinstance(place[0], str)
                and _QUEUED_ENTRY.fullmatch(place[0])
            ):
                return [place[0], name]
    elif len(position) == 1 and _is_entry(position[0]):
        return [position[0], ""]
    raise ValueError("invalid cursor")


def _is_count(value: Any) -> bool:
    return type(value) is int and 0 <= value < 2**53


def _is_entry(value: Any) -> bool:
    return isinstance(value, str) and _INDEX_ENTRY.fullmatch(value) is not None


def page_of(
    reply: list[Any], filters: list[Any], status: JobStatus | None, *, positions: bool = True
) -> tuple[JobPage, list[str]]:
    """The page in the script's reply ``{jobs, position, queue, entries, queues}``
    (corrupt records left out), with a cursor for the next one unless it is the last; and
    for each job of the page the cursor of the position right after it (none unless
    ``positions``: only a sharded store's merge needs them, and each costs an encoding).

    Raises:
        ValueError: The reply is ``{'invalid'}``: the position names a queue this listing
            does not visit.
    """
    if len(reply) == 1:
        raise ValueError("invalid cursor")
    raw_jobs, raw_next, raw_queue, raw_entries, raw_queues = reply
    jobs: list[Job] = []
    after: list[str] = []
    for message, entry, queue in zip(raw_jobs, raw_entries, raw_queues, strict=True):
        job, _ = job_from_text(message)
        if job is not None:
            jobs.append(job)
            if positions:
                place = _position(status, text(queue), text(entry))
                after.append(encode_cursor(filters, place))
    next_position = text(raw_next)
    if not next_position:
        return JobPage(jobs, None), after
    following = _position(status, text(raw_queue), next_position)
    return JobPage(jobs, encode_cursor(filters, following)), after


def _position(status: JobStatus | None, queue: str, entry: str) -> list[Any]:
    if status is not JobStatus.QUEUED:
        return [entry]
    parts = entry.split(" ")
    if len(parts) in (3, 5):  # in the turns: round, place, entry[, the next's round, place]
        return [queue, 0, int(parts[0]), int(parts[1]), parts[2], *map(int, parts[3:])]
    return [queue, 1, entry]
