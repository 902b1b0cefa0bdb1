"""Which CPUs a scenario's processes may run on.

On a machine of few cores the benchmark's own processes compete for them: a worker
process draining jobs and three busy ``redis-server`` masters are four runnable processes
on two cores here, and the scheduler then runs a master on the worker's core now and then
(the worker's CPU per job rose 9-15 % with 3 masters busy against 1, with the same
instructions per job under cachegrind). `Placement` keeps the servers on one CPU and the
client processes on the others, so that both sides get the same CPUs whatever the number
of servers busy, as they would on machines of their own.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

#: The CPUs this process may run on (and so the benchmark's processes).
ALL = frozenset(os.sched_getaffinity(0))


@dataclass(frozen=True)
class Placement:
    """The CPUs of the client processes (producer, worker) and of the Redis servers."""

    clients: frozenset[int]
    servers: frozenset[int]

    @classmethod
    def split(cls) -> Placement:
        """The servers on the last CPU, the clients on the others (everything anywhere
        on a machine of one CPU)."""
        if len(ALL) < 2:
            return cls.anywhere()
        last = max(ALL)
        return cls(clients=ALL - {last}, servers=frozenset({last}))

    @classmethod
    def anywhere(cls) -> Placement:
        """Every process on every CPU: the scheduler decides."""
        return cls(clients=ALL, servers=ALL)

    @property
    def pinned(self) -> bool:
        return self.clients != ALL or self.servers != ALL

    def wrap(self) -> list[str]:
        """The command prefix that starts a client process on its CPUs (``taskset``)."""
        if self.clients == ALL:
            return []
        return ["taskset", "--cpu-list", ",".join(str(cpu) for cpu in sorted(self.clients))]

    def place_servers(self, pids: list[int]) -> None:
        """Move every thread of each server process to the servers' CPUs."""
        for pid in pids:
            pin(pid, self.servers)


def pin(pid: int, cpus: frozenset[int]) -> None:
    """Let every thread of process ``pid`` run only on ``cpus``."""
    with contextlib.suppress(FileNotFoundError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(int(tid), cpus)
