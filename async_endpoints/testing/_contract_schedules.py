"""The schedule contract (`ScheduleStore`): definitions kept, due ones found, and each cycle
fired once by a compare-and-set on its due time, unique schedules skipping while their
last job runs."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

from .._job import JobRequest, JobStatus, NewJob
from .._schedule import Schedule
from .._store_features import ScheduleStore
from ._contract_support import new_job, read, require
from ._kit import StoreKit


def schedules(kit: StoreKit) -> ScheduleStore:
    """``kit.store`` as a `ScheduleStore`, or skip the test when it is not one."""
    require(kit.store, ScheduleStore)
    assert isinstance(kit.store, ScheduleStore)
    return kit.store


def peer_schedules(kit: StoreKit) -> ScheduleStore:
    """``kit.other`` as a `ScheduleStore` (the test is skipped when ``kit.store`` is none)."""
    schedules(kit)
    assert isinstance(kit.other, ScheduleStore)
    return kit.other


async def whole_second(store: ScheduleStore, offset: float = 0.0) -> datetime:
    """The store's clock ``offset`` seconds from now, to the whole second (as cron times are)."""
    now = await store.schedule_time()
    return (now + timedelta(seconds=offset)).replace(microsecond=0)


def schedule(schedule_id: str, due: datetime, **fields: object) -> Schedule:
    """A schedule of handler "Echo", every minute, due at ``due``."""
    return Schedule(schedule_id, "Echo", "* * * * *", next_run_at=due).replace(**fields)


