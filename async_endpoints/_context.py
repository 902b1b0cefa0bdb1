"""`AsyncContext[T]`: what a job handler receives."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, get_args, get_origin

from starlette.datastructures import Headers, QueryParams

from ._errors import ConfigurationError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AsyncContext(Generic[T]):
    """The captured request of one job, handed to its handler on every attempt.

    Attributes:
        request: The validated body (an instance of ``T``), or None for no-body endpoints.
        headers: The captured request headers (case-insensitive; sensitive ones are not
            captured by default).
        query_params: The captured query string; repeated keys are kept.
        route_params: The path parameters, as strings.
        job_id: This job's id.
        retry_count: 0 on the first attempt, 1 on the first retry, and so on.
        partition_key: The job's partition key (its jobs run one at a time), or None.
        tenant: The tenant the job belongs to, or None.
        batch_id: The batch the job belongs to (or continues), or None.
    """

    request: T
    headers: Headers
    query_params: QueryParams
    route_params: Mapping[str, str]
    job_id: uuid.UUID
    retry_count: int
    partition_key: str | None = None
    tenant: str | None = None
    batch_id: uuid.UUID | None = None


def request_model_of(annotation: Any) -> Any:
    """The ``T`` of an ``AsyncContext[T]`` annotation; None for bare or ``[None]`` contexts.

    Raises:
        ConfigurationError: ``annotation`` is not an ``AsyncContext``.
    """
    if annotation is AsyncContext:
        return None
    if get_origin(annotation) is not AsyncContext:
        raise ConfigurationError(
            f"a job handler's first parameter must be annotated AsyncContext[Model], "
            f"not {annotation!r}"
        )
    (model,) = get_args(annotation)
    return None if model is type(None) or model is None else model
