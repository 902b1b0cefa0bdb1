"""`Dashboard`: the HTML pages and actions of `AsyncEndpoints.map_dashboard`.

Pages (GET, under the dashboard's path): ``/`` queues with counts and pause/resume,
``/jobs`` jobs by status with filters and paging, ``/jobs/{id}`` one job, ``/schedules``
the cron schedules (when the store keeps them), ``/assets/...`` its own CSS and JavaScript.
Actions (POST, HTML forms that work without JavaScript, answered with a redirect back):
``/actions/cancel``, ``/actions/requeue``, ``/actions/pause``, ``/actions/resume``, and
the bulk ``/actions/requeue-selected`` and ``/actions/cancel-selected``, guarded against
cross-site requests (see `async_endpoints._dashboard_guard`).

Every route answers 404 unless ``authorize(request)`` returns True. Pages are rendered on
the server (Jinja2, autoescaping on: job data never becomes markup). A page's live part is
fetched again every second by the page's script (the same URL with the header
``X-Dashboard-Fragment: 1`` answers that part alone), so it follows the jobs by itself.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import quote, unquote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Match, Route, Router

from . import _dashboard_actions as actions
from . import _dashboard_batches as dashboard_batches
from . import _dashboard_bulk as bulk
from . import _dashboard_confirm as confirm
from . import _dashboard_guard as guard
from . import _dashboard_pages as pages
from . import _dashboard_targets as targets
from . import _dashboard_views as views
from ._any_method_route import AnyMethodRoute
from ._errors import StoreUnavailableError
from ._job import parse_job_id
from ._responses import call_maybe_async
from ._store import ControlStore
from ._store_features import BatchStore, ScheduleStore

if TYPE_CHECKING:
    from ._endpoints import AsyncEndpoints

logger = logging.getLogger("async_endpoints")

#: What builds a page: its template and context, from the endpoints and the request.
Page: TypeAlias = "Callable[[AsyncEndpoints, Request], Awaitable[tuple[str, dict[str, Any]]]]"

ASSETS = Path(__file__).parent / "_dashboard_assets"
_ASSET_TYPES = {
    "dashboard.css": "text/css",
    "dashboard.js": "text/javascript",
    "favicon.svg": "image/svg+xml",
}
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Dashboard:
    """The dashboard of one `AsyncEndpoints`, as a Starlette `Router` to mount.

    Args:
        endpoints: Whose jobs it shows and steers.
        authorize: ``fn(request) -> bool`` (sync or async): False answers 404.
        root: The path it is mounted at (for its links), without a trailing slash.
    """

    def __init__(self, endpoints: AsyncEndpoints, authorize: guard.Authorize, root: str) -> None:
        self.endpoints = endpoints
        self.authorize = authorize
        self.root = root
        self.templates = Environment(
            loader=FileSystemLoader(ASSETS),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
            finalize=views.shown,
        )
        self.templates.filters["verbatim"] = views.verbatim
        self.templates.globals.update(ago=views.ago, absolute=views.absolute, iso=views.iso)
        self.templates.filters["pretty_json"] = views.pretty_json
        self.templates.filters["compact_json"] = views.compact_json
        self.templates.filters["progress_share"] = views.progress_share
        # The shared macros as a global: a page's live block is also rendered on its own.
        self.templates.globals["m"] = self.templates.get_template("macros.html").module
        self.templates.globals["questions"] = confirm.QUESTIONS
        self.assets = {name: (ASSETS / name).read_bytes() for name in _ASSET_TYPES}
        self.can_control = isinstance(endpoints.store, ControlStore)
        self.has_batches = isinstance(endpoints.store, BatchStore)
        page, action = self._page, self._action
        # No slash redirects: they would answer before authorize is asked.
        self.router = Router(
            redirect_slashes=False,
            routes=[
                *(self._batch_routes() if self.has_batches else []),
                AnyMethodRoute("/", page(pages.queues_page)),
                AnyMethodRoute("/jobs", page(pages.jobs_page)),
                AnyMethodRoute("/jobs/{job_id}", page(pages.job_page)),
                AnyMethodRoute("/schedules", page(pages.schedules_page)),
                AnyMethodRoute("/assets/{name}", self._guarded(self.asset)),
                AnyMethodRoute("/actions/cancel", action(actions.cancel)),
                AnyMethodRoute("/actions/requeue", action(actions.requeue)),
                AnyMethodRoute(
                    "/actions/requeue-selected", action(actions.requeue_selected, many=True)
                ),
                AnyMethodRoute(
                    "/actions/cancel-selected", action(actions.cancel_selected, many=True)
                ),
                AnyMethodRoute("/actions/pause", action(actions.pause)),
                AnyMethodRoute("/actions/resume", action(actions.resume)),
                AnyMethodRoute("/{rest:path}", self.elsewhere),
            ],
        )
        self._missing_page = self._view(pages.missing_page)
        self._home_page = self._view(pages.queues_page)

    def _batch_routes(self) -> list[Route]:
        return [
            AnyMethodRoute("/batches", self._page(dashboard_batches.batches_page)),
            AnyMethodRoute("/batches/{batch_id}", self._page(dashboard_batches.batch_page)),
            AnyMethodRoute("/actions/cancel-batch", self._action(dashboard_batches.cancel_batch)),
        ]

    # ---- plumbing: authorization, rendering, actions ------------------------------------

    def _guarded(
        self, endpoint: Callable[[Request], Awaitable[Response]], method: str = "GET"
    ) -> Callable[[Request], Awaitable[Response]]:
        """``endpoint`` for ``method`` (GET takes HEAD too), behind ``authorize``: refused,
        any request answers 404, whatever its method (a 405 would tell that the route
        exists)."""
        allowed = ("GET", "HEAD") if method == "GET" else (method,)

        async def guarded(request: Request) -> Response:
            if await call_maybe_async(self.authorize, request) is not True:
                raise _not_found()
            if request.method not in allowed:
                return Response(status_code=405, headers={"Allow": ", ".join(allowed)})
            return await endpoint(request)

        return guarded

    def _page(self, build: Page) -> Callable[[Request], Awaitable[Response]]:
        """A GET page behind ``authorize`` (see `_view`)."""
        return self._guarded(self._view(build))

    def _view(self, build: Page) -> Callable[[Request], Awaitable[Response]]:
        """A page: ``build`` returns its template and context (from this dashboard's
        endpoints and the request); the token cookie is set when the browser has none."""

        async def page(request: Request) -> Response:
            token, new = guard.token_of(request)
            retry_after: float | None = None
            now = None
            try:
                template, context = await build(self.endpoints, request)
                status = context.pop("status_code", 200)
                now = await self._store_now()
            except StoreUnavailableError as exc:
                template, status = "unavailable.html", 503
                context = {"title": "Unavailable", "unavailable": True}
                retry_after = exc.retry_after
            context.update(self._common(request, token, now))
            fragment = request.headers.get("x-dashboard-fragment") == "1"
            body = self.render(template, context, fragment)
            tag = _tag(body) if fragment else None
            if tag is not None and status == 200 and request.headers.get("if-none-match") == tag:
                # The page's script asks every second: an unchanged live part (a finished
                # job's, with its result) is not sent again.
                response: Response = Response(status_code=304)
            else:
                response = HTMLResponse(body, status)
            response.headers.update(_SECURITY_HEADERS)
            response.headers["Vary"] = "X-Dashboard-Fragment"
            if tag is not None:
                response.headers["ETag"] = tag
                # Tells the page's script the answer is the dashboard's own (a 404 that is
                # the app's is its access withdrawn, not a job gone).
                response.headers["X-Dashboard-Fragment"] = "1"
            if retry_after is not None:
                response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
            if new:
                secure = request.url.scheme == "https"
                guard.set_token(response, token, self.base(request), secure=secure)
            return response

        return page

    async def _store_now(self) -> datetime | None:
        """The store's clock, which stamps the jobs' times, when the store tells it (a
        `ScheduleStore`): a page says "3 s ago" of a time stamped on the Redis host by
        that host's clock, right however far this host's clock is from it. None (this
        host's clock is used) when it does not, or cannot be read: the page built
        stands."""
        store = self.endpoints.store
        if not isinstance(store, ScheduleStore):
            return None
        try:
            return await store.schedule_time()
        except Exception as exc:
            logger.debug("the store's clock could not be read for a page: %r", exc)
            return None

    def _common(self, request: Request, token: str, now: datetime | None = None) -> dict[str, Any]:
        """What every page shows besides its own part; ``now`` is the store's clock
        (`_store_now`), else this host's."""
        now = now or datetime.now(UTC)
        params = request.query_params
        done = params.get("done", "")
        notice = pages.NOTICES.get(done) or bulk.bulk_notice(done)
        subject = parse_job_id(params.get("subject"))
        queue = params.get("subject_queue")
        # The job or batch acted on, named by a link to its page before the notice.
        notice_link = None
        if notice is not None and subject is not None:
            kind = "batches" if "batch" in done else "jobs"
            notice_link = (f"{self.base(request)}/{kind}/{subject}", str(subject)[:8])
        elif notice in ("Paused.", "Resumed.") and queue in self.endpoints.settings.queues:
            notice = f"Queue {queue}: {notice[:-1].lower()}."
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        root = self.base(request)
        return {
            "root": root,
            "section": _section(request.url.path.removeprefix(unquote(root)), params.get("status")),
            "now": now,
            # When the page was read (kept in the live part, where "now" is blanked).
            "checked_at": now,
            "token": token,
            "here": here,
            "notice": notice,
            "notice_link": notice_link,
            "can_control": self.can_control,
            "has_schedules": isinstance(self.endpoints.store, ScheduleStore),
            "has_batches": self.has_batches,
        }

    def _forbidden(self, request: Request, *, too_large: bool = False) -> Response:
        """403 for an action refused (cross-site, or without the page's token), or 413 for
        one whose form is larger than `actions.MAX_FORM`: a page of the dashboard's own saying
        which, with a way back; no cookie is set."""
        context = {"title": "Action refused", **self._common(request, "")}
        if too_large:
            context["too_large"] = actions.MAX_FORM // 1024
        page = self.render("forbidden.html", context)
        response = HTMLResponse(page, 413 if too_large else 403)
        response.headers.update(_SECURITY_HEADERS)
        return response

    def base(self, request: Request) -> str:
        """The dashboard's path as the browser sees it, for links, form actions and its
        cookie: its mount path under the app's root path (a proxy's prefix given to the
        server as ``--root-path``, or an outer app's mount), which Starlette's `Mount`
        puts in the scope of every request it routes here."""
        return _as_path(str(request.scope.get("root_path", ""))) or self.root

    def render(self, template: str, context: dict[str, Any], fragment: bool = False) -> str:
        """``template`` rendered with ``context``; only its ``live`` block when
        ``fragment``."""
        compiled = self.templates.get_template(template)
        if not fragment:
            return compiled.render(context)
        block = compiled.blocks["live"]
        # Absolute times (see `views.ago`): the same jobs give the same text every second.
        return "".join(block(compiled.new_context({**context, "now": None})))

    def _action(
        self, act: Callable[[AsyncEndpoints, actions.Form], Awaitable[str]], many: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        """A POST action: refused with 403 when cross-site, else ``act`` runs and the
        browser goes back (303) to the form's ``next`` page with a notice code (naming
        the job or batch acted on, unless it acts on ``many``). An action that asks first
        (`_dashboard_confirm`) and was not confirmed answers the page asking instead."""

        async def action(request: Request) -> Response:
            fields = await actions.read_form(request)
            if not guard.is_same_origin(request):
                return self._forbidden(request)
            if fields is None:
                return self._forbidden(request, too_large=True)
            if not guard.has_valid_token(request, fields.get(guard.FIELD)):
                return self._forbidden(request)
            name = request.url.path.rsplit("/", 1)[-1]
            asked = confirm.question(name, fields, len(fields.every("job_id")))
            if asked is not None and not confirm.confirmed(fields):
                return self._asking(request, asked, fields)
            try:
                done = await act(self.endpoints, fields)
            except StoreUnavailableError:
                done = "unavailable"
            # An action on ``many`` jobs counts them in its notice: it names none of them.
            subject = None if many else parse_job_id(fields.get("job_id") or fields.get("batch_id"))
            queues = self.endpoints.settings.queues
            back = targets.back(
                self.base(request), fields.get("next"), done, queues, subject, fields.get("queue")
            )
            return RedirectResponse(back, status_code=303)

        return self._guarded(action, "POST")

    def _asking(self, request: Request, asked: str, fields: actions.Form) -> Response:
        """The page asking ``asked`` before an action sent unconfirmed (without the page's
        script): its button sends ``fields`` again, confirmed; its other link leads back
        to the form's page. Nothing changed yet."""
        token, _ = guard.token_of(request)
        root = self.base(request)
        resent = [pair for pair in fields.pairs() if pair[0] not in (guard.FIELD, confirm.FIELD)]
        context = {
            **self._common(request, token),
            "title": "Are you sure?",
            "question": asked,
            "action_url": f"{root}/actions/{request.url.path.rsplit('/', 1)[-1]}",
            "resent": resent,
            "way_back": targets.page_of(root, fields.get("next")),
        }
        response = HTMLResponse(self.render("confirm.html", context))
        response.headers.update(_SECURITY_HEADERS)
        return response

    async def home(self, request: Request) -> Response:
        """The dashboard's path without its slash: its queues page, as with the slash
        (authorized only; every link on it is absolute, so it works from either)."""
        if await call_maybe_async(self.authorize, request) is not True:
            raise _not_found()
        if request.method not in ("GET", "HEAD"):
            return Response(status_code=405, headers={"Allow": "GET, HEAD"})
        outer = str(request.scope.get("root_path", ""))  # the app's mount or proxy prefix
        # As the dashboard's mount would give it: its path under the app's root path.
        scope = {**request.scope, "root_path": outer + self.root}
        return await self._home_page(Request(scope, request.receive))

    async def elsewhere(self, request: Request) -> Response:
        """Any other path (authorized only): a page's path with a trailing slash goes to
        the page (307); anything else read is a page saying there is no such page (404)."""
        if await call_maybe_async(self.authorize, request) is not True:
            raise _not_found()
        if request.method not in ("GET", "HEAD"):
            raise _not_found()
        rest: str = request.path_params["rest"]
        target = "/" + rest.rstrip("/")
        if rest.endswith("/") and rest.strip("/") and self._is_page(request, target):
            query = f"?{request.url.query}" if request.url.query else ""
            return RedirectResponse(self.base(request) + target + query, status_code=307)
        return await self._missing_page(request)

    def _is_page(self, request: Request, path: str) -> bool:
        """Whether ``path`` (under the dashboard) is one of its pages."""
        scope = {**request.scope, "path": request.scope.get("root_path", "") + path}
        return any(
            route.matches(scope)[0] is Match.FULL
            for route in self.router.routes
            if isinstance(route, Route)
            and route.endpoint != self.elsewhere
            and "/actions/" not in route.path
        )

    async def asset(self, request: Request) -> Response:
        """The dashboard's own CSS and JavaScript."""
        name = request.path_params["name"]
        if name not in self.assets:
            raise _not_found()
        headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        return Response(self.assets[name], media_type=_ASSET_TYPES[name], headers=headers)


def _tag(body: str) -> str:
    """The entity tag of a live part: a digest of its text (which holds absolute times
    only, so the same jobs give the same tag)."""
    digest = hashlib.blake2b(body.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    return f'"{digest}"'


def _not_found() -> HTTPException:
    """What a refused request (or one for no route) meets: the app's own 404, whatever its
    exception handlers make of it (FastAPI's JSON, Starlette's text), so that a refused
    dashboard answers exactly as a path the app does not have."""
    return HTTPException(status_code=404)


def _as_path(root_path: str) -> str:
    """``root_path`` as an absolute URL path without a trailing slash: runs of slashes
    made one (a root path of ``/`` or ``/pfx/`` would otherwise give ``//dashboard``, a
    link to another host) and every character a URL path cannot hold percent-encoded
    (the cookie's path and the links must be what the browser sends). "" for none."""
    parts = [segment for segment in root_path.split("/") if segment]
    return "".join("/" + quote(segment, safe="!$&'()*+,;=:@%~") for segment in parts)


def _section(path: str, status: str | None) -> str | None:
    """The header link of the page at ``path`` (below the dashboard's root), marked as
    the page shown: None for a page no link leads to (one job, one batch)."""
    if path in ("", "/"):
        return "queues"
    if path in ("/jobs", "/jobs/"):
        return status if status in ("InProgress", "Failed") else "jobs"
    if path.rstrip("/") in ("/schedules", "/batches"):
        return path.strip("/")
    return None
