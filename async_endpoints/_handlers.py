"""Registered job handlers: the function, its request model and how to (de)serialise both."""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast, get_type_hints

from pydantic import PydanticUserError, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError, SchemaSerializer
from starlette.datastructures import Headers, QueryParams, State
from starlette.requests import Request
from starlette.responses import Response

from ._body_json import NotReadBackError, body_json, needs_reveal
from ._context import AsyncContext, request_model_of
from ._errors import (
    ConfigurationError,
    JobValidationError,
    ResultNotSerializable,
    ResultTooLarge,
    ResultValidationError,
    summarize_errors,
)
from ._handler_signature import HandlerFunction as HandlerFunction
from ._handler_signature import called_with_context_alone, label_of, unwrapped
from ._hook_shape import check_hook
from ._job import DEFAULT_QUEUE, Job
from ._json_numbers import HUGE_INTEGER, huge_integer_in
from ._options import (
    DelayOption,
    LabelOption,
    Placement,
    delay_seconds,
    handler_delay,
    handler_job_timeout,
    handler_label,
    handler_max_retries,
    label_for,
)
from ._query_model import QueryModel
from ._settings import DEFAULT_MAX_RESULT_SIZE
from ._webhook_urls import WebhookTarget

#: ``validator(request, body)``, sync or async: a `Response` to send instead of queuing,
#: or None to queue the job (``request`` is the Starlette `Request`, ``body`` the parsed
#: model, or None for an endpoint without one).
Validator = Callable[[Request, Any], Response | Awaitable[Response | None] | None]

