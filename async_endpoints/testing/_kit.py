"""`StoreKit`: what the shipped contract suite needs to know about a store under test."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

from .._job import Job
from .._store import JobStore


@dataclass(frozen=True, slots=True)
class StoreKit:
    """A fresh, empty, started store and the means to let its clock move.

    Attributes:
        store: The store under test, started, holding no jobs.
        advance: ``await advance(seconds)`` lets that much time pass on the store's clock:
            `ManualClock.advance` for a store on a `ManualClock`, `asyncio.sleep` for a
            store whose clock is a server's.
        lease: Seconds of a claim's lease, and the unit of the suite's delays: short
            enough to wait out a few times per test on a real clock, long enough for a
            few round trips to the store (1 s suits a local server).
        retention: The retention (seconds) the store was made with; the suite lets it
            pass to check that finished jobs are dropped, and otherwise reads finished
            jobs back well within it. Keep it short on a real clock (1 s).
        peer: A second store on the same data, as another process opens it (another
            client of the same server and key prefix), for the promises made across
            processes (cancel listeners, pause). None for a store that lives in one
            process: the suite uses ``store`` as its own peer.
        order_group: The unit within which the store keeps claim orders (oldest first,
            strict queue priority, tenant turns, a key's lane): None, the whole store;
            for a sharded store, ``order_group(job)`` gives the shard the job was placed
            in (any hashable; jobs of one group compare equal). The suite then checks
            each order within each group, and that claims still take every due job of
            every group. It is asked about the jobs of the order tests only: plain jobs,
            jobs with a partition key or a tenant, in one or more queues.
    """

    store: JobStore
    advance: Callable[[float], Awaitable[None]]
    lease: float
    retention: float
    peer: JobStore | None = None
    order_group: Callable[[Job], Hashable] | None = None

    @property
    def other(self) -> JobStore:
        """The peer, or the store itself when the kit has none."""
        return self.store if self.peer is None else self.peer
