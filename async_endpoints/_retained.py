"""`RetainedJobs`: the finished jobs an `InMemoryJobStore` keeps, in a form the cyclic
garbage collector skips.

A finished job is one flat tuple of atomic values (str, int, float, None) in a dict keyed by
the id's integer. CPython stops tracking such a tuple at the first collection it sees (a
nested tuple would take one collection per level),
so 100,000 retained jobs add nothing to what each collection traverses (a `Job` with its
request, error and result would add several tracked objects each, and full collections would
take longer as jobs accumulate). The result is kept as JSON text and decoded on read.

A Completed job never runs again, so its captured request is dropped: only the owner (which
``authorize`` needs) and a hash of the request (which tells a resent submission from a
clash) are kept. A Failed job keeps its whole request.

Jobs leave in the order they finished: when their retention has passed (measured on the
monotonic clock), or sooner when more than ``max_retained`` are kept.
"""

from __future__ import annotations

import json
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any, overload

from ._errors import ConfigurationError
from ._job import Job, JobError, JobRequest, JobStatus, NewJob

#: The `Job` fields a record holds, in this order (`tests/test_memory_store.py` checks
#: that every field of `Job` is here, so a new field cannot be silently dropped).
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
)

_Record = tuple[Any, ...]
# A record's slots (the id is its key). _REQUEST holds a hash (Completed) or the request as
# JSON text; _EXPIRES is when the record may be dropped, on the monotonic clock.
(_NAME, _STATUS, _RETRIES, _MAX_RETRIES, _CREATED, _STARTED, _COMPLETED, _UPDATED) = range(8)
(_RESULT, _MESSAGE, _ERROR_TYPE, _TRACEBACK, _REQUEST, _OWNER, _EXPIRES) = range(8, 15)


class RetainedJobs:
    """Finished jobs, oldest first, each dropped after ``retention`` seconds or when more
    than ``max_retained`` are kept."""

    def __init__(self, retention: float, max_retained: int) -> None:
        if not retention > 0:
            raise ConfigurationError("retention must be a positive number of seconds")
        if isinstance(max_retained, bool) or not isinstance(max_retained, int):
            raise ConfigurationError("max_retained must be an integer")
        if max_retained < 1:
            raise ConfigurationError("max_retained must be at least 1")
        self.retention = retention
        self.max_retained = max_retained
        self._records: dict[int, _Record] = {}
        self._order: deque[int] = deque()  # ids in the order they finished

    def __len__(self) -> int:
        return len(self._records)

    def add(self, job: Job, now: float) -> Job:
        """Keep ``job`` (terminal) until ``now + retention``; return it as it reads back."""
        record = _encode(job, now + self.retention)
        self._records[job.id.int] = record
        self._order.append(job.id.int)
        while len(self._records) > self.max_retained:
            self._drop_oldest()
        return _decode(job.id.int, record)

    def get(self, job_id: uuid.UUID) -> Job | None:
        """The job, or None when it is not kept (any more)."""
        record = self._records.get(job_id.int)
        return None if record is None else _decode(job_id.int, record)

    def is_same_submission(self, job_id: uuid.UUID, new_job: NewJob) -> bool:
        """Whether the kept job ``job_id`` is what storing ``new_job`` produced."""
        record = self._records[job_id.int]
        if record[_NAME] != new_job.name or record[_MAX_RETRIES] != new_job.max_retries:
            return False
        kept = record[_REQUEST]
        if isinstance(kept, int):
            return kept == _request_hash(new_job.request)
        return _decode_request(kept, record[_OWNER]) == new_job.request

    def expire(self, now: float) -> None:
        """Drop the jobs whose retention has passed by ``now`` (monotonic)."""
        order, records = self._order, self._records
        while order:
            record = records.get(order[0])
            if record is not None and record[_EXPIRES] > now:
                return
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        self._records.pop(self._order.popleft(), None)


def _encode(job: Job, expires_at: float) -> _Record:
    error, request = job.error, job.request
    if job.status is JobStatus.COMPLETED:
        kept: int | str = _request_hash(request)
    else:
        parts = [request.body, request.headers, request.query_string, dict(request.route_params)]
        kept = json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
    return (
        job.name,
        job.status.value,
        job.retry_count,
        job.max_retries,
        _timestamp(job.created_at),
        _timestamp(job.started_at),
        _timestamp(job.completed_at),
        _timestamp(job.last_updated_at),
        None if job.result is None else _dump(job.result),
        None if error is None else error.message,
        None if error is None else error.type,
        None if error is None else error.traceback,
        kept,
        request.owner,
        expires_at,
    )


def _decode(key: int, record: _Record) -> Job:
    kept, owner = record[_REQUEST], record[_OWNER]
    error = None
    if record[_ERROR_TYPE] is not None:
        error = JobError(record[_MESSAGE], record[_ERROR_TYPE], record[_TRACEBACK])
    return Job(
        id=uuid.UUID(int=key),
        name=record[_NAME],
        status=JobStatus(record[_STATUS]),
        retry_count=record[_RETRIES],
        max_retries=record[_MAX_RETRIES],
        created_at=_moment(record[_CREATED]),
        started_at=_moment(record[_STARTED]),
        completed_at=_moment(record[_COMPLETED]),
        last_updated_at=_moment(record[_UPDATED]),
        result=_load(record[_RESULT]),
        error=error,
        request=JobRequest(owner=owner) if isinstance(kept, int) else _decode_request(kept, owner),
    )


def _decode_request(kept: str, owner: str | None) -> JobRequest:
    body, headers, query_string, route_params = json.loads(kept)
    headers = tuple((name, value) for name, value in headers)
    return JobRequest(body, headers, query_string, route_params, owner)


def _request_hash(request: JobRequest) -> int:
    # str hashes are keyed per process (SipHash): a clash cannot be crafted.
    headers = tuple(map(tuple, request.headers))
    items = tuple(sorted(request.route_params.items()))
    return hash((request.body, headers, request.query_string, items, request.owner))


class _Opaque:
    """A result with no JSON form, kept as is (stores are handed JSON values; this is the
    fallback for a caller that did not)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _dump(result: Any) -> str | _Opaque:
    try:
        return json.dumps(result, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return _Opaque(result)


def _load(kept: str | _Opaque | None) -> Any:
    if kept is None:
        return None
    if isinstance(kept, _Opaque):
        return kept.value
    return json.loads(kept)


def _timestamp(moment: datetime | None) -> float | None:
    # A float (24 bytes) instead of a datetime (48); exact for microseconds in this era.
    return None if moment is None else moment.timestamp()


@overload
def _moment(timestamp: float) -> datetime: ...
@overload
def _moment(timestamp: None) -> None: ...
def _moment(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)
