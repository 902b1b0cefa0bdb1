"""The dashboard's bulk actions: queue again the Failed or Canceled jobs ticked on a jobs
page, or cancel the waiting and running ones ticked, and the notice that says how it went.

The notice code carries only the action and counts (``requeued-<done>-of-<asked>``,
``canceled-…``, with ``-cut`` when the store stopped answering part way), so the page's
notice is built from numbers, never from text of the request.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ._errors import StoreUnavailableError
from ._job import parse_job_id

if TYPE_CHECKING:
    from ._endpoints import AsyncEndpoints

#: The most jobs one bulk action takes: two pages' worth (a page lists 50).
MAX_SELECTED = 100

Verb = Literal["requeue", "cancel"]


@dataclass(frozen=True)
class _Bulk:
    """How a bulk action's notices speak of it."""

    done: str  # the code's word: "requeued"
    phrase: str  # "queued again"
    which: str  # the jobs it takes: "Failed or Canceled"


_BULK: dict[Verb, _Bulk] = {
    "requeue": _Bulk("requeued", "queued again", "Failed or Canceled"),
    "cancel": _Bulk("canceled", "canceled", "Queued, Scheduled or Running"),
}
_CODE = re.compile(r"(requeued|canceled)-(\d{1,3})-of-(\d{1,3})(-cut)?")
_REFUSED = re.compile(r"(none|too-many)-selected-(requeue|cancel)")


async def act_on_selected(endpoints: AsyncEndpoints, verb: Verb, values: Sequence[str]) -> str:
    """Requeue (``verb`` "requeue") each job of ``values`` that is Failed or Canceled,
    or cancel ("cancel") each that is Queued, Scheduled or InProgress (job ids; repeats
    and malformed ones ignored); the notice code of the outcome.

    Jobs are taken one by one, each on its own: one no longer in a status the action
    takes (or no longer existing) is left as it is and the others still go. A cancelled
    running job's handler is stopped wherever it runs, as by `AsyncEndpoints.cancel`.
    When the store stops answering part way, those done so far stay done and the code
    says so; when it does not answer at all, `StoreUnavailableError` propagates (the
    action then says it may or may not have been applied: a store that took a write and
    did not answer in time did apply it).
    """
    ids = list(dict.fromkeys(job_id for job_id in map(parse_job_id, values) if job_id))
    if not ids:
        return f"none-selected-{verb}"
    if len(ids) > MAX_SELECTED:
        return f"too-many-selected-{verb}"
    act = _requeue if verb == "requeue" else _cancel
    done = 0
    for job_id in ids:
        try:
            done += await act(endpoints, job_id)
        except StoreUnavailableError:
            if not done:
                raise
            return f"{_BULK[verb].done}-{done}-of-{len(ids)}-cut"
    return f"{_BULK[verb].done}-{done}-of-{len(ids)}"


async def _requeue(endpoints: AsyncEndpoints, job_id: uuid.UUID) -> bool:
    try:
        return await endpoints.requeue(job_id) is not None
    except ValueError:  # no longer Failed or Canceled
        return False


async def _cancel(endpoints: AsyncEndpoints, job_id: uuid.UUID) -> bool:
    job = await endpoints.get_job(job_id)
    if job is None or job.status.is_terminal:
        return False
    canceled, here = await endpoints.cancel_unfinished(job)
    return here and canceled is not None


def bulk_notice(code: str) -> str | None:
    """The notice of an `act_on_selected` code, or None when ``code`` is not one."""
    refused = _REFUSED.fullmatch(code)
    if refused:
        bulk = _BULK["requeue" if refused[2] == "requeue" else "cancel"]
        if refused[1] == "none":
            return f"No job was selected: tick the {bulk.which} jobs to be {bulk.phrase}."
        return f"At most {MAX_SELECTED} jobs can be {bulk.phrase} at once; nothing was changed."
    matched = _CODE.fullmatch(code)
    if matched is None:
        return None
    bulk = _BULK["requeue" if matched[1] == "requeued" else "cancel"]
    done, asked = int(matched[2]), int(matched[3])
    if not 0 < asked <= MAX_SELECTED or done > asked:
        return None
    if matched[4]:
        return (
            f"{_jobs(done)} of the {asked} selected {bulk.phrase}; then the job store stopped "
            f"answering: the next may or may not have been {bulk.phrase}, the others were "
            "left as they were."
        )
    if done == asked:
        return f"{_jobs(done)} {bulk.phrase}."
    return (
        f"{_jobs(done)} of the {asked} selected {bulk.phrase}; the others were no longer "
        f"{bulk.which} (or no longer exist) and were left as they were."
    )


def _jobs(count: int) -> str:
    return "1 job" if count == 1 else f"{count} jobs"
