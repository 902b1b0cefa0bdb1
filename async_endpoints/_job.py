"""The job record: pure data, its status enum and its JSON (camelCase) wire form.

A `Job` knows nothing about stores or workers. Stores persist it, the engine reads it, and
`job_to_json` turns it into the job JSON that is wire-compatible with the .NET
AsyncEndpoints library.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    """Where a job is in its lifecycle; the values are the wire names."""

    QUEUED = "Queued"
    SCHEDULED = "Scheduled"
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"

    @property
    def is_terminal(self) -> bool:
        """True once the job will never run again."""
        return self in TERMINAL_STATUSES

    @property
    def is_waiting(self) -> bool:
        """True while the job waits for a worker (Queued or Scheduled)."""
        return self in WAITING_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED})
WAITING_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED})


@dataclass(frozen=True, slots=True)
class JobError(Mapping[str, Any]):
    """The last failure of a job: what went wrong, never how (no stack trace by default).

    It reads as its JSON form too (a read-only mapping: ``job.error["type"]``, and equal
    to ``{"message": ..., "type": ...}``), as the job JSON's ``error`` does.

    Attributes:
        message: A human-readable message.
        type: The exception's class name (or a library code such as ``ClaimExpired``).
        traceback: The formatted stack trace, only when the app opted in.
    """

    message: str
    type: str
    traceback: str | None = None

    def __getitem__(self, key: str) -> Any:
        return self.to_json()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_json())

    def __len__(self) -> int:
        return 2 if self.traceback is None else 3

    def __eq__(self, other: object) -> bool:
        if isinstance(other, JobError):
            return (self.message, self.type, self.traceback) == (
                other.message, other.type, other.traceback,
            )  # fmt: skip
        if isinstance(other, Mapping):
            return self.to_json() == dict(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.message, self.type, self.traceback))

    def to_json(self) -> dict[str, Any]:
        """The error's JSON form (``{"message", "type"}``, plus ``traceback`` when kept)."""
        data: dict[str, Any] = {"message": self.message, "type": self.type}
        if self.traceback is not None:
            data["traceback"] = self.traceback
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobError:
        """Rebuild an error from its JSON form."""
        return cls(str(data["message"]), str(data["type"]), data.get("traceback"))


class WebhookStatus(StrEnum):
    """Where a job's webhook delivery is; the values are the wire names."""

    PENDING = "Pending"
    DELIVERED = "Delivered"
    FAILED = "Failed"


@dataclass(frozen=True, slots=True)
class WebhookState:
    """A job's webhook delivery, as the job JSON's ``webhook`` field shows it.

    Attributes:
        status: ``Pending`` until the delivery job ends: ``Delivered`` when it completed,
            ``Failed`` when it failed or was canceled.
        attempts: How many delivery attempts started (claims of the delivery job).
    """

    status: WebhookStatus = WebhookStatus.PENDING
    attempts: int = 0

    def to_json(self) -> dict[str, Any]:
        """``{"status", "attempts"}``."""
        return {"status": self.status.value, "attempts": self.attempts}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WebhookState:
        """Rebuild a state from its JSON form."""
        return cls(WebhookStatus(data["status"]), int(data["attempts"]))


@dataclass(frozen=True, slots=True)
class JobRequest:
    """What a submission captured, replayed to the handler as its `AsyncContext`.

    Attributes:
        body: The request body as JSON text, or None for endpoints without a body.
        headers: The captured headers as (lower-case name, value) pairs, repeats kept.
        query_string: The raw query string (without ``?``), sensitive parameters dropped.
        route_params: The path parameters, as strings.
        owner: The principal that submitted the job, as the app's ``owner`` hook named it
            (None without the hook); kept for ``authorize``, and given to the handler as
            ``ctx.owner`` (never in the job's JSON).
        trace_context: The W3C trace context of the submission's span, for the attempts'
            spans (see `async_endpoints._tracing`): the ``traceparent`` value, followed by
            a newline and the ``tracestate`` value when there is one; None without
            OpenTelemetry. Not part of what makes two submissions the same.
    """

    body: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    query_string: str = ""
    route_params: Mapping[str, str] = field(default_factory=dict)
    owner: str | None = None
    trace_context: str | None = field(default=None, compare=False)


