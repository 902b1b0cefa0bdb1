"""`WorkerPool`: N concurrent attempts, lease renewal and recovery, as one async lifetime.

A job that waits on nothing holds its slot for less than one event-loop turn (see `Slots`),
and the dispatcher refills the freed slots in that same turn. With workers embedded in a
web server this matters: under load every turn is long and shared with every connection,
so the turns a job holds a slot, not its CPU time, would bound the jobs per second.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from types import TracebackType

from ._claimer import Claimer
from ._errors import StoreUnavailableError
from ._events import AttemptOutcome, EventKind, LifecycleEvent
from ._logs import job_extra
from ._outage_log import LoopOutage, failed_again
from ._recovery import recover_forever, renew_forever
from ._settings import Settings
from ._slots import JobTask, Slots
from ._store import Claim, ControlStore, JobStore
from ._store_features import ClaimCancelStore, GiveBackStore
from ._tasks import cancel_and_wait, consume
from ._worker import AttemptRunner

logger = logging.getLogger("async_endpoints")

_MAX_BACKOFF = 1.0  # the longest pause between claims while the store is unreachable
_YIELDS_AFTER_HAND_OVER = 6  # event-loop turns given to handed-over jobs before claiming
#: Seconds a job task may go on taking jobs that wait on nothing, before it yields the
#: event loop (to the web server's requests, say).
_CHAIN_BUDGET = 0.00025


class WorkerPool:
    """Claims jobs up to ``max_concurrency`` free slots and runs them.

    Use as an async context manager: entering starts the dispatcher, lease renewal and
    recovery; leaving stops claiming, lets running handlers finish for up to
    ``shutdown_grace_period`` seconds and cancels the rest, whose jobs it gives back (or,
    with a store that cannot, recovery re-queues).

    With a `ControlStore`, the pool listens for cancellations: the handler of a job
    cancelled while it runs here has its task cancelled at once (pushed, not polled; the
    renewal finding the claim lost is the fallback).
    """

    def __init__(self, store: JobStore, attempts: AttemptRunner, settings: Settings) -> None:
        self.store = store
        self.attempts = attempts
        self.settings = settings
        self._slots = Slots(attempts, self._chain)
        self._claimer = Claimer(store, settings.claim_timeout, settings.queues)
        self._stopping = asyncio.Event()
        self._graceless = asyncio.Event()  # the grace period cut short (`end_grace`)
        self._background: list[asyncio.Task[None]] = []
        self._listening = False

    @property
    def queues(self) -> tuple[str, ...]:
        """The queues this pool serves, highest priority first (default: ``queues``)."""
        return self._claimer.queues

    @queues.setter
    def queues(self, queues: Sequence[str]) -> None:
        self._claimer.queues = tuple(queues)

    @property
    def running(self) -> int:
        """How many handlers are running now."""
        return len(self._slots)

    @property
    def serving(self) -> bool:
        """Whether the pool claims jobs now (started, and not stopping)."""
        return bool(self._background) and not self._stopping.is_set()

    async def __aenter__(self) -> WorkerPool:
        self._slots.freed = asyncio.Event()
        self._slots.idle = asyncio.Event()
        self._stopping = asyncio.Event()
        self._graceless = asyncio.Event()
        if not self._listening and isinstance(self.store, ClaimCancelStore):
            self.store.add_claim_cancel_listener(self._slots.cancel_job)
            self._listening = True
        elif not self._listening and isinstance(self.store, ControlStore):
            self.store.add_cancel_listener(self._slots.cancel_job)
            self._listening = True
        settings = self.settings
        slots = self._slots
        self._background = [
            asyncio.create_task(self._dispatch_forever(), name="async-endpoints-dispatch"),
            asyncio.create_task(
                renew_forever(
                    self.store,
                    slots.claims,
                    settings.claim_timeout,
                    slots.cancel_lost,
                    slots.cancel_job,
                    slots.leased_from,
                ),
                name="async-endpoints-renew",
            ),
            asyncio.create_task(
                recover_forever(self.store, settings.recovery_interval, self.attempts.events),
                name="async-endpoints-recover",
            ),
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def stop_claiming(self) -> None:
        """Take no more jobs (the server is shutting down): the handlers running go on
        until `stop`, which gives them the grace period."""
        if not self._background or self._stopping.is_set():
            return
        self._stopping.set()
        await self._stop_dispatching(self._background[:1])

    async def stop(self) -> None:
        """Stop claiming, give running attempts the grace period, then cancel them.

        The grace period ends early at `end_grace` (the worker's second signal). Bounded
        even if the caller is cancelled meanwhile (a further signal): whatever still runs
        is cancelled, a handler that ignores cancellation is abandoned after
        `CANCEL_WAIT` seconds, and outcomes being recorded get ``claim_timeout`` to land
        before the store is closed.
        """
        self._stopping.set()
        dispatcher, others = self._background[:1], self._background[1:]
        try:
            await self._stop_dispatching(dispatcher)
            tasks = self._slots.handlers()
            if tasks:
                pending = await self._graced(tasks)
                why = (
                    "was still running when the grace period was cut short (a second signal)"
                    if self._graceless.is_set()
                    else "outlived the shutdown grace period"
                )
                for claim in self._slots.claims_of(pending):
                    logger.warning(
                        "job %s (%s) %s: its handler is cancelled, and the job given back"
                        " to be run again",
                        claim.job.id, claim.job.name, why, extra=job_extra(claim.job),
                    )  # fmt: skip
        finally:
            await cancel_and_wait(dispatcher)
            stopped = await self._slots.cancel_running()
            try:
                await self._give_back(stopped)
            finally:  # a further signal during the give-back still ends the pool's loops
                await cancel_and_wait(others)
                self._background = []
                settling = self._slots.recording()
                if settling:  # results being recorded must land before the store is closed
                    await asyncio.wait(settling, timeout=self.settings.claim_timeout)

    def end_grace(self) -> None:
        """Cut the shutdown's grace period short (the worker's second signal): a `stop`
        under way cancels the running handlers now, and then ends as always (jobs given
        back, outcomes recorded), so that what runs after it (the app's lifespan
        shutdown) still runs."""
        self._graceless.set()

    async def _graced(self, tasks: list[JobTask]) -> set[JobTask]:
        """Wait up to ``shutdown_grace_period`` for ``tasks``, or until `end_grace`;
        return those still running."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_grace_period
        pending: set[JobTask] = {task for task in tasks if not task.done()}
        cut = asyncio.ensure_future(self._graceless.wait())
        try:
            while pending and not cut.done() and (left := deadline - loop.time()) > 0:
                done, _ = await asyncio.wait(
                    {*pending, cut}, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                pending -= done
        finally:
            cut.cancel()
        return pending

    async def _give_back(self, claims: list[Claim]) -> None:
        """Give back the jobs whose handlers the stop cancelled (`GiveBackStore`): their
        attempts not counted, each due again ``claim_timeout`` after the stop, when its
        lease would have run out. Stale-claim recovery would re-run them about then too,
        but count each as a lost attempt (a rolling restart would use up retries of jobs
        that never failed); the lease's time is kept because a cancellation does not stop
        work a handler handed to a thread or a task of its own. A claim settled meanwhile
        is left as it is; a give-back the store does not answer within ``claim_timeout``
        (or cut short by a further signal) leaves its job to recovery, unless it landed."""
        store = self.store
        if not claims or not isinstance(store, GiveBackStore):
            return
        delay = self.settings.claim_timeout
        calls = [asyncio.ensure_future(store.give_back(c, retry_in=delay)) for c in claims]
        try:
            await asyncio.wait(calls, timeout=self.settings.claim_timeout)
        finally:
            for call in calls:
                if not call.done():  # still waiting for the store: not waited for any more
                    call.cancel()
                    call.add_done_callback(consume)
        events = self.attempts.events
        for claim, call in zip(claims, calls, strict=True):
            # A call cancelled just now may not have ended yet: it was not answered.
            answered = call.done() and not call.cancelled()
            failure = call.exception() if answered else None
            if not answered or failure is not None:
                logger.warning(
                    "job %s (%s) may not have been given back (%s): if not, stale-claim"
                    " recovery re-runs it", claim.job.id, claim.job.name,
                    failure or "the store did not answer in time", extra=job_extra(claim.job),
                )  # fmt: skip
                continue
            if (job := call.result()) is not None:
                logger.info(
                    "job %s (%s) given back unfinished: due again in %.0f s, the attempt"
                    " not counted", claim.job.id, claim.job.name, delay,
                    extra=job_extra(claim.job),
                )  # fmt: skip
                if events:  # taken back here, as recovery would have: a `lost` attempt
                    events.emit(LifecycleEvent(EventKind.RECOVERED, job, AttemptOutcome.LOST))

    async def _stop_dispatching(self, dispatcher: list[asyncio.Task[None]]) -> None:
        """Cancel the dispatcher, unless a claim call is under way: the dispatcher then
        starts the jobs it gets (they run under the grace period) and ends by itself, rather
        than strand them claimed but never started until recovery counts a lost attempt.
        It is given ``claim_timeout`` for that; `stop` then cancels what still runs."""
        for task in dispatcher:
            if not self._claimer.under_way:
                task.cancel()
        if dispatcher:
            await asyncio.wait(dispatcher, timeout=self.settings.claim_timeout)

    async def drain(self) -> int:
        """Run jobs until none is due and none is running; return how many attempts ran.

        A test helper (the pool need not be entered): no background loops, no waiting for
        wake-ups, so tests drive time with an injected clock instead of sleeping.
        """
        ran = 0
        while True:
            claims = await self._claimed(self.settings.max_concurrency)
            if not self._claimer.taken:
                return ran
            started = (self._slots.start(claim, self._claimer.leased_from) for claim in claims)
            tasks = [task for task in started if task is not None]
            await self._slots.concluded(tasks)
            for task in tasks:  # an outcome that could not be recorded
                failure = task.exception() if task.done() and not task.cancelled() else None
                if failure is not None:
                    raise failure
            ran += len(claims)

    async def _dispatch_forever(self) -> None:
        """Claim and start jobs until stopped; no store failure ends this loop."""
        failures = refusals = 0  # in a row: all of them, and those that are no outage
        outage = LoopOutage(logger, "claiming")
        while not self._stopping.is_set():
            try:
                await self._dispatch_once()
            except StoreUnavailableError as exc:
                failures += 1
                delay = self._backoff(failures)
                outage.failed(exc, delay)
                await asyncio.sleep(delay)
            except Exception as exc:
                failures += 1
                refusals += 1
                delay = self._backoff(failures)
                failed_again(logger, "claiming", refusals, exc, delay)
                await asyncio.sleep(delay)
            else:
                failures = refusals = 0
                outage.succeeded()

    async def _dispatch_once(self) -> None:
        free = self.settings.max_concurrency - len(self._slots)
        if free <= 0:
            await self._wait_for_a_slot()
            return
        await self._claim(free)
        taken = self._claimer.taken  # jobs found lost before they started count too
        if self._stopping.is_set():
            return
        if 0 < taken < free:
            # The claim took every due job: another one now would find none. Wait for a
            # wake-up (new work) or for the last handler to end instead, as after an
            # empty claim; a wake-up sent since this claim began is not missed.
            await self._wait_while_busy()
        elif not taken and len(self._slots):
            await self._wait_while_busy()
        elif not taken:
            # An idle pool lets the store hand new jobs straight over (one trip fewer per
            # job). A busy one does not: a handler blocking the loop must not hold jobs.
            claims = (
                await self.store.wait_for_work(
                    self.settings.polling_interval,
                    take=free,
                    lease=self.settings.claim_timeout,
                    queues=self.queues,
                )
                or []  # a store written before hand-over returns None
            )
            # Handed over: each lease had two thirds left when its job arrived (the
            # store renews a later one first), counted as if it had just a third.
            leased_from = asyncio.get_running_loop().time() - self.settings.claim_timeout / 3
            for claim in claims:
                self._slots.start(claim, leased_from)
            if claims:
                # Let the handlers start (and short ones settle) before the next claim's
                # own work: the claim is off every latency path, they are on it.
                for _ in range(_YIELDS_AFTER_HAND_OVER):
                    await asyncio.sleep(0)

    async def _wait_for_a_slot(self) -> None:
        # The jobs started in this turn run in the next one, before this task does: look
        # again then (short jobs have freed their slots), and wait only if none was freed.
        await asyncio.sleep(0)
        if len(self._slots) >= self.settings.max_concurrency:
            self._slots.freed.clear()
            await self._slots.freed.wait()

    async def _wait_while_busy(self) -> None:
        """Wait for work, or for the last running attempt to end (the pool then waits
        again as an idle one, which may be handed jobs)."""
        self._slots.idle.clear()
        waits = {
            asyncio.ensure_future(
                self.store.wait_for_work(self.settings.polling_interval, queues=self.queues)
            ),
            asyncio.ensure_future(self._slots.idle.wait()),
        }
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:  # a failure is taken here too if this task is cancelled
                if wait.done():
                    _taken(wait)  # its result is read below as well, unless cancelled
                else:  # nobody awaits it: a failure as it ends is taken then
                    wait.cancel()
                    wait.add_done_callback(_taken)
        for wait in done:
            if not wait.cancelled():
                wait.result()  # a store failure reaches the dispatcher (and its backoff)

    async def _claim(self, limit: int) -> list[Claim]:
        """Claim up to ``limit`` jobs and start them, in this task (no extra turns)."""
        claims = await self._claimed(limit)
        for claim in claims:
            self._slots.start(claim, self._claimer.leased_from)
        return claims

    async def _claimed(self, limit: int) -> list[Claim]:
        """Up to ``limit`` claims to start; those found lost before they started are
        reported (a partition key kept for one is let go)."""
        claims = await self._claimer.claim(limit)
        for claim in self._claimer.dropped:
            self.attempts.lost_unstarted(claim)
        return claims

    async def _chain(self, began: float) -> tuple[Claim, float] | None:
        """The next job for a job task whose job just ended, if taking it costs no wait,
        and the loop time its lease counts from at the latest (`Claimer.leased_from`).

        Only when the store's claims never wait (an in-process store: one claim per job
        costs no round trip, where the dispatcher's batched claims save many), the task
        started less than `_CHAIN_BUDGET` ago (so it has not waited since), and the pool is
        not stopping. A job task thereby runs several short jobs per event-loop turn.
        """
        if (
            self._claimer.waits
            or self._stopping.is_set()
            or not self._background  # drain(): counts the attempts it started
            or asyncio.get_running_loop().time() - began > _CHAIN_BUDGET
            or len(self._slots) >= self.settings.max_concurrency
        ):
            return None
        claims = await self._claimed(1)
        return (claims[0], self._claimer.leased_from) if claims else None

    def _backoff(self, failures: int) -> float:
        """Seconds to pause claiming after ``failures`` failures in a row.

        Capped at `_MAX_BACKOFF` (and ``polling_interval``): claiming resumes within about
        a second of the store coming back, however long the outage was.
        """
        cap = min(self.settings.polling_interval, _MAX_BACKOFF)
        return float(min(cap, 0.05 * 2 ** min(failures, 8)))


def _taken(wait: asyncio.Future[object]) -> None:
    """Take the outcome of a wait nobody awaits any more (asyncio would log its failure as
    never retrieved; a store failure meanwhile is the next claim's to meet)."""
    if not wait.cancelled():
        wait.exception()
