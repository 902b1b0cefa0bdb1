"""`RedisSettling`: recording attempts' outcomes (complete, fail, give back, unclaim); a
part of `RedisJobStore`.

Completions made in one event-loop turn share one script call (`_batch`); a result too
large to share one goes alone, and one Redis refuses fails its own job only. A settlement
refused after redis-py sent it again may have been recorded by its first send: it is
raised as unanswered, and the worker reads the job to tell
(`async_endpoints._settle.Settling._refused`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any, TypeAlias

from async_endpoints._errors import JobStoreError, ResultRefusedError, StoreUnavailableError
from async_endpoints._job import Job, JobError, JobStatus
from async_endpoints._store import Claim

from ._base import StoreBase
from ._batch import Batcher
from ._client import RESENT
from ._codec import decode_or_none, dump_json, from_ms, kept_on_completion, pairs
from ._errors import RETRY_AFTER
from ._refusals import check_bulk_len, refusal

_ALONE_OVER = 64 * 1024  # result characters past which a completion is not batched

#: What one completion of a shared script call answers: its completion time (ms; -1 for a
#: lost claim), or why it was not recorded.
CompletionReply: TypeAlias = "int | ResultRefusedError | StoreUnavailableError"


class RedisSettling(StoreBase):
    """Outcomes of claims; see `async_endpoints.JobStore`."""

    _completions: Batcher[tuple[Claim, str], CompletionReply]

    async def complete(self, claim: Claim, result: Any) -> Job | None:
        """Mark the claimed job Completed with ``result``; None when the claim is lost.

        The job keeps only the owner and trace context of its captured request
        (`kept_on_completion`). A result over `_ALONE_OVER` characters is sent in a call
        of its own, so that its transfer, or Redis refusing it, holds up no other
        completion.

        Raises:
            ResultRefusedError: Redis refuses the result for good: longer than the
                server's ``proto-max-bulk-len`` (checked here when the store could read
                it at start, else answered by Redis), or refused by Redis for another
                reason; retrying cannot record it.
            StoreUnavailableError: Redis cannot be reached.
        """
        result_json = dump_json(result)
        check_bulk_len(result_json, self._connection.max_bulk_len)
        if len(result_json) > _ALONE_OVER:
            (reply,) = await self._complete_many([(claim, result_json)])
        else:
            reply = await self._completions.submit((claim, result_json))
        if isinstance(reply, ResultRefusedError | StoreUnavailableError):
            raise reply
        completed_ms = reply
        if completed_ms < 0:
            return None
        moment = from_ms(str(completed_ms))
        job = claim.job.replace(
            status=JobStatus.COMPLETED,
            completed_at=moment,
            last_updated_at=moment,
            result=json.loads(result_json),
            error=None,
            request=kept_on_completion(claim.job.request),
        )
        self._notifications.settled(str(claim.job.id), job)
        return job

    async def _complete_many(
        self, completions: Sequence[tuple[Claim, str]]
    ) -> list[CompletionReply]:
        # Completions made in one event-loop turn share one script call (see `_batch`).
        RESENT.set(False)
        try:
            counts, moved = await self._run("complete", lambda s: s.complete_many(completions))
        except StoreUnavailableError:
            raise  # transient: every caller retries
        except JobStoreError as exc:
            if len(completions) == 1:
                return [refusal(exc)]
            # A refusal fails the whole call: each goes again alone, so only its job fails.
            return [reply for one in completions for reply in await self._complete_many([one])]
        if moved:
            # The next job of a key is claimable now: this process's own workers look at
            # once, before the wake message comes back over pub/sub.
            self._notifications.wake()
        replies: list[CompletionReply] = [*counts]
        if RESENT.get():  # a claim refused may be one the first send settled: unanswered
            replies = [_unanswered() if reply == -1 else reply for reply in replies]
        return replies

    async def fail(self, claim: Claim, error: JobError, *, retry_in: float | None) -> Job | None:
        """Record a failed attempt: retried in ``retry_in`` seconds while retries are left,
        else Failed. None when the claim is lost (nothing changed)."""
        error_json = dump_json(error.to_json())
        delay_ms = None if retry_in is None else round(retry_in * 1000)
        RESENT.set(False)
        reply = await self._run("fail", lambda s: s.fail(claim, error_json, delay_ms))
        settled = self._settled(claim.job.id, reply)
        if settled is None and RESENT.get():  # refused: maybe by the first send's failure
            raise _unanswered()
        return settled

    async def give_back(self, claim: Claim, *, retry_in: float) -> Job | None:
        """Let the claimed job wait again (due in ``retry_in`` seconds), its attempt not
        counted (its worker stops); None when the claim is lost (nothing changed). See
        `GiveBackStore`."""
        delay_ms = max(0, round(retry_in * 1000))
        reply = await self._run("give_back", lambda s: s.give_back(claim, delay_ms))
        return self._settled(claim.job.id, reply)

    async def _unclaim(self, claim: Claim) -> Job | None:
        """Undo ``claim``, which never reached a worker (a sharded store's claim handed more
        than its room by a resent call): the job is Queued again at the head of its
        queue, as if never claimed; None when the claim is lost (nothing changed)."""
        reply = await self._run("unclaim", lambda s: s.unclaim(claim))
        return self._settled(claim.job.id, reply)

    def _settled(self, job_id: uuid.UUID, reply: list[Any] | None) -> Job | None:
        if not reply:
            return None
        job = decode_or_none(job_id, pairs(reply))
        if job is not None and job.status.is_terminal:
            self._notifications.settled(str(job_id), job)
        elif job is not None:
            self._notifications.wake()
        return job


def _unanswered() -> StoreUnavailableError:
    """A settlement refused after redis-py sent it again (`RESENT`): its first send may
    have recorded it and lost the reply. Raised as unanswered, so the worker tries again
    and, refused again, reads the job to tell (`async_endpoints._settle.Settling._refused`)."""
    return StoreUnavailableError(
        "Redis did not answer the first send of this settlement, and the resend was "
        "refused: the first may have recorded it",
        retry_after=RETRY_AFTER,
    )
