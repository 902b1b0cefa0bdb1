"""`LiveJobs`: the waiting and running jobs of an `InMemoryJobStore` by id, each filed by its
status in the ordered index its listing pages through, with the counts per queue.

The store keeps exactly one `Job` object per live job and replaces it at every transition
through `put`, which moves the job's entry from the index of its old status to that of its
new one and moves it between the counts, so indexes, counts and jobs never disagree:

- Queued: per queue, by when each job became due there (`queued_moment`; the jobs waiting
  behind their partition key too);
- Scheduled: by due time on the store's monotonic clock (``run_at``'s order unless the
  wall clock stepped between two schedulings; the due time is what counts), the due
  times in `LiveJobs.due`;
- InProgress: by ``started_at``.

`LiveJobs.waiting` counts the Queued and Scheduled jobs that ``max_waiting`` limits: the
webhook deliveries (the keys in ``exempt``, the store's deliveries) are not among them.
"""

from __future__ import annotations

from collections.abc import Container
from datetime import datetime

from ._job import Job, JobStatus
from ._memory_index import OrderedInts, due_entry, entry
from ._memory_index import queued_entry as make_queued_entry

QUEUED, SCHEDULED, RUNNING = 0, 1, 2  # slots of a queue's counts


class LiveJobs:
    """The live jobs (Queued, Scheduled, InProgress) by their id's integer, indexed and
    counted by status."""

    __slots__ = (
        "counts",
        "due",
        "exempt",
        "jobs",
        "queued",
        "queued_entries",
        "queued_seq",
        "running",
        "scheduled",
        "waiting",
    )

    def __init__(self, exempt: Container[int] = frozenset()) -> None:
        self.jobs: dict[int, Job] = {}
        self.queued: dict[str, OrderedInts] = {}  # queue -> its Queued jobs by due moment
        #: Each Queued job's entry in its queue's index (by `queued_moment`).
        self.queued_entries: dict[int, int] = {}
        self.queued_seq = 0  # how many jobs entered Queued: the order of one moment's
        self.scheduled = OrderedInts()  # by due time
        #: Every Scheduled job's due time (the store's monotonic clock).
        self.due: dict[int, float] = {}
        self.running = OrderedInts()  # by started_at
        self.counts: dict[str, list[int]] = {}  # queue -> [queued, scheduled, in progress]
        #: Queued plus Scheduled jobs, those in ``exempt`` (webhook deliveries) left out.
        self.waiting = 0
        self.exempt = exempt

    def __len__(self) -> int:
        return len(self.jobs)

    def put(self, job: Job, due: float | None = None) -> Job:
        """Store ``job``, new or replacing the live job with its id; return it.
        A Scheduled ``job`` is due at ``due`` (monotonic seconds)."""
        key = job.id.int
        old = self.jobs.get(key)
        queued_entry = None
        if job.status is JobStatus.QUEUED:  # a job Queued already keeps its place
            queued_entry = self.queued_entries.get(key)
            if queued_entry is None:
                self.queued_seq += 1
                queued_entry = make_queued_entry(queued_moment(job, old), self.queued_seq, key)
        if old is not None:
            self._unfile(old, key)
        self.jobs[key] = job
        self._file(job, key, due, queued_entry)
        return job

    def pop(self, key: int) -> Job:
        """Take out the live job ``key`` (it ended)."""
        job = self.jobs.pop(key)
        self._unfile(job, key)
        return job

    def _file(self, job: Job, key: int, due: float | None, queued_entry: int | None) -> None:
        status, queue = job.status, job.queue
        counts = self.counts.get(queue)
        if counts is None:
            counts = self.counts[queue] = [0, 0, 0]
        if status is JobStatus.QUEUED:
            index = self.queued.get(queue)
            if index is None:
                index = self.queued[queue] = OrderedInts()
            assert queued_entry is not None
            index.add(queued_entry)
            self.queued_entries[key] = queued_entry
            counts[QUEUED] += 1
            self.waiting += key not in self.exempt
        elif status is JobStatus.SCHEDULED:
            assert due is not None
            self.due[key] = due
            self.scheduled.add(due_entry(due, key))
            counts[SCHEDULED] += 1
            self.waiting += key not in self.exempt
        else:
            assert job.started_at is not None
            self.running.add(entry(job.started_at, key))
            counts[RUNNING] += 1

    def _unfile(self, job: Job, key: int) -> None:
        status, counts = job.status, self.counts[job.queue]
        if status is JobStatus.QUEUED:
            self.queued[job.queue].remove(self.queued_entries.pop(key))
            counts[QUEUED] -= 1
            self.waiting -= key not in self.exempt
        elif status is JobStatus.SCHEDULED:
            self.scheduled.remove(due_entry(self.due.pop(key), key))
            counts[SCHEDULED] -= 1
            self.waiting -= key not in self.exempt
        else:
            assert job.started_at is not None
            self.running.remove(entry(job.started_at, key))
            counts[RUNNING] -= 1


def queued_moment(job: Job, old: Job | None) -> datetime:
    """When the Queued ``job`` became due in its queue, which is the order workers take a
    queue's jobs in (but for tenants taking turns and jobs waiting behind their key):
    its ``run_at`` when ``old`` was it Scheduled (promoted), else its last update (its
    submission, retry or requeue)."""
    if old is not None and old.status is JobStatus.SCHEDULED and old.run_at is not None:
        return max(old.run_at, job.last_updated_at)
    return job.last_updated_at
