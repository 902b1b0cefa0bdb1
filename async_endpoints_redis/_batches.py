"""`RedisBatches`: the `BatchStore` part of `RedisJobStore`: batches and their
continuations.

A batch is a hash (``{p}:batch:<id>``) with its counts per status, kept by the scripts of
every transition in the same step as the job's status (``lua/_batch.lua``, whose hook
every transition of ``lua/_lifecycle.lua`` calls); the transition that ends the last
unfinished job of a running batch finishes it and stores its continuations right there.
Keys: ``lua/_batch.lua``.

Creating a batch (or appending to one) is one script call, ``lua/batch_add.lua``, that
checks every id and the room under ``max_waiting`` before it writes anything, so it stores
every job or none. A batch of more than `CHUNK` jobs is sent in chunks: each but the last
is kept under a staging key by ``lua/batch_stage.lua`` (no job is stored), and the call
carrying the last chunk checks and stores them all in one script; a call that fails
leaves no job behind (its staging key expires after `STAGED_FOR` seconds). Every call
carries a random nonce kept in the batch, so a call resent after its reply was lost is
recognised and answers the batch it stored instead of storing (or counting) anything
again.
"""

from __future__ import annotations

import logging
import re
import secrets
import uuid
from collections.abc import Sequence
from typing import Any

from async_endpoints._batch import Batch, BatchPage, BatchStatus, ContinueWhen, NewBatch
from async_endpoints._errors import (
    DuplicateJobError,
    JobStoreError,
    QueueFullError,
    full_batch_message,
)
from async_endpoints._job import Job, JobStatus, NewJob, check_label
from async_endpoints._listing import (
    JobPage,
    check_limit,
    decode_cursor,
    encode_cursor,
    filters_of,
)

from ._base import StoreBase
from ._codec import from_ms, job_from_text, pairs, text
from ._errors import RETRY_AFTER
from ._pages import VISITS_PER_JOB
from ._scripts import job_tuple

logger = logging.getLogger("async_endpoints_redis")

