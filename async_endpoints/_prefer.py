"""The ``Prefer: wait=N`` request preference (RFC 7240): how long a client will wait."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import NamedTuple

from starlette.requests import Request

# A preference's value: N, a whole or decimal number of seconds, bare or quoted.
_SECONDS = re.compile(r'([0-9]+(?:\.[0-9]+)?)|"([0-9]+(?:\.[0-9]+)?)"')
# The pieces of a Prefer header: a quoted string (escapes kept), a separator, or a run
# of anything else.
_PIECE = re.compile(r'"(?:[^"\\]|\\.)*"?|[,;]|[^",;]+')


class Wait(NamedTuple):
    """A ``Prefer: wait=N`` the request carries."""

    #: N, as the client wrote it (what ``Preference-Applied`` echoes).
    asked: str
    #: How long to wait: N capped at the ``max_wait`` setting.
    seconds: float


def preferred_wait(request: Request, max_wait: float) -> Wait | None:
    """The ``Prefer: wait=N`` the request carries (N, and N capped at ``max_wait``); None
    when it asks for none, or the value is malformed or negative (ignored, never an
    error), or ``max_wait`` is 0.

    Preferences are separated by commas, over any number of ``Prefer`` headers, and a
    comma inside another preference's quoted value separates nothing. As RFC 7240 says,
    only the first ``wait`` counts: a later one neither replaces nor mends it.
    """
    if max_wait <= 0:
        return None
    for name, value in _preferences(request.headers.getlist("prefer")):
        if name.lower() != "wait":
            continue
        match = _SECONDS.fullmatch(value)
        if match is None:
            return None
        asked = match[1] or match[2]
        # A number too long for a float reads as infinity: capped all the same (and not
        # honoured when nothing caps it: an unbounded max_wait).
        seconds = min(float(asked), max_wait)
        return Wait(asked, seconds) if math.isfinite(seconds) else None
    return None


def _preferences(headers: list[str]) -> Iterator[tuple[str, str]]:
    """Each preference's name and value (stripped, quotes kept; "" when it has none), in
    the order written; its parameters after ``;`` are skipped."""
    for header in headers:
        head: list[str] = []  # the preference's "name=value" so far
        in_parameters = False
        for piece in [*_PIECE.findall(header), ","]:
            if piece == ",":
                if head:
                    name, _, value = "".join(head).partition("=")
                    yield name.strip(), value.strip()
                head, in_parameters = [], False
            elif piece == ";":
                in_parameters = True
            elif not in_parameters:
                head.append(piece)


def applied(wait: Wait) -> dict[str, str]:
    """The ``Preference-Applied`` header for ``wait``: ``wait=N`` with the client's N (as
    API.md has it; the wait itself was at most ``max_wait``)."""
    return {"Preference-Applied": f"wait={wait.asked}"}
