"""`RedisWaits`: the waits of `RedisJobStore`: for work (with the hand-over of new jobs to
an idle worker's offer) and for a job's end, both woken by the store's one subscription
rather than polled.

An idle worker's `wait_for_work` with ``take`` opens an offer (``lua/offer.lua``): jobs
submitted meanwhile are claimed for it by the enqueue script itself and published to its
inbox; they arrive here (`_handed_over`) and are returned to the waiter. An offer that
ends before its jobs were taken gives them back (``lua/withdraw.lua``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from async_endpoints._job import DEFAULT_QUEUE, Job
from async_endpoints._logs import job_extra
from async_endpoints._store import Claim

from ._base import Offer, StoreBase
from ._codec import decode_or_none, from_ms, split_message

logger = logging.getLogger("async_endpoints_redis")

_FALLBACK_POLL = 1.0  # wait_until_terminal's re-check interval while pub/sub is down
_OFFER_RENEW = 1.0  # seconds an idle worker waits on one offer before renewing it
_OFFER_TTL = 3.0  # seconds an offer stands unless renewed (a frozen worker's exposure)


class RedisWaits(StoreBase):
    """Waiting for work and for a job's end; see `async_endpoints.JobStore`."""

    _inbox: str
    _claim_generation: int
    # (ms until the earliest Scheduled job is due or -1, when, queues) from the last
    # claim, when it found its queues dry.
    _due_after_claim: tuple[int, float, tuple[str, ...]] | None
    _offered: bool
    # Tokens of handed-over jobs returned to the worker, until a script has been told
    # (a withdrawal must not put a started job back in the queue).
    _started: list[str]
    _offers_sent: int  # how many offers this store has sent: the newest one's number
    _withdrawals: set[asyncio.Task[None]]
    _token_mark: str

    if TYPE_CHECKING:

        async def get(self, job_id: uuid.UUID) -> Job | None: ...

        async def renew(self, claims: Sequence[Claim], *, lease: float) -> set[str]: ...

    async def wait_for_work(
        self,
        timeout: float,
        *,
        take: int = 0,
        lease: float = 0.0,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
    ) -> list[Claim]:
        """Return on a wake-up from any instance since the last `claim` began, when the
        earliest Scheduled job is due, or after ``timeout`` seconds.

        With ``take`` > 0 (and a live subscription) it offers that many slots: jobs
        submitted meanwhile to one of ``queues`` that is not paused are claimed for the
        caller (``lease`` seconds) by the enqueue itself and returned here as soon as the
        first arrives. The offer is renewed every `_OFFER_RENEW` seconds (the call
        returns [] then) and ends with the next `claim`.
        """
        wake = self._notifications.wake_event
        if self._connection.closed or self._notifications.generation != self._claim_generation:
            return []
        if take <= 0 or not self._notifications.connected:
            delay = self._delay_known_from_claim(timeout, queues)
            if delay is None:
                due_ms = await self._run(
                    "wait_for_work", lambda s: s.offer("", "", 0, 0, 0, (), queues)
                )
                delay = timeout if due_ms < 0 else min(timeout, due_ms / 1000)
            await _wait(wake, delay)
            return []
        return await self._wait_offering(wake, min(timeout, _OFFER_RENEW), take, lease, queues)

    def _delay_known_from_claim(self, timeout: float, queues: Sequence[str]) -> float | None:
        """How long to wait when the last claim, of these queues, found them dry and told
        when the earliest Scheduled job is due: nothing claimable or due sooner can come
        without a wake-up, which ends the wait (the caller checked none came since). None
        when that is not known, or wake-ups may be missed (no live subscription)."""
        known = self._due_after_claim
        if known is None or not self._notifications.connected or known[2] != tuple(queues):
            return None
        due_ms, at, _ = known
        if due_ms < 0:
            return timeout
        return min(timeout, max(0.0, due_ms / 1000 - (time.monotonic() - at)))

    async def _wait_offering(
        self,
        wake: asyncio.Event,
        timeout: float,
        take: int,
        lease: float,
        queues: Sequence[str],
    ) -> list[Claim]:
        self._end_offer()
        inbox = self._ending()  # the offers before this one end
        self._offers_sent += 1
        base = f"{self._token_mark}{self._offers_sent:x}x{secrets.token_hex(16)}"
        offer = self._offer = Offer(base)
        self._offered = True
        started = list(self._started)  # told until a call carrying them is answered
        ttl_ms = _ms(_OFFER_TTL)
        try:
            due_ms = await self._run(
                "wait_for_work",
                lambda s: s.offer(inbox, offer.base, take, _ms(lease), ttl_ms, started, queues),
            )
            self._told(started)
            if due_ms in (-2, 0):  # claimable already: no offer was made
                return []
            delay = timeout if due_ms < 0 else min(timeout, due_ms / 1000)
            await _wait(wake, delay)  # a job handed over wakes it too
        except BaseException:
            self._end_offer()
            self._withdraw_soon()  # whatever arrived or is on its way goes back to the queue
            raise
        handed = [] if offer.ended else offer.handed
        self._end_offer()
        try:
            handed = await self._vouched_for(handed, offer.lease_left, lease)
        except BaseException:
            self._withdraw_soon()  # none was returned: they go back to the queue
            raise
        self._started += [claim.token for claim in handed]
        return handed

    async def _vouched_for(
        self, handed: list[Claim], lease_left: dict[str, int], lease: float
    ) -> list[Claim]:
        """Those of ``handed`` whose leases have two thirds left, and the others once
        renewed (see `async_endpoints._claimer`): a hand-over carried out late (Redis
        stalled while the enqueue was on its way, say) may bring a lease that is nearly
        over, or that recovery already took back. Claims reported lost are dropped; those
        whose renewal failed are not returned, so the offer's end puts them back in the
        queue."""
        late = [c for c in handed if lease_left.get(c.token, _ms(lease)) < _ms(lease) * 2 / 3]
        if not late:
            return handed
        try:
            lost = await self.renew(late, lease=lease)
        except Exception as exc:
            unrenewed = (
                "%d job(s) handed over late not started, their leases not renewed (%s):"
                " they go back to their queue"
            )
            logger.warning(unrenewed, len(late), exc)
            lost = {claim.token for claim in late}
        else:
            for claim in late:
                if claim.token in lost:
                    message = "job %s: handed over late and lost meanwhile (recovered or cancelled)"
                    logger.warning(message, claim.job.id, extra=job_extra(claim.job))
        return [claim for claim in handed if claim.token not in lost]

    def _handed_over(self, message: bytes | str) -> None:
        """A job handed to this store's offer (an inbox message): keep it for the waiter.

        Messages for an ended offer are ignored: its end put their jobs back in the queue.
        """
        offer = self._offer
        if offer is None or offer.ended:
            return
        try:
            job_id, fields = split_message(message)
            token = fields["token"]
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring a malformed hand-over message: %s", exc)
            return
        until = fields.pop("lease_until", None)
        job = decode_or_none(job_id, fields)
        if job is not None and token.startswith(offer.base + "."):
            offer.handed.append(Claim(job, token, from_ms(fields.get("due_at"))))
            if until is not None and until.isdigit():
                offer.lease_left[token] = int(until) - self._connection.elapsed.reading()
            self._notifications.wake()

    def _give_back(self, claims: Sequence[Claim]) -> None:
        """Undo the return of ``claims`` handed over by `wait_for_work` (a sharded store
        returns one shard's at a time): they count as not started, and the offer's end,
        sent now, puts them back at the head of their queue."""
        tokens = {claim.token for claim in claims}
        self._started = [token for token in self._started if token not in tokens]
        self._withdraw_soon()

    def _end_offer(self) -> None:
        offer, self._offer = self._offer, None
        if offer is not None:
            offer.ended = True

    def _withdraw_soon(self) -> None:
        inbox = self._ending()  # the offers sent so far, not one sent after this call
        task = asyncio.get_running_loop().create_task(self._withdraw_quietly(inbox))
        self._withdrawals.add(task)
        task.add_done_callback(self._withdrawals.discard)

    async def _withdraw_quietly(self, inbox: str) -> None:
        with contextlib.suppress(Exception):
            await self._withdraw(inbox)

    async def _withdraw(self, inbox: str | None = None) -> None:
        started = list(self._started)  # told until a call carrying them is answered
        ending = self._ending() if inbox is None else inbox
        await self._run("withdraw", lambda s: s.withdraw(ending, started))
        self._told(started)

    def _ending(self) -> str:
        """The inbox as the scripts that end an offer take it: ``"<inbox> <n>"``, where
        ``n`` numbers the newest offer this store has sent (offers are numbered in the
        order sent; the number is in the offer's token base). Such a call ends the
        inbox's offer only if it is numbered ``n`` or lower, and Redis keeps the highest
        ``n`` it was given: an offer sent after the call stands should the call reach
        Redis after it, and an offer reaching Redis after a call sent after it is not
        made (delayed on its way, or run by Redis after its caller gave up on it: a
        sharded store's late claim, a frozen server's backlog)."""
        return f"{self._inbox} {self._offers_sent}"

    def _told(self, started: list[str]) -> None:
        """A call carrying ``started`` (tokens of handed jobs this worker started) was
        answered: later calls need not carry them. They are dropped only then, not when
        the call is sent: a call its caller gave up on (a sharded store's late claim) may
        reach Redis after a later one, whose offer's end would otherwise put a started
        job back in its queue."""
        if started:
            told = set(started)
            self._started = [token for token in self._started if token not in told]

    async def wait_until_terminal(self, job_id: uuid.UUID, timeout: float) -> Job | None:
        """The job once terminal, woken by the done notification of whichever instance
        settled it; after ``timeout`` seconds the job as it is then."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with self._notifications.watching(str(job_id)) as watch:
            # Registered before the first look, so a settlement in between is not missed: a
            # live subscription delivers it (usually with the terminal job, so no read is
            # needed), and a subscription (re)connecting after the look releases every
            # watcher to look again.
            while True:
                watch.event.clear()
                job = watch.job or await self.get(job_id)
                remaining = deadline - loop.time()
                if (
                    job is None
                    or job.status.is_terminal
                    or remaining <= 0
                    or self._connection.closed
                ):
                    return job
                live = self._notifications.connected
                await _wait(watch.event, remaining if live else min(remaining, _FALLBACK_POLL))


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


async def _wait(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, timeout)):
            await event.wait()
