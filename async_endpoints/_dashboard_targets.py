"""Where a dashboard action sends the browser back to: the page its form named (``next``),
when that is a page of this dashboard, with a notice code and what it acted on; anything
else (another host, a path outside the dashboard, dot segments) leads to its first page."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from urllib.parse import quote, unquote, urlencode, urlsplit

from . import _dashboard_actions as actions

#: The query fields with which an action's redirect tells its notice.
_TOLD = ("done", "subject", "subject_queue")


def page_of(root: str, target: str | None) -> str:
    """``target`` when it is a page of this dashboard (the path and query the browser
    is sent back to, without an earlier action's notice), else the dashboard's first
    page."""
    path, kept = split_target(root, target)
    return path + ("?" + urlencode(kept) if kept else "")


def split_target(root: str, target: str | None) -> tuple[str, list[tuple[str, str]]]:
    """The path of ``target`` when it is a page of this dashboard (else its first
    page's) and its query's fields, but for those telling an earlier action's notice."""
    path, query = _target_path(root, target)
    return path, [pair for pair in actions.query_pairs(query) if pair[0] not in _TOLD]


def _target_path(root: str, target: str | None) -> tuple[str, str]:
    parts = urlsplit(target or "")
    # Compared decoded: a page's own path (``here``) is decoded, the root encoded; a
    # browser reads %2e%2e as a dot segment, and a server may decode %2f.
    decoded, decoded_root = unquote(parts.path), unquote(root)
    inside = decoded == decoded_root or decoded.startswith(decoded_root + "/")
    odd = "\\" in (target or "") or "\\" in decoded or ".." in decoded.split("/")
    if parts.scheme or parts.netloc or not inside or odd:
        return root + "/", ""
    return quote(decoded), parts.query


def back(
    root: str,
    target: str | None,
    done: str,
    queues: Collection[str],
    subject: uuid.UUID | None = None,
    queue: str | None = None,
) -> str:
    """Where an action returns to: ``target`` when it is a page of this dashboard, with
    the notice code ``done`` and the id of the job or batch it acted on (the notice
    names it: the list may have moved under the click), or the queue it paused or
    resumed (only a queue of ``queues``, the settings', is ever named)."""
    path, kept = split_target(root, target)
    told = [("subject", str(subject))] if subject is not None else []
    if queue and queue in queues:
        told.append(("subject_queue", queue))
    return path + "?" + urlencode([*kept, ("done", done), *told])
