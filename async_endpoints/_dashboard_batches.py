"""The dashboard's batch pages (stores that keep batches): the batches, newest first, by
tenant and a page at a time; one batch with its counts, its jobs and its continuations;
and the action that cancels a batch. `async_endpoints._dashboard` serves them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from . import _dashboard_views as views
from ._dashboard_pages import NOTICES
from ._job import parse_job_id
from ._store import ControlStore

if TYPE_CHECKING:
    from ._endpoints import AsyncEndpoints

PAGE_SIZE = views.PAGE_SIZE


async def batches_page(endpoints: AsyncEndpoints, request: Request) -> tuple[str, dict[str, Any]]:
    """The batches, newest first, filtered by tenant, a page at a time."""
    tenant = views.label(request.query_params.get("tenant"))
    cursor = request.query_params.get("cursor") or None
    notices = []
    if tenant is None and (request.query_params.get("tenant") or "").strip():  # not silently
        notices.append(views.TOO_LONG_TENANT)
    try:
        page = await endpoints.list_batches(tenant=tenant, limit=PAGE_SIZE, cursor=cursor)
    except ValueError:
        page = await endpoints.list_batches(tenant=tenant, limit=PAGE_SIZE)
        notices.append(NOTICES["bad-cursor"])
        cursor = None
    query = {"tenant": tenant} if tenant else {}
    context = {
        "title": "Batches",
        "batches": page.batches,
        "tenant": tenant,
        "next_query": None if page.next_cursor is None else {**query, "cursor": page.next_cursor},
        "first_query": query if cursor else None,
        "cursor_notice": " ".join(notices),
    }
    return "batches.html", context


async def batch_page(endpoints: AsyncEndpoints, request: Request) -> tuple[str, dict[str, Any]]:
    """One batch: its counts and status, a page of its jobs, its continuations."""
    batch_id = parse_job_id(request.path_params["batch_id"])
    batch = None if batch_id is None else await endpoints.get_batch(batch_id)
    if batch is None:
        return "missing.html", {"title": "No such batch", "status_code": 404, "what": "batch"}
    filters = views.Filters(batch=str(batch.id), cursor=request.query_params.get("cursor"))
    try:
        jobs, next_cursor = await views.list_page(endpoints.list_jobs, filters)
    except ValueError:
        filters = views.Filters(batch=str(batch.id))
        jobs, next_cursor = await views.list_page(endpoints.list_jobs, filters)
    finished = batch.completed + batch.failed + batch.canceled
    store, paused = endpoints.store, frozenset[str]()
    if isinstance(store, ControlStore) and any(job.status.is_waiting for job in jobs):
        paused = await store.paused_queues()  # a job waiting in a paused queue says so
    context = {
        "paused": paused,
        "title": f"Batch {str(batch.id)[:8]}",
        "batch": batch,
        "jobs": jobs,
        "continuations": frozenset(batch.continuation_ids),
        "done_share": 0 if not batch.total else round(100 * finished / batch.total),
        "next_query": None if next_cursor is None else {"cursor": next_cursor},
        "first_query": {} if filters.cursor else None,
    }
    return "batch.html", context


async def cancel_batch(endpoints: AsyncEndpoints, fields: dict[str, str]) -> str:
    """Cancel the batch ``fields["batch_id"]``: its unfinished jobs and continuations."""
    batch_id = parse_job_id(fields.get("batch_id"))
    canceled = None if batch_id is None else await endpoints.cancel_batch(batch_id)
    return "unknown-batch" if canceled is None else "batch-canceled"