_KEEP_NON_FINITE: Any = {"ser_json_inf_nan": "constants"}
# The JSON text a result is measured by: compact, UTF-8 (not ASCII-escaped), no NaN.
_RESULT_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Handler:
    """One job handler, registered under its name.

    Attributes:
        name: The job name stored with every job of this handler.
        function: The async handler.
        model: The request model (``T`` of ``AsyncContext[T]``), or None for no body.
        body_reveal: Whether a body given in code is written with what the model's own
            dump hides put back (`_body_json.needs_reveal`).
        validator: The optional ``validator(request, body)`` hook.
        max_result_size: Bytes the result's JSON may take at most.
        queue: The queue its jobs wait in.
        max_retries: Retries its jobs get (None: the ``max_retries`` setting).
        job_timeout: Seconds one attempt may run (None: the ``job_timeout`` setting).
        delay: Seconds a POSTed job waits before it is due, or ``fn(request, body)``
            giving them per POST (None: due at once).
        partition_key: A POSTed job's partition key, or ``fn(request, body)`` giving it
            per POST (None: no key).
        tenant: A POSTed job's tenant, or ``fn(request, body)`` giving it per POST.
        result_type: The handler's return annotation (``Any`` without one), which types
            ``result`` in the OpenAPI document.
        webhook: Where a POSTed job's webhook goes (its ``webhook_url`` option), or None.
        query: Its declared query parameters (`QueryModel`, the route's ``query``
            option), read into ``ctx.query``; None: none declared.
        retry_base_delay: Seconds before the first retry of its jobs (None: the
            ``retry_base_delay`` setting); the webhook delivery handler's is
            ``webhook_retry_base_delay``.
        path_params: The names of its route's path parameters (with its router's
            prefix's): what `submit` does not give of them reads as ``""``.
    """

    name: str
    function: HandlerFunction
    model: Any
    body_adapter: TypeAdapter[Any] | None
    result_adapter: TypeAdapter[Any]
    body_reveal: bool = False
    validator: Validator | None = None
    max_result_size: int = DEFAULT_MAX_RESULT_SIZE
    queue: str = DEFAULT_QUEUE
    max_retries: int | None = None
    job_timeout: float | None = None
    delay: DelayOption | None = None
    partition_key: LabelOption | None = None
    tenant: LabelOption | None = None
    result_type: Any = Any
    webhook: WebhookTarget | None = None
    query: QueryModel | None = None
    retry_base_delay: float | None = None
    path_params: tuple[str, ...] = ()
    _result_serializer: SchemaSerializer = field(init=False, repr=False, compare=False)
    _checks_result: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # The result adapter's schema, but keeping NaN and Infinity as floats (pydantic's
        # default makes them None), so that they are found and refused.
        serializer = SchemaSerializer(self.result_adapter.core_schema, _KEEP_NON_FINITE)
        object.__setattr__(self, "_result_serializer", serializer)
        # A return annotation is a response model (None, Any and object are none).
        checks = self.result_type not in (Any, type(None), None, object)
        object.__setattr__(self, "_checks_result", checks)

    @classmethod
    def from_function(
        cls,
        function: HandlerFunction,
        *,
        name: str | None = None,
        validator: Validator | None = None,
        max_result_size: int = DEFAULT_MAX_RESULT_SIZE,
        queue: str = DEFAULT_QUEUE,
        max_retries: int | None = None,
        job_timeout: float | None = None,
        delay: DelayOption | None = None,
        partition_key: LabelOption | None = None,
        tenant: LabelOption | None = None,
        webhook: WebhookTarget | None = None,
        query: QueryModel | None = None,
    ) -> Handler:
        """Inspect ``function``'s signature and build its handler.

        Raises:
            ConfigurationError: ``function`` is not async, cannot be called with its
                context alone (no parameter, or another one without a default), its first
                parameter is not an ``AsyncContext``, its annotations name a type that
                cannot be resolved or that pydantic cannot handle, ``name`` is not a
                non-empty str, ``validator`` is not callable, or an option is out of range.
        """
        if not isinstance(queue, str) or not queue:
            raise ConfigurationError(f"queue must be a queue name (str), not {queue!r}")
        max_retries = handler_max_retries(max_retries)
        job_timeout = handler_job_timeout(job_timeout)
        delay = handler_delay(delay)
        partition_key = handler_label(partition_key, "partition_key")
        tenant = handler_label(tenant, "tenant")
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigurationError(f"a job name must be a non-empty str, not {name!r}")
        if validator is not None:
            check_hook(validator, "validator", "request, body")
        for option, value in (
            ("delay", delay),
            ("partition_key", partition_key),
            ("tenant", tenant),
        ):
            if callable(value):
                check_hook(value, option, "request, body")
        if not inspect.iscoroutinefunction(function):
            called = getattr(function, "__name__", None) or repr(function)
            raise ConfigurationError(
                f"job handler {called} must be an async function (async def); for blocking "
                "work, await asyncio.to_thread(...) inside it"
            )
        label = label_of(function, name)
        params = called_with_context_alone(function, label)
        try:
            # The request and result types keep Annotated's constraints (a
            # Field(max_length=...) is validated); the OpenAPI result type is read without.
            hints = get_type_hints(unwrapped(function), include_extras=True)
            given = hints.get(params[0], AsyncContext)
            model = request_model_of(given)
            returns = get_type_hints(unwrapped(function)).get("return", Any)
            # Validated and serialised with its Annotated metadata (constraints,
            # validators, serializers), as FastAPI does a response model.
            returned = hints.get("return", Any)
            _refuse_response(returns, label)
            return cls(
                name=name or label,
                function=function,
                model=model,
                body_adapter=None if model is None else TypeAdapter(model),
                body_reveal=model is not None and needs_reveal(model),
                result_adapter=TypeAdapter(Any if returns is type(None) else returned),
                validator=validator,
                max_result_size=max_result_size,
                queue=queue,
                max_retries=max_retries,
                job_timeout=job_timeout,
                delay=delay,
                partition_key=partition_key,
                tenant=tenant,
                result_type=returns,
                webhook=webhook,
                query=query,
            )
        except (NameError, TypeError, PydanticUserError) as exc:
            message = f"job handler {label}'s annotations are unusable: {exc}"
            if isinstance(exc, NameError):  # a string annotation the module cannot resolve
                message += (
                    " (the types an annotation names must be importable from the handler's "
                    "module: define them at its top level, not inside a function)"
                )
            raise ConfigurationError(message) from exc

    async def placement(self, request: Any, body: Any) -> Placement:
        """Where and when a job POSTed with ``request`` and ``body`` waits: its delay,
        partition key and tenant, from the handler's options (functions called here).

        Raises:
            ValueError: a function gave a value its option does not allow (see
                `delay_for`; a key or tenant that is not None or 1 to 255 characters; a
                webhook URL `check_url` refuses).
        """
        return Placement(
            delay=await self.delay_for(request, body),
            partition_key=await label_for(self.partition_key, request, body, "partition_key"),
            tenant=await label_for(self.tenant, request, body, "tenant"),
            webhook_url=None if self.webhook is None else await self.webhook.url_for(request, body),
        )

    async def delay_for(self, request: Any, body: Any) -> float:
        """Seconds a job POSTed with ``request`` and ``body`` waits before it is due.

        Raises:
            ValueError: the ``delay`` function gave something other than None or a finite
                number of seconds >= 0.
        """
        delay = self.delay
        if delay is None:
            return 0.0
        if callable(delay):
            value = delay(request, body)
            if inspect.isawaitable(value):
                value = await value
            return 0.0 if value is None else delay_seconds(value, f"{self.name}'s delay")
        return delay

    def parse_body(self, raw: bytes | str) -> Any:
        """Validate a JSON body against the request model.

        Raises:
            JobValidationError: the body is not valid JSON or fails the model.
        """
        if self.body_adapter is None:
            return None
        try:
            return self.body_adapter.validate_json(raw)
        except ValidationError as exc:
            raise _validation_error(exc) from None

    def coerce_body(self, body: Any) -> tuple[Any, str | None]:
        """Validate a Python body (model instance or plain data) and give it with its JSON.

        Raises:
            JobValidationError: the body fails the model, or has no JSON form (text with
                a lone surrogate, say, which no worker could read back).
        """
        if self.body_adapter is None:
            return None, None
        try:
            value = self.body_adapter.validate_python(body)
            return value, body_json(self.body_adapter, body, value, reveal=self.body_reveal)
        except NotReadBackError as exc:
            message = "request body has no JSON form its model reads back"
            if exc.error is not None:
                raise _validation_error(exc.error, message) from None
            differs = (
                "the model reads back another value (a secret or excluded field it cannot write)"
            )
            raise JobValidationError(
                message, [{"loc": [], "msg": differs, "type": "round_trip"}]
            ) from None
        except ValidationError as exc:
            raise _validation_error(exc) from None
        except (PydanticSerializationError, UnicodeDecodeError) as exc:
            error = {"loc": [], "msg": str(exc), "type": "serialization"}
            raise JobValidationError("request body has no JSON form", [error]) from None

    def check_query(self, query_string: str) -> None:
        """Check a query string a job keeps against the declared query model (none:
        anything goes).

        Raises:
            JobValidationError: it fails the model (a job of it could never run).
        """
        if self.query is not None:
            self.query.parse(query_string)

    @property
    def doc(self) -> str | None:
        """The handler function's docstring (a ``functools.partial``'s function's, not
        the partial's own), for its route's documentation."""
        doc = unwrapped(self.function).__doc__
        return doc if isinstance(doc, str) else None

    def context(
        self,
        job: Job,
        report: Callable[[Any], Awaitable[None]] | None = None,
        state: Mapping[str, Any] | None = None,
    ) -> AsyncContext[Any]:
        """Rebuild the handler's context from a stored job (``report`` takes its
        ``report_progress`` values; ``state`` is the app's lifespan state, copied).

        Raises:
            JobValidationError: the stored body no longer passes the request model, or
                its query the query model (their validators changed, or depend on the
                time); the attempt fails with it.
        """
        request = job.request
        body = None if request.body is None else self._revalidate(request.body)
        query = None if self.query is None else self.query.parse(request.query_string)
        raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in request.headers]
        return AsyncContext(
            request=body,
            headers=Headers(raw=raw_headers),
            query_params=QueryParams(request.query_string),
            query=query,
            route_params=dict(request.route_params),
            job_id=job.id,
            retry_count=job.retry_count,
            partition_key=job.partition_key,
            tenant=job.tenant,
            batch_id=job.batch_id,
            owner=job.owner,
            state=State(dict(state) if state else None),
            _report=report,
            _max_progress_size=self.max_result_size,
        )

    def dump_result(self, value: Any) -> Any:
        """The handler's return value as the JSON value every store can keep.

        As FastAPI answers with a route's response model, a handler's return annotation
        (other than None or Any) is checked first: the value is validated against it
        (lax, as FastAPI does: ``"5"`` for ``-> int`` is 5; attributes read from objects),
        so that a dict returned for ``-> Model`` keeps only the model's fields (a
        ``password_hash`` the model lacks is left out, never stored nor served).
        pydantic then turns the value into plain JSON data (dicts with str keys, lists,
        str, numbers, bools, None: what any store reads back the same), which is written
        once as JSON text to be measured. NaN and Infinity are refused rather than written
        as null (pydantic's JSON does that silently, and the result would lie).

        Raises:
            ResultValidationError: the value fails the return annotation (the message
                names where and why, never the value).
            ResultNotSerializable: the value has no JSON form: an unknown type, NaN or
                Infinity, text with a lone surrogate, an integer beyond ±(2**53 - 1)
                (`_json_numbers`).
            ResultTooLarge: its JSON is larger than ``max_result_size`` bytes (UTF-8).
        """
        if self._checks_result:
            try:
                value = self.result_adapter.validate_python(value, from_attributes=True)
            except ValidationError as exc:
                errors = exc.errors(include_url=False, include_input=False)
                where = summarize_errors(cast(list[dict[str, Any]], errors), "result")
                message = f"the result does not match {self.name}'s return annotation: {where}"
                raise ResultValidationError(message) from None
            except Exception as exc:  # a validator of the model's raised another error
                message = (
                    f"the result could not be checked against {self.name}'s return "
                    f"annotation: a validator raised {type(exc).__name__}"
                )
                raise ResultValidationError(message) from exc
        try:
            data = self._result_serializer.to_python(value, mode="json", by_alias=True)
            text = _RESULT_ENCODER.encode(data)
            # An ASCII str's length is its UTF-8 size; encoding also finds lone surrogates.
            size = len(text) if text.isascii() else len(text.encode())
        except (PydanticSerializationError, ValueError) as exc:
            raise ResultNotSerializable(f"the result has no JSON form: {_why(exc)}") from exc
        if huge_integer_in(text, data):
            raise ResultNotSerializable(f"the result has no JSON form: {HUGE_INTEGER}")
        if size > self.max_result_size:
            message = (
                f"the result's JSON is {size} bytes, over max_result_size ({self.max_result_size})"
            )
            raise ResultTooLarge(message)
        return data

    def _revalidate(self, body: str) -> Any:
        try:
            return self.parse_body(body)
        except JobValidationError as exc:
            where = summarize_errors(exc.errors, "body")
            message = f"the stored request body no longer passes {self.name}'s model: {where}"
            raise JobValidationError(message, exc.errors) from None


