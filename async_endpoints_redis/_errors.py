"""redis-py's exceptions mapped to the library's store errors, in this one place.

Transient failures (connection refused or lost, timeouts, a loading or failing-over
server, a cluster without a quorum, redirections that did not settle, a server busy
running a long script, one refusing writes for want of replicas or of a working disk)
become
`StoreUnavailableError`, which the engine answers with 503 and a retry; any other
`RedisError` (a script or permission error, say) is a `JobStoreError`.

redis-py's cluster client can also fail with a plain ``AttributeError``, ``KeyError``,
``IndexError`` or ``TypeError`` while a failover replaces the nodes it knows (a node
looked up after it was dropped, a default node reset to None). Any exception raised
inside redis-py is therefore a store failure (`StoreUnavailableError`), whatever its
type: what decides is the innermost frame of its traceback outside the standard library
(redis-py's own, rather than this library's or a caller's). Exceptions raised by our own
code are programming errors and pass through unchanged. Every mapped error is chained to
the original with ``from``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from redis import exceptions as redis_errors

from async_endpoints._errors import JobStoreError, StoreUnavailableError

#: Seconds a client is told to wait before trying again while Redis is unavailable.
RETRY_AFTER = 1.0

_TRANSIENT: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,  # includes BusyLoadingError, MaxConnectionsError
    redis_errors.TimeoutError,
    redis_errors.ClusterError,  # includes ClusterDownError, MasterDownError, TTL exhausted
    redis_errors.TryAgainError,
    redis_errors.AskError,  # includes MovedError: a slot changing hands mid-call
    redis_errors.ReadOnlyError,  # a replica promoted by failover is not writable yet
    redis_errors.OutOfMemoryError,
    redis_errors.RedisClusterException,  # no reachable node, slot not covered
    TimeoutError,  # our own deadline around an operation
    OSError,
)


#: What Redis says of a write refused at ``maxmemory`` (`redis_errors.OutOfMemoryError`
#: when it is the command's own reply; inside a script's error on Redis 6.2).
_OUT_OF_MEMORY = "-OOM command not allowed"
#: What Redis says of a script that reached a key of a slot this node no longer (or not
#: yet) serves: the slot moved between Cluster nodes under it.
_NON_LOCAL_KEY = "attempted to access a non local key"
#: The error codes of replies that refuse a command for now, not for good (redis-py has
#: no class of its own for them): another client's script has run past
#: ``busy-reply-threshold`` (BUSY; it ends, or is killed), fewer replicas than
#: ``min-replicas-to-write`` are in sync (NOREPLICAS), the last save to disk failed
#: (MISCONF, with ``stop-writes-on-bgsave-error``), a replica lost its master
#: (MASTERDOWN, with ``replica-serve-stale-data no``). Matched as the reply's first word,
#: or as the first word after a colon: quoted by a script's error (``: -NOREPLICAS ...``)
#: or by redis-py's message for a pipeline's command (``... caused error: BUSY ...``).
#: BUSYGROUP and BUSYKEY are other errors, and a code inside other words (a user named
#: ``svc-BUSY`` in a NOPERM reply) is no code.
_PASSING = re.compile(r"(?:^|: )-?(?:BUSY|NOREPLICAS|MISCONF|MASTERDOWN) ")


def _passing(message: str) -> bool:
    """Whether the error reply ``message`` refuses a command for now (`_PASSING`)."""
    return _PASSING.search(message) is not None


@contextmanager
def mapped_errors(operation: str) -> Iterator[None]:
    """Raise the library's store errors for redis-py's within the block.

    Args:
        operation: Named in the error message, e.g. ``"claim"``.

    Raises:
        StoreUnavailableError: For transient failures, and for an exception of any type
            raised inside redis-py.
        JobStoreError: For any other redis-py error.
    """
    try:
        yield
    except _TRANSIENT as exc:
        raise _unavailable(operation, exc) from exc
    except redis_errors.RedisError as exc:
        message = str(exc)
        if _OUT_OF_MEMORY in message or _NON_LOCAL_KEY in message or _passing(message):
            # Redis 6.2 reports a script's OOM as its error; a slot moving between
            # Cluster nodes is a passing state, like a redirection
            raise _unavailable(operation, exc) from exc
        raise JobStoreError(f"Redis refused {operation}: {exc}") from exc
    except Exception as exc:
        if not raised_in_redis(exc):
            raise
        raise _unavailable(operation, exc) from exc


@contextmanager
def refused_credentials() -> Iterator[None]:
    """Around connecting: Redis refusing the credentials (a wrong password or ACL user, or
    none given to a server that asks for one) raises `JobStoreError` saying so, rather
    than the `StoreUnavailableError` that redis-py's class for it (a kind of connection
    error) would make: trying again cannot help, so an app or worker starting with them
    fails at once instead of waiting for a Redis that answers."""
    try:
        yield
    except StoreUnavailableError as exc:
        refusal = _credentials_refusal(exc)
        if refusal is None:
            raise
        message = (
            f"Redis refused the store's credentials: {refusal} (check the user and "
            "password in the store's URL, or the client given)"
        )
        raise JobStoreError(message) from refusal


def refused_for_now(exc: JobStoreError) -> StoreUnavailableError | None:
    """A refusal of the credentials met after the app started (its start found Redis down,
    or the password changed since), as a `StoreUnavailableError` saying so: a request or a
    claim then answers 503 with ``Retry-After`` and is tried again, as in an outage, since
    the credentials may be put right while the app runs (its message names the refusal,
    for the callers' logs). None for any other `JobStoreError`."""
    if isinstance(exc, StoreUnavailableError) or _credentials_refusal(exc) is None:
        return None
    return StoreUnavailableError(str(exc), retry_after=RETRY_AFTER)


def _credentials_refusal(exc: BaseException) -> BaseException | None:
    """The `AuthenticationError` among the causes of ``exc``, if any."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, redis_errors.AuthenticationError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


def raised_in_redis(exc: BaseException) -> bool:
    """True when the innermost frame of ``exc``'s traceback outside the standard library
    belongs to redis-py (a frame of asyncio or socket beneath it does not count)."""
    owner = ""
    frame = exc.__traceback__
    while frame is not None:
        package = str(frame.tb_frame.f_globals.get("__name__", "")).partition(".")[0]
        if package not in sys.stdlib_module_names:
            owner = package
        frame = frame.tb_next
    return owner == "redis"


def _unavailable(operation: str, exc: BaseException) -> StoreUnavailableError:
    if isinstance(exc, redis_errors.TimeoutError):
        # redis-py's own wait for a reply (or a connection) ran out before our deadline:
        # the same outage as our deadline's, said the same way.
        message = f"Redis is unavailable ({operation}): no answer in time ({exc})"
    else:
        message = f"Redis is unavailable ({operation}): {type(exc).__name__}: {exc}"
        if isinstance(exc, redis_errors.ClusterError) and "TTL exhausted" in str(exc):
            message += _REDIRECTED
    return StoreUnavailableError(message, retry_after=RETRY_AFTER)


#: What redis-py's "TTL exhausted" means: it gave up after many answers telling it to go
#: elsewhere or to try again.
_REDIRECTED = (
    " (the Cluster kept answering TRYAGAIN, MOVED or ASK: a slot of the store moving"
    " between nodes, or a failover under way)"
)
