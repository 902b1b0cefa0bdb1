"""The ordered structures of `InMemoryJobStore`: each queue's ready jobs, the scheduled jobs
by due time, and every job in the order it was created.

Each is a list read from a ``head`` index (claims and promotions take from the front, in
O(1)) and compacted once half of it has been read, so that a page of a listing finds its
place by bisection over a sorted sequence number, in O(log n), and reads on from there.

Entries are never removed from the middle: a job that leaves another way (a cancel, a
retry) leaves its entry behind. An entry holds the very `Job` object it was made for, and
the store keeps exactly one `Job` object per live job, replaced at every transition, so an
entry is current only while ``store_jobs[key] is entry_job``: a cancelled, claimed or
requeued job's old entry is recognised as stale and skipped in O(1).
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right, insort
from collections.abc import Callable, Iterator
from typing import Any

from ._job import Job

#: Entries read before a list is compacted (once they are half of it too).
COMPACT_AFTER = 1024


class ReadyQueue:
    """One queue's Queued jobs in claim order, read from ``head``: parallel lists of
    sequence numbers (increasing) and jobs (None once read)."""

    __slots__ = ("head", "jobs", "seqs")

    def __init__(self) -> None:
        self.seqs = array("q")  # machine integers: no int object per entry
        self.jobs: list[Any] = []  # Job, or None once read
        self.head = 0

    def push(self, seq: int, job: Job) -> None:
        """Queue ``job`` at the tail."""
        self.seqs.append(seq)
        self.jobs.append(job)

    def compact(self) -> None:
        """Forget the entries read so far, once they are half of the list."""
        head = self.head
        if head >= COMPACT_AFTER and 2 * head >= len(self.jobs):
            del self.seqs[:head], self.jobs[:head]
            self.head = 0

    def after(self, seq: int | None) -> Iterator[tuple[int, Job]]:
        """The unread entries with a sequence number above ``seq`` (None: all), in order."""
        seqs, jobs = self.seqs, self.jobs
        start = self.head if seq is None else bisect_right(seqs, seq, lo=self.head)
        for index in range(start, len(jobs)):
            job = jobs[index]
            if job is not None:
                yield seqs[index], job


class Schedule:
    """Scheduled jobs by due time (the store's monotonic clock): ``(due, seq, job)``."""

    __slots__ = ("entries", "head", "next_due")

    def __init__(self) -> None:
        self.entries: list[Any] = []  # (due, seq, job), or None once read
        self.head = 0
        #: When the earliest entry is due (stale or not); infinity when there is none.
        self.next_due = math.inf

    def add(self, due: float, seq: int, job: Job) -> None:
        """Schedule ``job`` for ``due`` (monotonic seconds)."""
        entries = self.entries
        if self.head == len(entries) or due >= entries[-1][0]:  # later than all others
            entries.append((due, seq, job))
        else:
            insort(entries, (due, seq, job), lo=self.head, key=_due_seq)
        self.next_due = entries[self.head][0]

    def pop_due(self, now: float) -> Iterator[Job]:
        """Take the entries due by ``now``, earliest first."""
        entries = self.entries
        head = self.head
        while head < len(entries) and entries[head][0] <= now:
            job = entries[head][2]
            entries[head] = None
            head += 1
            self.head = head
            self.next_due = entries[head][0] if head < len(entries) else math.inf
            yield job
        if head >= COMPACT_AFTER and 2 * head >= len(entries):
            del entries[:head]
            self.head = 0

    def after(self, due: float | None, seq: int) -> Iterator[tuple[float, int, Job]]:
        """The unread entries after ``(due, seq)`` (``due`` None: all), in order."""
        entries = self.entries
        start = self.head
        if due is not None:
            start = bisect_right(entries, (due, seq), lo=start, key=_due_seq)
        for index in range(start, len(entries)):
            yield entries[index]


class CreationLog:
    """Every stored job's id (as an integer) and queue, in the order the jobs were created,
    read from ``head``: what listing without a status pages through, newest first.

    Jobs mostly leave (their retention ends) in about the order they were created, so the
    store moves ``head`` past the leading entries of jobs gone, in O(1) per job; `keep`
    filters the whole log for the rare job that outlives thousands of younger ones."""

    __slots__ = ("head", "keys", "queues", "seqs")

    def __init__(self) -> None:
        self.keys: list[int] = []
        self.seqs = array("q")  # machine integers: no int object per entry
        self.queues: list[str] = []
        self.head = 0

    def __len__(self) -> int:
        return len(self.keys) - self.head

    def compact(self) -> None:
        """Forget the entries before ``head``, once they are half of the log."""
        head = self.head
        if head >= COMPACT_AFTER and 2 * head >= len(self.keys):
            del self.keys[:head], self.seqs[:head], self.queues[:head]
            self.head = 0

    def keep(self, exists: Callable[[int], bool]) -> None:
        """Drop the entries of jobs for which ``exists(key)`` is false (O(n): call it once
        as many jobs have gone as are left, which makes it O(1) per job)."""
        keys = self.keys
        kept = [index for index in range(self.head, len(keys)) if exists(keys[index])]
        self.keys = [keys[index] for index in kept]
        self.seqs = array("q", [self.seqs[index] for index in kept])
        self.queues = [self.queues[index] for index in kept]
        self.head = 0

    def newest_first(self, before: int | None) -> Iterator[tuple[int, int, str]]:
        """(seq, key, queue) from the newest entry, or from the one before seq ``before``."""
        seqs, keys, queues, head = self.seqs, self.keys, self.queues, self.head
        end = len(seqs) if before is None else bisect_right(seqs, before - 1, lo=head)
        for index in range(end - 1, head - 1, -1):
            yield seqs[index], keys[index], queues[index]


def _due_seq(entry: Any) -> Any:
    return (entry[0], entry[1])
