"""`WorkerPool`: N concurrent attempts, lease renewal and recovery, as one async lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType

from ._errors import StoreUnavailableError
from ._recovery import recover_forever, renew_forever
from ._settings import Settings
from ._store import Claim, JobStore
from ._worker import AttemptRunner

logger = logging.getLogger("async_endpoints")

_MAX_BACKOFF = 1.0  # the longest pause between claims while the store is unreachable
_YIELDS_AFTER_HAND_OVER = 6  # event-loop turns given to handed-over jobs before claiming


class WorkerPool:
    """Claims jobs up to ``max_concurrency`` free slots and runs them.

    Use as an async context manager: entering starts the dispatcher, lease renewal and
    recovery; leaving stops claiming, lets running handlers finish for up to
    ``shutdown_grace_period`` seconds and cancels the rest, whose jobs recovery re-queues.
    """

    def __init__(self, store: JobStore, attempts: AttemptRunner, settings: Settings) -> None:
        self.store = store
        self.attempts = attempts
        self.settings = settings
        self._running: dict[str, tuple[Claim, asyncio.Task[object]]] = {}
        self._slot_freed = asyncio.Event()
        self._idle = asyncio.Event()
        self._stopping = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []

    @property
    def running(self) -> int:
        """How many attempts are running now."""
        return len(self._running)

    async def __aenter__(self) -> WorkerPool:
        self._slot_freed = asyncio.Event()
        self._idle = asyncio.Event()
        self._stopping = asyncio.Event()
        settings = self.settings
        self._background = [
            asyncio.create_task(self._dispatch_forever(), name="async-endpoints-dispatch"),
            asyncio.create_task(
                renew_forever(self.store, self._claims, settings.claim_timeout, self._cancel),
                name="async-endpoints-renew",
            ),
            asyncio.create_task(
                recover_forever(self.store, settings.recovery_interval),
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

    async def stop(self) -> None:
        """Stop claiming, give running attempts the grace period, then cancel them.

        Bounded even if the caller is cancelled meanwhile (a second signal): whatever still
        runs is cancelled, and an attempt gives up on a handler that ignores cancellation
        after `CANCEL_WAIT` seconds, so shutdown ends soon after the grace period.
        """
        self._stopping.set()
        dispatcher, others = self._background[:1], self._background[1:]
        try:
            await _cancel_and_wait(dispatcher)
            tasks = [task for _, task in self._running.values()]
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=self.settings.shutdown_grace_period)
                if pending:
                    logger.warning("%d job(s) outlived the shutdown grace period", len(pending))
        finally:
            await _cancel_and_wait([task for _, task in self._running.values()])
            await _cancel_and_wait(others)
            self._background = []
            settling = set(self.attempts.settling)
            if settling:  # results being recorded must land before the store is closed
                await asyncio.wait(settling, timeout=self.settings.claim_timeout)

    async def drain(self) -> int:
        """Run jobs until none is due and none is running; return how many attempts ran.

        A test helper (the pool need not be entered): no background loops, no waiting for
        wake-ups, so tests drive time with an injected clock instead of sleeping.
        """
        ran = 0
        while True:
            claims = await self.store.claim(
                self.settings.max_concurrency, lease=self.settings.claim_timeout
            )
            if not claims:
                return ran
            await asyncio.gather(*(self.attempts.run(claim) for claim in claims))
            ran += len(claims)

    async def _dispatch_forever(self) -> None:
        """Claim and start jobs until stopped; no store failure ends this loop."""
        failures = 0
        while not self._stopping.is_set():
            try:
                await self._dispatch_once()
            except StoreUnavailableError as exc:
                failures += 1
                delay = self._backoff(failures)
                logger.warning("claiming paused %.2f s, store unavailable: %s", delay, exc)
                await asyncio.sleep(delay)
            except Exception:
                failures += 1
                delay = self._backoff(failures)
                logger.exception("claiming failed; trying again in %.2f s", delay)
                await asyncio.sleep(delay)
            else:
                failures = 0

    async def _dispatch_once(self) -> None:
        free = self.settings.max_concurrency - len(self._running)
        if free <= 0:
            self._slot_freed.clear()
            await self._slot_freed.wait()
            return
        claims = await self._claim(free)
        if not claims and self._running:
            await self._wait_while_busy()
        elif not claims:
            # An idle pool lets the store hand new jobs straight over (one trip fewer per
            # job). A busy one does not: a handler blocking the loop must not hold jobs.
            claims = (
                await self.store.wait_for_work(
                    self.settings.polling_interval, take=free, lease=self.settings.claim_timeout
                )
                or []  # a store written before hand-over returns None
            )
            for claim in claims:
                self._start(claim)
            if claims:
                # Let the handlers start (and short ones settle) before the next claim's
                # own work: the claim is off every latency path, they are on it.
                for _ in range(_YIELDS_AFTER_HAND_OVER):
                    await asyncio.sleep(0)
            return
        for claim in claims:
            self._start(claim)

    async def _wait_while_busy(self) -> None:
        """Wait for work, or for the last running attempt to end (the pool then waits
        again as an idle one, which may be handed jobs)."""
        self._idle.clear()
        waits = {
            asyncio.ensure_future(self.store.wait_for_work(self.settings.polling_interval)),
            asyncio.ensure_future(self._idle.wait()),
        }
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        for wait in done:
            if not wait.cancelled():
                wait.result()  # a store failure reaches the dispatcher (and its backoff)

    async def _claim(self, limit: int) -> list[Claim]:
        """Claim up to ``limit`` jobs; a claim call cut short by shutdown still delivers.

        Cancelled mid-call, it waits for the store's reply and starts the jobs it got
        (they then run under the grace period), instead of stranding them claimed but
        never started until their lease expires and recovery counts a lost attempt.
        """
        call = asyncio.ensure_future(self.store.claim(limit, lease=self.settings.claim_timeout))
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                for claim in await call:
                    self._start(claim)
            raise

    def _backoff(self, failures: int) -> float:
        """Seconds to pause claiming after ``failures`` failures in a row.

        Capped at `_MAX_BACKOFF` (and ``polling_interval``): claiming resumes within about
        a second of the store coming back, however long the outage was.
        """
        cap = min(self.settings.polling_interval, _MAX_BACKOFF)
        return float(min(cap, 0.05 * 2 ** min(failures, 8)))

    def _start(self, claim: Claim) -> None:
        task: asyncio.Task[object] = asyncio.create_task(self.attempts.run(claim))
        self._running[claim.token] = (claim, task)
        task.add_done_callback(lambda done: self._finished(claim, done))

    def _finished(self, claim: Claim, task: asyncio.Task[object]) -> None:
        self._running.pop(claim.token, None)
        self._slot_freed.set()
        if not self._running:
            self._idle.set()
        if not task.cancelled() and task.exception() is not None:
            logger.error("job %s: settling failed", claim.job.id, exc_info=task.exception())

    def _claims(self) -> list[Claim]:
        return [claim for claim, _ in self._running.values()]

    def _cancel(self, tokens: set[str]) -> None:
        for token in tokens:
            entry = self._running.get(token)
            if entry is not None:
                entry[1].cancel()


async def _cancel_and_wait(tasks: list[asyncio.Task[None]] | list[asyncio.Task[object]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
