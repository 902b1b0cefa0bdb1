"""The Lua scripts (``lua/*.lua``) and typed calls of them, one per atomic operation.

Each script is ``lua/_lib.lua`` (shared helpers) followed by the operation's own file,
whose header lists its KEYS, ARGV and reply; the methods here pass exactly those. Every
key goes through KEYS (the job key prefix too, for jobs a script pops from a queue), so
a cluster routes each call to the node of the store's one hash tag. redis-py's
`AsyncScript` calls EVALSHA and falls back to SCRIPT LOAD on NOSCRIPT, so a restarted or
failed-over server that forgot the scripts is handled transparently.

Every call also passes the store's clock key (KEYS[1]) and this process's reading of the
elapsed-time clock (ARGV[1]) ahead of the operation's own keys and arguments, which
``_lib.lua`` takes off again (see `_elapsed`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

from async_endpoints._job import JobRequest, NewJob
from async_endpoints._store import Claim

from ._codec import Reply, encode_request
from ._elapsed import ElapsedClock

if TYPE_CHECKING:
    from ._client import AnyRedis
    from ._keys import Keys

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
)
_PROMOTE_BATCH = 200  # due Scheduled jobs moved to the queue per claim
_SKIP_BUDGET = 1000  # bad ids a claim may drop on top of the jobs it claims


def _source(name: str) -> str:
    return resources.files(__package__).joinpath("lua", f"{name}.lua").read_text("utf-8")


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
        library = _source("_lib")
        self._scripts = {name: client.register_script(library + _source(name)) for name in _NAMES}
        self._client = client
        self._keys = keys
        self._retention_ms = retention_ms
        self._clock = clock

    async def _call(self, name: str, keys: list[str], args: Sequence[str | int]) -> Any:
        keys = [self._keys.clock, *keys]
        return await self._scripts[name](keys=keys, args=[self._clock.reading(), *args])

    async def clock(self) -> int:
        """The elapsed-time clock (ms), which this process then reads on its own."""
        clock_ms: int = await self._call("clock", [], [])
        self._clock.observe(clock_ms)
        return clock_ms

    async def read(self, job_id: uuid.UUID) -> dict[Reply, Reply]:
        """The job's hash (empty when there is none)."""
        fields: dict[Reply, Reply] = await self._client.hgetall(self._keys.job(job_id))
        return fields

    async def enqueue_many(
        self, jobs: Sequence[tuple[NewJob, int | None]]
    ) -> tuple[list[int], int]:
        """Per (job, max waiting): created-at ms, or -1 (duplicate id) or -2 (queue full);
        and how many were Queued rather than handed to an idle worker."""
        k = self._keys
        args: list[str | int] = [k.wake_channel, k.inbox_prefix]
        for new_job, max_waiting in jobs:
            limit = -1 if max_waiting is None else max_waiting
            args += [str(new_job.id), new_job.name, new_job.max_retries]
            args += [encode_request(new_job.request), limit]
        keys = [k.queue, k.scheduled, k.job_prefix, k.active, k.offers, k.idle, k.given_prefix]
        replies, queued = await self._call("enqueue_many", keys, args)
        return replies, queued

    async def claim(
        self, limit: int, lease_ms: int, token_base: str, inbox: str, started: Sequence[str]
    ) -> list[list[Any]]:
        """``[id, [field, value, ...]]`` per claimed job; the same claims again when a call
        with this ``token_base`` already ran (its reply was lost). First ends the offer of
        ``inbox`` ('' for none), of whose jobs ``started`` were started."""
        k = self._keys
        args: list[str | int] = [limit, lease_ms, token_base, _PROMOTE_BATCH]
        args += [limit + _SKIP_BUDGET, inbox, k.wake_channel, *started]
        keys = [k.queue, k.scheduled, k.active, k.job_prefix, k.claim_memo(token_base)]
        keys += [k.offers, k.idle, k.given_prefix]
        claimed: list[list[Any]] = await self._call("claim", keys, args)
        return claimed

    async def offer(
        self,
        inbox: str,
        token_base: str,
        slots: int,
        lease_ms: int,
        ttl_ms: int,
        started: Sequence[str],
    ) -> int:
        """Replace the inbox's offer (of whose jobs ``started`` were started) by a new one;
        -2 when a job is Queued (no offer made), else ms until the earliest Scheduled job
        is due (0: due now, no offer made) or -1."""
        k = self._keys
        keys = [k.queue, k.scheduled, k.active, k.job_prefix, k.offers, k.idle, k.given_prefix]
        args: list[str | int] = [inbox, token_base, slots, lease_ms, ttl_ms, *started]
        due_ms: int = await self._call("offer", keys, args)
        return due_ms

    async def withdraw(self, inbox: str, started: Sequence[str]) -> int:
        """End the inbox's offer; how many unstarted jobs went back to the queue."""
        k = self._keys
        keys = [k.queue, k.active, k.job_prefix, k.offers, k.idle, k.given_prefix]
        back: int = await self._call("withdraw", keys, [inbox, k.wake_channel, *started])
        return back

    async def renew(self, claims: Sequence[Claim], lease_ms: int) -> list[Reply]:
        """The tokens of the claims that are lost."""
        args: list[str | int] = [lease_ms]
        for claim in claims:
            args += [str(claim.job.id), claim.token]
        lost: list[Reply] = await self._call(
            "renew", [self._keys.active, self._keys.job_prefix], args
        )
        return lost

    async def complete_many(self, completions: Sequence[tuple[Claim, str]]) -> list[int]:
        """Per (claim, result JSON): the completion time in ms, or -1 when the claim is lost."""
        k = self._keys
        args: list[str | int] = [self._retention_ms, k.done_channel]
        for claim, result_json in completions:
            kept = encode_request(JobRequest(owner=claim.job.request.owner))
            args += [str(claim.job.id), claim.token, result_json, kept]
        keys = [k.active, k.job_prefix, k.expiring]
        replies: list[int] = await self._call("complete_many", keys, args)
        return replies

    async def fail(self, claim: Claim, error_json: str, delay_ms: int | None) -> list[Reply] | None:
        """The job's hash after the failed attempt, or None when the claim is lost."""
        k, job_id = self._keys, claim.job.id
        delay: str | int = "" if delay_ms is None else delay_ms
        args = [str(job_id), claim.token, error_json, delay, self._retention_ms]
        args += [k.wake_channel, k.done_channel]
        keys = [k.job(job_id), k.active, k.queue, k.scheduled, k.expiring]
        job: list[Reply] | None = await self._call("fail", keys, args)
        return job

    async def recover(self, batch: int, error_json: str) -> tuple[list[Reply], int]:
        """The recovered ids, and how many expired claims the call looked at."""
        k = self._keys
        args: list[str | int] = [batch, error_json, self._retention_ms]
        args += [k.wake_channel, k.done_channel]
        ids, seen, clock_ms = await self._call(
            "recover", [k.active, k.queue, k.scheduled, k.job_prefix, k.expiring], args
        )
        self._clock.observe(clock_ms)
        return ids, seen

    async def count_waiting(self) -> int:
        """How many jobs are Queued or Scheduled."""
        count: int = await self._call("count_waiting", [self._keys.queue, self._keys.scheduled], [])
        return count
