"""What an `InMemoryJobStore` may claim next: the lane of each partition key, the tenants'
turns in each queue, and the timer of the delayed jobs.

A waiting job (Queued or Scheduled) is *claimable* when it has no partition key or is the
first job of its key's lane (see `async_endpoints._lifecycle`). Only claimable jobs are
filed here for claims:

- a claimable Queued job is in its queue's `TenantTurns`;
- a claimable Scheduled job has an entry in the timer, a heap by due time;
- a job waiting behind its key is in its lane only, until the job before it ends and
  `leave` names it: the store then files it as claimable (promoting it when its time has
  come) in the same step.

So a claim never meets a job it may not take, and takes each job in O(1) whatever the
tenants, keys and backlog. A cancelled job's turn stays behind in its tenant's queue,
recognised as stale in O(1) when reached (the store keeps one `Job` object per live job
and replaces it at every transition, so an entry is current while ``jobs[key] is
entry_job``); a timer entry is current while its job is due at the entry's time, and the
stale ones are filtered out once they are most of the timer. A tenant, a lane or a
queue's turns that have no job left are dropped at once, with any stale entries they hold.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Iterator, Mapping, Sequence
from heapq import heapify, heappop, heappush

from ._job import Job

_REBUILD_AFTER = 1024  # stale timer entries tolerated before they are filtered out


class _Tenant:
    __slots__ = ("jobs", "live")

    def __init__(self) -> None:
        self.jobs: deque[Job] = deque()  # oldest first; stale entries skipped
        self.live = 0  # the entries that are current


class TenantTurns:
    """One queue's claimable Queued jobs: a queue per tenant (None: the jobs without one),
    and the tenants that have a job in the order of their next turn."""

    __slots__ = ("tenants", "turns")

    def __init__(self) -> None:
        self.tenants: dict[str | None, _Tenant] = {}
        self.turns: OrderedDict[str | None, None] = OrderedDict()

    def __bool__(self) -> bool:
        return bool(self.turns)

    def __len__(self) -> int:
        """How many claimable jobs the queue holds, in O(tenants)."""
        return sum(tenant.live for tenant in self.tenants.values())

    def push(self, job: Job) -> None:
        """File the claimable ``job`` last of its tenant (a new tenant's turn comes last)."""
        tenant = self.tenants.get(job.tenant)
        if tenant is None:
            tenant = self.tenants[job.tenant] = _Tenant()
            self.turns[job.tenant] = None
        tenant.jobs.append(job)
        tenant.live += 1

    def take(self, jobs: Mapping[int, Job]) -> Job | None:
        """The oldest job of the tenant whose turn it is (its next turn then comes last),
        or None when there is none."""
        if not self.turns:
            return None
        name, _ = self.turns.popitem(last=False)
        tenant = self.tenants[name]
        entries = tenant.jobs
        job = entries.popleft()
        while jobs.get(job.id.int) is not job:  # cancelled (and perhaps requeued) since
            job = entries.popleft()
        tenant.live -= 1
        if tenant.live:
            self.turns[name] = None
        else:
            del self.tenants[name]
        return job

    def claimable(self, name: str | None, jobs: Mapping[int, Job]) -> Sequence[Job]:
        """The claimable jobs of tenant ``name`` (which has a turn), oldest first: the
        claim order is the first job of every tenant in the order of `turns`, then their
        second ones, and so on. Its stale entries (see `take`) are dropped here first,
        O(entries) once."""
        tenant = self.tenants[name]
        if len(tenant.jobs) != tenant.live:
            tenant.jobs = deque(job for job in tenant.jobs if jobs.get(job.id.int) is job)
        return tenant.jobs

    def drop(self, job: Job) -> None:
        """Forget the claimable ``job`` (it is being cancelled)."""
        name = job.tenant
        tenant = self.tenants[name]
        tenant.live -= 1
        if not tenant.live:
            del self.tenants[name], self.turns[name]


class ReadyJobs:
    """The claimable jobs of every queue, the lanes of the partition keys and the timer."""

    __slots__ = ("due", "lanes", "queues", "stale", "timer")

    def __init__(self, due: Mapping[int, float]) -> None:
        self.queues: dict[str, TenantTurns] = {}
        #: key -> the ids (as integers) of its waiting and running jobs, in submission order
        #: (a cancelled attempt that still runs holds the first place as ``~id``: `hold`).
        self.lanes: dict[str, OrderedDict[int, None]] = {}
        self.timer: list[tuple[float, int, int]] = []  # heap of (due, seq, key)
        #: Every Scheduled job's due time, kept by the store (`LiveJobs.due`): a timer
        #: entry is current while its job is due at the entry's time.
        self.due = due
        self.stale = 0  # timer entries of jobs no longer timed (an estimate)

    @property
    def next_due(self) -> float:
        """When the earliest timer entry is due (perhaps a stale one); infinity if none."""
        return self.timer[0][0] if self.timer else math.inf

    # Lanes

    def join(self, job: Job) -> bool:
        """Put a job that starts waiting (enqueued, scheduled, requeued) last in its key's
        lane; whether it is claimable (no key, or first of its lane)."""
        name = job.partition_key
        if name is None:
            return True
        lane = self.lanes.get(name)
        if lane is None:
            self.lanes[name] = OrderedDict.fromkeys((job.id.int,))
            return True
        lane[job.id.int] = None
        return False

    def is_claimable(self, job: Job) -> bool:
        """Whether the waiting or running ``job`` is first in its lane (or has no key)."""
        name = job.partition_key
        return name is None or next(iter(self.lanes[name])) == job.id.int

    def leave(self, job: Job) -> int | None:
        """Take the ended ``job`` out of its lane; the key of the job that it leaves first
        (to be made claimable now), or None."""
        name = job.partition_key
        if name is None:
            return None
        return self._leave(name, job.id.int)

    def hold(self, job: Job) -> None:
        """The running ``job``, first of its lane, was cancelled: its attempt keeps the
        lane's first place (as the entry ``~id``, so that the job itself may join the lane
        again if requeued) until `release`, when the handler has ended."""
        name = job.partition_key
        if name is None:
            return
        lane, key = self.lanes[name], job.id.int
        lane[~key] = None
        lane.move_to_end(~key, last=False)
        del lane[key]

    def release(self, name: str, key: int) -> int | None:
        """The held attempt of job ``key`` (see `hold`) has ended: as `leave`."""
        return self._leave(name, ~key)

    def _leave(self, name: str, key: int) -> int | None:
        lane = self.lanes[name]
        was_first = next(iter(lane)) == key
        del lane[key]
        if not lane:
            del self.lanes[name]
            return None
        return next(iter(lane)) if was_first else None

    # Turns

    def push(self, job: Job) -> None:
        """File the claimable Queued ``job`` in its queue's turns."""
        turns = self.queues.get(job.queue)
        if turns is None:
            turns = self.queues[job.queue] = TenantTurns()
        turns.push(job)

    def take(self, queue: str, jobs: Mapping[int, Job]) -> Job | None:
        """The next job of ``queue`` in the tenants' turns, or None."""
        turns = self.queues.get(queue)
        if turns is None:
            return None
        job = turns.take(jobs)
        if not turns:
            del self.queues[queue]
        return job

    def drop(self, job: Job) -> None:
        """Forget the claimable Queued ``job`` (it is being cancelled)."""
        turns = self.queues[job.queue]
        turns.drop(job)
        if not turns:
            del self.queues[job.queue]

    # The timer

    def time(self, key: int, seq: int) -> None:
        """Put the claimable Scheduled job ``key`` on the timer, at its due time (``seq``
        orders the jobs due at the same moment)."""
        heappush(self.timer, (self.due[key], seq, key))

    def pop_due(self, now: float) -> Iterator[int]:
        """Take the timed jobs due by ``now`` off the timer, earliest first (the store
        promotes each before the next is read, so it is not due any more)."""
        timer, due = self.timer, self.due
        while timer and timer[0][0] <= now:
            at, _, key = heappop(timer)
            if due.get(key) == at:
                yield key
            elif self.stale:
                self.stale -= 1

    def untime(self) -> None:
        """Count a timer entry made stale (its job is being cancelled); filter them out
        once they are most of the timer."""
        self.stale += 1
        timer = self.timer
        if self.stale >= len(timer):  # never more than there are: all of them are stale
            timer.clear()
            self.stale = 0
        elif self.stale > _REBUILD_AFTER and 2 * self.stale > len(timer):
            due = self.due
            timer[:] = [item for item in timer if due.get(item[2]) == item[0]]
            heapify(timer)
            self.stale = 0
