"""Lifecycle events: what happened to jobs in this process, for metrics and dashboards.

The engine emits each kind from exactly one place:

- ``SUBMITTED``: a job was stored by `AsyncEndpoints.enqueue_once` (every POST and `submit`);
- ``STARTED``: an attempt of a claimed job begins in this process's pool;
- ``FINISHED``: that attempt is over, with its `AttemptOutcome` (settled, refused, or
  cancelled in the middle);
- ``CANCELLED``: `AsyncEndpoints.cancel` (or `cancel_batch`, for each job of the batch it
  cancelled) turned a waiting or running job ``Canceled``;
- ``RECOVERED``: this process's stale-claim recovery took back a job whose worker stopped
  renewing its claim (it died, stopped or was cut off): the attempt was lost, and the job
  is queued for another or, with none left, ``Failed``. Each lost claim is recovered by
  one process, once, so this is where lost attempts are told (a dead worker cannot
  tell its own). A stopping pool that gives back a job whose handler it cancelled past
  the grace period (`GiveBackStore`) tells it the same way, the job waiting again (its
  attempt lost, though not counted against its retries).

Listeners are plain functions called on the event loop, in the order they subscribed,
synchronously: they must be quick (count, or hand over to a queue). A listener that raises
is logged and the others still run; a job never fails because of a listener.

Events cost nothing while nobody listens: emitters test `LifecycleEvents.listeners` first
and build none. With a listener, an attempt's two events are built in place by
`LifecycleEvents.started` and `LifecycleEvents.finished` (a `LifecycleEvent` is a frozen
dataclass to its users, but written as a plain slotted object while built).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from ._job import Job, JobStatus
from ._logs import job_extra

logger = logging.getLogger("async_endpoints")


class EventKind(StrEnum):
    """What a `LifecycleEvent` reports."""

    SUBMITTED = "submitted"
    STARTED = "started"
    FINISHED = "finished"
    #: The job was cancelled (spelt as `JobStatus.CANCELED` and `AttemptOutcome.CANCELED`).
    CANCELED = "cancelled"
    #: The same member as `CANCELED`, by its first name.
    CANCELLED = "cancelled"
    RECOVERED = "recovered"


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
    #: pool stopped before the handler ended, or the store stayed unreachable; recovery
    #: takes the job back (``RECOVERED``), unless a write whose reply was lost had landed.
    LOST = "lost"


class _EventSlots:
    """Where a `LifecycleEvent` keeps its fields (slots: no instance dict)."""

    __slots__ = ("due_at", "duration", "job", "kind", "outcome")

    kind: EventKind
    job: Job
    outcome: AttemptOutcome | None
    duration: float | None
    due_at: datetime | None


class _Building(_EventSlots):
    """A `LifecycleEvent` while its fields are written (the same slots, written as a
    plain object's), by its ``__init__`` or by `LifecycleEvents.started` and
    `LifecycleEvents.finished`."""

    __slots__ = ()


_set_class = object.__dict__["__class__"].__set__
_FIELDS = ("kind", "job", "outcome", "duration", "due_at")


@dataclass(frozen=True, init=False)
class LifecycleEvent(_EventSlots):
    """One event: immutable (assigning or deleting a field raises
    `dataclasses.FrozenInstanceError`), compared and hashed by its fields, a dataclass to
    `dataclasses.fields` and `dataclasses.replace`.

    Attributes:
        kind: What happened.
        job: The job as it is after the event (as claimed, for an attempt whose outcome was
            not recorded; for ``RECOVERED``, as read right after the recovery pass).
        outcome: For ``FINISHED`` events, how the attempt ended; ``LOST`` for ``RECOVERED``
            events; None otherwise (the job's
            ``error`` says why a failed or retried attempt failed: ``JobTimeout``...).
        duration: For ``FINISHED`` events, seconds the attempt ran (monotonic clock).
        due_at: For ``STARTED`` events, when the job became due (`Claim.due_at`: its
            ``run_at`` for a delayed job or a retry after backoff); None when the store
            does not say.
    """

    __slots__ = ()

    kind: EventKind
    job: Job
    outcome: AttemptOutcome | None
    duration: float | None
    due_at: datetime | None

    def __init__(
        self,
        kind: EventKind,
        job: Job,
        outcome: AttemptOutcome | None = None,
        duration: float | None = None,
        due_at: datetime | None = None,
    ) -> None:
        if type(self) is not LifecycleEvent:  # a subclass, whose layout may differ
            for name, value in zip(_FIELDS, (kind, job, outcome, duration, due_at), strict=True):
                object.__setattr__(self, name, value)
            return
        # The fields are written as a plain slotted object's (about a third of a frozen
        # dataclass's object.__setattr__ per field), the instance a `_Building` meanwhile,
        # so the frozen __setattr__ is not in the way.
        _set_class(self, _Building)
        fields: _EventSlots = self
        fields.kind = kind
        fields.job = job
        fields.outcome = outcome
        fields.duration = duration
        fields.due_at = due_at
        _set_class(self, LifecycleEvent)

    def __reduce__(self) -> tuple[Any, ...]:
        """Copied and pickled through ``__init__`` (the fields are not assignable)."""
        return LifecycleEvent, (self.kind, self.job, self.outcome, self.duration, self.due_at)


Listener = Callable[[LifecycleEvent], None]


class LifecycleEvents:
    """The hub: listeners subscribe, the engine emits.

    ``listeners`` is a tuple, replaced on (un)subscribing: an emitter tests it to skip
    building events nobody hears, and emitting iterates it as it is (a listener that
    unsubscribes meanwhile is still called for this event), with no copy.
    """

    __slots__ = ("listeners",)

    def __init__(self) -> None:
        self.listeners: tuple[Listener, ...] = ()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` for every event from now on; returns a function that
        unsubscribes it."""
        self.listeners = (*self.listeners, listener)

        def unsubscribe() -> None:
            listeners = list(self.listeners)
            if listener in listeners:
                listeners.remove(listener)
                self.listeners = tuple(listeners)

        return unsubscribe

    def emit(self, event: LifecycleEvent) -> None:
        """Call every listener with ``event``; a listener's exception is logged, not raised."""
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                _listener_failed(listener, event)

    def started(self, job: Job, due_at: datetime | None) -> None:
        """Emit ``STARTED`` for an attempt of ``job`` (as claimed), due since ``due_at``.

        `emit` with the event built in place: the worker's per-attempt path (a call less
        than ``emit(LifecycleEvent(...))``, and no frozen-field checks).
        """
        building: Any = _Building()  # (not typing.cast: a call per event)
        building.kind = _STARTED
        building.job = job
        building.outcome = None
        building.duration = None
        building.due_at = due_at
        _set_class(building, LifecycleEvent)
        event: LifecycleEvent = building
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                _listener_failed(listener, event)

    def finished(self, job: Job, outcome: AttemptOutcome, duration: float) -> None:
        """Emit ``FINISHED`` for an attempt that left ``job``, ended with ``outcome``
        after ``duration`` seconds (as `started`, the worker's per-attempt path)."""
        building: Any = _Building()  # (not typing.cast: a call per event)
        building.kind = _FINISHED
        building.job = job
        building.outcome = outcome
        building.duration = duration
        building.due_at = None
        _set_class(building, LifecycleEvent)
        event: LifecycleEvent = building
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                _listener_failed(listener, event)

    def __bool__(self) -> bool:
        """Whether anyone listens (emitters skip building events otherwise)."""
        return bool(self.listeners)


def _listener_failed(listener: Listener, event: LifecycleEvent) -> None:
    logger.exception(
        "lifecycle listener %r failed on %s of job %s",
        listener,
        event.kind.value,
        event.job.id,
        extra=job_extra(event.job),
    )


_STARTED, _FINISHED = EventKind.STARTED, EventKind.FINISHED
_SETTLED = {
    JobStatus.COMPLETED: AttemptOutcome.COMPLETED,
    JobStatus.FAILED: AttemptOutcome.FAILED,
    JobStatus.CANCELED: AttemptOutcome.CANCELED,
}
_RETRIED = AttemptOutcome.RETRIED


def settled_outcome(job: Job) -> AttemptOutcome:
    """The outcome of an attempt whose settlement left ``job``: completed, failed or
    canceled as its status says; retried when it is waiting again."""
    return _SETTLED.get(job.status, _RETRIED)
