"""Listing jobs: the page and count types, the orders, and the opaque paging cursor.

Orders, by the ``status`` asked for:

- ``Queued``: claim order (queues in the order given to the store's claims, then oldest
  first within a queue);
- ``Scheduled``: by ``run_at``, soonest first;
- ``InProgress``: by ``started_at``, oldest first;
- ``Completed``, ``Failed``, ``Canceled``: newest ``completed_at`` first;
- no status: newest ``created_at`` first.

Ties are broken by the job id, so an order is total and a cursor names one point in it.

A cursor is the listing's filters and a store-defined position, as base64url JSON. It is
not secret (it holds no job data) but it is checked: a cursor that does not decode, or
that was made for other filters, raises `ValueError`, so a cursor can never widen a
listing to jobs its filters exclude.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ._job import Job, JobStatus

#: The most jobs one page may hold.
MAX_LIMIT = 1000
_CURSOR_VERSION = 1
_MAX_CURSOR_LENGTH = 2048


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of a listing.

    Attributes:
        jobs: The jobs of this page, in the listing's order.
        next_cursor: Pass it as ``cursor`` for the next page; None on the last one.
    """

    jobs: list[Job] = field(default_factory=list)
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class QueueStats:
    """What one queue holds now.

    Attributes:
        name: The queue's name.
        paused: Whether its jobs are held back from workers.
        queued, scheduled, in_progress: Jobs waiting, delayed and running.
        completed, failed, canceled: Terminal jobs still retained.
    """

    name: str
    paused: bool = False
    queued: int = 0
    scheduled: int = 0
    in_progress: int = 0
    completed: int = 0
    failed: int = 0
    canceled: int = 0


def check_limit(limit: int) -> int:
    """``limit`` if it is an integer from 1 to `MAX_LIMIT`, else `ValueError`."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be an integer from 1 to {MAX_LIMIT}, not {limit!r}")
    return limit


def filters_of(status: JobStatus | None, queue: str | None) -> list[Any]:
    """The filters a cursor is bound to, as JSON."""
    return [None if status is None else status.value, queue]


def encode_cursor(filters: Sequence[Any], position: Sequence[Any]) -> str:
    """A cursor for the listing with ``filters``, continuing after ``position`` (a JSON
    list the store defines)."""
    payload = json.dumps([_CURSOR_VERSION, list(filters), list(position)], separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, filters: Sequence[Any]) -> list[Any]:
    """The position in ``cursor``, checked to belong to a listing with ``filters``.

    Raises:
        ValueError: the cursor is malformed or was made for other filters.
    """
    if not isinstance(cursor, str) or not cursor or len(cursor) > _MAX_CURSOR_LENGTH:
        raise ValueError("invalid cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        version, made_for, position = json.loads(raw)
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
        raise ValueError("invalid cursor") from None
    if version != _CURSOR_VERSION or not isinstance(position, list):
        raise ValueError("invalid cursor")
    if made_for != list(filters):
        raise ValueError("this cursor belongs to a listing with other filters")
    return position
