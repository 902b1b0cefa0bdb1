"""The job's state machine: every transition a job can make, and the policy each applies.

This module is pure (no store, no clock, no I/O). `InMemoryJobStore` applies these functions
as they are; `RedisJobStore`'s Lua scripts implement the same transitions under the same
names (``lua/_lifecycle.lua``), and the shared contract suite
(`async_endpoints.testing.contract`) checks that both follow this table::

    transition  from                          to
    enqueue     (new)                         Queued
    schedule    (new)                         Scheduled              delay > 0 or run_at
    promote     Scheduled                     Queued                 when due
    claim       Queued                        InProgress             a worker takes it
    complete    InProgress                    Completed
    retry       InProgress                    Queued or Scheduled    a failed attempt, retries left
    dead        InProgress                    Failed                 a failed attempt, none left
    recover     InProgress                    Queued or Failed       its lease ran out
    cancel      Queued, Scheduled, InProgress Canceled
    requeue     Failed, Canceled              Queued                 retry_count back to 0

Policies, each decided here and nowhere else:

- *Retries left*: ``retry_count < max_retries`` (`retries_left`).
- *A failed attempt*: retried after the delay the engine's `RetryPolicy` gave, Queued
  when that delay is 0, Scheduled otherwise; `Failed` when no retries are left or the
  failure is final (no delay given).
- *A recovered job* (its worker died or stalled): the lost attempt counts as one, and the
  job is retried at once (`RECOVERY_DELAY`): the job did not fail, its worker did, and
  whatever killed the worker is unlikely to kill the next one.
- *Cancel* of a terminal job changes nothing; of a running job it drops the claim, so the
  running handler's result is refused when it arrives, and it is never retried.
- *Requeue* keeps the last error (shown until the job runs again) and the times it started.
- *Partition keys*: the waiting and running jobs of one ``partition_key`` form a lane in
  submission order (enqueue, schedule, or requeue: a requeued job joins the lane's end).
  Only the lane's first job may be claimed or handed over; it holds the key until it is
  terminal, through its retries' backoff and its recovery, so no later job of the key
  overtakes it, and a delayed first job (``Scheduled``) makes the later ones wait too. When
  it ends (completed, dead, cancelled) the next one becomes claimable in the same atomic
  step. Cancelling a later job just takes it out of the lane. A job waiting behind its
  key's first job keeps its own status (``Queued`` or ``Scheduled``); a ``Scheduled`` one
  whose time has come stays ``Scheduled`` until it is first in its lane. Claims never take
  a job only to put it back: a waiting job is not in its queue's ready order at all.
- *Tenants*: within one queue, claims take turns between the tenants that have a claimable
  job, one job per tenant per turn (round robin), oldest first within a tenant; jobs
  without a tenant take turns as one tenant of their own. Queues keep strict priority
  over one another.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from ._errors import AsyncEndpointsError
from ._job import Job, JobError, JobStatus

#: Seconds a recovered job waits before it runs again.
RECOVERY_DELAY = 0.0


class Transition(StrEnum):
    """The transitions of a job; the values are the names the Lua scripts use too."""

    ENQUEUE = "enqueue"
    SCHEDULE = "schedule"
    PROMOTE = "promote"
    CLAIM = "claim"
    COMPLETE = "complete"
    RETRY = "retry"
    DEAD = "dead"
    RECOVER = "recover"
    CANCEL = "cancel"
    REQUEUE = "requeue"


_Q, _S, _R = JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.IN_PROGRESS
_C, _F, _X = JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED

#: The statuses each transition starts from (empty: a job that is not stored yet).
SOURCES: Mapping[Transition, frozenset[JobStatus]] = {
    Transition.ENQUEUE: frozenset(),
    Transition.SCHEDULE: frozenset(),
    Transition.PROMOTE: frozenset({_S}),
    Transition.CLAIM: frozenset({_Q}),
    Transition.COMPLETE: frozenset({_R}),
    Transition.RETRY: frozenset({_R}),
    Transition.DEAD: frozenset({_R}),
    Transition.RECOVER: frozenset({_R}),
    Transition.CANCEL: frozenset({_Q, _S, _R}),
    Transition.REQUEUE: frozenset({_F, _X}),
}

#: The statuses each transition may end in.
TARGETS: Mapping[Transition, frozenset[JobStatus]] = {
    Transition.ENQUEUE: frozenset({_Q}),
    Transition.SCHEDULE: frozenset({_S}),
    Transition.PROMOTE: frozenset({_Q}),
    Transition.CLAIM: frozenset({_R}),
    Transition.COMPLETE: frozenset({_C}),
    Transition.RETRY: frozenset({_Q, _S}),
    Transition.DEAD: frozenset({_F}),
    Transition.RECOVER: frozenset({_Q, _F}),
    Transition.CANCEL: frozenset({_X}),
    Transition.REQUEUE: frozenset({_Q}),
}


class InvalidTransitionError(AsyncEndpointsError, ValueError):
    """A transition asked of a job whose status does not allow it (requeue of a running
    job, say). A `ValueError` too, as it always was."""


def check(job: Job, transition: Transition) -> None:
    """Raise `InvalidTransitionError` unless ``job``'s status allows ``transition``."""
    if job.status not in SOURCES[transition]:
        allowed = ", ".join(sorted(status.value for status in SOURCES[transition]))
        raise InvalidTransitionError(
            f"cannot {transition.value} job {job.id}: it is {job.status.value}"
            + (f" (only {allowed} can)" if allowed else "")
        )


