"""The ``Prefer: wait=N`` request preference (RFC 7240): how long a client will wait."""

from __future__ import annotations

import math
import re
from typing import NamedTuple

from starlette.requests import Request

# One preference: a token, optionally "=" and a token or quoted string, then parameters
# after ";" that this library ignores. Preferences are separated by commas, possibly
# over several Prefer headers.
_WAIT = re.compile(r'^\s*wait\s*=\s*"?([0-9]+(?:\.[0-9]+)?)"?\s*(?:;.*)?$', re.IGNORECASE)


class Wait(NamedTuple):
    """A ``Prefer: wait=N`` the request carries."""

    #: N, as the client wrote it (what ``Preference-Applied`` echoes).
    asked: str
    #: How long to wait: N capped at the ``max_wait`` setting.
    seconds: float


def preferred_wait(request: Request, max_wait: float) -> Wait | None:
    """The ``Prefer: wait=N`` the request carries (N, and N capped at ``max_wait``); None
    when it asks for none, or the value is malformed or negative (ignored, never an
    error), or ``max_wait`` is 0."""
    if max_wait <= 0:
        return None
    for header in request.headers.getlist("prefer"):
        for preference in header.split(","):
            match = _WAIT.match(preference)
            if match:
                seconds = float(match[1])
                return Wait(match[1], min(seconds, max_wait)) if math.isfinite(seconds) else None
    return None


def applied(wait: Wait) -> dict[str, str]:
    """The ``Preference-Applied`` header for ``wait``: ``wait=N`` with the client's N (as
    API.md has it; the wait itself was at most ``max_wait``)."""
    return {"Preference-Applied": f"wait={wait.asked}"}
