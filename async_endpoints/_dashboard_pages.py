"""The dashboard's pages (what `async_endpoints._dashboard.Dashboard` serves): the queues,
the jobs by status, queue, tenant and name a page at a time, one job, the schedules, and
the page of a path it does not know. Each returns its template and context; `NOTICES`
are what a page says after an action or about a filter it could not apply."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from . import _dashboard_views as views
from ._job import JobStatus, parse_job_id
from ._store import ControlStore
from ._store_features import ScheduleStore

if TYPE_CHECKING:
    from ._endpoints import AsyncEndpoints

#: What an action's redirect says, by code (never text from the request).
NOTICES = {
    "canceled": "The job was canceled.",
    "requeued": "The job was queued again.",
    "paused": "Paused.",
    "resumed": "Resumed.",
    "paused-all": "Every queue is paused.",
    "resumed-all": "Every queue is active.",
    "terminal": "The job had already finished; nothing was canceled.",
    "not-requeueable": "Only Failed or Canceled jobs can be queued again.",
    "unknown": "There is no such job (any more).",
    "unavailable": "The job store did not answer: the action may or may not have been "
    "applied. This page shows what the store holds once it answers.",
    "bad-queue": "There is no such queue.",
    "bad-cursor": "That page link cannot be followed (the filters changed, or another version "
    "of the app made it); showing the first page.",
    "batch-canceled": "The batch was canceled: its unfinished jobs and its continuations.",
    "unknown-batch": "There is no such batch (any more).",
    "bad-batch": "A batch filter needs the batch's whole id (the batches page shows it on "
    "hover and in its link); showing every batch's jobs.",
    "bad-status": "There is no such status; showing jobs of every status.",
    "bad-queue-filter": "There is no such queue; showing jobs of every queue.",
    "bad-tenant": views.TOO_LONG_TENANT,
    "bad-name": "A name filter is at most 255 characters (no handler's name is longer); "
    "showing jobs of every name.",
}


async def missing_page(endpoints: AsyncEndpoints, request: Request) -> tuple[str, dict[str, Any]]:
    """What a path the dashboard does not know shows."""
    return "missing.html", {"title": "No such page", "status_code": 404, "what": "page"}


async def queues_page(endpoints: AsyncEndpoints, request: Request) -> tuple[str, dict[str, Any]]:
    """Each queue: its counts and whether it is paused; the jobs running now."""
    stats = await endpoints.queue_stats()
    running = await endpoints.list_jobs(status=JobStatus.IN_PROGRESS, limit=10)
    totals = {
        field: sum(getattr(each, field) for each in stats)
        for field in ("queued", "scheduled", "in_progress", "completed", "failed", "canceled")
    }
    context = {"title": "Queues", "stats": stats, "totals": totals, "running": running.jobs}
    return "queues.html", context


async def jobs_page(endpoints: AsyncEndpoints, request: Request) -> tuple[str, dict[str, Any]]:
    """Jobs by status, queue, tenant and name, a page at a time."""
    queues = endpoints.settings.queues
    names = sorted(endpoints.handlers)
    filters = views.read_filters(request.query_params, queues, names)
    status_code, notice = 200, None
    try:
        jobs, next_cursor = await views.list_page(endpoints.list_jobs, filters)
    except ValueError:
        filters = filters.first
        jobs, next_cursor = await views.list_page(endpoints.list_jobs, filters)
        notice = NOTICES["bad-cursor"]
    total = None
    if views.countable(filters):
        total = views.total(await endpoints.queue_stats(), filters)
    previous = filters.previous()
    notices = [] if notice is None else [notice]
    asked = request.query_params
    for field, given, code in (
        ("batch", filters.batch, "bad-batch"),
        ("status", filters.status, "bad-status"),
        ("queue", filters.queue, "bad-queue-filter"),
        ("tenant", filters.tenant, "bad-tenant"),
        ("name", filters.name, "bad-name"),
    ):
        if given is None and (asked.get(field) or "").strip():  # dropped, not silently
            notices.append(NOTICES[code])
    look = filters.queue is not None or any(job.status.is_waiting for job in jobs)
    paused = await paused_queues(endpoints) if look else frozenset()
    title = "Jobs" if filters.status is None else f"{views.label_of(filters.status)} jobs"
    if filters.status is JobStatus.FAILED:
        title = "Failed jobs (dead letter)"
    context = {
        "title": title,
        "jobs": jobs,
        "filters": filters,
        "statuses": list(JobStatus),
        "queues": queues,
        "next_query": None if next_cursor is None else filters.following(next_cursor).query(),
        "previous_query": None if previous is None else previous.query(),
        # First only where Previous does not lead there already.
        "first_query": filters.first.query() if filters.page > 2 else None,
        "total": total,
        "cursor_notice": " ".join(notices),
        "status_code": status_code,
        "name_scan_limit": views.NAME_SCAN_LIMIT,
        "job_names": names,
        # A name no handler of this app has (a typo, most likely): said at once, as the
        # pages would read on in vain (jobs of an older or another app's handler).
        "unknown_name": filters.name is not None and filters.name not in names,
        "paused": paused,
        # A batch id that is not whole stays in its field, to be completed.
        "batch_typed": (request.query_params.get("batch") or "")[:36],
    }
    return "jobs.html", context


async def job_page(endpoints: AsyncEndpoints, request: Request) -> tuple[str, dict[str, Any]]:
    """One job: its JSON, error, progress and timeline."""
    job_id = parse_job_id(request.path_params["job_id"])
    job = None if job_id is None else await endpoints.get_job(job_id)
    if job is None:
        return "missing.html", {"title": "No such job", "status_code": 404}
    context = {
        "title": f"{job.name} {str(job.id)[:8]}",
        "job": job,
        "paused": await paused_queues(endpoints) if job.status.is_waiting else frozenset(),
        "job_json": job.to_json(),
        "timeline": views.timeline(job),
    }
    return "job.html", context


async def paused_queues(endpoints: AsyncEndpoints) -> frozenset[str]:
    """The queues paused now (none when the store cannot pause): their waiting jobs
    are tagged, as they will not start until resumed."""
    store = endpoints.store
    return await store.paused_queues() if isinstance(store, ControlStore) else frozenset()


async def schedules_page(endpoints: AsyncEndpoints, request: Request) -> tuple[str, dict[str, Any]]:
    """The cron schedules (when the store keeps schedules)."""
    store = endpoints.store
    schedules = await store.list_schedules() if isinstance(store, ScheduleStore) else None
    # A schedule without a queue of its own enqueues on its handler's.
    handler_queues = {name: handler.queue for name, handler in endpoints.handlers.items()}
    context = {"title": "Schedules", "schedules": schedules, "handler_queues": handler_queues}
    return "schedules.html", context
