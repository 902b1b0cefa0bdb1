"""The dashboard's bulk action: queue again the Failed or Canceled jobs ticked on a jobs
page, and the notice that says how it went.

The notice code carries only counts (``requeued-<done>-of-<asked>``, with ``-cut`` when
the store stopped answering part way), so the page's notice is built from numbers, never
from text of the request.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._errors import StoreUnavailableError
from ._job import parse_job_id

if TYPE_CHECKING:
    from ._endpoints import AsyncEndpoints

#: The most jobs one bulk requeue takes: two pages' worth (a page lists 50).
MAX_SELECTED = 100

_CODE = re.compile(r"requeued-(\d{1,3})-of-(\d{1,3})(-cut)?")


async def requeue_selected(endpoints: AsyncEndpoints, values: Sequence[str]) -> str:
    """Queue again each job of ``values`` (job ids; repeats and malformed ones ignored)
    that is Failed or Canceled; the notice code of the outcome.

    Jobs are requeued one by one, each on its own: one that is no longer Failed or
    Canceled (or no longer exists) is left as it is and the others still go. When the
    store stops answering part way, those requeued so far stay requeued and the code
    says so; when it does not answer at all, `StoreUnavailableError` propagates (the
    action then says it may or may not have been applied: a store that took a write and
    did not answer in time did apply it).
    """
    ids = list(dict.fromkeys(job_id for job_id in map(parse_job_id, values) if job_id))
    if not ids:
        return "none-selected"
    if len(ids) > MAX_SELECTED:
        return "too-many-selected"
    done = 0
    for job_id in ids:
        try:
            requeued = await endpoints.requeue(job_id)
        except ValueError:  # no longer Failed or Canceled
            continue
        except StoreUnavailableError:
            if not done:
                raise
            return f"requeued-{done}-of-{len(ids)}-cut"
        done += requeued is not None
    return f"requeued-{done}-of-{len(ids)}"


def bulk_notice(code: str) -> str | None:
    """The notice of a `requeue_selected` code, or None when ``code`` is not one."""
    if code == "none-selected":
        return "No job was selected: tick the Failed or Canceled jobs to queue again."
    if code == "too-many-selected":
        return f"At most {MAX_SELECTED} jobs can be queued again at once; nothing was changed."
    matched = _CODE.fullmatch(code)
    if matched is None:
        return None
    done, asked = int(matched[1]), int(matched[2])
    if not 0 < asked <= MAX_SELECTED or done > asked:
        return None
    if matched[3]:
        return (
            f"{_jobs(done)} of the {asked} selected queued again; then the job store stopped "
            "answering: the next may or may not have been queued again, the others were "
            "left as they were."
        )
    if done == asked:
        return f"{_jobs(done)} queued again."
    return (
        f"{_jobs(done)} of the {asked} selected queued again; the others were no longer "
        "Failed or Canceled (or no longer exist) and were left as they were."
    )


def _jobs(count: int) -> str:
    return "1 job" if count == 1 else f"{count} jobs"
