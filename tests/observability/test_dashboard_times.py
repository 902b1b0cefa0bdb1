"""How the dashboard writes a moment relative to now (the page's script writes the same;
the browser tests check it there)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from async_endpoints._dashboard_views import ago

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.4, "just now"),
        (42, "42 s ago"),
        (59.9, "59 s ago"),
        (60, "1 min ago"),
        (3599, "59 min ago"),
        (3600, "1 h ago"),
        (7140, "1 h 59 min ago"),
        (86399, "23 h 59 min ago"),
        (86400, "1 d ago"),
        (2 * 86400 + 3 * 3600 + 59, "2 d 3 h ago"),
        (-7170, "in 1 h 59 min"),
        (-30, "in 30 s"),
    ],
)
def test_a_moment_is_written_in_its_largest_unit_and_the_next(seconds: float, text: str) -> None:
    """From an hour up the next unit is kept: "in 1 h 59 min", not "in 1 h"."""
    assert ago(NOW - timedelta(seconds=seconds), NOW) == text


def test_without_now_the_moment_is_absolute() -> None:
    """The live part fetched every second carries absolute times (unchanged text)."""
    assert ago(NOW, None) == "2026-12-03 12:00:00.000 UTC"
