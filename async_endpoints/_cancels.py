"""`CancelledClaims`: the claims whose cancel came before the claim itself.

A running job's cancel is pushed to the workers on a connection of its own (a Redis
channel; the in-memory store's listeners): it can reach a worker before the answer of
the claim it cancels, or before an idle worker's hand-over has started its job. Both the
Redis store (dropping such claims from a claim's answer) and the worker pool (not
starting them: `async_endpoints._slots`) keep the pushes they could not match yet here.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict

from ._store import Claim


class CancelledClaims:
    """Claims cancelled lately, by token and job, as the pushes named them.

    A claim counts as cancelled when a push named its token *and* its job: a token may be
    made again for another job (a Redis claim call resent after its answer was lost).
    Pushes are kept `KEEP_FOR` seconds (a claim's answer slower than a third of its lease
    has its claims renewed before they start, which finds them cancelled: see
    `async_endpoints._claimer`), and at most `MOST` of them (every process hears of every
    running job's cancel, those that never claim too): older ones are forgotten as new
    ones come, in the order they came (an `OrderedDict`, whose oldest entry is taken off
    in constant time).
    """

    KEEP_FOR = 60.0
    MOST = 10_000

    def __init__(self) -> None:
        self._seen: OrderedDict[str, tuple[uuid.UUID, float]] = OrderedDict()

    def add(self, job_id: uuid.UUID, token: str) -> None:
        """Remember job ``job_id``'s claim ``token`` as cancelled."""
        now = time.monotonic()
        self._forget_before(now - self.KEEP_FOR)
        while len(self._seen) >= self.MOST:
            self._seen.popitem(last=False)
        self._seen.pop(token, None)  # last in the order of arrival
        self._seen[token] = (job_id, now)

    def __len__(self) -> int:
        """How many pushes are remembered."""
        return len(self._seen)

    def named(self, claim: Claim) -> bool:
        """Whether a push within `KEEP_FOR` seconds cancelled ``claim``."""
        seen = self._seen.get(claim.token)
        return (
            seen is not None
            and seen[0] == claim.job.id
            and seen[1] >= time.monotonic() - self.KEEP_FOR
        )

    def live(self, claims: list[Claim]) -> tuple[list[Claim], list[Claim]]:
        """``claims`` without those cancelled already (`named`), and those."""
        if not self._seen:
            return claims, []
        live: list[Claim] = []
        cancelled: list[Claim] = []
        for claim in claims:
            (cancelled if self.named(claim) else live).append(claim)
        return live, cancelled

    def _forget_before(self, moment: float) -> None:
        while self._seen:
            _, (_, seen) = next(iter(self._seen.items()))
            if seen >= moment:
                return
            self._seen.popitem(last=False)
