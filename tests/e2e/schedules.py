"""Reading what the cron schedule tests' app (`tests.apps.schedule_app`) fired: one job
per cycle, each naming the cycle it was fired for."""

from __future__ import annotations

from typing import NamedTuple

from async_endpoints import AsyncEndpoints, JobStatus
from async_endpoints._job import parse_time
from async_endpoints_redis import RedisJobStore

APP = "tests.apps.schedule_app"


async def cycles_fired(url: str, prefix: str) -> list[Cycle]:
    """Every cycle job in the store: its due time (second) and when it was enqueued. The
    due time is the result of a Completed job, the ``x-schedule-due`` header of others."""
    store = RedisJobStore(url, prefix=prefix)
    reader = AsyncEndpoints(store=store)
    cycles: list[Cycle] = []
    cursor = None
    try:
        while True:
            page = await reader.list_jobs(limit=200, cursor=cursor)
            for job in page.jobs:
                named = job.result if job.status is JobStatus.COMPLETED else None
                due = parse_time(named or dict(job.request.headers)["x-schedule-due"])
                assert due is not None
                cycles.append(Cycle(int(due.timestamp()), job.created_at.timestamp()))
            cursor = page.next_cursor
            if cursor is None:
                return sorted(cycles)
    finally:
        await store.aclose()


class Cycle(NamedTuple):
    """One cycle job: the second its cycle was due at, and when it was enqueued."""

    due: int
    created: float


def lost_cycles(cycles: list[Cycle], until: int) -> list[int]:
    """The due seconds from the first cycle to ``until`` that no job fired, less those a
    late cycle stepped over: with every scheduler stalled past a second (a machine slower
    than the schedule), the late cycle's next due time is computed from now, so the
    cycles it stepped over are caught up by it (the documented catch-up), not lost."""
    fired = {cycle.due for cycle in cycles}
    lost = []
    for second in range(cycles[0].due, until):
        if second in fired:
            continue
        before = [cycle for cycle in cycles if cycle.due < second]
        if not before or max(cycle.created for cycle in before) < second:
            lost.append(second)
    return lost
