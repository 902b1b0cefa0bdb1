"""The positions of the in-memory store's listing cursors, checked: each helper reads one
field as the listing that made it wrote it, and raises `ValueError` for anything else (a
forged or damaged cursor is a bad request, never another page)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from typing import Any

from ._job import Job
from ._memory_index import entry_of

#: A listing's walk: (position, the job, or None for one the page passes over).
Walk = Iterator[tuple[list[Any], Job | None]]


def entry(position: list[Any]) -> int:
    """The index entry a ``[µs, id]`` position names."""
    if len(position) != 2 or not is_integer(position[0]):
        raise ValueError("invalid cursor")
    return entry_of(position[0], job_key(position[1]))


def job_key(text: Any) -> int:
    if not isinstance(text, str):
        raise ValueError("invalid cursor")
    try:
        return uuid.UUID(hex=text).int
    except ValueError:
        raise ValueError("invalid cursor") from None


def one(position: list[Any]) -> Any:
    if len(position) != 1:
        raise ValueError("invalid cursor")
    return position[0]


def count(value: Any) -> int:
    if not is_integer(value) or value < 0:
        raise ValueError("invalid cursor")
    return int(value)


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