def _validation_error(exc: ValidationError, message: str | None = None) -> JobValidationError:
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    cleaned = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
    if message is None:
        malformed = any(e["type"] in {"json_invalid", "json_type"} for e in errors)
        message = "request body " + ("is not valid JSON" if malformed else "failed validation")
        message += ": " + summarize_errors(cleaned, "body")
    return JobValidationError(message, cleaned)


def _why(exc: Exception) -> str:
    reason = str(exc)
    if isinstance(exc, UnicodeEncodeError):
        return "text with a lone surrogate"
    if reason.startswith("Out of range float"):
        return "NaN or Infinity"
    if reason.startswith("Exceeds the limit"):
        return "an integer too long for JSON readers (" + reason.split(";", 1)[0] + ")"
    return reason.removeprefix("Unable to serialize ")


def _refuse_response(returns: Any, label: str) -> None:
    """A handler annotated to return a Starlette ``Response`` (FastAPI's too): its return
    value is the job's result, stored and served as JSON, never an answer of its own.

    Raises:
        ConfigurationError: saying so.
    """
    if isinstance(returns, type) and issubclass(returns, Response):
        raise ConfigurationError(
            f"job handler {label} is annotated to return a {returns.__name__}: a job's "
            "result is data (a model, a dict, a list...) stored and served as the job's "
            "JSON, not a response; to shape the HTTP answers, give the job_submitted_response "
            "or job_status_response setting"
        )
