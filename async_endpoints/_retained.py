"""`RetainedJobs`: the finished jobs an `InMemoryJobStore` keeps, in a form the cyclic
garbage collector never sees, with the per-status order that listing pages through.

A finished job is one JSON text (a str) in a dict keyed by the id's integer; its place in
the order it finished is an entry in the log of its status (three logs: Completed, Failed,
Canceled), made of the key, the job's queue name and its expiry (a float). None of these is
a container the collector tracks. A `Job` with its request, error and result would be
several tracked objects per job: every collection would traverse them, and each job kept
would count towards the next collection (the collector runs after every 700 tracked objects
that stay alive), so full collections would come more often and take longer as jobs
accumulate. The text is decoded on read.

A Completed job never runs again, so its captured request is dropped: only the owner (which
``authorize`` needs), a hash of the request (which tells a resent submission from a
clash) and its trace context (a recovery that reads the job back late still traces into
the job's trace) are kept. Failed and Canceled jobs keep their whole request (its trace
context too): `take` gives them back to be requeued.

Jobs leave in the order they finished: when their retention has passed (measured on the
monotonic clock), or sooner when more than ``max_retained`` are kept. One byte per job
records that order across the three logs, so the oldest is found in O(1). A taken job's
log entry is overwritten with a tombstone (the record knows its place) that leaves in
its turn.

A job whose webhook delivery is still live is *pinned* (`pin`, by the store's
follow-ups): when its turn to leave comes, it is *held* instead, readable by id (`get`,
`take`, `update_webhook`) but no longer listed or counted, until `unpin` (its delivery
ended) drops it. So a delivery always finds its job, whatever the retention.
"""

from __future__ import annotations

import json
import math
import sys
import uuid
from array import array
from collections.abc import Callable, Iterator, KeysView
from datetime import UTC, datetime
from typing import Any

from ._errors import ConfigurationError
from ._job import Job, JobError, JobRequest, JobStatus, NewJob, WebhookState, WebhookStatus

#: The `Job` fields a record holds (`tests/test_memory_store.py` checks that every field of
#: `Job` is here, so that a new field cannot be silently dropped).
FIELDS = (
    "id",
    "name",
    "status",
    "retry_count",
    "max_retries",
    "created_at",
    "started_at",
    "completed_at",
    "last_updated_at",
    "result",
    "error",
    "request",
    "run_at",
    "queue",
    "partition_key",
    "tenant",
    "batch_id",
    "progress",
    "webhook",
)

# A record is the JSON text of a list with these slots (the id is its key), trailing nulls
# after _POSITION left out. _REQUEST holds the request's hash, or [hash, trace context]
# when it carried one (Completed), or the request's parts (the other statuses);
# _POSITION the record's absolute index in the log of its status.
(_NAME, _STATUS, _RETRIES, _MAX_RETRIES, _CREATED, _STARTED, _COMPLETED, _UPDATED) = range(8)
(_RESULT, _MESSAGE, _ERROR_TYPE, _TRACEBACK, _REQUEST, _OWNER, _QUEUE, _POSITION) = range(8, 16)
(_RUN_AT, _PARTITION_KEY, _TENANT, _BATCH_ID, _PROGRESS, _WEBHOOK) = range(16, 22)
_GONE = -1  # a log entry whose job was taken (no job id has a negative integer)

#: The terminal statuses, in the order their logs are kept (and ties are broken).
STATUSES = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED)
_COMPLETED_STATUS = JobStatus.COMPLETED.value
_COMPACT_AFTER = 4096


class _Log:
    """The jobs that finished in one status, oldest first: parallel lists read from
    ``head``; ``offset`` is the absolute index of the lists' first entry, so an entry's
    absolute index (its listing position) never changes."""

    __slots__ = ("expiry", "head", "index", "keys", "offset", "queues", "tenants")

    def __init__(self, index: int) -> None:
        self.index = index  # of its status in STATUSES (and in the per-queue counts)
        self.keys: list[int] = []
        self.queues: list[str] = []
        self.tenants: list[str | None] = []  # what a tenant filter reads, not decoding
        self.expiry = array("d")  # machine floats: no float object per entry
        self.head = 0
        self.offset = 0

    def __len__(self) -> int:
        return len(self.keys) - self.head

    def compact(self) -> None:
        """Forget the entries read so far, once they are half of the lists."""
        head = self.head
        if head >= _COMPACT_AFTER and 2 * head >= len(self.keys):
            del self.keys[:head], self.queues[:head], self.tenants[:head], self.expiry[:head]
            self.offset += head
            self.head = 0

    def newest_first(self, before: int | None) -> Iterator[tuple[int, int, str, str | None]]:
        """(absolute index, key, queue, tenant) from the newest entry (or the one before
        absolute index ``before``) back to the oldest kept."""
        end = len(self.keys) if before is None else min(len(self.keys), before - self.offset)
        keys, queues, tenants, offset = self.keys, self.queues, self.tenants, self.offset
        for index in range(end - 1, self.head - 1, -1):
            yield index + offset, keys[index], queues[index], tenants[index]


