"""Paging a sharded store's listings while jobs and batches change: the cursor resumes each
shard right after the last of its items shown, so what is added or removed before that
position since neither skips nor repeats an item that stays listed."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest

from async_endpoints import JobStatus
from async_endpoints._batch import NewBatch
from async_endpoints._job import NewJob
from tests.redis.conftest import StoreFactory

pytestmark = pytest.mark.redis

QUEUES = ("default", "low")


def new_job(**options: object) -> NewJob:
    return NewJob(uuid.uuid4(), "Echo", 0, **options)  # type: ignore[arg-type]


Page = tuple[list[uuid.UUID], str | None]


async def listed_while(
    read_page: Callable[[str | None], Awaitable[Page]], between: Callable[[], Awaitable[object]]
) -> Counter[uuid.UUID]:
    """How often each id was listed, paging with ``read_page`` (the ids of a page and the
    next cursor) to the end and calling ``between`` between two pages."""
    seen: Counter[uuid.UUID] = Counter()
    ids, cursor = await read_page(None)
    seen.update(ids)
    while cursor is not None:
        await between()
        ids, cursor = await read_page(cursor)
        seen.update(ids)
    return seen


def assert_each_listed_once(seen: Counter[uuid.UUID], stayed: set[uuid.UUID]) -> None:
    """Every id of ``stayed`` listed exactly once, and no id listed twice."""
    assert {item for item in stayed if seen[item] != 1} == set()
    assert max(seen.values()) == 1


async def test_queued_jobs_that_stay_queued_are_listed_once_while_others_are_claimed(
    make_store: StoreFactory,
) -> None:
    """30 jobs wait in the paused queue "low" behind 30 in "default"; between pages of the
    Queued listing (5 a page) a worker claims default jobs (removed before the listing's
    position). Every low job is listed exactly once."""
    store = await make_store(shards=3)
    await store.pause(["low"])
    low = {(await store.enqueue(new_job(queue="low"))).id for _ in range(30)}
    for _ in range(30):
        await store.enqueue(new_job(queue="default"))

    async def queued_page(cursor: str | None) -> Page:
        page = await store.list_jobs(status=JobStatus.QUEUED, limit=5, cursor=cursor, queues=QUEUES)
        return [job.id for job in page.jobs], page.next_cursor

    seen = await listed_while(queued_page, lambda: store.claim(3, lease=30, queues=QUEUES))
    assert_each_listed_once(seen, low)


async def test_jobs_listed_newest_first_are_listed_once_while_new_ones_arrive(
    make_store: StoreFactory,
) -> None:
    """Every job, newest first, 7 a page; between pages 3 new jobs arrive (before the
    listing's position). Every job there before the first page is listed exactly once."""
    store = await make_store(shards=3)
    before = {(await store.enqueue(new_job())).id for _ in range(40)}

    async def newest_first(cursor: str | None) -> Page:
        page = await store.list_jobs(limit=7, cursor=cursor)
        return [job.id for job in page.jobs], page.next_cursor

    async def three_new_jobs() -> None:
        for _ in range(3):
            await store.enqueue(new_job())

    assert_each_listed_once(await listed_while(newest_first, three_new_jobs), before)


async def test_batches_are_listed_once_while_new_ones_arrive(make_store: StoreFactory) -> None:
    """Batches newest first, 3 a page, while new batches are created between pages: every
    batch there before the first page is listed exactly once."""
    store = await make_store(shards=3)

    async def new_batch() -> uuid.UUID:
        batch_id = uuid.uuid4()
        await store.create_batch(NewBatch(batch_id, [new_job(batch_id=batch_id)]))
        return batch_id

    before = {await new_batch() for _ in range(15)}

    async def batches(cursor: str | None) -> Page:
        page = await store.list_batches(limit=3, cursor=cursor)
        return [batch.id for batch in page.batches], page.next_cursor

    assert_each_listed_once(await listed_while(batches, new_batch), before)
