"""Batches: many jobs submitted as one unit, and the continuations that follow them (pure
data: `Batch`, `BatchPage`, `NewBatch`, and the batch JSON)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from ._job import Job, JobStatus, NewJob, format_time


class BatchStatus(StrEnum):
    """Where a batch is; the values are the wire names."""

    RUNNING = "Running"
    FINISHED = "Finished"
    CANCELED = "Canceled"


class ContinueWhen(StrEnum):
    """When a batch's continuations run."""

    #: Once every job of the batch is terminal, whatever its outcome.
    ALL_TERMINAL = "all_terminal"
    #: Once every job is terminal, if all of them completed; otherwise the continuations
    #: are stored ``Canceled`` instead.
    ALL_COMPLETED = "all_completed"


@dataclass(frozen=True, slots=True)
class Batch:
    """A batch as stored; its counts are exact at every moment (each changes in the same
    atomic step as the job's status).

    Attributes:
        id: The batch's id.
        tenant: Its tenant, or None.
        status: ``Running`` until every job is terminal, then ``Finished``; ``Canceled``
            once `cancel_batch` ran on it.
        total: Jobs in the batch (continuations not counted).
        queued, scheduled, in_progress: Its jobs waiting, delayed and running.
        completed, failed, canceled: Its jobs in each terminal status.
        created_at: When it was submitted.
        finished_at: When its last job became terminal (or it was cancelled); None before.
        continuation_ids: The ids its continuations have (they exist as jobs once the
            batch has finished: ``Queued``, or ``Canceled`` when they must not run).
        continue_when: When the continuations run.
    """

    id: uuid.UUID
    tenant: str | None
    status: BatchStatus
    total: int
    queued: int
    scheduled: int
    in_progress: int
    completed: int
    failed: int
    canceled: int
    created_at: datetime
    finished_at: datetime | None = None
    continuation_ids: tuple[uuid.UUID, ...] = ()
    continue_when: ContinueWhen = ContinueWhen.ALL_TERMINAL

    @property
    def unfinished(self) -> int:
        """Jobs not yet terminal."""
        return self.queued + self.scheduled + self.in_progress

    def to_json(self) -> dict[str, Any]:
        """The batch JSON (camelCase, ISO 8601 UTC times)."""
        return {
            "id": str(self.id),
            "tenant": self.tenant,
            "status": self.status.value,
            "total": self.total,
            "queued": self.queued,
            "scheduled": self.scheduled,
            "inProgress": self.in_progress,
            "completed": self.completed,
            "failed": self.failed,
            "canceled": self.canceled,
            "createdAt": format_time(self.created_at),
            "finishedAt": format_time(self.finished_at),
            "continuationIds": [str(job_id) for job_id in self.continuation_ids],
        }


@dataclass(frozen=True, slots=True)
class BatchPage:
    """One page of `list_batches`, newest first.

    Attributes:
        batches: The batches of this page.
        next_cursor: Pass it as ``cursor`` for the next page; None on the last one.
    """

    batches: list[Batch] = field(default_factory=list)
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class NewBatch:
    """A batch to be stored: its jobs (each with ``batch_id`` set to ``id``) and the
    continuations to enqueue once they are all terminal (``batch_id`` set too).

    Raises:
        ValueError: no jobs, or a job or continuation whose ``batch_id`` is not ``id``.
    """

    id: uuid.UUID
    jobs: Sequence[NewJob]
    continuations: Sequence[NewJob] = ()
    continue_when: ContinueWhen = ContinueWhen.ALL_TERMINAL
    tenant: str | None = None

    def __post_init__(self) -> None:
        if not self.jobs:
            raise ValueError("a batch needs at least one job")
        for job in (*self.jobs, *self.continuations):
            if job.batch_id != self.id:
                raise ValueError(f"job {job.id} does not name batch {self.id}")


def status_counts(jobs: Sequence[Job]) -> dict[JobStatus, int]:
    """How many of ``jobs`` have each status (for stores and tests)."""
    counts = dict.fromkeys(JobStatus, 0)
    for job in jobs:
        counts[job.status] += 1
    return counts
