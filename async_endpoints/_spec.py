"""`JobSpec`: one job described in code, for the submissions that take many at once."""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from datetime import datetime
from typing import Any

from ._job import check_label
from ._options import Placement, delay_seconds, seconds_until, submission_delay


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job to submit: the handler's name, its body and where and when it waits.

    The options are those of `AsyncEndpoints.submit`, checked when the spec is made.

    Attributes:
        name: The handler's name.
        body: A model instance or plain data, validated against the handler's model when
            submitted.
        delay: Seconds until it is due (with ``run_at``: give one or neither).
        run_at: When it is due (an aware `datetime`).
        queue: Its queue (None: its handler's); checked against the ``queues`` setting
            when submitted.
        partition_key: Jobs with the same key run one at a time, in submission order.
        tenant: Its tenant (a queue's tenants take turns).

    Raises:
        ValueError: ``delay`` is negative, not finite or not a number; ``run_at`` is
            naive; both are given; ``partition_key`` or ``tenant`` is not a string of 1
            to 255 characters; ``queue`` is not a non-empty string.
    """

    name: str
    body: Any = None
    _: KW_ONLY
    delay: float | None = None
    run_at: datetime | None = None
    queue: str | None = None
    partition_key: str | None = None
    tenant: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a job name must be a non-empty string, not {self.name!r}")
        if self.delay is not None and self.run_at is not None:
            raise ValueError("give delay or run_at, not both")
        if self.delay is not None:
            delay_seconds(self.delay)
        if self.run_at is not None:
            seconds_until(self.run_at)
        if self.queue is not None and (not isinstance(self.queue, str) or not self.queue):
            raise ValueError(f"queue must be a queue name, not {self.queue!r}")
        check_label(self.partition_key, "partition_key")
        check_label(self.tenant, "tenant")

    def placement(self) -> Placement:
        """Where and when the job waits, its delay measured from now (for ``run_at``)."""
        return Placement(
            submission_delay(self.delay, self.run_at),
            self.queue,
            self.partition_key,
            self.tenant,
        )
