"""The ordered index of the in-memory store's listings: a sorted set of integers that stays
sorted through any mix of additions and removals, and reads on from any point."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from async_endpoints._memory_index import CHUNK, OrderedInts, due_entry, entry, parts


@pytest.mark.parametrize("seed", range(5))
def test_ordered_ints_match_a_sorted_list_through_adds_and_removes(seed: int) -> None:
    """Thousands of random additions and removals (appends, inserts, removals at the
    front and anywhere): the set, its length and every read from a point agree with a
    sorted list."""
    rng = random.Random(seed)
    ordered, model = OrderedInts(), set()
    for step in range(6 * CHUNK * 4):
        if model and rng.random() < 0.45:
            value = min(model) if rng.random() < 0.3 else rng.choice(sorted(model))
            ordered.remove(value)
            model.discard(value)
        else:
            value = step * 10 if rng.random() < 0.5 else rng.randrange(step * 10 + 1)
            if value not in model:
                ordered.add(value)
                model.add(value)
        if step % 97 == 0:
            expected = sorted(model)
            assert list(ordered.after(None)) == expected and len(ordered) == len(model)
            point = rng.randrange(-1, step * 10 + 2)
            assert list(ordered.after(point)) == [v for v in expected if v > point]
    assert all(len(chunk) <= 2 * CHUNK for chunk in ordered.chunks)
    assert ordered.maxes == [chunk[-1] for chunk in ordered.chunks]


def test_removing_a_value_that_is_not_there_is_a_key_error() -> None:
    """remove of a missing value never removes another."""
    ordered = OrderedInts()
    ordered.add(5)
    with pytest.raises(KeyError):
        ordered.remove(4)
    assert list(ordered.after(None)) == [5]


def test_entries_order_by_time_then_by_id_and_give_both_back() -> None:
    """An entry sorts by its moment (to the microsecond), then by the id; parts() gives
    the microseconds and the id back."""
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    later = moment + timedelta(microseconds=1)
    assert entry(moment, 2**128 - 1) < entry(later, 0) < entry(later, 1)
    assert parts(entry(later, 7)) == (1_767_225_600_000_001, 7)


def test_due_entries_order_by_due_time_negative_ones_included() -> None:
    """Floats of either sign, in their numeric order, then by id."""
    dues = [-1e9, -2.5, -1e-300, 0.0, 1e-300, 0.1, 2.0, 2.0000000000000004, 1e12]
    entries = [due_entry(due, 1) for due in dues]
    assert entries == sorted(entries)
    assert due_entry(2.0, 1) < due_entry(2.0, 2) < due_entry(2.0000000000000004, 0)
