"""What a message about unknown keyword names says: each name, with the known one it most
likely misspells (``max_retry``: did you mean ``max_retries``?) or a hint of its own."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping


def unknown_names(
    what: str, unknown: Iterable[str], known: Iterable[str], hints: Mapping[str, str] | None = None
) -> str:
    """``unknown <what>: a (did you mean b?), c``: the ``unknown`` names in order, each
    with its hint from ``hints``, else the closest of ``known`` when one is close."""
    choices = sorted(known)
    named = []
    for name in sorted(unknown):
        hint = (hints or {}).get(name)
        if hint is None:
            close = difflib.get_close_matches(name, choices, n=1)
            hint = f"did you mean {close[0]}?" if close else None
        named.append(name if hint is None else f"{name} ({hint})")
    return f"unknown {what}: {', '.join(named)}"