class ScheduleContract:
    """Cron schedules: stored, found when due, and fired once per cycle."""

    async def test_the_store_clock_is_an_aware_utc_moment(self, kit: StoreKit) -> None:
        """schedule_time is timezone-aware, and a schedule due then is due."""
        store = schedules(kit)
        now = await store.schedule_time()
        assert now.utcoffset() == timedelta(0)
        await store.upsert_schedule(schedule("now", now.replace(microsecond=0)))
        assert [s.id for s in await store.due_schedules(10)] == ["now"]

    async def test_an_upserted_schedule_is_listed_as_given(self, kit: StoreKit) -> None:
        """Every field comes back; list_schedules orders by id."""
        store = schedules(kit)
        due = await whole_second(store, 3600)
        full = Schedule(
            "b-nightly",
            "Echo",
            "0 3 * * *",
            "Europe/Berlin",
            unique=False,
            next_run_at=due,
            body='{"days": 30}',
            queue="low",
            tenant="acme",
        )
        assert await store.upsert_schedule(full) == full
        await store.upsert_schedule(schedule("a-other", due))
        listed = await store.list_schedules()
        assert [s.id for s in listed] == ["a-other", "b-nightly"]
        assert listed[1] == full
        assert await peer_schedules(kit).list_schedules() == listed

    async def test_an_upsert_with_the_same_timing_keeps_the_due_time_and_last_job(
        self, kit: StoreKit
    ) -> None:
        """Redeclared with the same expression and zone (as every process does at start),
        the cycle due is neither skipped nor repeated; the rest is replaced."""
        store = schedules(kit)
        due = await whole_second(store, -1)
        await store.upsert_schedule(schedule("s", due))
        job = await store.fire_schedule(schedule("s", due), due + timedelta(minutes=1), new_job())
        assert job is not None
        later = due + timedelta(hours=5)
        stored = await store.upsert_schedule(schedule("s", later, body="[1]", unique=False))
        assert stored.next_run_at == due + timedelta(minutes=1)
        assert stored.last_job_id == job.id
        assert (stored.body, stored.unique) == ("[1]", False)
        assert await store.list_schedules() == [stored]

    async def test_an_upsert_with_new_timing_takes_its_due_time_and_keeps_the_last_job(
        self, kit: StoreKit
    ) -> None:
        """A new expression (or zone) brings the engine's due time; the last job stays, so
        a unique schedule still waits for it."""
        store = schedules(kit)
        due = await whole_second(store, -1)
        await store.upsert_schedule(schedule("s", due))
        job = await store.fire_schedule(schedule("s", due), due + timedelta(minutes=1), new_job())
        assert job is not None
        later = due + timedelta(hours=5)
        stored = await store.upsert_schedule(schedule("s", later, cron="0 * * * *"))
        assert (stored.next_run_at, stored.last_job_id) == (later, job.id)
        zoned = await store.upsert_schedule(schedule("s", later, timezone="Asia/Tokyo"))
        assert zoned.next_run_at == later
        assert await store.due_schedules(10) == []

    async def test_a_new_timing_never_brings_back_a_cycle_that_fired(self, kit: StoreKit) -> None:
        """A new timing whose due time was computed from a clock read before the
        schedule's cycle fired (another process fired it meanwhile) would fire that cycle
        again: the store moves it to the new rule's first due time after that cycle; a due
        time after it is kept as given."""
        store = schedules(kit)
        due = await whole_second(store, -1)
        await store.upsert_schedule(schedule("s", due, cron="*/2 * * * * *"))
        job = await store.fire_schedule(schedule("s", due), due + timedelta(seconds=2), new_job())
        assert job is not None
        stale = schedule("s", due, cron="* * * * * *")
        stored = await peer_schedules(kit).upsert_schedule(stale)
        assert (stored.next_run_at, stored.last_job_id) == (due + timedelta(seconds=1), job.id)
        (listed,) = await store.list_schedules()
        assert listed.next_run_at == due + timedelta(seconds=1)
        assert await store.fire_schedule(schedule("s", due), due, new_job()) is None
        ahead = due + timedelta(hours=1)
        kept = await store.upsert_schedule(schedule("s", ahead, cron="0 * * * *"))
        assert kept.next_run_at == ahead

    async def test_a_removed_schedule_is_gone(self, kit: StoreKit) -> None:
        """remove_schedule says whether there was one; the schedule is no longer listed,
        due or fired."""
        store = schedules(kit)
        due = await whole_second(store, -1)
        await store.upsert_schedule(schedule("s", due))
        assert await store.remove_schedule("s") is True
        assert await store.remove_schedule("s") is False
        assert await store.list_schedules() == []
        assert await store.due_schedules(10) == []
        fired = await store.fire_schedule(schedule("s", due), due + timedelta(1), new_job())
        assert fired is None

    async def test_due_schedules_are_those_whose_time_has_come_soonest_first(
        self, kit: StoreKit
    ) -> None:
        """Up to ``limit`` of them, the soonest first; schedules not yet due are left out,
        however many there are."""
        store = schedules(kit)
        for n in range(50):
            await store.upsert_schedule(schedule(f"later-{n}", await whole_second(store, 600)))
        for n, ago in enumerate((3, 9, 6)):
            await store.upsert_schedule(schedule(f"due-{n}", await whole_second(store, -ago)))
        assert [s.id for s in await store.due_schedules(10)] == ["due-1", "due-2", "due-0"]
        assert [s.id for s in await store.due_schedules(2)] == ["due-1", "due-2"]

    async def test_firing_enqueues_the_cycle_job_and_moves_the_due_time(
        self, kit: StoreKit
    ) -> None:
        """The job is stored as enqueue would (Queued, its queue, tenant and body), becomes
        the last job, and the schedule is due next at the time given."""
        store = schedules(kit)
        due = await whole_second(store, -1)
        following = due + timedelta(seconds=3600)
        await store.upsert_schedule(schedule("s", due))
        cycle = NewJob(uuid.uuid4(), "Echo", 2, JobRequest(body="{}"), "low", tenant="acme")
        job = await store.fire_schedule(schedule("s", due), following, cycle)
        assert job is not None
        assert job.id == cycle.id
        stored = await read(kit.store, cycle.id)
        assert (stored.status, stored.queue, stored.tenant) == (JobStatus.QUEUED, "low", "acme")
        assert stored.request.body == "{}"
        (current,) = await store.list_schedules()
        assert (current.next_run_at, current.last_job_id) == (following, cycle.id)
        assert await store.due_schedules(10) == []

    async def test_a_cycle_fires_once(self, kit: StoreKit) -> None:
        """A second fire of the same cycle (another process that saw it due) enqueues
        nothing and changes nothing."""
        store = schedules(kit)
        due = await whole_second(store, -1)
        await store.upsert_schedule(schedule("s", due, unique=False))
        first = await store.fire_schedule(schedule("s", due), due + timedelta(1), new_job())
        late = new_job()
        again = await peer_schedules(kit).fire_schedule(schedule("s", due), due, late)
        assert first is not None and again is None
        assert await kit.store.get(late.id) is None
        (current,) = await store.list_schedules()
        assert (current.next_run_at, current.last_job_id) == (due + timedelta(1), first.id)

    async def test_concurrent_fires_of_a_cycle_enqueue_one_job(self, kit: StoreKit) -> None:
        """Ten fires at once, from two clients, of one due cycle: exactly one job."""
        store, peer = schedules(kit), peer_schedules(kit)
        due = await whole_second(store, -1)
        await store.upsert_schedule(schedule("s", due, unique=False))
        jobs = [new_job() for _ in range(10)]
        fired = await asyncio.gather(
            *(
                (store if n % 2 else peer).fire_schedule(
                    schedule("s", due), due + timedelta(minutes=1), job
                )
                for n, job in enumerate(jobs)
            )
        )
        winners = [job for job in fired if job is not None]
        assert len(winners) == 1
        kept = [await kit.store.get(job.id) for job in jobs]
        assert [job.id for job in kept if job is not None] == [winners[0].id]

    async def test_a_unique_schedule_skips_while_its_last_job_is_not_terminal(
        self, kit: StoreKit
    ) -> None:
        """The cycle is skipped (nothing enqueued, the due time still moves on) while the
        last job waits or runs; once it has ended, the next cycle fires."""
        store = schedules(kit)
        due = await whole_second(store, -3)
        await store.upsert_schedule(schedule("s", due))
        first = await store.fire_schedule(schedule("s", due), due + timedelta(seconds=1), new_job())
        assert first is not None
        skipped = new_job()
        cycle = schedule("s", due + timedelta(seconds=1))
        assert await store.fire_schedule(cycle, due + timedelta(seconds=2), skipped) is None
        assert await kit.store.get(skipped.id) is None
        (current,) = await store.list_schedules()
        assert current.next_run_at == due + timedelta(seconds=2)
        assert current.last_job_id == first.id
        (claim,) = await kit.store.claim(1, lease=kit.lease)
        assert await kit.store.complete(claim, None) is not None
        cycle = schedule("s", due + timedelta(seconds=2))
        later = await store.fire_schedule(cycle, due + timedelta(seconds=3), new_job())
        assert later is not None

    async def test_a_schedule_that_is_not_unique_fires_while_its_last_job_runs(
        self, kit: StoreKit
    ) -> None:
        """unique=False: every cycle enqueues a job."""
        store = schedules(kit)
        due = await whole_second(store, -3)
        await store.upsert_schedule(schedule("s", due, unique=False))
        for n in range(3):
            cycle = schedule("s", due + timedelta(seconds=n))
            fired = await store.fire_schedule(cycle, due + timedelta(seconds=n + 1), new_job())
            assert fired is not None

    async def test_a_unique_schedule_whose_last_job_is_gone_fires(self, kit: StoreKit) -> None:
        """A last job that no longer exists (dropped after its retention) does not hold
        the schedule back."""
        store = schedules(kit)
        due = await whole_second(store, -1)
        await store.upsert_schedule(schedule("s", due, last_job_id=uuid.uuid4()))
        fired = await store.fire_schedule(schedule("s", due), due + timedelta(1), new_job())
        assert fired is not None

    async def test_a_fire_of_a_redefined_schedule_is_refused(self, kit: StoreKit) -> None:
        """A process that read the schedule before it was redefined with a new due time
        fires nothing: the cycle it saw is no longer the schedule's."""
        store = schedules(kit)
        due = await whole_second(store, -1)
        await store.upsert_schedule(schedule("s", due))
        moved = due + timedelta(hours=1)
        await store.upsert_schedule(schedule("s", moved, cron="0 * * * *"))
        stale = new_job()
        assert await store.fire_schedule(schedule("s", due), moved, stale) is None
        assert await kit.store.get(stale.id) is None

    async def test_a_move_sets_the_due_time_once_and_fires_nothing(self, kit: StoreKit) -> None:
        """`move_schedule` is a compare-and-set on the due time: the first move of a read
        wins (seen by the other client, no job enqueued, the last job kept), a second
        move of the same read or of a removed schedule is refused."""
        store, peer = schedules(kit), peer_schedules(kit)
        ahead = await whole_second(store, 3600)
        last = uuid.uuid4()
        await store.upsert_schedule(schedule("s", ahead, last_job_id=last))
        sooner = ahead - timedelta(minutes=59)
        assert await store.move_schedule(schedule("s", ahead), sooner) is True
        assert await peer.move_schedule(schedule("s", ahead), ahead) is False
        (current,) = await peer.list_schedules()
        assert (current.next_run_at, current.last_job_id) == (sooner, last)
        assert await kit.store.claim(1, lease=kit.lease) == []
        now = await whole_second(store, -1)
        assert await peer.move_schedule(schedule("s", sooner), now) is True
        assert [found.id for found in await store.due_schedules(10)] == ["s"]
        await store.remove_schedule("s")
        assert await store.move_schedule(schedule("s", now), ahead) is False
        assert await store.list_schedules() == []
