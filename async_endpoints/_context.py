"""`AsyncContext[T]`: what a job handler receives."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, get_args, get_origin

from starlette.datastructures import Headers, QueryParams, State
from typing_extensions import TypeVar

from ._errors import ConfigurationError
from ._progress import progress_value

#: The request model; a bare ``AsyncContext`` is ``AsyncContext[None]`` (no body), to type
#: checkers as to the library.
T = TypeVar("T", default=None)


@dataclass(frozen=True, slots=True)
class AsyncContext(Generic[T]):
    """The captured request of one job, handed to its handler on every attempt.

    Attributes:
        request: The validated body (an instance of ``T``), or None for no-body endpoints.
        headers: The captured request headers (case-insensitive; sensitive ones are not
            captured by default).
        query_params: The captured query string; repeated keys are kept.
        query: The route's declared query parameters (its ``query=Model`` option) read
            from the captured query string, an instance of that model; None when the
            route declares none.
        route_params: The path parameters, as strings.
        job_id: This job's id.
        retry_count: 0 on the first attempt, 1 on the first retry, and so on.
        partition_key: The job's partition key (its jobs run one at a time), or None.
        tenant: The tenant the job belongs to, or None.
        batch_id: The batch the job belongs to (or continues), or None.
        owner: Who submitted the job, as the ``owner`` setting's hook named them (the
            job's `Job.owner`), or None: pass it on to the jobs this one submits
            (``submit(..., owner=ctx.owner)``) so that the caller may see them too.
        state: The app's lifespan state, as ``request.state`` gives it to a route: what
            the app's lifespan yielded (``yield {"db": pool}`` reads ``ctx.state.db``), a
            shallow copy per attempt, in the process that runs the job (its own
            lifespan's: the worker CLI runs the app's lifespan too). Empty without one.

    `report_progress` tells the job's progress (its ``progress`` field, and its events).
    """

    request: T
    headers: Headers
    query_params: QueryParams
    route_params: dict[str, str]
    job_id: uuid.UUID
    retry_count: int
    partition_key: str | None = None
    tenant: str | None = None
    batch_id: uuid.UUID | None = None
    owner: str | None = None
    query: Any = None
    state: State = field(default_factory=State, compare=False)
    _report: Callable[[Any], Awaitable[None]] | None = field(
        default=None, repr=False, compare=False
    )
    _max_progress_size: int | None = field(default=None, repr=False, compare=False)

    async def report_progress(self, value: Any) -> None:
        """Make ``value`` (a JSON value: a number, text, a list, a dict...) the job's
        ``progress``, shown in its JSON and sent to its event streams.

        Writes are coalesced to at most one store write per 100 ms per job (the latest
        value wins), and the last value reported always lands before the job's outcome is
        recorded. Once the attempt has lost its claim (the job was cancelled or recovered
        elsewhere) reports are dropped silently.

        Raises:
            ValueError: ``value`` has no JSON form (NaN, an unknown type...), or its JSON
                is larger than the ``max_result_size`` setting (the job's progress is then
                what it was).
        """
        data = progress_value(value, self._max_progress_size)
        if self._report is not None:
            await self._report(data)


def request_model_of(annotation: Any) -> Any:
    """The ``T`` of an ``AsyncContext[T]`` annotation; None for bare or ``[None]`` contexts.

    Raises:
        ConfigurationError: ``annotation`` is not an ``AsyncContext``.
    """
    if get_origin(annotation) is Annotated:  # Annotated[AsyncContext[T], ...]
        annotation = get_args(annotation)[0]
    if annotation is AsyncContext:
        return None
    if get_origin(annotation) is not AsyncContext:
        shown = getattr(annotation, "__name__", None) or repr(annotation)
        raise ConfigurationError(
            f"a job handler's first parameter must be annotated AsyncContext[Model], "
            f"not {annotation!r}: write ctx: AsyncContext[{shown}] and read the body as "
            "ctx.request"
        )
    (model,) = get_args(annotation)
    bare = get_args(model)[0] if get_origin(model) is Annotated else model
    return None if bare is type(None) or bare is None else model