DEFAULT_QUEUE = "default"

#: The longest partition key or tenant, in characters.
MAX_LABEL_LENGTH = 255


def check_owner(owner: object) -> None:
    """Refuse an ``owner`` (a job's `Job.owner`, given in code) that is not text or None.

    Raises:
        ValueError: saying so.
    """
    if owner is not None and not isinstance(owner, str):
        raise ValueError(f"owner must be text or None, not {owner!r}")


def check_label(value: object, what: str) -> str | None:
    """``value`` as a partition key or tenant (``what`` names which): None, or a string of
    1 to `MAX_LABEL_LENGTH` characters that UTF-8 can encode.

    Raises:
        ValueError: anything else (empty, too long, not a string, or holding a lone
            surrogate, which no store outside this process could keep).
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, not {type(value).__name__}")
    if not 0 < len(value) <= MAX_LABEL_LENGTH:
        raise ValueError(f"{what} must be 1 to {MAX_LABEL_LENGTH} characters, not {len(value)}")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError(f"{what} must be text UTF-8 can encode: {value!r}") from None
    return value


def check_name(value: object, what: str) -> str:
    """``value`` as a required identifier (a schedule id): as `check_label`, not None.

    Raises:
        ValueError: None, or anything `check_label` refuses.
    """
    checked = check_label(value, what)
    if checked is None:
        raise ValueError(f"{what} must be a string of 1 to {MAX_LABEL_LENGTH} characters")
    return checked


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to be stored: everything the submitter decides; the store adds times and status.

    Attributes:
        id: A fresh uuid4.
        name: The handler's name.
        max_retries: Retries allowed after the first attempt.
        request: The captured request.
        queue: The queue the job waits in.
        delay: Seconds until the job is due: above 0 it is stored ``Scheduled`` (with
            ``run_at``), else ``Queued``. Measured on the store's monotonic clock.
        partition_key: Jobs with the same key run one at a time, in submission order
            (see `async_endpoints._lifecycle`); None for none.
        tenant: Who the job is for: claims take turns between the tenants of a queue;
            None for the tenant-less jobs (which take turns as one tenant).
        batch_id: The batch the job belongs to (or continues), or None.
        follow_up: A job the store enqueues (as `JobStore.enqueue` would, with no waiting
            limit) in the same atomic step that makes this job terminal (Completed, Failed
            or Canceled), at most once per job: its id is fixed here, and a follow-up whose
            id is taken is skipped. The webhook delivery of a job with a ``webhook_url``.
            A job stored with a follow-up has ``webhook`` `WebhookState` ``Pending``, 0.
        delivers_for: Set on a webhook delivery job: the id of the job whose webhook it
            delivers. In the same atomic step as each transition of this job, the store
            updates that job's ``webhook``: +1 attempt when this one is claimed
            (InProgress), ``Delivered`` when it completes, ``Failed`` when it fails or is
            canceled (a target that is gone is left alone).
    """

    id: uuid.UUID
    name: str
    max_retries: int
    request: JobRequest = field(default_factory=JobRequest)
    queue: str = DEFAULT_QUEUE
    delay: float = 0.0
    partition_key: str | None = None
    tenant: str | None = None
    batch_id: uuid.UUID | None = None
    follow_up: NewJob | None = None
    delivers_for: uuid.UUID | None = None

    def __post_init__(self) -> None:
        check_label(self.partition_key, "partition_key")
        check_label(self.tenant, "tenant")

    def stored(self, created_at: datetime) -> Job:
        """The job a store holds right after storing this one at ``created_at``: Queued,
        or Scheduled until ``created_at + delay`` when delayed."""
        scheduled = self.delay > 0
        return Job(
            id=self.id,
            name=self.name,
            status=JobStatus.SCHEDULED if scheduled else JobStatus.QUEUED,
            retry_count=0,
            max_retries=self.max_retries,
            created_at=created_at,
            started_at=None,
            completed_at=None,
            last_updated_at=created_at,
            request=self.request,
            queue=self.queue,
            run_at=created_at + timedelta(seconds=self.delay) if scheduled else None,
            partition_key=self.partition_key,
            tenant=self.tenant,
            batch_id=self.batch_id,
            webhook=None if self.follow_up is None else WebhookState(),
        )