class RetainedJobs:
    """Finished jobs, oldest first, each dropped after ``retention`` seconds or when more
    than ``max_retained`` are kept; with per-queue counts of each terminal status."""

    def __init__(self, retention: float, max_retained: int) -> None:
        if not _is_positive_number(retention):
            raise ConfigurationError("retention must be a positive number of seconds")
        if isinstance(max_retained, bool) or not isinstance(max_retained, int):
            raise ConfigurationError("max_retained must be an integer")
        if max_retained < 1:
            raise ConfigurationError("max_retained must be at least 1")
        self.retention = retention
        self.max_retained = max_retained
        # A record is JSON text; a list only for a result with no JSON form (see `_encode`).
        self._records: dict[int, str | list[Any]] = {}
        self._logs = {status: _Log(index) for index, status in enumerate(STATUSES)}
        self._log_list = tuple(self._logs.values())
        # The log (index in STATUSES) of every entry, in the order they finished: the
        # oldest entry of all is the head of the log named at the head of this order.
        self._order = bytearray()
        self._order_head = 0
        self._counts: dict[str, list[int]] = {}  # queue -> [completed, failed, canceled]
        self._next_expiry = math.inf  # no log entry expires before this (monotonic)
        self._pinned: set[int] = set()  # keys whose webhook delivery is live
        self._held: dict[int, str | list[Any]] = {}  # pinned records past their turn

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, key: int) -> bool:
        return key in self._records or key in self._held

    def keys(self) -> KeysView[int]:
        """The integers of the kept jobs' ids (a live view)."""
        return self._records.keys()

    def add(self, job: Job, now: float) -> Job:
        """Keep ``job`` (terminal) until ``now + retention``; return it as it reads back."""
        key, status, queue = job.id.int, job.status, job.queue
        log = self._logs[status]
        keys = log.keys
        record = self._records[key] = _encode(job, log.offset + len(keys))
        keys.append(key)
        log.queues.append(queue)
        log.tenants.append(None if job.tenant is None else sys.intern(str(job.tenant)))
        expiry = now + self.retention
        log.expiry.append(expiry)
        self._order.append(log.index)
        if expiry < self._next_expiry:
            self._next_expiry = expiry
        counts = self._counts.get(queue)
        if counts is None:
            counts = self._counts[queue] = [0, 0, 0]
        counts[log.index] += 1
        while len(self._records) > self.max_retained:
            self._drop_oldest()
        return _decode(key, record)

    def get(self, job_id: uuid.UUID) -> Job | None:
        """The job, or None when it is not kept (any more); a held one too."""
        key = job_id.int
        record = self._records.get(key)
        if record is None:
            record = self._held.get(key) if self._held else None
            if record is None:
                return None
        return _decode(key, record)

    def get_key(self, key: int) -> Job | None:
        """The listed job whose id's integer is ``key`` (not a held one), or None."""
        record = self._records.get(key)
        return None if record is None else _decode(key, record)

    def pin(self, key: int) -> None:
        """Hold the job ``key`` past its turn to leave, until `unpin` (its webhook
        delivery is live)."""
        self._pinned.add(key)

    def unpin(self, key: int) -> None:
        """Let the job ``key`` leave again; one held past its turn leaves now."""
        self._pinned.discard(key)
        self._held.pop(key, None)

    def take(self, job_id: uuid.UUID) -> Job | None:
        """Remove the job (to make it live again) and return it whole, or None."""
        key = job_id.int
        held = self._held.pop(key, None) if self._held else None
        if held is not None:  # unlisted and uncounted already
            return _decode(key, held)
        record = self._records.pop(key, None)
        if record is None:
            return None
        fields = _fields(record)
        job = _decode_fields(key, fields)
        log = self._logs[job.status]
        log.keys[fields[_POSITION] - log.offset] = _GONE
        log.tenants[fields[_POSITION] - log.offset] = None
        self._counts[job.queue][log.index] -= 1
        return job

    def update_webhook(self, key: int, change: Callable[[WebhookState], WebhookState]) -> bool:
        """Apply ``change`` to the webhook of the kept job ``key`` (a job without one starts
        from ``Pending``, 0), in place; False when the job is not kept."""
        records = self._held if key in self._held else self._records
        record = records.get(key)
        if record is None:
            return False
        fields = _fields(record)
        if len(fields) <= _WEBHOOK:
            fields += [None] * (_WEBHOOK + 1 - len(fields))
        kept = fields[_WEBHOOK]
        state = WebhookState() if kept is None else WebhookState(WebhookStatus(kept[0]), kept[1])
        state = change(state)
        fields[_WEBHOOK] = [state.status.value, state.attempts]
        if isinstance(record, str):
            records[key] = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
        return True

    def counts(self, queue: str) -> tuple[int, int, int]:
        """(completed, failed, canceled) jobs of ``queue`` kept now."""
        counts = self._counts.get(queue)
        return (0, 0, 0) if counts is None else (counts[0], counts[1], counts[2])

    def is_same_submission(self, job_id: uuid.UUID, new_job: NewJob) -> bool:
        """Whether the kept job ``job_id`` is what storing ``new_job`` produced."""
        key = job_id.int
        fields = _fields(self._records[key] if key in self._records else self._held[key])
        if fields[_NAME] != new_job.name or fields[_MAX_RETRIES] != new_job.max_retries:
            return False
        if _slot(fields, _QUEUE) != new_job.queue:
            return False
        kept = fields[_REQUEST]
        if fields[_STATUS] == _COMPLETED_STATUS:
            return _completed_hash(kept) == _request_hash(new_job.request)
        return _decode_request(kept, fields[_OWNER]) == new_job.request

    def expire(self, now: float) -> None:
        """Drop the jobs whose retention has passed by ``now`` (monotonic)."""
        if now < self._next_expiry:
            return
        order, logs = self._order, self._log_list
        while self._order_head < len(order):
            log = logs[order[self._order_head]]
            if log.expiry[log.head] > now:
                self._next_expiry = log.expiry[log.head]
                return
            self._drop_oldest()
        self._next_expiry = math.inf

    def newest_first(
        self, status: JobStatus, before: int | None
    ) -> Iterator[tuple[int, int, str, str | None]]:
        """(position, key, queue, tenant) of the kept ``status`` jobs, newest finished
        first, starting after position ``before`` (None: from the newest)."""
        for entry in self._logs[status].newest_first(before):
            if entry[1] != _GONE:
                yield entry

    def check_position(self, status: JobStatus, position: object) -> int:
        """``position`` if it can be a position in the log of ``status``, else `ValueError`."""
        if isinstance(position, bool) or not isinstance(position, int) or position < 0:
            raise ValueError("invalid cursor")
        log = self._logs[status]
        if position > log.offset + len(log.keys):
            raise ValueError("invalid cursor")
        return position

    def _drop_oldest(self) -> None:
        # On every add once max_retained is reached: O(1), one call.
        order, order_head = self._order, self._order_head
        log = self._log_list[order[order_head]]
        self._order_head = order_head = order_head + 1
        if order_head >= _COMPACT_AFTER and 2 * order_head >= len(order):
            del order[:order_head]
            self._order_head = 0
        head, keys = log.head, log.keys
        key = keys[head]
        if key != _GONE:
            keys[head] = _GONE  # frees the key now, not in a burst at the next compaction
            log.tenants[head] = None
            record = self._records.pop(key)
            if key in self._pinned:
                self._held[key] = record
            self._counts[log.queues[head]][log.index] -= 1
        log.head = head = head + 1
        if head >= _COMPACT_AFTER and 2 * head >= len(log.keys):
            log.compact()


