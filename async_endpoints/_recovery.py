"""Background cadences of a pool: stale-claim recovery and lease renewal."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Collection, Sequence

from . import _tracing
from ._errors import PartialRenewalError, StoreUnavailableError
from ._events import AttemptOutcome, EventKind, LifecycleEvent, LifecycleEvents
from ._job import Job, JobStatus
from ._logs import job_extra, job_id_extra
from ._outage_log import LoopOutage
from ._store import Claim, JobStore
from ._store_features import ScheduleEpochStore

logger = logging.getLogger("async_endpoints")


async def recover_forever(
    store: JobStore, interval: float, events: LifecycleEvents | None = None
) -> None:
    """Every ``interval`` seconds, re-queue the jobs whose claim lease expired.

    Runs in every pool; the store makes concurrent recoveries safe (each expired claim is
    recovered by one pass). With listeners on ``events``, each job recovered is read back
    and announced (``RECOVERED``).
    """
    reset = _DataReset(store)
    outage = LoopOutage(logger, "stale-claim recovery")
    while True:
        began = time.time_ns()
        try:
            recovered = await store.recover()
        except StoreUnavailableError as exc:
            outage.failed(exc, interval)
        except Exception:
            logger.exception("stale-claim recovery failed")
        else:
            outage.succeeded()
            if recovered:
                await _report(store, recovered, events, (began, time.time_ns()))
            await reset.check()
        await asyncio.sleep(interval)


class _DataReset:
    """Tells when a store that can lose its data (a `ScheduleEpochStore`: a Redis
    restarted without persistence, or flushed) lost it while this process ran: its epoch,
    read after each recovery pass, changed. Every job, batch, queue pause and idempotency
    key stored before is gone then, and nothing else would say so (jobs asked for answer
    404 as unknown ones do; claims held are reported lost): an error record, once per
    change. A store that cannot lose its data is never read."""

    def __init__(self, store: JobStore) -> None:
        self._store = store if isinstance(store, ScheduleEpochStore) else None
        self._epoch: str | None = None

    async def check(self) -> None:
        if self._store is None:
            return
        try:
            epoch = await self._store.schedule_epoch()
        except Exception as exc:  # told at the next pass; recovery's own failures are logged
            logger.debug("could not read the store's epoch: %s", exc)
            return
        if self._epoch is not None and epoch != self._epoch:
            logger.error(
                "the store's data was reset (Redis restarted without persistence, or "
                "flushed; on a sharded store, its first shard's): the jobs, batches, queue "
                "pauses and idempotency keys it held are gone, and their ids answer 404; "
                "keep Redis with appendonly yes"
            )
        self._epoch = epoch


async def _report(
    store: JobStore,
    recovered: Sequence[uuid.UUID],
    events: LifecycleEvents | None,
    during: tuple[int, int],
) -> None:
    """Log each job of ``recovered`` (taken back by the store call made ``during`` that
    span of time, ns since the epoch); when lifecycle listeners or tracing want them, the
    jobs are read back first (`_announce`): no store read is made for a log record alone."""
    listening = events if events is not None and events.listeners else None
    if listening is None and not _tracing.enabled():
        for job_id in recovered:
            _log_recovered(job_id)
        return
    await _announce(store, recovered, listening, during)


#: The record about each job a recovery pass took back: id, " (name)" when known.
RECOVERED = (
    "job %s%s: its worker stopped renewing its claim; queued again as a used attempt "
    "(Failed when none was left)"
)


#: Jobs read back at once after a recovery pass (`_announce`): few, so that the reads do
#: not take the store's connections ahead of the claims and settlements waiting.
READ_BACK = 20


async def _announce(
    store: JobStore,
    recovered: Sequence[uuid.UUID],
    events: LifecycleEvents | None,
    during: tuple[int, int] | None = None,
) -> None:
    """Log each job of ``recovered``, emit ``RECOVERED`` for it on ``events`` (when given)
    and give it its recovery span (when tracing: `_tracing.record_recovery`, over
    ``during``, the store call that recovered it, when given), read back
    ``READ_BACK`` at a time (the record then names the job too); a job gone meanwhile (its
    retention passed) is not announced, and the jobs of a read that fails are not
    announced (logged by id; the others are), never lost."""
    for start in range(0, len(recovered), READ_BACK):
        ids = recovered[start : start + READ_BACK]
        try:
            jobs = await asyncio.gather(*(store.get(job_id) for job_id in ids))
        except Exception as exc:
            logger.warning("could not read back %d recovered job(s): %s", len(ids), exc)
            for job_id in ids:
                _log_recovered(job_id)
            continue
        for job_id, job in zip(ids, jobs, strict=True):
            _log_recovered(job_id, job)
            if job is None:
                continue
            if events is not None:
                events.emit(LifecycleEvent(EventKind.RECOVERED, job, AttemptOutcome.LOST))
            _tracing.record_recovery(job, during)


def _log_recovered(job_id: uuid.UUID, job: Job | None = None) -> None:
    """The record about a job a recovery pass took back, named when it was read back."""
    if job is None:
        logger.warning(RECOVERED, job_id, "", extra=job_id_extra(job_id))
    else:
        logger.warning(RECOVERED, job.id, f" ({job.name})", extra=job_extra(job))


async def _canceled_claims(store: JobStore, claims: Sequence[Claim]) -> list[Claim]:
    """Those of ``claims`` whose job is ``Canceled`` now (none when the store cannot
    tell: they are then treated as lost)."""
    ids = list({claim.job.id for claim in claims})
    try:
        jobs = await asyncio.gather(*(store.get(job_id) for job_id in ids))
    except Exception as exc:
        logger.warning("could not look up jobs whose claim was lost: %s", exc)
        return []
    canceled = {job.id for job in jobs if job is not None and job.status is JobStatus.CANCELED}
    return [claim for claim in claims if claim.job.id in canceled]


async def renew_forever(
    store: JobStore,
    claims: Callable[[], Sequence[Claim]],
    lease: float,
    on_lost: Callable[[set[str]], Collection[str]],
    on_cancelled: Callable[[uuid.UUID, str], None] = lambda job_id, token: None,
    leased_from: Callable[[str], float | None] = lambda token: None,
) -> None:
    """Every third of ``lease``, extend the leases of ``claims()`` in one store call (every
    `RETRY_PAUSE` seconds while renewals fail, so the first after the store is back comes
    soon: a claim counted from before the trouble may have little of its lease left).

    Claims the store reports lost are looked up: those whose job is ``Canceled`` are passed
    to ``on_cancelled`` (the job's id and the claim's token), as a missed cancel push
    would have been; the rest (recovered elsewhere) to ``on_lost``, which cancels their
    handlers (their outcome could no longer be recorded) and returns those it cancelled.
    Only these are reported: a claim whose job was settled while the renewal was under way
    is reported lost by the store too, but nothing was lost.

    Self-fencing: a claim not renewed for a whole ``lease`` (the store unreachable, or
    slower than a third of the lease to answer) may have been recovered by another
    process, so its handler is cancelled then too, through ``on_lost``, without waiting for
    the store to say so: a cut-off worker stops its handlers when their lease runs out
    rather than when it reconnects. The lease is counted from the sending of the last
    renewal that succeeded; a claim not renewed yet from ``leased_from(token)`` (when its
    claim, or the renewal of a slow one, was sent: see `Claimer`), or from a third of a
    lease before the renewal first saw it when that is not known, so the store's deadline
    is never earlier.
    A store of several parts that renewed only some (`PartialRenewalError`) renews the
    claims of the parts that answered: those it reports lost are handled as lost, the
    others count as renewed, and the claims of the parts that failed as not renewed (their
    leases run on, so only their handlers are fenced when a part stays down).
    """
    loop = asyncio.get_running_loop()
    leases = _Leases(lease)
    failing = _Failing(lease / 3)
    while True:
        pause = leases.pause(loop.time())
        await asyncio.sleep(min(pause, RETRY_PAUSE) if failing.since is not None else pause)
        held = claims()
        sent = loop.time()
        leases.track(held, sent, leased_from)
        answer = await _renew_fenced(store, held, leases, on_lost, failing) if held else None
        lost: set[str] = set()
        if answer is not None:
            lost, unknown = answer
            unrenewed = lost | unknown
            leases.renewed([c.token for c in held if c.token not in unrenewed], sent)
        if held:
            failing.update(answer is None or bool(answer[1]), loop.time())
        else:  # an empty turn tells nothing about the store
            failing.forget()
        _fence(leases, on_lost, loop.time())
        if not lost:
            continue
        for claim in await _canceled_claims(store, [c for c in held if c.token in lost]):
            on_cancelled(claim.job.id, claim.token)
        jobs = {claim.token: claim.job for claim in held}
        for token in on_lost(set(lost)):
            job = jobs[token]
            message = "job %s: lost the claim of its running attempt; cancelling its handler"
            logger.warning(message, job.id, extra=job_extra(job))


async def _renew_fenced(
    store: JobStore,
    held: Sequence[Claim],
    leases: _Leases,
    on_lost: Callable[[set[str]], Collection[str]],
    failing: _Failing,
) -> tuple[set[str], set[str]] | None:
    """The tokens of ``held`` the store reports lost and those it could not renew nor
    tell lost (`PartialRenewalError`), or None when the renewal failed. Leases that run
    out while the renewal is on its way are fenced meanwhile."""
    loop = asyncio.get_running_loop()
    renewal = asyncio.ensure_future(_renew(store, held, leases.lease, failing))
    try:
        while not renewal.done():
            await asyncio.wait({renewal}, timeout=leases.until_expiry(loop.time()))
            _fence(leases, on_lost, loop.time())
        return renewal.result()
    finally:
        renewal.cancel()


async def _renew(
    store: JobStore, held: Sequence[Claim], lease: float, failing: _Failing
) -> tuple[set[str], set[str]] | None:
    try:
        return await store.renew(held, lease=lease), set()
    except PartialRenewalError as exc:
        message = "lease renewal of %d claim(s) skipped, part of the store unavailable: %s"
        logger.log(failing.level(logging.WARNING), message, len(exc.unknown), exc)
        return exc.lost, exc.unknown
    except StoreUnavailableError as exc:
        logger.log(
            failing.level(logging.WARNING), "lease renewal skipped, store unavailable: %s", exc
        )
    except Exception:
        logger.log(failing.level(logging.ERROR), "lease renewal failed", exc_info=True)
    return None


#: Seconds between lease renewals while they fail (at most a third of a lease, the usual
#: pause): the first renewal after the store is back comes within this, not up to a third
#: of a lease later, when a lease counted from before the trouble may have run out.
RETRY_PAUSE = 1.0


class _Failing:
    """Whether lease renewals are failing, and how loudly to say so: the first failure
    and one every ``every`` seconds after it are logged at their own level (as often as
    renewals come when all is well), the retries between them at debug level; the first
    success after is logged."""

    def __init__(self, every: float) -> None:
        self.every = every
        #: Loop time of the first failure of this spell (None: renewals succeed).
        self.since: float | None = None
        self._told = float("-inf")

    def level(self, loud: int) -> int:
        """The level of a record about a renewal failing now: ``loud``, or debug when one
        was told less than ``every`` seconds ago."""
        now = asyncio.get_running_loop().time()
        if now - self._told < self.every:
            return logging.DEBUG
        self._told = now
        return loud

    def update(self, failed: bool, now: float) -> None:
        """A renewal ended at ``now``, ``failed`` or not."""
        if failed:
            self.since = now if self.since is None else self.since
        elif self.since is not None:
            logger.info("lease renewal resumed after %.1f s of failures", now - self.since)
            self.forget()

    def forget(self) -> None:
        """No claim is held: a spell of failures ends untold (nothing is renewed)."""
        self.since, self._told = None, float("-inf")


def _fence(leases: _Leases, on_lost: Callable[[set[str]], Collection[str]], now: float) -> None:
    """Cancel the handlers whose lease has run out unrenewed."""
    expired = leases.expired(now)
    if not expired:
        return
    jobs = leases.forget(expired)
    for token in on_lost(expired):
        job = jobs[token]
        message = "job %s: its lease ran out unrenewed; cancelling its handler"
        logger.warning(message, job.id, extra=job_extra(job))


class _Leases:
    """When each held claim's lease runs out, as far as this process can know: a lease
    after the sending of its last successful renewal."""

    def __init__(self, lease: float) -> None:
        self.lease = lease
        self._since: dict[str, float] = {}
        self._jobs: dict[str, Job] = {}
        # Claims fenced (`forget`) and still held: not counted again (their lease ran out
        # once; counted anew from a stale start, each pass would fence them again).
        self._fenced: set[str] = set()

    def track(
        self,
        held: Sequence[Claim],
        now: float,
        leased_from: Callable[[str], float | None] = lambda token: None,
    ) -> None:
        """Start counting claims first seen (from ``leased_from(token)``, or from a third
        of a lease before ``now`` when that is not known) and stop counting those no
        longer held."""
        tokens = {claim.token: claim.job for claim in held}
        for token in self._since.keys() - tokens.keys():
            del self._since[token]
            del self._jobs[token]
        self._fenced &= tokens.keys()
        for token in tokens.keys() - self._since.keys() - self._fenced:
            since = leased_from(token)
            self._since[token] = now - self.lease / 3 if since is None else min(since, now)
            self._jobs[token] = tokens[token]

    def renewed(self, tokens: Collection[str], sent: float) -> None:
        """These claims were renewed by a call sent at ``sent``."""
        for token in tokens:
            if token in self._since:
                self._since[token] = sent

    def expired(self, now: float) -> set[str]:
        """The claims whose lease has run out by ``now``."""
        return {token for token, since in self._since.items() if now - since >= self.lease}

    def forget(self, tokens: Collection[str]) -> dict[str, Job]:
        """Stop counting these claims (their handlers are told), for as long as they are
        held; return their jobs."""
        self._fenced.update(tokens)
        jobs = {}
        for token in tokens:
            self._since.pop(token, None)
            jobs[token] = self._jobs.pop(token)
        return jobs

    def until_expiry(self, now: float) -> float:
        """Seconds until the soonest lease runs out (a lease when none is counted)."""
        return max(0.0, min(self._since.values(), default=now) + self.lease - now)

    def pause(self, now: float) -> float:
        """Seconds until the next renewal: a third of a lease, or sooner when a lease runs
        out before that."""
        return min(self.lease / 3, self.until_expiry(now))
