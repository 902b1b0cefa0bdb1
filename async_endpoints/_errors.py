"""The library's exceptions, one root with documented families::

    AsyncEndpointsError
    ├── ConfigurationError        a handler, route or setting is wrong (raised at wiring time)
    ├── UnknownJobNameError       submit() named no registered handler
    ├── JobValidationError        a submitted body failed the handler's model (.errors lists why)
    ├── JobStoreError             the store could not do what was asked
    │   ├── StoreUnavailableError the store cannot be reached now; try again later (HTTP 503)
    │   │   └── PartialRenewalError  some claims' leases renewed, others' not (a part down)
    │   ├── QueueFullError        max_queue_size jobs are waiting; nothing was stored (HTTP 503)
    │   ├── DuplicateJobError     a job with this id exists already; nothing was changed
    │   └── ResultRefusedError    the store refused a result for good (the job fails with it)
    ├── ResultError               a handler's result cannot be kept (the attempt is not retried)
    │   ├── ResultTooLarge        its JSON is larger than max_result_size
    │   ├── ResultNotSerializable it has no JSON form
    │   └── ResultValidationError it fails the handler's return annotation
    └── NonRetryableError         raised by a handler, not the library: its job fails at once

`NonRetryableError` (or a subclass of the app's) fails its job without the retries it has
left; ``except AsyncEndpointsError`` in a handler catches it too, so a handler catching the
library's errors around its own calls should let it through.

Lower-layer errors (redis-py's, for example) are mapped to these at the store boundary and
chained with ``from``. The `ResultError` family never reaches the app: the worker records
it as the job's error, whose ``type`` is the class name.
"""

from __future__ import annotations

from typing import Any


class AsyncEndpointsError(Exception):
    """The root of every exception this library raises on purpose."""


class ConfigurationError(AsyncEndpointsError):
    """A handler, route or setting is wrong; raised while the app is being wired."""


class UnknownJobNameError(AsyncEndpointsError, LookupError, ValueError):
    """``submit`` named a job for which no handler is registered."""


class JobValidationError(AsyncEndpointsError, ValueError):
    """A submitted body does not satisfy the handler's request model.

    Attributes:
        errors: pydantic's error list (without the offending input values).
    """

    def __init__(self, message: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.errors = errors


def summarize_errors(errors: list[dict[str, Any]], where: str = "", most: int = 3) -> str:
    """The first ``most`` validation errors as ``where.loc: why`` (pydantic's messages:
    its own quote no input, but a custom validator's ``ValueError`` text is the app's
    own), and how many more there are."""
    told = "; ".join(
        ".".join(str(part) for part in [*([where] if where else []), *e["loc"]]) + f": {e['msg']}"
        for e in errors[:most]
    )
    more = len(errors) - most
    return told + (f" (and {more} more)" if more > 0 else "")


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


class StoreClosedError(JobStoreError):
    """The store was closed: the app's lifespan (or the `AsyncEndpoints.running` block)
    that started it has ended, and nothing but another one starts it again. Not an
    outage: nothing retries it; a job route answers 503 all the same, and the log says
    why (a test client that runs no lifespan, used after another test's lifespan ended,
    meets it)."""

    def __init__(self) -> None:
        super().__init__(
            "the store is closed: the app's lifespan that started it has ended (a request "
            "after it, from a test client used without its `with` block say, answers 503)"
        )


class PartialRenewalError(StoreUnavailableError):
    """A store made of parts (shards) renewed the claims of the parts that answered and
    could not reach the others: what it knows is attached.

    Raised by `JobStore.renew` of such a store only when some part answered (when none
    did, the part's `StoreUnavailableError` is raised as by any store). The lease renewal
    counts every claim of ``held`` that is in neither set as renewed.

    Attributes:
        lost: Tokens the parts that answered reported lost (as `JobStore.renew` returns).
        unknown: Tokens of the claims of the parts that failed: neither renewed nor known
            lost (their leases run on).
    """

    def __init__(
        self, message: str, *, lost: set[str], unknown: set[str], retry_after: float = 1.0
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.lost = lost
        self.unknown = unknown


class QueueFullError(JobStoreError):
    """``max_queue_size`` jobs are waiting already; the new job was not stored.

    Attributes:
        retry_after: Seconds a client should wait before trying again.
    """

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def full_queue_message(waiting: int) -> str:
    """What a `QueueFullError` says when ``waiting`` jobs (``max_queue_size``) wait."""
    verb = "job is" if waiting == 1 else "jobs are"
    return f"the queue is full: {waiting} {verb} waiting, the max_queue_size limit"


def full_batch_message(max_waiting: int) -> str:
    """What a `QueueFullError` says when a batch's jobs would take the waiting jobs past
    ``max_waiting`` (``max_queue_size``), on every store."""
    return (
        "the batch's jobs would take the waiting jobs past the max_queue_size limit "
        f"({max_waiting})"
    )


class DuplicateJobError(JobStoreError):
    """A job with the same id exists already; the store was left unchanged."""


class ResultRefusedError(JobStoreError):
    """The store refused to record a handler's result for good (too large for it, say).

    Retrying cannot help, so the attempt fails at once with this cause and is not retried.

    Attributes:
        error_type: The job error type recorded (``ResultTooLarge`` or ``StoreRefused``).
    """

    def __init__(self, message: str, *, error_type: str = "StoreRefused") -> None:
        super().__init__(message)
        self.error_type = error_type


class ResultError(AsyncEndpointsError, ValueError):
    """A handler's result cannot be kept; the attempt fails for good (it is not retried).

    Running the handler again would most likely return the same unkeepable value, so the
    job is ``Failed`` at once instead of using up its retries.
    """


class ResultTooLarge(ResultError):
    """The result's JSON is larger than ``max_result_size`` bytes."""


class ResultNotSerializable(ResultError):
    """The result has no JSON form (NaN or Infinity, a lone surrogate, a huge integer...)."""


class ResultValidationError(ResultError):
    """The result does not match the handler's return annotation (``-> int`` returning
    ``"n/a"``, ``-> Model`` returning a dict its model refuses), as FastAPI refuses a
    route's return value that fails its response model."""


class NonRetryableError(AsyncEndpointsError):
    """Raise it from a handler to fail the job at once: no retry is used up on it, as
    when running the handler again could only fail the same way (a document in a format
    the converter does not read, a customer account that is closed).

    The job is ``Failed`` with this attempt's error: its ``type`` is the class's name
    (subclass it to name the reason: ``class UnsupportedFormat(NonRetryableError)``
    fails the job as ``UnsupportedFormat``) and its ``message`` the exception's, masked
    as every error message is. Any other exception is retried per the retry settings.
    """
