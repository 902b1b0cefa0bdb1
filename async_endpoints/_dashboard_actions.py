"""The dashboard's actions on one job or queue, and the form an action reads.

Each action takes the app's `AsyncEndpoints` and the posted `Form`, does what it says, and
answers a notice code (a key of `async_endpoints._dashboard.NOTICES`): never text from the
request. Guarding (authorization, the same-origin check, the token, the confirmation) is
the dashboard's, before an action runs; the bulk actions are `_dashboard_bulk`'s, the
batch's `_dashboard_batches`'s.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from starlette.requests import Request

from . import _dashboard_bulk as bulk
from ._job import Job, parse_job_id

if TYPE_CHECKING:
    from ._endpoints import AsyncEndpoints

#: The largest action form read, in bytes: `bulk.MAX_SELECTED` ticked ids and a ``next``
#: page address holding the longest filters (a tenant of 255 four-byte characters is 3 KB
#: percent-encoded, 5 KB form-encoded again) and a trail of cursors, with room to spare.
MAX_FORM = 65536


class Form(dict[str, str]):
    """An action's form fields: each name's last value, and `every` value of a name
    given several times (the job ids ticked for a bulk action)."""

    def __init__(self, pairs: list[tuple[str, str]] | None = None) -> None:
        super().__init__(pairs or [])
        self._pairs = pairs or []

    def every(self, name: str) -> list[str]:
        """Every value of ``name``, in the order the form gave them."""
        return [value for key, value in self._pairs if key == name]

    def pairs(self) -> list[tuple[str, str]]:
        """Every field, as given (a name given several times, several times)."""
        return list(self._pairs)


async def read_form(request: Request) -> Form | None:
    """The fields of an urlencoded form POST: None when it is larger than `MAX_FORM`
    (refused, read no further); another kind of body reads as an empty form, which no
    action accepts."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type != "application/x-www-form-urlencoded":
        return Form()
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return None
    return Form(query_pairs(body.decode("utf-8", "replace")))


def query_pairs(query: str) -> list[tuple[str, str]]:
    """The non-empty fields of an urlencoded ``query``, in order."""
    return parse_qsl(query, keep_blank_values=False)


async def cancel(endpoints: AsyncEndpoints, fields: Form) -> str:
    """Cancel the job ``fields["job_id"]``."""
    job = await _job(endpoints, fields)
    if job is None:
        return "unknown"
    if job.status.is_terminal:
        return "terminal"
    canceled, here = await endpoints.cancel_unfinished(job)
    return "canceled" if here and canceled is not None else "terminal"


async def requeue(endpoints: AsyncEndpoints, fields: Form) -> str:
    """Queue the Failed or Canceled job ``fields["job_id"]`` again."""
    job = await _job(endpoints, fields)
    if job is None:
        return "unknown"
    try:
        requeued = await endpoints.requeue(job.id)
    except ValueError:
        return "not-requeueable"
    return "unknown" if requeued is None else "requeued"


async def requeue_selected(endpoints: AsyncEndpoints, fields: Form) -> str:
    """Queue again the Failed or Canceled jobs ticked on a jobs page (``job_id``,
    repeated)."""
    return await bulk.act_on_selected(endpoints, "requeue", fields.every("job_id"))


async def cancel_selected(endpoints: AsyncEndpoints, fields: Form) -> str:
    """Cancel the Queued, Scheduled or running jobs ticked on a jobs page (``job_id``,
    repeated)."""
    return await bulk.act_on_selected(endpoints, "cancel", fields.every("job_id"))


async def pause(endpoints: AsyncEndpoints, fields: Form) -> str:
    """Pause ``fields["queue"]`` (every queue when empty)."""
    return await _steer_queue(endpoints.pause, fields, "paused")


async def resume(endpoints: AsyncEndpoints, fields: Form) -> str:
    """Resume ``fields["queue"]`` (every queue when empty)."""
    return await _steer_queue(endpoints.resume, fields, "resumed")


async def _steer_queue(
    act: Callable[[str | None], Awaitable[None]], fields: Form, done: str
) -> str:
    """``act`` (pause or resume) on ``fields["queue"]``, or on every queue when empty."""
    queue = fields.get("queue") or None
    try:
        await act(queue)
    except ValueError:
        return "bad-queue"
    return done if queue else f"{done}-all"


async def _job(endpoints: AsyncEndpoints, fields: Form) -> Job | None:
    job_id = parse_job_id(fields.get("job_id"))
    return None if job_id is None else await endpoints.get_job(job_id)
