"""`RedisJobStore`: the `JobStore`, `ControlStore`, `InspectionStore`, `ScheduleStore` and
`BatchStore` on Redis, Valkey or a Redis Cluster (batches: `_batches`).

Every state change is one Lua script (see ``lua/``), guarded by the claim token where a
claim is involved, and costs one round trip: enqueue, claim (per batch), complete, fail,
renew (per batch), cancel, requeue, pause and resume. The scripts share one state machine
(``lua/_lifecycle.lua``) and one owner of the ready queues (``lua/_ready.lua``). Times come
from the Redis server's clock. Key layout: `_keys`; job hash fields: `_codec`; wake-ups,
settlements and cancellations: `_notify`.

A cancelled running job's id is published on the store's cancel channel; every process's
subscription hands it to the listeners registered with `add_cancel_listener`, so the
handler is cancelled wherever it runs, pushed rather than polled (a missed message is
made up for by the next lease renewal, which finds the claim lost).

An idle worker does not wait for a wake-up and then claim (two trips after the submit):
`wait_for_work` leaves an *offer* in Redis, and a job submitted while it stands is stored
InProgress for that worker by the enqueue script itself and published to the store's
inbox channel, so the handler starts one hop after the submit. The worker's next claim
(or offer, or `aclose`) ends the offer in the same script, putting jobs that were handed
over but never started (a message lost with the subscription, say) back at the head of
the queue. An offer expires after `_waits._OFFER_TTL` seconds unless renewed, and a job is
only handed over while the worker's inbox subscription is live, so the offer of a process
that died (its connection closed) holds nothing; one whose host vanished without closing
its connection can hold jobs for up to `_waits._OFFER_TTL` seconds, which then run after
their lease, as claimed jobs would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
import time
import uuid
from collections.abc import Sequence
from typing import Any, TypeAlias, TypeVar

from async_endpoints._cancels import CancelledClaims
from async_endpoints._errors import (
    ConfigurationError,
    DuplicateJobError,
    JobStoreError,
    QueueFullError,
    ResultRefusedError,
    StoreUnavailableError,
    full_queue_message,
)
from async_endpoints._idempotency import IdempotentJobGoneError
from async_endpoints._job import (
    DEFAULT_QUEUE,
    Job,
    JobError,
    JobStatus,
    NewJob,
    is_same_submission,
    parse_job_id,
)
from async_endpoints._store import CLAIM_EXPIRED, CLAIM_EXPIRED_MESSAGE, Claim
from async_endpoints._store_features import ClaimCancelListener, Idempotency

from ._base import Offer
from ._batch import Batcher
from ._batches import RedisBatches
from ._client import (
    RESENT,
    AnyRedis,
    check_client,
    check_cluster_client,
    check_seconds,
    check_url,
    client_options,
)
from ._codec import (
    Reply,
    decode_or_none,
    dump_json,
    from_ms,
    job_from_text,
    kept_on_completion,
    pairs,
    queued_job,
    terminal_job,
    text,
)
from ._connection import Connection
from ._control import RedisControl
from ._errors import RETRY_AFTER
from ._events import RedisEvents
from ._follow_ups import RedisFollowUps
from ._inspection import RedisInspection
from ._keys import Keys
from ._refusals import check_bulk_len, refusal
from ._schedules import RedisSchedules
from ._scripts import Submission, check_follow_ups, delay_ms
from ._waits import RedisWaits

logger = logging.getLogger("async_endpoints_redis")
T = TypeVar("T")

_RECOVER_BATCH = 500  # expired claims recovered, and finished jobs purged, per script call
#: Script calls one recovery pass makes at most (a backlog beyond goes on at the next).
RECOVER_CALLS = 200
_CLAIM_EXPIRED = {"message": CLAIM_EXPIRED_MESSAGE, "type": CLAIM_EXPIRED}
#: What a store was made with (its class, url, client and other arguments), to make it
#: anew after it was closed (`RedisJobStore._made_again`).
MadeWith: TypeAlias = "tuple[type[RedisJobStore], str | None, AnyRedis | None, dict[str, Any]]"

_ALONE_OVER = 64 * 1024  # result characters past which a completion is not batched


#: What one completion of a shared script call answers: its completion time (ms; -1 for a
#: lost claim), or why it was not recorded.
CompletionReply: TypeAlias = "int | ResultRefusedError | StoreUnavailableError"


class RedisJobStore(
    RedisWaits,
    RedisControl,
    RedisInspection,
    RedisSchedules,
    RedisBatches,
    RedisEvents,
    RedisFollowUps,
):
    """Jobs in Redis, shared by any number of app instances and worker processes.

    Args:
        url: ``redis://[[user]:password@]host:port/db`` or ``rediss://...`` (TLS).
            Give either ``url`` or ``client``.
        client: An existing ``redis.asyncio.Redis`` or ``RedisCluster``; it is used as is
            (its own timeouts and retries apply) and not closed by `aclose`.
        prefix: The key namespace, used as the hash tag of every key: ``{prefix}:...``.
        retention: Seconds a terminal (Completed, Failed, Canceled) job is kept; default 7
            days. Measured on the store's elapsed-time clock (a wall-clock step does not
            shorten it): the first stale-claim recovery pass of any worker pool after it
            has passed deletes the job. Its key also expires a week after that, by the
            Redis server's clock, should no worker pool run any more.
        cluster: True for a Redis Cluster, False for a single server; None asks the
            server named by ``url`` at `start`.
        socket_timeout: Seconds to wait for a reply before the server counts as
            unavailable.
        socket_connect_timeout: Seconds to wait for a connection.
        max_connections: Connections the store opens at most (per node on a cluster),
            one of them for pub/sub. Calls beyond it wait for a free connection (up to
            ``socket_timeout``), on a single server and on a cluster alike.
        shards: How many hash tags (shards) the jobs are spread over, so that a Redis
            Cluster serves them from as many masters (see `_shard_layout`); 1, the
            default, keeps every key under the one tag ``{prefix}``. A store made with
            another count is a `ShardedRedisJobStore`. Changing it while jobs are stored
            loses none: see `_shard_reshard`.

    Raises:
        ConfigurationError: Neither or both of ``url`` and ``client`` given, a ``url``
            redis-py cannot connect with (scheme, port), a bad prefix, a retention or
            socket timeout that is not a positive number, or ``max_connections`` below 3.
    """

    #: What this store's claim tokens start with (a shard's mark in a sharded store).
    _token_mark = ""

    def __new__(cls, url: str | None = None, *, shards: int = 1, **_: Any) -> RedisJobStore:
        """A `ShardedRedisJobStore` when ``shards`` is not 1, else this class."""
        if (shards != 1 or type(shards) is not int) and cls is RedisJobStore:
            from ._shard_store import ShardedRedisJobStore

            return super().__new__(ShardedRedisJobStore)
        return super().__new__(cls)

    def __init__(
        self,
        url: str | None = None,
        *,
        client: AnyRedis | None = None,
        prefix: str = "async-endpoints",
        retention: float = 7 * 24 * 3600,
        cluster: bool | None = None,
        socket_timeout: float = 3.0,
        socket_connect_timeout: float = 2.0,
        max_connections: int = 50,
        shards: int = 1,
    ) -> None:
        if (url is None) == (client is None):
            raise ConfigurationError("RedisJobStore needs either a url or a client")
        if url is not None:
            check_url(url, cluster)
        else:
            check_client(client)
        if cluster:
            check_cluster_client()
        check_seconds("retention", retention)
        check_seconds("socket_timeout", socket_timeout)
        check_seconds("socket_connect_timeout", socket_connect_timeout)
        options = client_options(
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_connect_timeout,
            max_connections=max_connections,
        )
        self._inbox = secrets.token_hex(8)
        self._connection = Connection(
            url,
            client,
            cluster=cluster,
            options=options,
            deadline=socket_timeout + socket_connect_timeout,
            keys=Keys(prefix),
            retention_ms=_ms(retention),
            inbox=self._inbox,
            decode=terminal_job,
            on_handed_over=self._handed_over,
            on_cancel=self._canceled,
        )
        self._cancel_listeners: list[ClaimCancelListener] = []
        # What a sharded store made of this one (`_shard_reshard`) is made with.
        self._arguments: dict[str, Any] = {
            "prefix": prefix,
            "retention": retention,
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_connect_timeout,
            "max_connections": max_connections,
        }
        self._layout_read = False
        self._cancelled_claims = CancelledClaims()
        self._notifications = self._connection.notifications
        self._completions: Batcher[tuple[Claim, str], CompletionReply] = Batcher(
            self._complete_many
        )
        #: The token bases of the claim calls that went unanswered (each may have run, or
        #: may yet, from a stalled server's backlog), with the offers each meant to end
        #: (`_ending`): each is sent again, by the next claims or `_undo_unanswered`, so
        #: that what it took is handed back or undone rather than left to its lease.
        self._unanswered: list[tuple[str, str]] = []
        self._submissions: Batcher[Submission, int | Reply] = Batcher(self._enqueue_many)
        self._claim_generation = 0
        # (ms until the earliest Scheduled job is due or -1, when, queues) from the last
        # claim, when it found its queues dry.
        self._due_after_claim: tuple[int, float, tuple[str, ...]] | None = None
        self._offer: Offer | None = None
        self._offered = False
        # Tokens of handed-over jobs returned to the worker, until a script has been told
        # (a withdrawal must not put a started job back in the queue).
        self._started: list[str] = []
        self._offers_sent = 0  # the number of the newest offer sent (`_ending`)
        self._withdrawals: set[asyncio.Task[None]] = set()
        self._made_with: MadeWith = (
            RedisJobStore,
            url,
            client,
            {**self._arguments, "cluster": cluster, "shards": 1},
        )
        self._ended = False  # closed, `aclose` done: a `start` makes it anew

    async def start(self) -> None:
        """Connect (asking whether the server is a cluster node when not told), check that
        Redis answers and start listening for notifications. Idempotent; every other
        method starts the store too when needed.

        The first start also reads which shard counts other stores on this prefix use
        (one HGETALL): when a sharded layout may still hold jobs, this store serves its
        shards too, as a `ShardedRedisJobStore` of one shard (see `_shard_reshard`).

        Raises:
            StoreUnavailableError: Redis cannot be reached; a later call tries again.
        """
        if self._ended:
            self._made_again()
        await self._connection.start()
        if not self._layout_read and not self._token_mark:
            from ._shard_reshard import recorded

            prefix = self._arguments["prefix"]
            client = self._connection.client
            try:
                counts = await self._run("start", lambda _: recorded(client, prefix))
            except StoreUnavailableError:
                raise
            except JobStoreError as exc:  # a user not allowed to read it, say
                logger.warning("could not read the store's shard counts: %s", exc)
                counts = {}
            self._layout_read = True
            if set(counts) - {1}:
                from ._shard_store import become_sharded

                await become_sharded(self, self._arguments)

    async def aclose(self) -> None:
        """End this store's offer (if its worker made one), stop listening, release every
        waiter and close the client if the store made it. Idempotent; stored jobs are
        kept. A `start` afterwards opens the store again, as new (`_made_again`); every
        other call raises `JobStoreError` until then."""
        if self._offered and not self._connection.closed:
            self._end_offer()
            with contextlib.suppress(Exception):
                await self._withdraw()
                self._offered = False
        if self._withdrawals:
            await asyncio.wait(set(self._withdrawals), timeout=self._connection.deadline)
        await self._connection.aclose()
        self._ended = True

    def _made_again(self) -> None:
        """Make a closed store anew for a `start` after `aclose` (an app whose lifespan
        runs again, as Starlette's ``TestClient`` runs it once per ``with`` block, each
        in an event loop of its own): every part made afresh from the arguments the
        store was made with (a client of its own too; a given ``client`` is used again),
        its cancel listeners kept."""
        cls, url, client, arguments = self._made_with
        listeners = self._cancel_listeners
        warned = set(self._server_warnings())
        self.__dict__.clear()
        self.__class__ = cls
        cls.__init__(self, url, client=client, **arguments)
        self._cancel_listeners += listeners
        self._server_warnings().update(warned)  # given once per process, not once a start

    def _server_warnings(self) -> set[str]:
        """The warnings about server settings this store gave (`_health`)."""
        return self._connection.warned

    async def enqueue(self, new_job: NewJob, *, max_waiting: int | None = None) -> Job:
        """Store ``new_job`` as Queued in its queue (the job returned) and wake idle
        workers everywhere, or hand it straight to an idle worker's offer, or store it
        Scheduled when ``new_job.delay`` > 0; one round trip, shared by the submissions
        this process makes in the same event-loop turn.

        Raises:
            ValueError: ``new_job.delay`` is not a finite number.
            QueueFullError: ``max_waiting`` jobs are Queued or Scheduled already (all
                queues).
            DuplicateJobError: Another job with this id exists (the same job stored by a
                resent command whose first reply was lost is returned instead).
            StoreUnavailableError: Redis cannot be reached.
        """
        if not math.isfinite(new_job.delay):
            raise ValueError(f"delay must be a finite number of seconds, not {new_job.delay!r}")
        if new_job.follow_up is not None:
            check_follow_ups(new_job)
        created_ms = await self._submissions.submit((new_job, max_waiting, None))
        assert isinstance(created_ms, int)
        return await self._stored(new_job, created_ms, max_waiting)

    async def enqueue_once(
        self, new_job: NewJob, idempotency: Idempotency, *, max_waiting: int | None = None
    ) -> tuple[Job, str | None]:
        """Store ``new_job`` unless ``idempotency.key`` is remembered (then the job it
        names and its fingerprint); one round trip, in the same script as `enqueue`.

        Raises:
            IdempotentJobGoneError: the key is remembered but its job is no longer kept.
            As `enqueue`.
        """
        if not math.isfinite(new_job.delay):
            raise ValueError(f"delay must be a finite number of seconds, not {new_job.delay!r}")
        if new_job.follow_up is not None:
            check_follow_ups(new_job)
        reply = await self._submissions.submit((new_job, max_waiting, idempotency))
        if isinstance(reply, int):
            return await self._stored(new_job, reply, max_waiting), None
        fingerprint, _, job_text = text(reply).partition("\n")
        if job_text.startswith("gone "):
            gone_id = parse_job_id(job_text[5:])
            if gone_id is None:
                raise JobStoreError(f"idempotency key {idempotency.key} names a corrupt id")
            raise IdempotentJobGoneError(gone_id, fingerprint)
        earlier, _ = job_from_text(job_text)
        if earlier is None:
            raise JobStoreError(f"the job idempotency key {idempotency.key} names is corrupt")
        return earlier, fingerprint

    async def _stored(self, new_job: NewJob, created_ms: int, max_waiting: int | None) -> Job:
        if created_ms == -1:
            # redis-py resends a command whose reply was lost; when the first send stored
            # this very job, the resend finds it: that is success, not a duplicate.
            existing = await self.get(new_job.id)
            if existing is None or not is_same_submission(existing, new_job):
                raise DuplicateJobError(f"a job with id {new_job.id} exists already")
            return existing
        if created_ms == -2:
            assert max_waiting is not None  # a queue is full only with a bound
            raise QueueFullError(full_queue_message(max_waiting), retry_after=RETRY_AFTER)
        return queued_job(new_job, created_ms, delay_ms(new_job.delay))

    async def get(self, job_id: uuid.UUID) -> Job | None:
        """The job with this id; None when there is none or its record is corrupt."""
        fields = await self._run("get", lambda s: s.read(job_id))
        return decode_or_none(job_id, fields) if fields else None

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
                    limit, _ms(lease), token_base, inbox, started, queues, resend=resend
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
                lambda s: s.claim(0, _ms(_UNDO_LEASE), base, ending, started, (), resend=True),
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
        lost = await self._run("renew", lambda s: s.renew(claims, _ms(lease)))
        return {text(token) for token in lost}

    async def complete(self, claim: Claim, result: Any) -> Job | None:
        """Mark the claimed job Completed with ``result``; None when the claim is lost.

        The job keeps only the owner and trace context of its captured request
        (`kept_on_completion`). A
        result over `_ALONE_OVER` characters is sent in a call of its own, so that its
        transfer, or Redis refusing it, holds up no other completion.

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

    async def _enqueue_many(self, jobs: Sequence[Submission]) -> list[int | Reply]:
        # Submissions made in one event-loop turn share one script call (see `_batch`).
        replies, queued = await self._run("enqueue", lambda s: s.enqueue_many(jobs))
        if queued:
            self._notifications.wake()  # this process's own workers, before pub/sub does
        return replies

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

    async def recover(self) -> list[uuid.UUID]:
        """Re-queue (or fail, without retries left) every job whose lease expired, and
        delete the finished jobs and batches whose retention passed, in batches of one
        script call each (as many as there are, up to `RECOVER_CALLS` calls a pass: up
        to 100,000 deletions a pass); return the recovered ids. A batch that fails after
        others were recovered ends the pass (logged; the rest wait for the next one) and
        the ids recovered so far are returned: they are recovered in Redis either way."""
        recovered, _ = await self._recover(RECOVER_CALLS)
        return recovered

    async def _recover(self, calls: int) -> tuple[list[uuid.UUID], bool]:
        """`recover` in up to ``calls`` script calls: the recovered ids, and whether more
        may be waiting (the last call took a whole batch of something)."""
        error_json = dump_json(_CLAIM_EXPIRED)
        recovered: list[uuid.UUID] = []
        seen = _RECOVER_BATCH
        gentle = self._connection.trouble.recent  # a stall lived through, maybe
        for _ in range(calls):
            try:
                ids, seen = await self._run(
                    "recover", lambda s: s.recover(_RECOVER_BATCH, error_json, gentle)
                )
            except JobStoreError as exc:
                if not recovered:
                    raise
                logger.warning("recovery stopped after %d job(s): %s", len(recovered), exc)
                break
            recovered += [uuid.UUID(text(raw_id)) for raw_id in ids]
            if seen < _RECOVER_BATCH:
                break
        if recovered:
            self._notifications.wake()
        return recovered, seen >= _RECOVER_BATCH

    def _settled(self, job_id: uuid.UUID, reply: list[Any] | None) -> Job | None:
        if not reply:
            return None
        job = decode_or_none(job_id, pairs(reply))
        if job is not None and job.status.is_terminal:
            self._notifications.settled(str(job_id), job)
        elif job is not None:
            self._notifications.wake()
        return job


#: Seconds the leases of what `_undo_unanswered` is handed run, until it undoes them.
_UNDO_LEASE = 60.0


def _unanswered() -> StoreUnavailableError:
    """A settlement refused after redis-py sent it again (`RESENT`): its first send may
    have recorded it and lost the reply. Raised as unanswered, so the worker tries again
    and, refused again, reads the job to tell (`AttemptRunner._refused`)."""
    return StoreUnavailableError(
        "Redis did not answer the first send of this settlement, and the resend was "
        "refused: the first may have recorded it",
        retry_after=RETRY_AFTER,
    )


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
