"""`Observability`: metrics and the dashboard of `AsyncEndpoints` (a base of it).

Both are optional extras, imported only when asked for: ``metrics`` (prometheus-client)
and ``dashboard`` (Jinja2). Traces and job-aware logs need no call: see
`async_endpoints._tracing` and `async_endpoints._logs`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ._any_method_route import AnyMethodRoute
from ._dashboard_guard import Authorize
from ._errors import ConfigurationError
from ._events import LifecycleEvents
from ._hook_shape import check_hook
from ._responses import call_maybe_async
from ._routes import refuse_shadowed
from ._settings import Settings
from ._store import InspectionStore, JobStore

if TYPE_CHECKING:
    from ._metrics import JobMetrics


class Observability:
    """`map_metrics`, `metrics` and `map_dashboard` (a base of `AsyncEndpoints`)."""

    app: Any
    store: JobStore
    events: LifecycleEvents
    handlers: Mapping[str, Any]
    settings: Settings
    _metrics: JobMetrics | None = None

    @property
    def metrics(self) -> JobMetrics:
        """This instance's Prometheus metrics, counting from their first use on (their
        own registry: see `enable_metrics` to pass one).

        Raises:
            ConfigurationError: prometheus-client is not installed (the ``metrics`` extra).
        """
        return self.enable_metrics()

    def enable_metrics(self, registry: Any = None) -> JobMetrics:
        """Start counting this instance's jobs in Prometheus metrics; return them.

        ``registry`` is a prometheus-client ``CollectorRegistry`` to register them in
        (default: a registry of their own, so that several instances in one process never
        clash). A second call returns the same metrics (its ``registry`` must be the same
        or None).

        Raises:
            ConfigurationError: prometheus-client is not installed, or the metrics exist
                already in another registry.
        """
        if self._metrics is not None:
            if registry is not None and registry is not self._metrics.registry:
                raise ConfigurationError("the metrics are registered in another registry")
            return self._metrics
        try:
            from ._metrics import JobMetrics
        except ImportError as exc:
            message = 'metrics need prometheus-client: pip install "async-endpoints[metrics]"'
            raise ConfigurationError(message) from exc
        store = self.store

        async def queue_stats() -> Any:
            if not isinstance(store, InspectionStore):
                return []
            return await store.queue_stats(self.settings.queues)

        self._metrics = JobMetrics(self.events.subscribe, self.handlers, queue_stats, registry)
        return self._metrics

    def map_metrics(
        self, path: str = "/metrics", *, registry: Any = None, authorize: Authorize | None = None
    ) -> JobMetrics:
        """Register ``GET path`` answering this instance's metrics in Prometheus's text
        format (see `async_endpoints._metrics` for the names); return the metrics.

        The queue depth in the answer is read from the store at most once a second.
        The route is left out of the OpenAPI document and exposes no job data.
        ``authorize(request) -> bool`` (sync or async), when given, is asked on every
        request, whatever its method: anything but True answers the app's own 404, as for
        a path it does not have (a 405 comes only after it said yes); an exception it
        raises is the app's own error. Give the scraper a token, or keep the route to an
        internal network.

        Raises:
            ConfigurationError: there is no app, ``path`` lacks a leading ``/`` or is
                routed already, ``authorize`` cannot be called with the request, or
                prometheus-client is not installed (the ``metrics`` extra).
        """
        if self.app is None:
            raise ConfigurationError("map_metrics needs an app")
        if not path.startswith("/"):
            raise ConfigurationError(f"the metrics path must start with '/': {path!r}")
        refuse_shadowed(self.app, path, ["GET", "HEAD"])
        if authorize is not None:
            check_hook(authorize, "map_metrics's authorize", "request")
        metrics = self.enable_metrics(registry)
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        async def serve_metrics(request: Request) -> Response:
            if authorize is not None:
                # Asked first, whatever the method: a 405 would tell that the route exists.
                if await call_maybe_async(authorize, request) is not True:
                    raise HTTPException(status_code=404)
                if request.method not in ("GET", "HEAD"):
                    raise HTTPException(status_code=405, headers={"Allow": "GET, HEAD"})
            await metrics.refresh_depth()
            return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

        name = "metrics_" + re.sub(r"\W+", "_", path).strip("_")
        if authorize is None:
            self.app.router.add_route(
                path, serve_metrics, methods=["GET"], name=name, include_in_schema=False
            )
        else:
            route = AnyMethodRoute(path, serve_metrics, listed=("GET", "HEAD"), name=name)
            self.app.router.routes.append(route)
            # The path with a trailing slash too (or without it): the app's slash redirect
            # would answer anyone, telling that the route is there.
            other = path[:-1] if path.endswith("/") and len(path) > 1 else path + "/"
            self.app.router.routes.append(
                AnyMethodRoute(other, serve_metrics, listed=("GET", "HEAD"))
            )
        return metrics

    def map_dashboard(self, path: str = "/dashboard", *, authorize: Authorize) -> None:
        """Mount the dashboard at ``path`` (see README "The dashboard").

        ``authorize(request) -> bool`` (sync or async) is asked on every dashboard request,
        pages, assets and actions alike: anything but True answers 404. The actions
        (cancel, requeue, pause, resume) are HTML forms; a cross-site POST answers 403.

        Raises:
            ConfigurationError: there is no app, ``path`` does not start with ``/`` (or
                ends with one), ``authorize`` is not callable, the store cannot list jobs
                (not an `InspectionStore`), or Jinja2 is not installed (the ``dashboard``
                extra).
        """
        if self.app is None:
            raise ConfigurationError("map_dashboard needs an app")
        if not path.startswith("/") or path.endswith("/"):
            raise ConfigurationError(f"the dashboard path must be like '/dashboard': {path!r}")
        if not callable(authorize):
            raise ConfigurationError("map_dashboard needs authorize(request) -> bool")
        check_hook(authorize, "map_dashboard's authorize", "request")
        if not isinstance(self.store, InspectionStore):
            raise ConfigurationError(f"{type(self.store).__name__} cannot list jobs")
        try:
            from ._dashboard import Dashboard
        except ImportError as exc:
            message = 'the dashboard needs Jinja2: pip install "async-endpoints[dashboard]"'
            raise ConfigurationError(message) from exc
        refuse_shadowed(self.app, path, ["GET"])
        dashboard = Dashboard(self, authorize, path)  # type: ignore[arg-type]
        name = "dashboard_" + re.sub(r"\W+", "_", path).strip("_")
        # The bare path too (not the app's slash redirect, which would answer anyone).
        self.app.router.routes.append(AnyMethodRoute(path, dashboard.home, include_in_schema=False))
        self.app.mount(path, dashboard.router, name=name)
