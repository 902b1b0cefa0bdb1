"""What is particular to the in-memory store's schedules (the contract suite covers what
every store shares): the heap of due times stays small and never returns a schedule
twice, however often schedules are redefined or removed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from async_endpoints import Schedule
from async_endpoints._memory_schedules import ScheduleBook

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def schedule(schedule_id: str, due: datetime) -> Schedule:
    return Schedule(schedule_id, "Echo", "* * * * *", next_run_at=due)


def test_a_schedule_redefined_many_times_is_due_once() -> None:
    """Each redefinition with a new due time leaves a stale entry behind; only the live
    one counts, and stale entries are dropped as they surface or by a compaction."""
    book = ScheduleBook()
    for n in range(1_000):
        book.put(schedule("s", T0 + timedelta(seconds=n % 7)))
        book.put(schedule(f"other-{n % 3}", T0 + timedelta(days=1, seconds=n)))
    assert len(book._heap) <= 2 * len(book.schedules) + 64
    due = book.due((T0 + timedelta(hours=1)).timestamp(), 10)
    assert [s.id for s in due] == ["s"]


def test_removed_schedules_are_never_due_and_a_new_one_with_the_same_id_is() -> None:
    """Removing leaves a stale entry; adding the id again files a fresh one."""
    book = ScheduleBook()
    book.put(schedule("s", T0))
    assert book.remove("s") is True
    assert book.due(T0.timestamp(), 10) == []
    book.put(schedule("s", T0))
    assert [s.id for s in book.due(T0.timestamp(), 10)] == ["s"]
    assert [s.id for s in book.due(T0.timestamp(), 10)] == ["s"]  # due() leaves them filed


def test_the_same_due_time_filed_again_adds_no_entry() -> None:
    """Redeclaring an unchanged schedule (every process at start) costs no heap entry."""
    book = ScheduleBook()
    for _ in range(100):
        book.put(schedule("s", T0))
    assert len(book._heap) == 1