def _encode(job: Job, position: int) -> str | list[Any]:
    error, request = job.error, job.request
    if job.status is JobStatus.COMPLETED:
        kept: Any = _request_hash(request)
        if request.trace_context is not None:
            kept = [kept, request.trace_context]
    else:
        kept = [request.body, request.headers, request.query_string, dict(request.route_params)]
        if request.trace_context is not None:
            kept.append(request.trace_context)
    fields = [
        job.name,
        job.status.value,
        job.retry_count,
        job.max_retries,
        _timestamp(job.created_at),
        _timestamp(job.started_at),
        _timestamp(job.completed_at),
        _timestamp(job.last_updated_at),
        job.result,
        None if error is None else error.message,
        None if error is None else error.type,
        None if error is None else error.traceback,
        kept,
        request.owner,
        job.queue,
        position,
    ]
    if not (
        job.run_at is None
        and job.partition_key is None
        and job.tenant is None
        and job.batch_id is None
        and job.progress is None
        and job.webhook is None
    ):
        batch_id, webhook = job.batch_id, job.webhook
        fields += [_timestamp(job.run_at), job.partition_key, job.tenant]
        fields += [None if batch_id is None else str(batch_id), job.progress]
        fields.append(None if webhook is None else [webhook.status.value, webhook.attempts])
        while fields[-1] is None:
            fields.pop()
    try:
        return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):  # a result with no JSON form (stores are handed JSON)
        return fields


