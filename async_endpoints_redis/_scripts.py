"""The Lua scripts (``lua/*.lua``) and typed calls of them, one per atomic operation.

Each script is the shared includes (``lua/_lib.lua``, ``_index.lua``, ``_ready.lua``,
``_bookkeeping.lua``, ``_lifecycle.lua``, ``_batch.lua``, ``_follow_up.lua``, ``_offers.lua``,
in that order,
or the few it needs; listing adds ``_index_scan.lua``, migration ``_migrate.lua``)
followed by the operation's own file, whose header lists its ARGV and reply; the
methods here pass exactly those. Every call passes two keys: the store's clock key and
its key prefix (``{p}:``), from which the scripts build every other key name, so that
every key a script touches shares the store's one hash tag and a cluster routes each
call to the node of that slot. A `LuaScript` calls EVALSHA and falls back to EVAL of
the text on NOSCRIPT (on that node only: see `_lua_script`), so a restarted or
failed-over server that forgot the scripts is handled transparently.

Every call also passes this process's reading of the elapsed-time clock (ARGV[1], see
`_elapsed`), the store's retention of terminal jobs in ms (ARGV[2]) and, for a
submission, the reading at which its caller gives up (ARGV[3], 0 for other calls: see
`_fence`) ahead of the operation's own arguments, which ``_lib.lua`` takes off again.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import uuid
from collections.abc import Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

from async_endpoints._errors import StoreUnavailableError
from async_endpoints._job import NewJob
from async_endpoints._store import Claim
from async_endpoints._store_features import Idempotency

from ._codec import Reply, dump_json, encode_kept, encode_request, text
from ._elapsed import ElapsedClock
from ._errors import RETRY_AFTER
from ._fence import LATE_PAUSE, LATE_PAUSE_MAX, budget, fence, late_clock
from ._lua_script import LuaScript

#: One submission: the job, the most waiting jobs allowed (None: no limit), and its
#: idempotency key when it has one.
Submission = tuple[NewJob, int | None, Idempotency | None]

if TYPE_CHECKING:
    from ._client import AnyRedis
    from ._keys import Keys

_INCLUDES = (
    "_lib",
    "_index",
    "_ready",
    "_bookkeeping",
    "_lifecycle",
    "_batch",
    "_follow_up",
    "_offers",
)
_CORE = ("_lib", "_index", "_ready", "_bookkeeping", "_lifecycle", "_batch", "_follow_up")
_EXTRA_INCLUDES = ("_index_scan", "_migrate")
# Scripts that need fewer includes get only those: every include costs each call the time
# to define its functions (about 16 us for all of them on a loaded 2-core machine: Lua 5.1
# finds each upvalue of a new closure by a walk of the open upvalues), so code that few
# scripts need lives in includes of its own.
_NEEDS = {
    "clock": ("_lib",),
    "progress": ("_lib",),
    "watch": ("_lib",),
    "renew": ("_lib",),
    "pause": ("_lib",),
    "count_waiting": ("_lib", "_index", "_ready", "_bookkeeping"),
    "complete_many": _CORE,
    "fail": _CORE,
    "cancel": _CORE,
    "requeue": _CORE,
    "list_jobs": ("_lib", "_index", "_index_scan", "_ready", "_bookkeeping"),
    "migrate": (*_CORE, "_migrate"),
    "recover": (*_CORE, "_migrate"),
    "queue_stats": ("_lib", "_ready"),
    **{
        f"schedule_{op}": ("_lib",)
        for op in ("upsert", "remove", "list", "due", "time", "move", "epoch")
    },
    "batch_stage": ("_lib",),
}
_NAMES = (
    "enqueue_many",
    "claim",
    "renew",
    "complete_many",
    "fail",
    "recover",
    "count_waiting",
    "offer",
    "withdraw",
    "clock",
    "progress",
    "watch",
    "migrate",
    "cancel",
    "requeue",
    "pause",
    "queue_stats",
    "list_jobs",
    *(
        f"schedule_{op}"
        for op in ("upsert", "remove", "list", "due", "time", "fire", "move", "epoch")
    ),
    *(f"batch_{op}" for op in ("stage", "add", "cancel", "list", "get", "jobs")),
)
_PROMOTE_BATCH = 200  # due Scheduled jobs moved to the queue per claim
_SKIP_BUDGET = 1000  # bad ids a claim may drop on top of the jobs it claims
_MIGRATE_BATCH = 10_000  # ids of the older layout's queue moved per call


_COMMENT_LINE = re.compile(r"^[ \t]*--.*$", re.MULTILINE)


def _source(name: str) -> str:
    """The file's text with its comment lines emptied (Redis keeps every script's text in
    memory; blank lines keep the line numbers an error names)."""
    text = resources.files(__package__).joinpath("lua", f"{name}.lua").read_text("utf-8")
    return _COMMENT_LINE.sub("", text)


def queues_arg(queues: Sequence[str]) -> str:
    """Queue names as the scripts take them: a JSON array."""
    return json.dumps(list(queues), separators=(",", ":"))


class Scripts:
    """The store's Redis calls: its scripts, plus the plain read of one job.

    Args:
        client: The client to register the scripts with (no round trip until used).
        keys: The store's key and channel names.
        retention_ms: How long terminal jobs are kept.
        clock: This process's reading of the elapsed-time clock.
    """

    def __init__(
        self, client: AnyRedis, keys: Keys, retention_ms: int, clock: ElapsedClock
    ) -> None:
        sources = {name: _source(name) for name in _INCLUDES + _EXTRA_INCLUDES}
        self._scripts = {
            name: LuaScript(
                client,
                "".join(sources[part] for part in _NEEDS.get(name, _INCLUDES)) + _source(name),
            )
            for name in _NAMES
        }
        self._client = client
        self._keys = keys
        self._retention_ms = retention_ms
        self._clock = clock

    async def _call(self, name: str, args: Sequence[str | int], budget_s: float = math.inf) -> Any:
        """Run script ``name``; with a `_fence.budget` (seconds) it stores nothing when
        carried out later than that after this send (infinite: no fence)."""
        keys = [self._keys.clock, self._keys.key_prefix]
        reading = self._clock.reading()
        sent = [reading, self._retention_ms, fence(reading, budget_s), *args]
        return await self._scripts[name](keys=keys, args=sent)

    async def _fenced(self, name: str, args: Sequence[str | int]) -> Any:
        """`_call` of a submission, which stores nothing when carried out after its caller
        gave up (`_fence`): sent again while its caller waits, when refused so."""
        pause, refused = LATE_PAUSE, False
        while True:
            seconds = budget()
            if seconds <= 0:
                raise StoreUnavailableError(
                    "Redis is unavailable: it carried the call out too late to answer in "
                    "time (it stalled or answered slowly, or its host's wall clock stepped)"
                    if refused
                    else "Redis is unavailable: too little of the call's deadline was left "
                    "to send it after it waited for its turn; nothing stored",
                    retry_after=RETRY_AFTER,
                )
            reply = await self._call(name, args, seconds)
            clock_ms = late_clock(reply)
            if clock_ms is None:
                return reply
            self._clock.observe(clock_ms)
            refused = True
            await asyncio.sleep(min(pause, max(0.0, budget())))
            pause = min(2 * pause, LATE_PAUSE_MAX)

    async def call(self, name: str, args: Sequence[str | int], *, fenced: bool = False) -> Any:
        """Run script ``name`` with ``args`` (for the store's parts with their own scripts,
        such as the schedules of `_schedules`); ``fenced`` for a submission (`_fence`)."""
        return await (self._fenced(name, args) if fenced else self._call(name, args))

    def reading(self) -> int:
        """This process's reading of the elapsed-time clock (ms), as every call passes it."""
        return self._clock.reading()

    async def clock(self, *, catch_up_from: str | None = None) -> int:
        """The elapsed-time clock (ms), which this process then reads on its own.

        Args:
            catch_up_from: For a starting process, what `probe_clock` saw: the clock is
                caught up with the wall-clock time since it was last set, unless someone
                set it since (``lua/clock.lua``). None: advanced to this process's reading
                alone, as every call does.
        """
        args = ["answer"] if catch_up_from is None else ["catch-up", catch_up_from]
        clock_ms: int = await self._call("clock", args)
        self._clock.observe(clock_ms)
        return clock_ms

    async def probe_clock(self, channel: str) -> tuple[str, int]:
        """Before a starting process's first reading: ask the live processes of the store
        for theirs, on ``channel``, when the clock has stood still a while
        (``lua/clock.lua``).

        Returns:
            When the clock was last set (the ``{p}:clock:at`` record, "" if none), and how
            many subscribers were asked (-1: the clock was set lately, nobody was asked).
        """
        seen, asked = await self._call("clock", ["probe", channel])
        return text(seen), int(asked)

    async def clock_set_at(self) -> str:
        """The ``{p}:clock:at`` record: when the clock was last set ("" if never)."""
        seen: Reply | None = await self._client.get(self._keys.clock_set_at)
        return "" if seen is None else text(seen)

    async def migrate(self) -> None:
        """Bring a store of the older layout to this one (see ``lua/migrate.lua``)."""
        while await self._call("migrate", [_MIGRATE_BATCH]):
            pass

    async def read(self, job_id: uuid.UUID) -> dict[Reply, Reply]:
        """The job's hash (empty when there is none)."""
        fields: dict[Reply, Reply] = await self._client.hgetall(self._keys.job(job_id))
        return fields

    async def reserved(self, job_id: uuid.UUID) -> bool:
        """Whether ``job_id`` is a batch's continuation not stored yet (lua/_batch.lua)."""
        found: int = await self._client.hexists(f"{self._keys.key_prefix}reserved", str(job_id))
        return bool(found)

    async def follow_up(self, job_id: uuid.UUID) -> Reply | None:
        """The job's ``follow`` field (its follow-up still to store), or None."""
        follow: Reply | None = await self._client.hget(self._keys.job(job_id), "follow")
        return follow

    async def enqueue_many(self, jobs: Sequence[Submission]) -> tuple[list[int | Reply], int]:
        """Per (job, max waiting, idempotency): created-at ms, or -1 (duplicate id) or -2
        (queue full), or "<fingerprint>\n<job_text>" of the job an idempotency key names
        ("<fingerprint>\ngone <id>" when that job is no longer kept); and how many were
        Queued rather than handed to an idle worker."""
        args: list[str | int] = []
        for new_job, max_waiting, idempotency in jobs:
            limit = -1 if max_waiting is None else max_waiting
            args += [str(new_job.id), new_job.name, new_job.max_retries]
            args += [encode_request(new_job.request), limit, new_job.queue]
            args.append(delay_ms(new_job.delay))
            args += [new_job.partition_key or "", new_job.tenant or ""]
            if idempotency is None:
                args += ["", "", 0]
            else:
                ttl = max(1, math.ceil(idempotency.ttl * 1000))
                args += [idempotency.key, idempotency.fingerprint, ttl]
            args += webhook_args(new_job)
        # The clock too: a process that only submits reads it here, and so does not fall
        # behind the others' (see LEASE_FROM in lua/_lib.lua).
        replies, queued, clock_ms = await self._fenced("enqueue_many", args)
        self._clock.observe(clock_ms)
        return replies, queued

    async def claim(
        self,
        limit: int,
        lease_ms: int,
        token_base: str,
        inbox: str,
        started: Sequence[str],
        queues: Sequence[str],
        *,
        resend: bool = False,
    ) -> tuple[list[Reply], int]:
        """Per claimed job its id and hash as JSON (``job_text``); the same claims again
        when a call with this ``token_base`` already ran (its reply was lost). First ends
        the offer of ``inbox`` ('' for none), of whose jobs ``started`` were started. And,
        when ``queues`` ran dry, the ms until the earliest Scheduled job is due (-1: none),
        else -2. ``resend``: the base is that of a call that went unanswered; when that
        call has not run, it will claim nothing if Redis carries it out later."""
        args: list[str | int] = [limit, lease_ms, token_base, _PROMOTE_BATCH]
        args += [limit + _SKIP_BUDGET, inbox, queues_arg(queues), "1" if resend else ""]
        args += started
        claimed, due_ms = await self._call("claim", args)
        return claimed, due_ms

    async def offer(
        self,
        inbox: str,
        token_base: str,
        slots: int,
        lease_ms: int,
        ttl_ms: int,
        started: Sequence[str],
        queues: Sequence[str],
    ) -> int:
        """Replace the inbox's offer (of whose jobs ``started`` were started) by a new one
        for jobs of ``queues``; -2 when a job of those is Queued (no offer made), else ms
        until the earliest Scheduled job is due (0: due now, no offer made) or -1."""
        args: list[str | int] = [inbox, token_base, slots, lease_ms, ttl_ms]
        args += [queues_arg(queues), *started]
        due_ms: int = await self._call("offer", args)
        return due_ms

    async def withdraw(self, inbox: str, started: Sequence[str]) -> int:
        """End the inbox's offer; how many unstarted jobs went back to the queue."""
        back: int = await self._call("withdraw", [inbox, *started])
        return back

    async def renew(self, claims: Sequence[Claim], lease_ms: int) -> list[Reply]:
        """The tokens of the claims that are lost."""
        args: list[str | int] = [lease_ms]
        for claim in claims:
            args += [str(claim.job.id), claim.token]
        lost: list[Reply] = await self._call("renew", args)
        return lost

    async def complete_many(
        self, completions: Sequence[tuple[Claim, str]]
    ) -> tuple[list[int], bool]:
        """Per (claim, result JSON): the completion time in ms, or -1 when the claim is lost;
        and whether the next job of a partition key became ready."""
        args: list[str | int] = []
        for claim, result_json in completions:
            kept = encode_kept(claim.job.request)
            args += [str(claim.job.id), claim.token, result_json, kept]
        replies, moved = await self._call("complete_many", args)
        return replies, bool(moved)

    async def fail(self, claim: Claim, error_json: str, delay_ms: int | None) -> list[Reply] | None:
        """The job's hash after the failed attempt, or None when the claim is lost."""
        delay: str | int = "" if delay_ms is None else delay_ms
        args = [str(claim.job.id), claim.token, error_json, delay]
        job: list[Reply] | None = await self._call("fail", args)
        return job

    async def give_back(self, claim: Claim, delay_ms: int) -> list[Reply] | None:
        """The job's hash once given back (Queued, or Scheduled in ``delay_ms``, the
        attempt not counted), or None when the claim is lost (the fail script's give-back
        mode)."""
        job: list[Reply] | None = await self._call(
            "fail", [str(claim.job.id), claim.token, "", delay_ms, 1]
        )
        return job

    async def unclaim(self, claim: Claim) -> list[Reply] | None:
        """The job's hash once its claim is undone (Queued at the head of its queue, never
        started: no attempt, no start time), or None when the claim is lost (the fail
        script's unclaim mode)."""
        job: list[Reply] | None = await self._call(
            "fail", [str(claim.job.id), claim.token, "", 0, 2]
        )
        return job

    async def recover(
        self, batch: int, error_json: str, gentle: bool = False
    ) -> tuple[list[Reply], int]:
        """The recovered ids, and the most entries one part of the call took (expired
        claims, held keys, finished jobs or batches whose retention passed: ``batch``
        means more may be waiting); ``gentle`` after trouble reaching Redis
        (`_trouble`)."""
        ids, seen, clock_ms = await self._call("recover", [batch, error_json, int(gentle)])
        self._clock.observe(clock_ms)
        return ids, seen

    async def cancel(self, job_id: str, nonce: str) -> list[Any] | None:
        """{status before, hash} of the job after the cancel; None when there is none.
        ``nonce`` (random, one per cancel call) makes a resend answer as the first send."""
        reply: list[Any] | None = await self._call("cancel", [job_id, nonce])
        return reply

    async def requeue(self, job_id: str, nonce: str) -> list[Any] | None:
        """{status before, hash} of the job after the requeue; None when there is none.
        ``nonce`` (random, one per requeue call) makes a resend answer as the first send,
        requeuing nothing more."""
        reply: list[Any] | None = await self._call("requeue", [job_id, nonce])
        return reply

    async def pause(self, pause: bool, queues: Sequence[str]) -> list[Reply]:
        """Pause (or resume) ``queues``; the paused queues now."""
        paused: list[Reply] = await self._call("pause", ["pause" if pause else "resume", *queues])
        return paused

    async def queue_stats(self, queues: Sequence[str]) -> list[list[int]]:
        """Per queue: paused, queued, scheduled, in_progress, completed, failed, canceled."""
        rows: list[list[int]] = await self._call("queue_stats", list(queues))
        return rows

    async def list_jobs(
        self,
        status: str,
        queue: str,
        limit: int,
        budget: int,
        queues: Sequence[str],
        position: Sequence[str],
        tenant: str = "",
        batch: str = "",
    ) -> list[Any]:
        """{jobs, position, queue} of one page (see ``lua/list_jobs.lua``)."""
        args: list[str | int] = [status, queue, limit, budget, queues_arg(queues)]
        args += [*position] if position else ["", ""]
        args += [tenant, batch]
        page: list[Any] = await self._call("list_jobs", args)
        return page

    async def count_waiting(self) -> int:
        """How many jobs are Queued or Scheduled."""
        count: int = await self._call("count_waiting", [])
        return count


