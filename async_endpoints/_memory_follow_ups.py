"""`MemoryFollowUps`: the follow-ups (`FollowUpStore`) and webhook deliveries of the
`InMemoryJobStore`.

A job stored with a ``follow_up`` keeps it here (not in the job) while the job is live. The
store calls `MemoryFollowUps._ended` in the step that makes a job terminal, whatever the
route (complete, dead, cancel, a recovery with no retries left, a batch's cancel, a
continuation stored ``Canceled``), and that call takes the follow-up out and stores it as
`enqueue` would (no waiting limit), unless its id is taken by then (skipped, with a
warning, and the job's ``webhook`` is ``Failed``: nothing will deliver it). So a follow-up
is stored at most once: a job requeued after it ended has no follow-up any more and
stores none when it ends again.

A job stored with ``delivers_for`` (a webhook delivery) is remembered here while it is
kept, live or retained: its claims (`_claimed`) add an attempt to its target's
``webhook``, and its end (`_ended`) makes that ``Delivered`` (Completed) or ``Failed``, in
the step of its own transition. The target is updated where it is, retained (in its
record) or live (requeued since); a target that is gone is left alone. While its delivery
is live the target is pinned in the retained jobs (`RetainedJobs.pin`): past its
retention, or beyond ``max_retained``, it is held (readable by id, no longer listed or
counted) until the delivery ends. Jobs without a
follow-up or a delivery cost the store one attribute test when stored and one truth test
of each (usually empty) dict here per claim and per end.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._job import Job, JobStatus, NewJob, WebhookState, WebhookStatus
from ._logs import job_extra
from ._memory_live import LiveJobs
from ._memory_ready import ReadyJobs
from ._retained import RetainedJobs

logger = logging.getLogger("async_endpoints")

_PRUNE_FLOOR = 64  # deliveries remembered before the first pass drops those gone


class MemoryFollowUps:
    """Follow-ups and webhook deliveries kept in memory; see `async_endpoints.FollowUpStore`
    (the structures are the store's, declared here for the type checker)."""

    _jobs: dict[int, Job]
    _live: LiveJobs
    _ready: ReadyJobs
    _finished: RetainedJobs
    #: job key -> the follow-up it stores when it ends (live jobs only).
    _follow_ups: dict[int, NewJob]
    #: delivery job key -> its target's key (while the delivery job is kept).
    _deliveries: dict[int, int]
    _prune_deliveries_at: int

    if TYPE_CHECKING:

        def _store(self, new_job: NewJob) -> Job: ...

    async def follow_up_of(self, job_id: uuid.UUID) -> NewJob | None:
        """The follow-up the job stores when it ends, or None (none, stored already, or no
        such job); see `FollowUpStore.follow_up_of`."""
        return self._follow_ups.get(job_id.int)

    def _keep_parts(self, new_job: NewJob) -> None:
        """Remember the follow-up and the target of ``new_job``, being stored now."""
        key = new_job.id.int
        if new_job.follow_up is not None:
            self._follow_ups[key] = new_job.follow_up
        if new_job.delivers_for is not None:
            deliveries = self._deliveries
            deliveries[key] = new_job.delivers_for.int
            self._finished.pin(new_job.delivers_for.int)
            if len(deliveries) >= self._prune_deliveries_at:
                # The delivery being stored is not live yet: it is no gone one.
                live, kept = self._jobs, self._finished
                for gone in [k for k in deliveries if k not in live and k not in kept and k != key]:
                    del deliveries[gone]
                self._prune_deliveries_at = max(_PRUNE_FLOOR, 2 * len(deliveries))

    def _claimed(self, job: Job) -> None:
        """``job`` was just claimed: one more attempt of the webhook it delivers, if any."""
        target = self._deliveries.get(job.id.int)
        if target is not None:
            self._finished.pin(target)  # again, when the delivery was requeued
            self._update_target(
                target, lambda state: WebhookState(state.status, state.attempts + 1)
            )

    def _ended(self, job: Job) -> None:
        """``job`` just became terminal: its target's webhook takes the delivery's outcome,
        and its follow-up is stored (once)."""
        key = job.id.int
        target = self._deliveries.get(key)
        if target is not None:
            status = (
                WebhookStatus.DELIVERED
                if job.status is JobStatus.COMPLETED
                else WebhookStatus.FAILED
            )
            self._update_target(target, lambda state: WebhookState(status, state.attempts))
            self._finished.unpin(target)
        follow_up = self._follow_ups.pop(key, None)
        if follow_up is None:
            return
        taken = follow_up.id.int
        if taken in self._jobs or taken in self._finished:
            logger.warning(
                "job %s: follow-up id %s is taken; skipped",
                job.id,
                follow_up.id,
                extra=job_extra(job),
            )
            self._update_target(key, lambda state: WebhookState(WebhookStatus.FAILED, 0))
            return
        self._store(follow_up)

    def _update_target(self, key: int, change: Callable[[WebhookState], WebhookState]) -> None:
        """Apply ``change`` to the webhook of the job ``key``, retained or live; a job that
        is gone is left alone."""
        if self._finished.update_webhook(key, change):
            return
        job = self._jobs.get(key)
        if job is None:
            return
        changed = job.replace(webhook=change(job.webhook or WebhookState()))
        live, ready = self._live, self._ready
        if job.status is JobStatus.SCHEDULED:
            live.put(changed, live.due[key])
        elif job.status is JobStatus.QUEUED and ready.is_claimable(job):
            # Its turn names the job object: file the new one in its place (last of its
            # tenant's turns; the old entry is skipped as stale).
            ready.drop(job)
            live.put(changed)
            ready.push(changed)
        else:
            live.put(changed)


def check_follow_ups(new_job: NewJob) -> None:
    """Raise `ValueError` unless every follow-up in ``new_job``'s chain can be stored: a
    finite delay, and no batch (a follow-up is stored as `enqueue` stores a job)."""
    follow_up = new_job.follow_up
    while follow_up is not None:
        if follow_up.delay and not math.isfinite(follow_up.delay):
            raise ValueError(f"delay must be a finite number of seconds, not {follow_up.delay!r}")
        if follow_up.batch_id is not None:
            raise ValueError("a follow-up belongs to no batch: its batch_id must be None")
        follow_up = follow_up.follow_up