@dataclass(frozen=True, slots=True)
class Job:
    """One job: immutable data, replaced (not mutated) by every state change.

    Every attribute but ``request`` (and the ``owner`` inside it) is part of the public
    job JSON; ``run_at`` is ``runAt``, set while the job is ``Scheduled``; ``batch_id`` is
    the batch the job belongs to (or continues); ``progress`` the last value its handler
    reported; ``webhook`` its webhook delivery (None without a webhook).
    """

    id: uuid.UUID
    name: str
    status: JobStatus
    retry_count: int
    max_retries: int
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    last_updated_at: datetime
    result: Any = None
    error: JobError | None = None
    request: JobRequest = field(default_factory=JobRequest, repr=False)
    run_at: datetime | None = None
    queue: str = DEFAULT_QUEUE
    partition_key: str | None = None
    tenant: str | None = None
    batch_id: uuid.UUID | None = None
    progress: Any = None
    webhook: WebhookState | None = None

    @property
    def owner(self) -> str | None:
        """Who submitted the job, as the ``owner`` setting's hook named them (or None)."""
        return self.request.owner

    def replace(self, **changes: Any) -> Job:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The job JSON as a dict (camelCase keys, ISO 8601 UTC times; `json.dumps` or a
        ``JSONResponse`` takes it as it is); never the captured request."""
        return job_to_json(self)


def format_time(moment: datetime | None) -> str | None:
    """ISO 8601 UTC with milliseconds and a ``Z`` suffix, as the .NET library writes it."""
    if moment is None:
        return None
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def parse_time(text: str | None) -> datetime | None:
    """The inverse of `format_time` (accepts any ISO 8601 form `datetime` reads)."""
    if text is None:
        return None
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def job_to_json(job: Job) -> dict[str, Any]:
    """The public job JSON of ``job``."""
    return {
        "id": str(job.id),
        "name": job.name,
        "status": job.status.value,
        "retryCount": job.retry_count,
        "maxRetries": job.max_retries,
        "createdAt": format_time(job.created_at),
        "startedAt": format_time(job.started_at),
        "completedAt": format_time(job.completed_at),
        "lastUpdatedAt": format_time(job.last_updated_at),
        "result": job.result,
        "error": None if job.error is None else job.error.to_json(),
        "queue": job.queue,
        "runAt": format_time(job.run_at),
        "partitionKey": job.partition_key,
        "tenant": job.tenant,
        "batchId": None if job.batch_id is None else str(job.batch_id),
        "progress": job.progress,
        "webhook": None if job.webhook is None else job.webhook.to_json(),
    }


def parse_job_id(value: object) -> uuid.UUID | None:
    """``value`` as a job id, or None when it is not a UUID (never raises)."""
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def is_same_submission(job: Job, new_job: NewJob) -> bool:
    """Whether ``job`` is what storing ``new_job`` produced (a resent enqueue, not a clash)."""
    return (
        job.id == new_job.id
        and job.name == new_job.name
        and job.max_retries == new_job.max_retries
        and job.request == new_job.request
        and job.queue == new_job.queue
        and job.partition_key == new_job.partition_key
        and job.tenant == new_job.tenant
        and job.batch_id == new_job.batch_id
    )
