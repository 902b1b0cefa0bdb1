"""async-endpoints: turn Starlette and FastAPI routes into durable asynchronous job endpoints.

A route decorated with `AsyncEndpoints.map_async_post` answers ``202 Accepted`` with a job
record at once; a pool of asyncio workers runs the handler with retries, and the
job-details route reports the job's lifecycle.
"""

from ._batch import Batch as Batch
from ._batch import BatchPage as BatchPage
from ._batch import BatchStatus as BatchStatus
from ._batch import ContinueWhen as ContinueWhen
from ._batch import NewBatch as NewBatch
from ._clocks import Clock as Clock
from ._context import AsyncContext as AsyncContext
from ._endpoints import AsyncEndpoints as AsyncEndpoints
from ._errors import AsyncEndpointsError as AsyncEndpointsError
from ._errors import ConfigurationError as ConfigurationError
from ._errors import DuplicateJobError as DuplicateJobError
from ._errors import JobStoreError as JobStoreError
from ._errors import JobValidationError as JobValidationError
from ._errors import NonRetryableError as NonRetryableError
from ._errors import PartialRenewalError as PartialRenewalError
from ._errors import QueueFullError as QueueFullError
from ._errors import ResultRefusedError as ResultRefusedError
from ._errors import StoreUnavailableError as StoreUnavailableError
from ._errors import UnknownJobNameError as UnknownJobNameError
from ._events import AttemptOutcome as AttemptOutcome
from ._events import EventKind as EventKind
from ._events import LifecycleEvent as LifecycleEvent
from ._events import LifecycleEvents as LifecycleEvents
from ._handlers import Handler as Handler
from ._idempotency import IdempotencyConflictError as IdempotencyConflictError
from ._idempotency import IdempotentJobGoneError as IdempotentJobGoneError
from ._job import TERMINAL_STATUSES as TERMINAL_STATUSES
from ._job import WAITING_STATUSES as WAITING_STATUSES
from ._job import Job as Job
from ._job import JobError as JobError
from ._job import JobRequest as JobRequest
from ._job import JobStatus as JobStatus
from ._job import NewJob as NewJob
from ._job import WebhookState as WebhookState
from ._job import WebhookStatus as WebhookStatus
from ._job_watch import JobNotice as JobNotice
from ._lifecycle import InvalidTransitionError as InvalidTransitionError
from ._listing import JobPage as JobPage
from ._listing import QueueStats as QueueStats
from ._logs import JobLogFilter as JobLogFilter
from ._memory import InMemoryJobStore as InMemoryJobStore
from ._responses import JobModel as JobModel
from ._retry import RetryPolicy as RetryPolicy
from ._schedule import Schedule as Schedule
from ._scheduler import Scheduler as Scheduler
from ._settings import Settings as Settings
from ._settings import SettingsOptions as SettingsOptions
from ._spec import JobSpec as JobSpec
from ._store import Claim as Claim
from ._store import ControlStore as ControlStore
from ._store import InspectionStore as InspectionStore
from ._store import JobStore as JobStore
from ._store_features import BatchStore as BatchStore
from ._store_features import ClaimCancelListener as ClaimCancelListener
from ._store_features import ClaimCancelStore as ClaimCancelStore
from ._store_features import EventStore as EventStore
from ._store_features import FollowUpStore as FollowUpStore
from ._store_features import GiveBackStore as GiveBackStore
from ._store_features import Idempotency as Idempotency
from ._store_features import IdempotentStore as IdempotentStore
from ._store_features import PendingContinuationStore as PendingContinuationStore
from ._store_features import ProgressStore as ProgressStore
from ._store_features import ScheduleEpochStore as ScheduleEpochStore
from ._store_features import ScheduleStore as ScheduleStore

__all__ = [
    "TERMINAL_STATUSES",
    "WAITING_STATUSES",
    "AsyncContext",
    "AsyncEndpoints",
    "AsyncEndpointsError",
    "AttemptOutcome",
    "Batch",
    "BatchPage",
    "BatchStatus",
    "BatchStore",
    "Claim",
    "ClaimCancelListener",
    "ClaimCancelStore",
    "Clock",
    "ConfigurationError",
    "ContinueWhen",
    "ControlStore",
    "DuplicateJobError",
    "EventKind",
    "EventStore",
    "FollowUpStore",
    "GiveBackStore",
    "Handler",
    "Idempotency",
    "IdempotencyConflictError",
    "IdempotentJobGoneError",
    "IdempotentStore",
    "InMemoryJobStore",
    "InspectionStore",
    "InvalidTransitionError",
    "Job",
    "JobError",
    "JobLogFilter",
    "JobModel",
    "JobNotice",
    "JobPage",
    "JobRequest",
    "JobSpec",
    "JobStatus",
    "JobStore",
    "JobStoreError",
    "JobValidationError",
    "LifecycleEvent",
    "LifecycleEvents",
    "NewBatch",
    "NewJob",
    "NonRetryableError",
    "PartialRenewalError",
    "PendingContinuationStore",
    "ProgressStore",
    "QueueFullError",
    "QueueStats",
    "ResultRefusedError",
    "RetryPolicy",
    "Schedule",
    "ScheduleEpochStore",
    "ScheduleStore",
    "Scheduler",
    "Settings",
    "SettingsOptions",
    "StoreUnavailableError",
    "UnknownJobNameError",
    "WebhookState",
    "WebhookStatus",
]
