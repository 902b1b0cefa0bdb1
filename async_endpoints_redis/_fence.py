"""The fence of a submission: Redis stores nothing for a call its caller gave up on.

A call waits in Redis while the server stalls (frozen, ``CLIENT PAUSE``, a long script,
a fork) and is carried out when the stall ends, maybe long after `Connection.run` told
its caller the store was unavailable (503). A submission carried out then would store a
job its client was told was not stored, and the client's retry would make it run twice.
So every call made under `Connection.run` knows when its caller gives up (`give_up_at`,
set there), and a submission passes the elapsed-clock reading of that moment, less the
time a reply takes back (`REPLY_MARGIN`), to its script, which stores nothing when it is
carried out later than that by the store's estimate of real time (``too_late`` in
``lua/_lib.lua``) and answers ``{'late', clock}``. Such a call changed nothing, so it is
sent again (with a fresh reading) while its caller waits: a refusal that reaches its
caller in time was a reading that trailed the clock (a host resumed from a suspension,
whose monotonic clock stood still) or a step of the Redis host's wall clock, and its
resend is stored as usual.

A reply still on its way back when its caller gives up (slower than `REPLY_MARGIN`: a
caller frozen itself, a congested network) stays ambiguous, as in every client-server
system; an ``Idempotency-Key`` makes the retry safe then.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
from typing import Any

#: The event-loop time at which the caller of the current `Connection.run` gives up.
give_up_at: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "async_endpoints_redis_give_up_at", default=None
)
#: How long a reply may take back to its caller (seconds): a submission carried out later
#: than its caller's give-up moment less this is refused (at most half the time left).
REPLY_MARGIN = 1.0
#: The pause before a refused submission is sent again (seconds), doubled after each
#: refusal up to `LATE_PAUSE_MAX`.
LATE_PAUSE = 0.05
LATE_PAUSE_MAX = 0.25


def time_left() -> float:
    """Seconds until the caller of the current `Connection.run` gives up (infinite
    outside one)."""
    moment = give_up_at.get()
    if moment is None:
        return math.inf
    return moment - asyncio.get_running_loop().time()


def fence(reading: int) -> int:
    """The elapsed-clock reading (ms) past which the current call must store nothing,
    given this process's ``reading`` now; 0 (no fence) outside `Connection.run` or before
    the process has read the clock."""
    left = time_left()
    if math.isinf(left) or reading <= 0:
        return 0
    budget = left - min(REPLY_MARGIN, left / 2)
    return reading + max(1, int(budget * 1000))


def late_clock(reply: Any) -> int | None:
    """The clock a ``{'late', clock}`` reply carries (the call stored nothing), else
    None."""
    if isinstance(reply, list) and len(reply) == 2 and reply[0] in (b"late", "late"):
        return int(reply[1])
    return None
