"""`Schedule`: a cron schedule as a store keeps it (pure data)."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Schedule:
    """A cron schedule: which handler runs, when, and what its last cycle started.

    Attributes:
        id: The schedule's id (the ``name`` of a `cron` decorator, or the id given to
            `upsert_schedule`).
        name: The handler's name.
        cron: The cron expression: five fields, or six with seconds first.
        timezone: The IANA time zone the expression is read in.
        unique: Skip a cycle while the previous cycle's job is not terminal.
        next_run_at: When the next cycle is due (aware, UTC).
        last_job_id: The job the last cycle enqueued, or None.
        body: The JSON text of each cycle's body (validated when the schedule was
            defined), or None for no body.
        queue: The queue of each cycle's job (None: the handler's).
        tenant: The tenant of each cycle's job, or None.
    """

    id: str
    name: str
    cron: str
    timezone: str = "UTC"
    unique: bool = True
    next_run_at: datetime | None = None
    last_job_id: uuid.UUID | None = None
    body: str | None = None
    queue: str | None = None
    tenant: str | None = None

    def replace(self, **changes: Any) -> Schedule:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def same_timing(self, other: Schedule) -> bool:
        """Whether ``other`` fires at the same times (same expression and zone)."""
        return (self.cron, self.timezone) == (other.cron, other.timezone)
