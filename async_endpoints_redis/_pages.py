"""Listing pages of `RedisJobStore`: the cursor positions it makes, checked before Redis
sees them, and the page built from ``lua/list_jobs.lua``'s reply.

A position is where the previous page ended: for ``Queued`` jobs a queue's name and the
offset in its LIST (``[name, offset]``); for every other listing the last index entry
looked at, ``"<ms, 14 digits>:<id>"`` (see ``lua/_index.lua``). A cursor naming anything
else raises `ValueError`, so a tampered cursor never reaches Redis as an error.
"""

from __future__ import annotations

import re
from typing import Any

from async_endpoints._job import Job, JobStatus
from async_endpoints._listing import JobPage, encode_cursor

from ._codec import job_from_text, text

#: Entries a listing with a queue filter may look at per job of its page.
VISITS_PER_JOB = 10
#: The deepest offset a Queued cursor may name (Lua prints it exactly).
MAX_OFFSET = 10**12
_INDEX_ENTRY = re.compile(r"\d{14}:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def visit_budget(limit: int, queue: str | None) -> int:
    """How many entries the script may look at for a page of ``limit`` jobs: one past the
    page without a queue filter, ``limit * 10 + 100`` with one (the page may be short)."""
    return limit * VISITS_PER_JOB + 100 if queue is not None else limit + 1


def checked_position(position: list[Any], status: JobStatus | None) -> list[str | int]:
    """A cursor's position, checked to be one this store makes for ``status``, as the
    script's two position arguments.

    Raises:
        ValueError: It is not.
    """
    if status is JobStatus.QUEUED:
        if (
            len(position) == 2
            and isinstance(position[0], str)
            and position[0]
            and isinstance(position[1], int)
            and not isinstance(position[1], bool)
            and 0 <= position[1] <= MAX_OFFSET
        ):
            return [position[0], position[1]]
    elif (
        len(position) == 1 and isinstance(position[0], str) and _INDEX_ENTRY.fullmatch(position[0])
    ):
        return [position[0], 0]
    raise ValueError("invalid cursor")


def page_of(reply: list[Any], filters: list[Any], status: JobStatus | None) -> JobPage:
    """The page in the script's reply ``{jobs, position, offset}`` (corrupt records left
    out), with a cursor for the next one unless it is the last.

    Raises:
        ValueError: The reply is ``{'invalid'}``: the position names a queue this listing
            does not visit.
    """
    if len(reply) == 1:
        raise ValueError("invalid cursor")
    raw_jobs, raw_next, offset = reply
    jobs: list[Job] = []
    for message in raw_jobs:
        job, _ = job_from_text(message)
        if job is not None:
            jobs.append(job)
    next_position = text(raw_next)
    if not next_position:
        return JobPage(jobs, None)
    following: list[Any] = [next_position]
    if status is JobStatus.QUEUED:
        following.append(int(offset))
    return JobPage(jobs, encode_cursor(filters, following))
