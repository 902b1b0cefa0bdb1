"""`MemorySchedules`: the `ScheduleStore` part of `InMemoryJobStore`.

The schedules live in a dict by id, and their due times in a heap of ``(due, seq, id)``
entries: a schedule's current entry is the one whose ``seq`` its record names, older ones
are dropped as they surface (and the heap is rebuilt when they outnumber the live ones),
so `due_schedules` costs O(log n) per schedule returned, whatever the number defined.
Nothing here awaits inside a change, so each method is atomic on the event loop. Due times
are read on the store's wall clock (cron is wall-clock time).
"""

from __future__ import annotations

import heapq
import itertools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ._cron import cron_rule
from ._job import Job, NewJob
from ._schedule import Schedule

_COMPACT_OVER = 64  # stale heap entries tolerated beyond twice the live ones


class ScheduleBook:
    """The schedules, and their due times in a heap."""

    def __init__(self) -> None:
        self.schedules: dict[str, Schedule] = {}
        self._entries: dict[str, int] = {}  # id -> seq of its live heap entry
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        #: id -> the due time of the cycle last fired (`upsert_schedule` never goes back
        #: to it or before).
        self.fired: dict[str, datetime] = {}

    def put(self, schedule: Schedule) -> None:
        """Store ``schedule``, filing its due time unless it is filed already."""
        previous = self.schedules.get(schedule.id)
        self.schedules[schedule.id] = schedule
        if previous is not None and previous.next_run_at == schedule.next_run_at:
            return
        self._entries.pop(schedule.id, None)
        if schedule.next_run_at is not None:
            seq = next(self._seq)
            self._entries[schedule.id] = seq
            heapq.heappush(self._heap, (schedule.next_run_at.timestamp(), seq, schedule.id))
            if len(self._heap) > 2 * len(self._entries) + _COMPACT_OVER:
                self._compact()

    def remove(self, schedule_id: str) -> bool:
        """Delete the schedule (its heap entry goes stale); False when there was none."""
        self._entries.pop(schedule_id, None)
        self.fired.pop(schedule_id, None)
        return self.schedules.pop(schedule_id, None) is not None

    def due(self, now: float, limit: int) -> list[Schedule]:
        """Up to ``limit`` schedules due at ``now`` (seconds since the epoch), soonest first."""
        taken: list[tuple[float, int, str]] = []
        heap = self._heap
        while heap and len(taken) < limit and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if self._entries.get(entry[2]) == entry[1]:
                taken.append(entry)
        for entry in taken:
            heapq.heappush(heap, entry)
        return [self.schedules[schedule_id] for _, _, schedule_id in taken]

    def _compact(self) -> None:
        self._heap = [entry for entry in self._heap if self._entries.get(entry[2]) == entry[1]]
        heapq.heapify(self._heap)


class MemorySchedules:
    """Cron schedules kept in memory; see `async_endpoints.ScheduleStore`."""

    _wall: Callable[[], float]
    _schedule_book: ScheduleBook

    if TYPE_CHECKING:

        async def enqueue(self, new_job: NewJob, *, max_waiting: int | None = None) -> Job: ...

        async def get(self, job_id: uuid.UUID) -> Job | None: ...

    async def upsert_schedule(self, schedule: Schedule) -> Schedule:
        """Store ``schedule``; an existing one's ``last_job_id`` is kept, and so is its
        ``next_run_at`` when the timing is the same. See `ScheduleStore.upsert_schedule`."""
        book = self._schedule_book
        existing = book.schedules.get(schedule.id)
        if existing is not None:
            due = schedule.next_run_at
            if existing.same_timing(schedule):
                due = existing.next_run_at or due
            elif (fired := book.fired.get(schedule.id)) is not None and due and due <= fired:
                # computed from a clock read before that cycle fired: the one after it
                due = cron_rule(schedule.cron, schedule.timezone).next_after(fired)
            schedule = schedule.replace(next_run_at=due, last_job_id=existing.last_job_id)
        book.put(schedule)
        return schedule

    async def remove_schedule(self, schedule_id: str) -> bool:
        """Delete the schedule; False when there was none."""
        return self._schedule_book.remove(schedule_id)

    async def list_schedules(self) -> list[Schedule]:
        """Every schedule, by id."""
        book = self._schedule_book.schedules
        return [book[schedule_id] for schedule_id in sorted(book)]

    async def schedule_time(self) -> datetime:
        """The store's wall clock now."""
        return datetime.fromtimestamp(self._wall(), UTC)

    async def due_schedules(self, limit: int) -> list[Schedule]:
        """Up to ``limit`` due schedules, soonest first; O(log n) per schedule returned."""
        return self._schedule_book.due(self._wall(), limit)

    async def fire_schedule(
        self, schedule: Schedule, next_run_at: datetime, new_job: NewJob
    ) -> Job | None:
        """Fire the cycle due at ``schedule.next_run_at``; see `ScheduleStore.fire_schedule`."""
        book = self._schedule_book
        stored = book.schedules.get(schedule.id)
        if stored is None or stored.next_run_at != schedule.next_run_at:
            return None
        # The cycle is this call's from here on: a concurrent call finds it moved.
        book.put(stored.replace(next_run_at=next_run_at))
        if schedule.next_run_at is not None:  # spent, job or not (see upsert_schedule)
            book.fired[schedule.id] = schedule.next_run_at
        if stored.unique and stored.last_job_id is not None:
            last = await self.get(stored.last_job_id)
            if last is not None and not last.status.is_terminal:
                return None
        job = await self.enqueue(new_job)
        current = book.schedules.get(schedule.id)
        if current is not None:
            book.put(current.replace(last_job_id=job.id))
        return job

    async def move_schedule(self, schedule: Schedule, next_run_at: datetime) -> bool:
        """Move the due time, no cycle fired; see `ScheduleStore.move_schedule`."""
        book = self._schedule_book
        stored = book.schedules.get(schedule.id)
        if stored is None or stored.next_run_at != schedule.next_run_at:
            return False
        book.put(stored.replace(next_run_at=next_run_at))
        return True
