"""The library's exceptions, one root with documented families::

    AsyncEndpointsError
    ├── ConfigurationError        a handler, route or setting is wrong (raised at wiring time)
    ├── UnknownJobNameError       submit() named no registered handler
    ├── JobValidationError        a submitted body failed the handler's model (.errors lists why)
    └── JobStoreError             the store could not do what was asked
        ├── StoreUnavailableError the store cannot be reached now; try again later (HTTP 503)
        ├── QueueFullError        max_queue_size jobs are waiting; nothing was stored (HTTP 503)
        └── DuplicateJobError     a job with this id exists already; nothing was changed

Lower-layer errors (redis-py's, for example) are mapped to these at the store boundary and
chained with ``from``.
"""

from __future__ import annotations

from typing import Any


class AsyncEndpointsError(Exception):
    """The root of every exception this library raises on purpose."""


class ConfigurationError(AsyncEndpointsError):
    """A handler, route or setting is wrong; raised while the app is being wired."""


class UnknownJobNameError(AsyncEndpointsError, LookupError):
    """``submit`` named a job for which no handler is registered."""


class JobValidationError(AsyncEndpointsError, ValueError):
    """A submitted body does not satisfy the handler's request model.

    Attributes:
        errors: pydantic's error list (without the offending input values).
    """

    def __init__(self, message: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.errors = errors


class JobStoreError(AsyncEndpointsError):
    """The store could not carry out an operation."""


class StoreUnavailableError(JobStoreError):
    """The store cannot be reached right now; the operation may be retried later.

    Attributes:
        retry_after: Seconds a client should wait before trying again.
    """

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QueueFullError(JobStoreError):
    """``max_queue_size`` jobs are waiting already; the new job was not stored.

    Attributes:
        retry_after: Seconds a client should wait before trying again.
    """

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DuplicateJobError(JobStoreError):
    """A job with the same id exists already; the store was left unchanged."""
