"""Cursors from outside are checked before a store reads them: anything that is not a
position this library could have made is a ValueError, never another exception (a 500)."""

from __future__ import annotations

import base64
import json

import pytest

from async_endpoints import InMemoryJobStore, JobStatus
from async_endpoints._listing import decode_cursor, encode_cursor, filters_of


def forged(payload: str) -> str:
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


SCHEDULED = filters_of(JobStatus.SCHEDULED, None)


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param(forged("[" * 1400), id="nested past the recursion limit"),
        pytest.param(forged(json.dumps([1, SCHEDULED, [10**400, 0]])), id="a 400-digit number"),
        pytest.param(forged(json.dumps([True, SCHEDULED, [1, 0]])), id="version true"),
        pytest.param(forged('[1, ["Scheduled", null], [NaN, 0]]'), id="NaN"),
        pytest.param(forged(json.dumps([1, SCHEDULED, [[[[1]]]]])), id="nested positions"),
        pytest.param(forged(json.dumps([1, SCHEDULED, [{"a": 1}]])), id="an object"),
        pytest.param("!!!", id="not base64"),
    ],
)
async def test_a_forged_cursor_is_a_value_error(cursor: str) -> None:
    with pytest.raises(ValueError, match="cursor"):
        decode_cursor(cursor, SCHEDULED)
    store = InMemoryJobStore()
    with pytest.raises(ValueError, match="cursor"):
        await store.list_jobs(status=JobStatus.SCHEDULED, cursor=cursor)


def test_a_cursor_made_here_reads_back() -> None:
    cursor = encode_cursor(SCHEDULED, [12.5, "abc", None, [1, 2]])
    assert decode_cursor(cursor, SCHEDULED) == [12.5, "abc", None, [1, 2]]


def test_a_cursor_of_the_first_version_holding_its_filters_still_reads_back() -> None:
    """Cursors handed out before filters were bound by digest (a rolling upgrade, a page
    left open) continue their listing, and only theirs."""
    old = forged(json.dumps([1, SCHEDULED, [12.5, "abc"]], separators=(",", ":")))
    assert decode_cursor(old, SCHEDULED) == [12.5, "abc"]
    with pytest.raises(ValueError, match="other filters"):
        decode_cursor(old, filters_of(JobStatus.QUEUED, None))


def test_a_cursor_holds_its_filters_while_short_and_their_digest_when_long() -> None:
    """A cursor of short filters holds them (the first version, which earlier releases
    read: instances of two releases take each other's during a rolling upgrade); the
    longest tenant of four-byte characters would make that one too long, so its cursor
    holds their digest instead and stays short. Each is refused for the other."""
    short = filters_of(JobStatus.QUEUED, "q", "a")
    long = filters_of(JobStatus.QUEUED, "q", "\U0001d518" * 255)
    position = ["default", "0000001234.5-abc"]
    made_short, made_long = encode_cursor(short, position), encode_cursor(long, position)
    assert json.loads(base64.urlsafe_b64decode(made_short + "==")) == [1, short, position]
    assert json.loads(base64.urlsafe_b64decode(made_long + "=="))[0] == 2
    assert len(made_long) < 120
    assert decode_cursor(made_long, long) == decode_cursor(made_short, short) == position
    with pytest.raises(ValueError, match="other filters"):
        decode_cursor(made_long, short)
    with pytest.raises(ValueError, match="other filters"):
        decode_cursor(made_short, long)
