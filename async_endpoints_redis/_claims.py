"""`RedisClaims`: claiming jobs (a batch per script call), undoing claims whose call went
unanswered, and renewing leases; a part of `RedisJobStore`.

A claim call that goes unanswered (Redis stalled, the connection dropped) may have run, or
may yet run from a stalled server's backlog: its token base is kept and sent again by the
next claim, whose script then hands back what the first send took (the claim memo) rather
than leaving those jobs to their lease; a sharded store that gives up on such a call
undoes it (`RedisClaims._undo_unanswered`).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from async_endpoints._errors import StoreUnavailableError
from async_endpoints._job import DEFAULT_QUEUE, Job
from async_endpoints._store import Claim

from ._base import StoreBase
from ._codec import from_ms, job_from_text, text, to_ms

#: Seconds the leases of what `_undo_unanswered` is handed run, until it undoes them.
_UNDO_LEASE = 60.0


class RedisClaims(StoreBase):
    """Claims and lease renewals; see `async_endpoints.JobStore`."""

    _token_mark: str
    _claim_generation: int
    _due_after_claim: tuple[int, float, tuple[str, ...]] | None
    _started: list[str]
    #: The token bases of the claim calls that went unanswered, with the offers each
    #: meant to end (see `RedisJobStore.__init__`).
    _unanswered: list[tuple[str, str]]

    if TYPE_CHECKING:

        def _end_offer(self) -> None: ...

        def _ending(self) -> str: ...

        def _told(self, started: list[str]) -> None: ...

        async def _unclaim(self, claim: Claim) -> Job | None: ...

    async def claim(
        self, limit: int, *, lease: float, queues: Sequence[str] = (DEFAULT_QUEUE,)
    ) -> list[Claim]:
        """Claim up to ``limit`` due jobs of ``queues`` (strict priority, oldest first
        within a queue, paused queues skipped), each for ``lease`` seconds.

        One round trip per batch; the script also moves due Scheduled jobs to their
        queues and drops ids whose record is missing or corrupt.
        """
        self._claim_generation = self._notifications.generation
        self._due_after_claim = None
        if limit <= 0:
            return []
        # A call that went unanswered may have run: the next one resends its token base, so
        # the script hands back what it claimed rather than leaving it stranded.
        resend = bool(self._unanswered)
        if resend:
            token_base, _ = self._unanswered.pop(0)
        else:
            token_base = self._token_mark + secrets.token_hex(16)
        self._end_offer()  # the script ends it in Redis too, re-queueing unstarted jobs
        started = list(self._started)  # told until a call carrying them is answered
        inbox = self._ending()
        try:
            reply, due_ms = await self._run(
                "claim",
                lambda s: s.claim(
                    limit, to_ms(lease), token_base, inbox, started, queues, resend=resend
                ),
            )
        except BaseException as exc:
            # Whatever went wrong, the script may have run; its offer may still stand.
            if isinstance(exc, StoreUnavailableError | asyncio.CancelledError):
                # Kept in order: a resend taken from the front goes back there.
                self._unanswered.insert(0 if resend else len(self._unanswered), (token_base, inbox))
            raise
        self._told(started)
        if due_ms != -2:  # the queues ran dry: a busy wait need not ask for the due time
            self._due_after_claim = (due_ms, time.monotonic(), tuple(queues))
        claims = []
        for message in reply:
            job, fields = job_from_text(message)
            if job is not None:
                claims.append(Claim(job, fields["token"], from_ms(fields.get("due_at"))))
        live, cancelled = self._cancelled_claims.live(claims)
        self._let_go_soon(cancelled)
        return live

    async def _undo_unanswered(self) -> None:
        """Undo what the unanswered claims took, if they ran (a sharded store gave up on
        them: each may have run, or may yet, and its caller may never claim here again,
        busy or stopping): each token base sent again with no room is handed what its
        call took (the claim memo), and each job goes back to the head of its queue
        (`_unclaim`); a first send that Redis carries out after its resend claims nothing
        (the resend spends its base). A resend ends only the offers its first send meant
        to end. When a resend is not answered either, its base is kept: the next claim,
        or the next undo, sends it again."""
        while self._unanswered:  # the last first: each to the head, so the first ends first
            await self._undo_one(*self._unanswered.pop())

    async def _undo_one(self, base: str, ending: str) -> None:
        """`_undo_unanswered` of one token base (kept when its resend fails)."""
        # The started tokens go with it (the offer it ends may be the one that handed
        # them), but count as told only when it carries the number of the newest offer
        # sent: one ending an older offer would not apply those of a newer one.
        started = list(self._started)
        current = ending == self._ending()
        try:
            reply, _ = await self._run(
                "claim",
                lambda s: s.claim(0, to_ms(_UNDO_LEASE), base, ending, started, (), resend=True),
            )
        except BaseException:
            self._unanswered.append((base, ending))
            raise
        if current:
            self._told(started)
        claims = []
        for message in reply:
            job, fields = job_from_text(message)
            if job is not None:
                claims.append(Claim(job, fields["token"], from_ms(fields.get("due_at"))))
        try:
            for claim in reversed(claims):  # to the head of the queue in their order
                await self._unclaim(claim)
        except BaseException:  # the rest are handed back by the next resend (the memo)
            self._unanswered.append((base, ending))
            raise

    async def renew(self, claims: Sequence[Claim], *, lease: float) -> set[str]:
        """Extend the leases of ``claims`` (one round trip); return the tokens of the
        claims that are lost, which are left unchanged."""
        if not claims:
            return set()
        lost = await self._run("renew", lambda s: s.renew(claims, to_ms(lease)))
        return {text(token) for token in lost}