def _fields(record: str | list[Any]) -> list[Any]:
    if isinstance(record, str):
        fields: list[Any] = json.loads(record)
        return fields
    return record


def _slot(fields: list[Any], slot: int) -> Any:
    return fields[slot] if slot < len(fields) else None


def _decode(key: int, record: str | list[Any]) -> Job:
    return _decode_fields(key, _fields(record))


def _decode_fields(key: int, fields: list[Any]) -> Job:
    kept, owner, error_type = fields[_REQUEST], fields[_OWNER], fields[_ERROR_TYPE]
    batch_id, webhook = _slot(fields, _BATCH_ID), _slot(fields, _WEBHOOK)
    return Job(
        id=uuid.UUID(int=key),
        name=fields[_NAME],
        status=JobStatus(fields[_STATUS]),
        retry_count=fields[_RETRIES],
        max_retries=fields[_MAX_RETRIES],
        created_at=_moment(fields[_CREATED]),
        started_at=_moment(fields[_STARTED]),
        completed_at=_moment(fields[_COMPLETED]),
        last_updated_at=_moment(fields[_UPDATED]),
        result=fields[_RESULT],
        error=None
        if error_type is None
        else JobError(fields[_MESSAGE], error_type, fields[_TRACEBACK]),
        request=_completed_request(kept, owner)
        if fields[_STATUS] == _COMPLETED_STATUS
        else _decode_request(kept, owner),
        queue=fields[_QUEUE],
        run_at=_moment(_slot(fields, _RUN_AT)),
        partition_key=_slot(fields, _PARTITION_KEY),
        tenant=_slot(fields, _TENANT),
        batch_id=None if batch_id is None else uuid.UUID(batch_id),
        progress=_slot(fields, _PROGRESS),
        webhook=None if webhook is None else WebhookState(WebhookStatus(webhook[0]), webhook[1]),
    )


def _completed_request(kept: int | list[Any], owner: str | None) -> JobRequest:
    """What a Completed job kept of its request: the hash, or [hash, trace context]."""
    trace_context = None if isinstance(kept, int) else kept[1]
    return JobRequest(owner=owner, trace_context=trace_context)


def _completed_hash(kept: int | list[Any]) -> int:
    return kept if isinstance(kept, int) else int(kept[0])


def _decode_request(kept: list[Any], owner: str | None) -> JobRequest:
    body, headers, query_string, route_params = kept[:4]
    headers = tuple((name, value) for name, value in headers)
    trace_context = kept[4] if len(kept) > 4 else None
    return JobRequest(body, headers, query_string, route_params, owner, trace_context)


def _request_hash(request: JobRequest) -> int:
    # str hashes are keyed per process (SipHash): a clash cannot be crafted.
    headers = tuple(map(tuple, request.headers))
    items = tuple(sorted(request.route_params.items()))
    return hash((request.body, headers, request.query_string, items, request.owner))


def _timestamp(moment: datetime | None) -> float | None:
    # Exact: a microsecond timestamp of this era survives the round trip through a float.
    return None if moment is None else moment.timestamp()


def _moment(timestamp: Any) -> Any:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)


def _is_positive_number(value: object) -> bool:
    """Whether ``value`` is a number (not a bool) above 0."""
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0