#: Jobs per script call when a batch is sent in chunks.
CHUNK = 2000
#: Seconds the staged chunks of a batch sent in chunks are kept for their last call. Only
#: the chunks of a process that died between its calls wait this long (a call that fails
#: drops them); a day, because Redis expires keys by its host's wall clock, so a step of
#: that clock forward by more than this between two calls would drop them under the
#: batch being sent (an hour's step did so under the ten minutes kept before).
STAGED_FOR = 24 * 3600
#: Jobs a cancel_batch step cancels in one script call.
CANCEL_STEP = 2000
#: What a batch listing's cursor is bound to, before the tenant.
_LISTING = "batches"
_ENTRY = re.compile(r"\d{14}:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_COUNTED = tuple(JobStatus)


def batch_from(batch_id: uuid.UUID, flat: Sequence[Any]) -> Batch:
    """The batch in its hash (a flat ``{field, value, ...}`` reply)."""
    data = pairs(flat)
    counts = [max(0, int(data.get(status.value, 0))) for status in _COUNTED]
    created_at = from_ms(data["created_at"])
    assert created_at is not None
    return Batch(
        id=batch_id,
        tenant=data.get("tenant"),
        status=BatchStatus(data["status"]),
        total=sum(counts),
        queued=counts[0],
        scheduled=counts[1],
        in_progress=counts[2],
        completed=counts[3],
        failed=counts[4],
        canceled=counts[5],
        created_at=created_at,
        finished_at=from_ms(data.get("finished_at")),
        continuation_ids=tuple(uuid.UUID(raw) for raw in data.get("conts", "").split()),
        continue_when=ContinueWhen(data.get("when", ContinueWhen.ALL_TERMINAL.value)),
    )


class RedisBatches(StoreBase):
    """Batches in Redis; see `async_endpoints.BatchStore`."""

    async def create_batch(self, batch: NewBatch, *, max_waiting: int | None = None) -> Batch:
        """Store ``batch`` and its jobs, all or none (in chunks of `CHUNK` jobs past that
        many, committed by the last call); see `BatchStore.create_batch`.

        Raises:
            ValueError: a job's delay is not a finite number (nothing stored).
        """
        continuations: list[str | int] = []
        for new_job in batch.continuations:
            continuations += job_tuple(new_job)
        head: list[str | int] = [
            batch.tenant or "",
            ContinueWhen(batch.continue_when).value,
            len(continuations),
            *continuations,
        ]
        _, flat = await self._add("create", batch.id, batch.jobs, max_waiting, head)
        return batch_from(batch.id, flat)

    async def append_to_batch(
        self, batch_id: uuid.UUID, jobs: Sequence[NewJob], *, max_waiting: int | None = None
    ) -> Batch | None:
        """Add ``jobs`` to the running batch, all or none; see `BatchStore.append_to_batch`."""
        for new_job in jobs:
            if new_job.batch_id != batch_id:
                raise ValueError(f"job {new_job.id} does not name batch {batch_id}")
        code, flat = await self._add("append", batch_id, jobs, max_waiting, ["", "", 0])
        if code == "none":
            return None
        return batch_from(batch_id, flat)

    async def get_batch(self, batch_id: uuid.UUID) -> Batch | None:
        """The batch, or None; see `BatchStore.get_batch`."""
        flat = await self._run("get_batch", lambda s: s.call("batch_get", [str(batch_id)]))
        return batch_from(batch_id, flat) if flat else None

    async def pending_continuation(self, job_id: uuid.UUID) -> bool:
        """Whether ``job_id`` is the id of a batch's continuation not stored yet (one
        HEXISTS); see `BatchStore.pending_continuation`."""
        return await self._run("pending_continuation", lambda s: s.reserved(job_id))

    async def list_batches(
        self, *, tenant: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> BatchPage:
        """One page of batches, newest first, in O(limit + log n) (with a tenant too); see
        `BatchStore.list_batches`."""
        check_limit(limit)
        check_label(tenant, "tenant")
        filters = [_LISTING, tenant]
        after = ""
        if cursor is not None:
            position = decode_cursor(cursor, filters)
            if len(position) != 1 or not isinstance(position[0], str):
                raise ValueError("invalid cursor")
            if not _ENTRY.fullmatch(position[0]):
                raise ValueError("invalid cursor")
            after = position[0]
        args: list[str | int] = [tenant or "", limit, after]
        reply = await self._run("list_batches", lambda s: s.call("batch_list", args))
        batches = [
            batch_from(uuid.UUID(text(reply[i])), reply[i + 1]) for i in range(0, len(reply), 2)
        ]
        if len(batches) <= limit:
            return BatchPage(batches, None)
        batches = batches[:limit]
        return BatchPage(batches, batch_cursor(tenant, batches[-1]))

    async def cancel_batch(self, batch_id: uuid.UUID) -> Batch | None:
        """Cancel the batch, its unfinished jobs (running ones announced on the cancel
        channel, as `cancel` does) and its continuations, in steps of `CANCEL_STEP` jobs
        (the first marks it Canceled); see `BatchStore.cancel_batch`."""
        start, mode = 0, ""
        while True:
            args: list[str | int] = [str(batch_id), mode, start, CANCEL_STEP]
            reply = await self._script("cancel_batch", "batch_cancel", args)
            if not reply:
                return None
            start, mode, flat = int(reply[0]), text(reply[1]), reply[2]
            if start < 0:
                self._notifications.wake()
                return batch_from(batch_id, flat)

    async def _script(
        self, operation: str, name: str, args: list[str | int], *, fenced: bool = False
    ) -> Any:
        return await self._run(operation, lambda s: s.call(name, args, fenced=fenced))

    async def _staged_add(
        self,
        mode: str,
        batch_id: uuid.UUID,
        jobs: Sequence[NewJob],
        max_waiting: int | None,
        head: list[str | int],
    ) -> tuple[Any, list[Any]]:
        """``lua/batch_add.lua``'s raw answer, all but the last `CHUNK` jobs staged first
        (`lua/batch_stage.lua`); the chunks staged are dropped when a call fails."""
        tuples = [job_tuple(new_job) for new_job in jobs]
        nonce = secrets.token_hex(8)
        chunks = [tuples[i : i + CHUNK] for i in range(0, len(tuples), CHUNK)] or [[]]
        try:
            for number, chunk in enumerate(chunks[:-1], start=1):
                args: list[str | int] = [str(batch_id), nonce, number, STAGED_FOR * 1000]
                for values in chunk:
                    args += values
                await self._script("create_batch", "batch_stage", args)
            limit = -1 if max_waiting is None else max_waiting
            args = [mode, str(batch_id), nonce, len(chunks) - 1, limit, *head]
            for values in chunks[-1]:
                args += values
            answer: tuple[Any, list[Any]] = await self._script(
                "create_batch", "batch_add", args, fenced=True
            )
        except Exception:
            if len(chunks) > 1:
                await self._unstage(batch_id, nonce)
            raise
        return answer

    async def _unstage(self, batch_id: uuid.UUID, nonce: str) -> None:
        """Drop the chunks a failed call staged (best effort: they expire after
        `STAGED_FOR` seconds anyway), so that a batch a full Redis refused does not keep
        it full meanwhile."""
        try:
            await self._script("create_batch", "batch_stage", [str(batch_id), nonce, 0, 0])
        except Exception as exc:
            logger.debug("staged jobs of batch %s left to expire: %s", batch_id, exc)

    async def _add(
        self,
        mode: str,
        batch_id: uuid.UUID,
        jobs: Sequence[NewJob],
        max_waiting: int | None,
        head: list[str | int],
    ) -> tuple[str, list[Any]]:
        """Run ``lua/batch_add.lua`` (staging all but the last `CHUNK` first); its code and
        the batch's hash, or the error its code means."""
        code, flat = await self._staged_add(mode, batch_id, jobs, max_waiting, head)
        code = text(code)
        if code in ("ok", "again"):
            self._notifications.wake()  # this process's own workers, before pub/sub does
            return code, flat
        if code == "none":
            return code, flat
        if code == "dup":
            raise DuplicateJobError(f"batch {batch_id} or one of its job ids exists already")
        if code == "full":  # only ever with a limit
            limit = 0 if max_waiting is None else max_waiting
            raise QueueFullError(full_batch_message(limit), retry_after=RETRY_AFTER)
        if code == "closed":
            status = pairs(flat).get("status", "not running")
            raise ValueError(f"batch {batch_id} is {status}: it takes no more jobs")
        raise JobStoreError(f"batch {batch_id}: its staged jobs expired before the last call")


def batch_cursor(tenant: str | None, batch: Batch) -> str:
    """The cursor of `RedisJobStore.list_batches` (by ``tenant``) resuming right after
    ``batch``: its entry in the listing index."""
    entry = f"{round(batch.created_at.timestamp() * 1000):014d}:{batch.id}"
    return encode_cursor([_LISTING, tenant], [entry])


#: The mark of a batch listing's cursor (its jobs newest stored first).
_NEWEST_FIRST = "n"


async def batch_jobs_page(
    store: StoreBase,
    batch_id: uuid.UUID,
    status: JobStatus | None,
    queue: str | None,
    tenant: str | None,
    limit: int,
    cursor: str | None,
) -> JobPage:
    """One page of `InspectionStore.list_jobs` with ``batch_id`` and no status: the
    batch's jobs (its continuations once stored) newest stored first, from its job list;
    with a queue or tenant filter the script looks at no more than ``limit * 10 + 100`` of
    them and may return a short page with a cursor.

    Raises:
        ValueError: a cursor not made for this listing.
    """
    check_limit(limit)
    filters = filters_of(status, queue, tenant, batch_id)
    start: int | str = ""  # the newest
    if cursor is not None:
        position = decode_cursor(cursor, filters)
        # ["n", index]: walking from the newest (a cursor of the oldest-first order that
        # came before, [index], is refused rather than read the other way).
        if len(position) != 2 or position[0] != _NEWEST_FIRST:
            raise ValueError("invalid cursor")
        if type(position[1]) is not int or position[1] < 0:
            raise ValueError("invalid cursor")
        start = position[1]
    filtered = status is not None or queue is not None or tenant is not None
    budget = limit * VISITS_PER_JOB + 100 if filtered else limit
    args: list[str | int] = [str(batch_id), start, limit, budget]
    args += ["" if status is None else status.value, queue or "", tenant or ""]
    raw_jobs, next_start = await store._run("list_jobs", lambda s: s.call("batch_jobs", args))
    jobs: list[Job] = []
    for message in raw_jobs:
        job, _ = job_from_text(message)
        if job is not None:
            jobs.append(job)
    if int(next_start) < 0:
        return JobPage(jobs, None)
    return JobPage(jobs, encode_cursor(filters, [_NEWEST_FIRST, int(next_start)]))
