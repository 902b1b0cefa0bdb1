"""`RedisControl`: the `ControlStore` part of `RedisJobStore`: cancel, requeue, pause.

Each is one Lua script (``lua/cancel.lua``, ``lua/requeue.lua``, ``lua/pause.lua``) on the
transitions of ``lua/_lifecycle.lua``. A cancelled running job's id is published on the
store's cancel channel; every process's subscription hands it to the listeners registered
with `add_cancel_listener` (a missed message is made up for by the next lease renewal,
which finds the claim lost).
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Callable, Iterable

from async_endpoints._job import Job, JobStatus
from async_endpoints._lifecycle import Transition, check
from async_endpoints._logs import job_id_extra
from async_endpoints._store_features import ClaimCancelListener, ignoring_token

from ._base import StoreBase
from ._codec import decode_or_none, pairs, text

logger = logging.getLogger("async_endpoints_redis")
_CANCELLABLE = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.IN_PROGRESS})


class RedisControl(StoreBase):
    """Steering stored jobs; see `async_endpoints.ControlStore`."""

    async def cancel(self, job_id: uuid.UUID) -> Job | None:
        """Cancel the job in one script: a Queued or Scheduled job becomes Canceled and
        never runs; an InProgress one becomes Canceled at once, its claim dropped, and its
        id is published to every process's cancel listeners; a terminal job is returned
        unchanged. None when there is no such job."""
        job, _ = await self.try_cancel(job_id)
        return job

    async def try_cancel(self, job_id: uuid.UUID) -> tuple[Job | None, bool]:
        """`cancel`, and whether this call cancelled the job (the script tells the status
        the job had before it)."""
        nonce = secrets.token_hex(8)  # one per call: its resends answer as its first send
        reply = await self._run("cancel", lambda s: s.cancel(str(job_id), nonce))
        if not reply:
            return None, False
        before, flat = reply
        job = decode_or_none(job_id, pairs(flat))
        if job is not None and job.status.is_terminal:
            self._notifications.settled(str(job_id), job)
        cancelled_here = text(before) in _CANCELLABLE
        return job, cancelled_here and job is not None

    async def requeue(self, job_id: uuid.UUID) -> Job | None:
        """Make a Failed or Canceled job Queued again at the tail of its queue, with
        ``retry_count`` 0 and its error kept. None when there is no such job.

        Raises:
            InvalidTransitionError: The job is neither Failed nor Canceled.
        """
        nonce = secrets.token_hex(8)  # one per call: a resend requeues nothing more
        reply = await self._run("requeue", lambda s: s.requeue(str(job_id), nonce))
        if not reply:
            return None
        before, flat = reply
        job = decode_or_none(job_id, pairs(flat))
        if job is None:
            return None
        if text(before) not in (JobStatus.FAILED, JobStatus.CANCELED):
            check(job, Transition.REQUEUE)  # raises InvalidTransitionError
        self._notifications.wake()
        return job

    async def pause(self, queues: Iterable[str]) -> None:
        """Pause ``queues``: stored in Redis and read by every claim, offer and enqueue
        script, so no process claims or hands over their jobs until resumed."""
        names = list(queues)
        if names:
            await self._run("pause", lambda s: s.pause(True, names))

    async def resume(self, queues: Iterable[str]) -> None:
        """Resume ``queues`` and wake idle workers everywhere."""
        names = list(queues)
        if names:
            await self._run("resume", lambda s: s.pause(False, names))
            self._notifications.wake()

    async def paused_queues(self) -> frozenset[str]:
        """The queues paused now."""
        names = await self._run("paused_queues", lambda s: s.pause(True, []))
        return frozenset(text(name) for name in names)

    def add_cancel_listener(self, listener: Callable[[uuid.UUID], None]) -> None:
        """Call ``listener(job_id)`` whenever a running job is cancelled by any process:
        pushed over this store's subscription (the cancel channel), once per cancel."""
        self._cancel_listeners.append(ignoring_token(listener))

    def add_claim_cancel_listener(self, listener: ClaimCancelListener) -> None:
        """As `add_cancel_listener`, with the token of the claim the cancel dropped: call
        ``listener(job_id, token)``; see `async_endpoints.ClaimCancelStore`."""
        self._cancel_listeners.append(listener)

    def _canceled(self, message: str) -> None:
        """A running job was cancelled (a cancel-channel message, ``"<id> <token>"``): a
        job handed to this store's offer with that token and not yet returned is dropped
        (and reported ended: `_let_go_soon`), the claim's token
        is remembered (a claim reply that arrives after this message is dropped too: see
        `CancelledClaims`) and the listeners are told."""
        raw_id, _, token = message.partition(" ")
        try:
            job_id = uuid.UUID(raw_id)
        except ValueError:
            logger.warning("ignoring a malformed cancel message")
            return
        if token:
            self._cancelled_claims.add(job_id, token)
        offer = self._offer
        if offer is not None:
            kept = [c for c in offer.handed if c.job.id != job_id or (token and c.token != token)]
            if len(kept) < len(offer.handed):
                if token:  # the cancelled claim itself: its refused report lets its key go
                    self._let_go_soon([c for c in offer.handed if c.token == token])
                offer.handed = kept
        for listener in list(self._cancel_listeners):
            try:
                listener(job_id, token)
            except Exception:
                logger.exception(
                    "a cancel listener failed for job %s", job_id, extra=job_id_extra(job_id)
                )
