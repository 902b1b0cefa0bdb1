"""Listing jobs: the page and count types, the orders, and the opaque paging cursor.

Orders, by the ``status`` asked for:

- ``Queued``: queues in the order given to the store's claims, each in the order claims
  take its jobs while nothing changes: first its claimable jobs in the tenants' turns (the
  oldest claimable job of every tenant in the order of their turns, then the second of
  those that have two, and so on; the jobs without a tenant take turns as one tenant, and
  a queue without tenants is simply oldest first, by when each job became claimable:
  its submission, the end of its delay or retry backoff, its retry or requeue), then
  the jobs waiting behind their partition key, by when each was queued (no claim takes
  one before the job ahead of it ends, which puts it last of its tenant then);
- ``Scheduled``: by ``run_at``, soonest first;
- ``InProgress``: by ``started_at``, oldest first;
- ``Completed``, ``Failed``, ``Canceled``: newest ``completed_at`` first;
- no status: newest ``created_at`` first.

Ties are broken by job id, so an order is total and a cursor names one point in it. The
in-memory store orders by the moment of each transition on its monotonic clock, which
agrees with the wall-clock times shown unless the wall clock stepped.

A cursor is a digest of the listing's filters and a store-defined position, as base64url
JSON. It is not secret (it holds no job data) but it is checked: a cursor that does not
decode, or that was made for other filters, raises `ValueError`, so a cursor can never
widen a listing to jobs its filters exclude. A cursor holds its filters themselves (the
first version, which every release reads) while that keeps it within
`_FILTERS_HELD_MOST` characters, else their digest (the second version), so that a long
tenant (255 characters outside ASCII) or a long list of queues does not make a cursor
too long to be taken back.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ._job import Job, JobStatus

#: The most jobs one page may hold.
MAX_LIMIT = 1000
#: The first version holds the filters themselves; the second holds their digest.
_FILTERS_HELD = 1
_CURSOR_VERSION = 2
#: The longest cursor of the first version made: the most earlier releases read, so
#: that instances of two releases side by side (a rolling upgrade) take each other's.
_FILTERS_HELD_MOST = 2048
#: The longest cursor read: far more than any store's position needs (16 shards' places
#: in a sharded store's, each with a queue name the app did not configure), little enough
#: that a forged one costs nothing to refuse.
_MAX_CURSOR_LENGTH = 16384


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


def filters_of(
    status: JobStatus | None,
    queue: str | None,
    tenant: str | None = None,
    batch_id: uuid.UUID | None = None,
) -> list[Any]:
    """The filters a cursor is bound to, as JSON (the tenant only when one is given, the
    tenant and the batch id as a string when a batch is given, so cursors made before
    tenants and batches existed stay valid)."""
    filters: list[Any] = [None if status is None else status.value, queue]
    if tenant is not None or batch_id is not None:
        filters.append(tenant)
    if batch_id is not None:
        filters.append(str(batch_id))
    return filters


def encode_cursor(filters: Sequence[Any], position: Sequence[Any]) -> str:
    """A cursor for the listing with ``filters``, continuing after ``position`` (a JSON
    list the store defines)."""
    held = _encoded([_FILTERS_HELD, list(filters), list(position)])
    if len(held) <= _FILTERS_HELD_MOST:
        return held
    return _encoded([_CURSOR_VERSION, _digest(filters), list(position)])


def _encoded(payload: list[Any]) -> str:
    text = json.dumps(payload, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


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
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError, RecursionError):
        raise ValueError("invalid cursor") from None
    if type(version) is not int or version not in (_FILTERS_HELD, _CURSOR_VERSION):
        raise ValueError("invalid cursor")
    if not _plain(position, 2):
        raise ValueError("invalid cursor")
    bound = list(filters) if version == _FILTERS_HELD else _digest(filters)
    if made_for != bound:
        raise ValueError("this cursor belongs to a listing with other filters")
    return list(position)


def _digest(filters: Sequence[Any]) -> str:
    """What binds a cursor to ``filters``: 128 bits of their BLAKE2b digest, base64url."""
    text = json.dumps(list(filters), separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _plain(value: Any, depth: int) -> bool:
    """Whether ``value`` is a list of strings, None, finite floats, 64-bit integers, or
    such lists, at most ``depth`` levels deep: what a store's position can be."""
    if not isinstance(value, list) or depth < 1:
        return False
    return all(
        _plain(item, depth - 1) if isinstance(item, list) else _scalar(item) for item in value
    )


def _scalar(item: Any) -> bool:
    if isinstance(item, bool):
        return False
    if isinstance(item, int):
        return -(2**63) <= item < 2**63
    if isinstance(item, float):
        return math.isfinite(item)
    return item is None or isinstance(item, str)
