"""`RetainedJobs`: the finished jobs an `InMemoryJobStore` keeps, in a form the cyclic
garbage collector never sees.

A finished job is one JSON text (a str) in a dict keyed by the id's integer, its expiry a
float in a deque: none of these is a container the collector tracks. A `Job` with its
request, error and result would be several tracked objects per job: every collection would
traverse them, and each job kept would count towards the next collection (the collector
runs after every 700 tracked objects that stay alive), so full collections would come
more often and take longer as jobs accumulate. The text is decoded on read.

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
from typing import Any

from ._errors import ConfigurationError
from ._job import Job, JobError, JobRequest, JobStatus, NewJob

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
)

# A record is the JSON text of a list with these slots (the id is its key; run_at is None
# for every finished job). _REQUEST holds a hash (Completed) or the request's parts.
(_NAME, _STATUS, _RETRIES, _MAX_RETRIES, _CREATED, _STARTED, _COMPLETED, _UPDATED) = range(8)
(_RESULT, _MESSAGE, _ERROR_TYPE, _TRACEBACK, _REQUEST, _OWNER) = range(8, 14)


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
        # A record is JSON text; a list only for a result with no JSON form (see `_encode`).
        self._records: dict[int, str | list[Any]] = {}
        self._order: deque[int] = deque()  # ids in the order they finished
        self._expiry: deque[float] = deque()  # when each may be dropped (monotonic clock)

    def __len__(self) -> int:
        return len(self._records)

    def add(self, job: Job, now: float) -> Job:
        """Keep ``job`` (terminal) until ``now + retention``; return it as it reads back."""
        key = job.id.int
        record = _encode(job)
        self._records[key] = record
        self._order.append(key)
        self._expiry.append(now + self.retention)
        while len(self._records) > self.max_retained:
            self._drop_oldest()
        return _decode(key, record)

    def get(self, job_id: uuid.UUID) -> Job | None:
        """The job, or None when it is not kept (any more)."""
        record = self._records.get(job_id.int)
        return None if record is None else _decode(job_id.int, record)

    def is_same_submission(self, job_id: uuid.UUID, new_job: NewJob) -> bool:
        """Whether the kept job ``job_id`` is what storing ``new_job`` produced."""
        fields = _fields(self._records[job_id.int])
        if fields[_NAME] != new_job.name or fields[_MAX_RETRIES] != new_job.max_retries:
            return False
        kept = fields[_REQUEST]
        if isinstance(kept, int):
            return kept == _request_hash(new_job.request)
        return _decode_request(kept, fields[_OWNER]) == new_job.request

    def expire(self, now: float) -> None:
        """Drop the jobs whose retention has passed by ``now`` (monotonic)."""
        while self._expiry and self._expiry[0] <= now:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        self._expiry.popleft()
        self._records.pop(self._order.popleft(), None)


def _encode(job: Job) -> str | list[Any]:
    error, request = job.error, job.request
    if job.status is JobStatus.COMPLETED:
        kept: Any = _request_hash(request)
    else:
        kept = [request.body, request.headers, request.query_string, dict(request.route_params)]
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
    ]
    try:
        return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):  # a result with no JSON form (stores are handed JSON)
        return fields


def _fields(record: str | list[Any]) -> list[Any]:
    if isinstance(record, str):
        fields: list[Any] = json.loads(record)
        return fields
    return record


def _decode(key: int, record: str | list[Any]) -> Job:
    fields = _fields(record)
    kept, owner, error_type = fields[_REQUEST], fields[_OWNER], fields[_ERROR_TYPE]
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
        request=JobRequest(owner=owner) if isinstance(kept, int) else _decode_request(kept, owner),
    )


def _decode_request(kept: list[Any], owner: str | None) -> JobRequest:
    body, headers, query_string, route_params = kept
    headers = tuple((name, value) for name, value in headers)
    return JobRequest(body, headers, query_string, route_params, owner)


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
