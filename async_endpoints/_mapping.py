"""`RouteMapping`: registering job handlers, with or without an HTTP route (a base of
`AsyncEndpoints`). Async endpoints answer POST, PUT, PATCH or DELETE alike."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar, Unpack, cast

from pydantic import BaseModel
from starlette.routing import compile_path

from ._errors import ConfigurationError
from ._handler_signature import check_context_annotated, label_of
from ._handlers import Handler, HandlerFunction, Validator
from ._http import JobService
from ._openapi_document import finish_document
from ._options import DelayOption, LabelOption
from ._query_model import QueryModel
from ._route_docs import route_docs
from ._routes import add_submit_route, is_fastapi
from ._settings import Settings, default_queue
from ._submit_route import submit_endpoint
from ._unknown_names import unknown_names
from ._webhook_urls import AllowedHosts, WebhookTarget, WebhookUrlOption

if TYPE_CHECKING:
    from typing import Literal

    Method = Literal["POST", "PUT", "PATCH", "DELETE"]
else:
    Method = str

F = TypeVar("F", bound=HandlerFunction)

_METHODS = ("POST", "PUT", "PATCH", "DELETE")


class RouteOptions(TypedDict, total=False):
    """The options of an async endpoint (see `RouteMapping.add_async_route`)."""

    name: str | None
    validator: Validator | None
    queue: str | None
    partition_key: LabelOption | None
    tenant: LabelOption | None
    delay: DelayOption | None
    max_retries: int | None
    job_timeout: float | None
    webhook_url: WebhookUrlOption | None
    query: type[BaseModel] | None
    tags: Sequence[str] | None
    summary: str | None
    description: str | None
    deprecated: bool | None
    operation_id: str | None
    include_in_schema: bool | None
    dependencies: Sequence[Any] | None
    router: Any


class RouteMapping:
    """Handler registration: ``map_async_post`` and its PUT, PATCH and DELETE siblings,
    ``add_handler`` for jobs submitted from code only."""

    app: Any
    settings: Settings
    handlers: dict[str, Handler]

    def map_async_post(self, path: str, **options: Unpack[RouteOptions]) -> Callable[[F], F]:
        """Decorator: ``POST path`` queues a job for the decorated handler.

        The handler is ``async def handler(ctx: AsyncContext[Model]) -> Result``; see
        `add_async_route` for the options. The function is returned unchanged.

        Raises:
            ConfigurationError: when decorating, as `add_async_route` raises it.
            TypeError: an unknown option.
        """
        return self._decorator("POST", path, options)

    def map_async_put(self, path: str, **options: Unpack[RouteOptions]) -> Callable[[F], F]:
        """Decorator: ``PUT path`` queues a job, as `map_async_post` does for POST."""
        return self._decorator("PUT", path, options)

    def map_async_patch(self, path: str, **options: Unpack[RouteOptions]) -> Callable[[F], F]:
        """Decorator: ``PATCH path`` queues a job, as `map_async_post` does for POST."""
        return self._decorator("PATCH", path, options)

    def map_async_delete(self, path: str, **options: Unpack[RouteOptions]) -> Callable[[F], F]:
        """Decorator: ``DELETE path`` queues a job, as `map_async_post` does for POST (its
        handler usually takes no body: a bare ``AsyncContext``)."""
        return self._decorator("DELETE", path, options)

    def add_async_post(
        self, path: str, function: HandlerFunction, **options: Unpack[RouteOptions]
    ) -> Handler:
        """Register ``function`` and route ``POST path`` to it (see `add_async_route`)."""
        return self.add_async_route("POST", path, function, **options)

    def add_async_route(
        self,
        method: Method,
        path: str,
        function: HandlerFunction,
        **options: Unpack[RouteOptions],
    ) -> Handler:
        """Register ``function`` as the handler of jobs named ``name`` and route
        ``method path`` (POST, PUT, PATCH or DELETE) to it.

        Args:
            method: The HTTP method.
            path: The route path (Starlette syntax, path parameters allowed).
            function: The async handler; its first parameter is an ``AsyncContext[T]``.
            **options: ``name``: the job name (default: the function's name), unique per
                endpoints object. ``validator``: ``validator(request, body)`` (sync or
                async) run before queuing; a ``Response`` it returns is sent as is and
                nothing is queued. ``queue``: the queue its jobs wait in (default:
                ``"default"`` when it is one of ``queues``, else the last of them).
                ``partition_key``: a partition key for every job, or ``fn(request, body)``
                (sync or async) giving one (or None) per request: jobs with the same key
                run one at a time, in submission order; a value that is not a string of 1
                to 255 characters answers 422 (a constant one: `ConfigurationError`).
                ``tenant``: the tenant of every job, or ``fn(request, body)`` giving it
                (checked as ``partition_key`` is): a queue's tenants take turns.
                ``delay``: seconds a job waits before it is due (``Scheduled``), or
                ``fn(request, body)`` giving them (or None) per request; a value that is
                not a finite number >= 0 answers 422 (requests only: `submit` takes its
                own ``delay``). The functions run after the validator, before anything is
                stored. ``max_retries``: retries of its jobs (default: the setting).
                ``job_timeout``: seconds one attempt may run (default: the setting).
                ``webhook_url``: where the job JSON is POSTed, signed, once the job is
                terminal (see *Webhooks* in the README), or ``fn(request, body)`` giving
                the URL (or None) per request; a URL that is not absolute http(s), holds
                credentials or names a host outside ``webhook_allowed_hosts`` answers 422
                (a constant one: `ConfigurationError`, as is any ``webhook_url`` without
                the ``webhook_secret`` and ``webhook_allowed_hosts`` settings).
                ``query``: a pydantic model of the query parameters the route takes:
                a request whose query fails it answers 422 and nothing is stored; the
                handler reads it as ``ctx.query`` (`async_endpoints._query_model`).
                ``tags``, ``summary``, ``description``, ``deprecated``,
                ``operation_id`` (default: the job name, with ``_put``, ``_patch`` or
                ``_delete`` after it for those methods; the app's or router's own
                ``generate_unique_id_function`` when it has one),
                ``include_in_schema`` and ``dependencies`` (``Depends(...)``, run before
                anything is stored) are FastAPI's own route options, handed to it
                (`async_endpoints._route_docs`). ``router``: a FastAPI ``APIRouter`` to
                add the route to instead of the app (its prefix, tags and dependencies
                then apply; map the route before ``app.include_router(router)``, which
                copies the router's routes as they are then).

        Raises:
            ConfigurationError: there is no app, ``method`` is not one of POST, PUT, PATCH
                and DELETE, ``path`` does not start with ``/``, the name is taken, the
                handler's signature is unusable, ``queue`` is not one of the ``queues``
                setting, or an option is out of range. Nothing is registered then.
            TypeError: an unknown option.
        """
        _check_options(options)
        if self.app is None:
            raise ConfigurationError("async endpoints need an app; use add_handler without one")
        if method not in _METHODS:
            raise ConfigurationError(f"an async endpoint answers one of {_METHODS}, not {method!r}")
        _check_path(path, f"add_async_route({method!r}, ...)")
        target = _route_target(self.app, options.get("router"))
        docs = route_docs(options, fastapi=is_fastapi(target))
        check_context_annotated(function, label_of(function, options.get("name")))
        handler = self._new_handler(function, options)
        prefix = getattr(target, "prefix", "") if target is not self.app else ""
        names = compile_path(prefix + path)[2]
        handler = dataclasses.replace(handler, path_params=tuple(names))
        endpoint = submit_endpoint(cast(JobService, self), handler)
        mark = uuid.uuid4().hex  # finds this route's operation in the OpenAPI document
        add_submit_route(target, method, path, endpoint, handler, docs, mark, self.app)
        if is_fastapi(self.app):
            finisher = finish_document(self.app)
            if handler.model is not None:
                finisher.add_body(mark, handler.model)
        self.handlers[handler.name] = handler
        return handler

    def add_handler(
        self,
        function: HandlerFunction,
        *,
        name: str | None = None,
        validator: Validator | None = None,
        queue: str | None = None,
        max_retries: int | None = None,
        job_timeout: float | None = None,
    ) -> Handler:
        """Register a job handler without a route (jobs come from `submit` only).

        ``queue``, ``max_retries`` and ``job_timeout`` are as for `add_async_route`.

        Raises:
            ConfigurationError: the name is taken, the handler's signature is unusable,
                ``queue`` is not one of the ``queues`` setting, or an option is out of range.
        """
        options = RouteOptions(
            name=name,
            validator=validator,
            queue=queue,
            max_retries=max_retries,
            job_timeout=job_timeout,
        )
        handler = self._new_handler(function, options)
        self.handlers[handler.name] = handler
        return handler

    def _decorator(self, method: Method, path: str, options: RouteOptions) -> Callable[[F], F]:
        _check_options(options)
        _check_path(path, f"map_async_{method.lower()}")

        def register(function: F) -> F:
            self.add_async_route(method, path, function, **options)
            return function

        return register

    def _new_handler(self, function: HandlerFunction, options: RouteOptions) -> Handler:
        queues = self.settings.queues
        queue = options.get("queue")
        if queue is not None and queue not in queues:
            known = ", ".join(queues)
            raise ConfigurationError(f"unknown queue {queue!r} (the queues setting has: {known})")
        handler = Handler.from_function(
            function,
            name=options.get("name"),
            validator=options.get("validator"),
            max_result_size=self.settings.max_result_size,
            queue=default_queue(queues) if queue is None else queue,
            max_retries=options.get("max_retries"),
            job_timeout=options.get("job_timeout"),
            delay=options.get("delay"),
            partition_key=options.get("partition_key"),
            tenant=options.get("tenant"),
            webhook=WebhookTarget.of(
                options.get("webhook_url"),
                cast(AllowedHosts, self.settings.webhook_allowed_hosts),
                self.settings.webhook_secret,
            ),
            query=QueryModel.of(options.get("query"), self.settings.sensitive_query_params),
        )
        if handler.name in self.handlers:
            raise ConfigurationError(f"a job handler named {handler.name!r} exists already")
        return handler


def _route_target(app: Any, router: Any) -> Any:
    """Where a route goes: the app, or the FastAPI ``APIRouter`` given as ``router``.

    Raises:
        ConfigurationError: ``router`` is not a FastAPI ``APIRouter``, or the app is not a
            FastAPI app.
    """
    if router is None:
        return app
    if not (is_fastapi(router) and hasattr(router, "add_api_route") and hasattr(router, "prefix")):
        raise ConfigurationError(f"router must be a FastAPI APIRouter, not {router!r}")
    if not is_fastapi(app):
        raise ConfigurationError("router needs a FastAPI app (a Starlette app has no APIRouter)")
    return router


def _check_path(path: object, called: str) -> None:
    """Refuse a route path that is not text starting with ``/``, saying what was meant
    when a function came instead (the decorator written without its parentheses).

    Raises:
        ConfigurationError: as said.
    """
    if callable(path):
        raise ConfigurationError(
            f'{called} takes the route\'s path first: write @endpoints.{called}("/path"), '
            f"with its parentheses, above {getattr(path, '__name__', 'the handler')}"
            if called.startswith("map_")
            else f"{called} takes the route's path before the handler, not {path!r}"
        )
    if not isinstance(path, str) or not path.startswith("/"):
        raise ConfigurationError(f"a route path must be text starting with '/': {path!r}")


def _check_options(options: object) -> None:
    unknown = set(cast(dict[str, Any], options)) - RouteOptions.__optional_keys__
    if unknown:
        known = RouteOptions.__optional_keys__
        raise TypeError(unknown_names("option(s) of an async endpoint", unknown, known, _HINTS))


#: What an unknown route option that FastAPI routes take says instead.
_HINTS = {
    "response_model": "the handler's return annotation is its result's model",
    "status_code": "an async endpoint answers 202, or as the job_submitted_response setting says",
}
