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
import logging
import math
import secrets
import uuid
from collections.abc import Sequence
from typing import Any, TypeAlias, TypeVar

from async_endpoints._cancels import CancelledClaims
from async_endpoints._errors import (
    ConfigurationError,
    DuplicateJobError,
    JobStoreError,
    QueueFullError,
    StoreUnavailableError,
    full_queue_message,
)
from async_endpoints._idempotency import IdempotentJobGoneError
from async_endpoints._job import (
    Job,
    NewJob,
    is_same_submission,
    parse_job_id,
)
from async_endpoints._store import Claim
from async_endpoints._store_features import ClaimCancelListener, Idempotency

from ._base import Offer
from ._batch import Batcher
from ._batches import RedisBatches
from ._claims import RedisClaims
from ._client import (
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
    job_from_text,
    queued_job,
    terminal_job,
    text,
    to_ms,
)
from ._connection import Connection
from ._control import RedisControl
from ._errors import RETRY_AFTER
from ._events import RedisEvents
from ._follow_ups import RedisFollowUps
from ._inspection import RedisInspection
from ._keys import Keys
from ._recover import RedisRecovery
from ._schedules import RedisSchedules
from ._scripts import Submission, check_follow_ups, delay_ms
from ._settling import CompletionReply, RedisSettling
from ._waits import RedisWaits

logger = logging.getLogger("async_endpoints_redis")
T = TypeVar("T")

#: What a store was made with (its class, url, client and other arguments), to make it
#: anew after it was closed (`RedisJobStore._made_again`).
MadeWith: TypeAlias = "tuple[type[RedisJobStore], str | None, AnyRedis | None, dict[str, Any]]"


class RedisJobStore(
    RedisClaims,
    RedisSettling,
    RedisRecovery,
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
            retention_ms=to_ms(retention),
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

    async def _enqueue_many(self, jobs: Sequence[Submission]) -> list[int | Reply]:
        # Submissions made in one event-loop turn share one script call (see `_batch`).
        replies, queued = await self._run("enqueue", lambda s: s.enqueue_many(jobs))
        if queued:
            self._notifications.wake()  # this process's own workers, before pub/sub does
        return replies

    async def get(self, job_id: uuid.UUID) -> Job | None:
        """The job with this id; None when there is none or its record is corrupt."""
        fields = await self._run("get", lambda s: s.read(job_id))
        return decode_or_none(job_id, fields) if fields else None
