"""The fence of a submission: Redis stores nothing for a call its caller gave up on.

A call waits in Redis while the server stalls (frozen, ``CLIENT PAUSE``, a long script,
a fork) and is carried out when the stall ends, maybe long after `Connection.run` told
its caller the store was unavailable (503). A submission carried out then would store a
job its client was told was not stored, and the client's retry would make it run twice.
So every call made under `Connection.run` knows when its caller gives up (`give_up`,
set there), and a submission passes the elapsed-clock reading of that moment, less the
time a reply takes back (`REPLY_MARGIN`), to its script, which stores nothing when it is
carried out later than that by the store's estimate of real time (``too_late`` in
``lua/_lib.lua``) and answers ``{'late', clock}``. Such a call changed nothing, so it is
sent again (with a fresh reading) while its caller waits: a refusal that reaches its
caller in time was a reading that trailed the clock (a host resumed from a suspension,
whose monotonic clock stood still) or a step of the Redis host's wall clock, and its
resend is stored as usual. A call is sent only while more than that margin is left (a
resend with less could be stored and answered too late for a caller busy with a burst).
The client also gives up on each send after its ``socket_timeout`` and sends the command
again on a fresh connection (with the same fence, so that copy, sent after it, stores
nothing): a send's fence is counted from the send as well.

A reply still on its way back when its caller gives up (slower than `REPLY_MARGIN`: a
caller frozen itself, a congested network) stays ambiguous, as in every client-server
system; an ``Idempotency-Key`` makes the retry safe then.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class GiveUp:
    """When the caller of the current `Connection.run` gives up on it.

    Attributes:
        at: The event-loop time it gives up.
        each: How long the client waits for the reply to one send (its
            ``socket_timeout``; infinite without one): it gives up on that send then,
            and sends the command again (redis-py's retry), so a send's fence is counted
            from it too.
        margin: The time a reply is allowed on its way back (seconds): `REPLY_MARGIN`, or
            half the shorter of the call's deadline and ``each``.
    """

    at: float
    each: float
    margin: float


#: The give-up of the current `Connection.run` (None outside one).
give_up: contextvars.ContextVar[GiveUp | None] = contextvars.ContextVar(
    "async_endpoints_redis_give_up", default=None
)
#: How long a reply may take back to its caller (seconds): a submission carried out later
#: than its caller's give-up moment less this is refused.
REPLY_MARGIN = 1.0
#: The pause before a refused submission is sent again (seconds), doubled after each
#: refusal up to `LATE_PAUSE_MAX`.
LATE_PAUSE = 0.05
LATE_PAUSE_MAX = 0.25


def giving_up(at: float, deadline: float, each: float) -> GiveUp:
    """The `GiveUp` of a call whose caller gives up at loop time ``at``, ``deadline``
    seconds after it began, and on each send after ``each`` seconds."""
    return GiveUp(at, each, min(REPLY_MARGIN, min(deadline, each) / 2))


def budget() -> float:
    """Seconds a call sent now may wait in Redis and still be answered before its caller
    gives up on it, or on this send of it (its reply allowed the margin on its way back);
    infinite outside `Connection.run`."""
    current = give_up.get()
    if current is None:
        return math.inf
    left = current.at - asyncio.get_running_loop().time()
    return min(left, current.each) - current.margin


def fence(reading: int, seconds: float) -> int:
    """The elapsed-clock reading (ms) past which a call sent now, with ``seconds`` of
    `budget`, must store nothing, given this process's ``reading``; 0 (no fence) outside
    `Connection.run` or before the process has read the clock."""
    if math.isinf(seconds) or reading <= 0:
        return 0
    return reading + max(1, int(seconds * 1000))


def late_clock(reply: Any) -> int | None:
    """The clock a ``{'late', clock}`` reply carries (the call stored nothing), else
    None."""
    if isinstance(reply, list) and len(reply) == 2 and reply[0] in (b"late", "late"):
        return int(reply[1])
    return None