def has_retries(retry_count: int, max_retries: int) -> bool:
    """Whether a job that has had ``retry_count`` retries of ``max_retries`` may have
    another: the one place this is decided in Python (``lua/_lifecycle.lua`` mirrors it)."""
    return retry_count < max_retries


def retries_left(job: Job) -> bool:
    """Whether a failed attempt of ``job`` may be retried."""
    return has_retries(job.retry_count, job.max_retries)


def after_failure(job: Job, retry_in: float | None) -> Transition:
    """`Transition.RETRY` or `Transition.DEAD` for a failed attempt of ``job``.

    ``retry_in`` is the engine's delay before the next attempt, or None for a failure
    that must not be retried.
    """
    return Transition.RETRY if retry_in is not None and retries_left(job) else Transition.DEAD


def promoted(job: Job) -> Job:
    """A due Scheduled job, Queued (its ``run_at`` cleared; no update of its own)."""
    check(job, Transition.PROMOTE)
    return job.replace(status=_Q, run_at=None)


def claimed(job: Job, moment: datetime) -> Job:
    """A Queued job taken by a worker at ``moment``."""
    check(job, Transition.CLAIM)
    return job.replace(
        status=_R, started_at=job.started_at or moment, last_updated_at=moment, run_at=None
    )


def completed(job: Job, result: Any, moment: datetime) -> Job:
    """A running job that succeeded with ``result``."""
    check(job, Transition.COMPLETE)
    return job.replace(
        status=_C, completed_at=moment, last_updated_at=moment, result=result, error=None
    )


def failed_attempt(job: Job, error: JobError, retry_in: float | None, moment: datetime) -> Job:
    """A running job whose attempt failed: retried (Queued, or Scheduled for
    ``retry_in`` seconds) while retries are left, else Failed."""
    if after_failure(job, retry_in) is Transition.DEAD:
        check(job, Transition.DEAD)
        return job.replace(status=_F, completed_at=moment, last_updated_at=moment, error=error)
    check(job, Transition.RETRY)
    assert retry_in is not None
    job = job.replace(retry_count=job.retry_count + 1, last_updated_at=moment, error=error)
    if retry_in <= 0:
        return job.replace(status=_Q, run_at=None)
    return job.replace(status=_S, run_at=moment + timedelta(seconds=retry_in))


def given_back(job: Job, retry_in: float, moment: datetime) -> Job:
    """A running job its worker gave back unfinished (the worker stopped): Queued again,
    or Scheduled for ``retry_in`` seconds, the attempt not counted (``retry_count`` and
    ``error`` as they were)."""
    check(job, Transition.RETRY)
    job = job.replace(last_updated_at=moment)
    if retry_in <= 0:
        return job.replace(status=_Q, run_at=None)
    return job.replace(status=_S, run_at=moment + timedelta(seconds=retry_in))


def recovered(job: Job, error: JobError, moment: datetime) -> Job:
    """A running job whose lease ran out: one attempt used, retried at once or Failed."""
    check(job, Transition.RECOVER)
    return failed_attempt(job, error, RECOVERY_DELAY, moment)


def canceled(job: Job, moment: datetime) -> Job:
    """A waiting or running job, cancelled; a terminal job is returned unchanged."""
    if job.status.is_terminal:
        return job
    check(job, Transition.CANCEL)
    return job.replace(status=_X, completed_at=moment, last_updated_at=moment, run_at=None)


def requeued(job: Job, moment: datetime) -> Job:
    """A Failed or Canceled job, Queued again with ``retry_count`` 0 (its error kept).

    Raises:
        InvalidTransitionError: the job is not Failed or Canceled.
    """
    check(job, Transition.REQUEUE)
    return job.replace(
        status=_Q, retry_count=0, completed_at=None, last_updated_at=moment, run_at=None
    )