def job_tuple(new_job: NewJob) -> list[str | int]:
    """The job as the scripts take a new job apart from how it is submitted: the 10 values
    of a job tuple (``lua/_batch.lua``), its follow-up's tuple nested as JSON text.

    Raises:
        ValueError: its delay is not a finite number, or its follow-up is refused
            (`check_follow_ups`).
    """
    if not math.isfinite(new_job.delay):
        raise ValueError(f"delay must be a finite number of seconds, not {new_job.delay!r}")
    return [
        str(new_job.id),
        new_job.name,
        new_job.max_retries,
        encode_request(new_job.request),
        new_job.queue,
        delay_ms(new_job.delay),
        new_job.partition_key or "",
        new_job.tenant or "",
        *webhook_args(new_job),
    ]


def webhook_args(new_job: NewJob) -> list[str]:
    """The job's follow-up (its `job_tuple` as compact JSON, all values text) and the id of
    the job whose webhook it delivers, '' for none.

    Raises:
        ValueError: the follow-up is refused (`check_follow_ups`).
    """
    follow_up, target = new_job.follow_up, new_job.delivers_for
    follow = ""
    if follow_up is not None:
        check_follow_ups(new_job)
        follow = dump_json([str(value) for value in job_tuple(follow_up)])
    return [follow, "" if target is None else str(target)]


def check_follow_ups(new_job: NewJob) -> None:
    """Raise `ValueError` unless every follow-up in ``new_job``'s chain can be stored: a
    finite delay, and no batch (a follow-up is stored as `enqueue` stores a job)."""
    follow_up = new_job.follow_up
    while follow_up is not None:
        if not math.isfinite(follow_up.delay):
            raise ValueError(f"delay must be a finite number of seconds, not {follow_up.delay!r}")
        if follow_up.batch_id is not None:
            raise ValueError("a follow-up belongs to no batch: its batch_id must be None")
        follow_up = follow_up.follow_up


def delay_ms(seconds: float) -> int:
    """A delay as whole milliseconds (0: none); a positive delay is at least 1 ms."""
    if seconds <= 0:
        return 0
    return max(1, round(seconds * 1000))
