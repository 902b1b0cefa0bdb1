"""redis-py's exceptions mapped to the library's store errors, in this one place.

Transient failures (connection refused or lost, timeouts, a loading or failing-over
server, a cluster without a quorum) become `StoreUnavailableError`, which the engine
answers with 503 and a retry; anything else redis-py raises (a script or permission
error, say) is a `JobStoreError`. Both are chained to the original with ``from``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from redis import exceptions as redis_errors

from async_endpoints._errors import JobStoreError, StoreUnavailableError

#: Seconds a client is told to wait before trying again while Redis is unavailable.
RETRY_AFTER = 1.0

_TRANSIENT: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,  # includes BusyLoadingError, MaxConnectionsError
    redis_errors.TimeoutError,
    redis_errors.ClusterError,  # includes ClusterDownError, MasterDownError
    redis_errors.TryAgainError,
    redis_errors.ReadOnlyError,  # a replica promoted by failover is not writable yet
    redis_errors.OutOfMemoryError,
    redis_errors.RedisClusterException,  # no reachable node, slot not covered
    TimeoutError,  # our own deadline around an operation
    OSError,
)


@contextmanager
def mapped_errors(operation: str) -> Iterator[None]:
    """Raise the library's store errors for redis-py's within the block.

    Args:
        operation: Named in the error message, e.g. ``"claim"``.

    Raises:
        StoreUnavailableError: For transient failures.
        JobStoreError: For any other redis-py error.
    """
    try:
        yield
    except _TRANSIENT as exc:
        message = f"Redis is unavailable ({operation}): {type(exc).__name__}: {exc}"
        raise StoreUnavailableError(message, retry_after=RETRY_AFTER) from exc
    except redis_errors.RedisError as exc:
        raise JobStoreError(f"Redis refused {operation}: {exc}") from exc
