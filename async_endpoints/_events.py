"""Lifecycle events: what happened to jobs in this process, for metrics and dashboards.

The engine emits each kind from exactly one place:

- ``SUBMITTED``: a job was stored by `AsyncEndpoints.enqueue` (every POST and `submit`);
- ``STARTED``: an attempt of a claimed job begins in this process's pool;
- ``FINISHED``: that attempt is over, with its `AttemptOutcome` (settled, refused, or
  cancelled in the middle);
- ``CANCELLED``: `AsyncEndpoints.cancel` (or `cancel_batch`, for each job of the batch it
  cancelled) turned a waiting or running job ``Canceled``.

Listeners are plain functions called on the event loop, in the order they subscribed,
synchronously: they must be quick (count, or hand over to a queue). A listener that raises
is logged and the others still run; a job never fails because of a listener.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from ._job import Job, JobStatus
from ._logs import job_extra

logger = logging.getLogger("async_endpoints")


class EventKind(StrEnum):
    """What a `LifecycleEvent` reports."""

    SUBMITTED = "submitted"
    STARTED = "started"
    FINISHED = "finished"
    CANCELLED = "cancelled"


class AttemptOutcome(StrEnum):
    """How an attempt ended (the ``outcome`` of a ``FINISHED`` event)."""

    COMPLETED = "completed"
    #: Failed for good: no retries left, or a failure that is never retried.
    FAILED = "failed"
    #: Failed, and the job will run again (Queued or Scheduled).
    RETRIED = "retried"
    #: The job was cancelled while it ran; whatever the handler returned was discarded.
    CANCELED = "canceled"
    #: The outcome could not be recorded: the claim was lost (recovered elsewhere), or the
    #: pool stopped before the handler ended; recovery runs the job again.
    LOST = "lost"


@dataclass(frozen=True, slots=True)
class LifecycleEvent:
    """One event.

    Attributes:
        kind: What happened.
        job: The job as it is after the event (as claimed, for an attempt whose outcome was
            not recorded).
        outcome: For ``FINISHED`` events, how the attempt ended; None otherwise (the job's
            ``error`` says why a failed or retried attempt failed: ``JobTimeout``...).
        duration: For ``FINISHED`` events, seconds the attempt ran (monotonic clock).
        due_at: For ``STARTED`` events, when the job became due (`Claim.due_at`: its
            ``run_at`` for a delayed job or a retry after backoff); None when the store
            does not say.
    """

    kind: EventKind
    job: Job
    outcome: AttemptOutcome | None = None
    duration: float | None = None
    due_at: datetime | None = None


Listener = Callable[[LifecycleEvent], None]


class LifecycleEvents:
    """The hub: listeners subscribe, the engine emits."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` for every event from now on; returns a function that
        unsubscribes it."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def emit(self, event: LifecycleEvent) -> None:
        """Call every listener with ``event``; a listener's exception is logged, not raised."""
        for listener in tuple(self._listeners):
            try:
                listener(event)
            except Exception:
                logger.exception(
                    "lifecycle listener %r failed on %s of job %s",
                    listener,
                    event.kind.value,
                    event.job.id,
                    extra=job_extra(event.job),
                )

    def __bool__(self) -> bool:
        """Whether anyone listens (emitters may skip building events otherwise)."""
        return bool(self._listeners)


def settled_outcome(job: Job) -> AttemptOutcome:
    """The outcome of an attempt whose settlement left ``job``."""
    if job.status is JobStatus.COMPLETED:
        return AttemptOutcome.COMPLETED
    if job.status is JobStatus.FAILED:
        return AttemptOutcome.FAILED
    if job.status is JobStatus.CANCELED:
        return AttemptOutcome.CANCELED
    return AttemptOutcome.RETRIED
