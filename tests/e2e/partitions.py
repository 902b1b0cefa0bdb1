"""Reading and checking the attempts that tests.apps.partition_app records: when each
attempt of each job ran, in which process, for which key and tenant."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import httpx
import redis.asyncio as redis

from tests.faults.harness import wait_for

from .processes import Proc

APP = "tests.apps.partition_app"


@dataclass(frozen=True)
class Attempt:
    """One run of a handler: ``began`` and ``ended`` are CLOCK_MONOTONIC seconds;
    ``ended`` is None when the process died before the handler ended."""

    pid: int
    job_id: str
    attempt: int
    key: str | None
    tenant: str | None
    began: float
    ended: float | None

    def end(self, cut: Mapping[int, float]) -> float:
        """When it stopped running: its end, or the moment its process was killed."""
        if self.ended is not None:
            return self.ended
        assert self.pid in cut, f"{self} never ended, and its process was not killed"
        return cut[self.pid]


def _parse(entry: str) -> tuple[tuple[int, str, int], float, str | None, str | None]:
    pid, at, job_id, attempt, key, tenant = entry.split(" ")
    return (int(pid), job_id, int(attempt)), float(at), _label(key), _label(tenant)


def _label(text: str) -> str | None:
    return None if text == "-" else text


async def attempts(records: redis.Redis, prefix: str) -> list[Attempt]:
    """Every attempt begun, in the order they began."""
    ended = {
        ident: at
        for ident, at, _, _ in map(_parse, await records.lrange(f"{prefix}-test:ended", 0, -1))
    }
    found = []
    for ident, at, key, tenant in map(_parse, await records.lrange(f"{prefix}-test:begun", 0, -1)):
        pid, job_id, attempt = ident
        found.append(Attempt(pid, job_id, attempt, key, tenant, at, ended.get(ident)))
    return sorted(found, key=lambda run: run.began)


def by_key(runs: Iterable[Attempt]) -> dict[str, list[Attempt]]:
    """The attempts of each partition key, in the order they began."""
    keyed: dict[str, list[Attempt]] = defaultdict(list)
    for run in sorted(runs, key=lambda run: run.began):
        if run.key is not None:
            keyed[run.key].append(run)
    return dict(keyed)


def overlaps(runs: list[Attempt], cut: Mapping[int, float] = {}) -> list[tuple[Attempt, Attempt]]:
    """The pairs of attempts in ``runs`` (one key's, in the order they began) where one
    began before an earlier one had stopped; ``cut`` gives the kill time of dead
    processes (pid -> monotonic seconds)."""
    found = []
    for index, run in enumerate(runs):
        found += [(earlier, run) for earlier in runs[:index] if run.began < earlier.end(cut)]
    return found


def job_order(runs: Iterable[Attempt]) -> list[str]:
    """The jobs in the order their attempts ran, each once: all of a job's attempts must
    come before the next job's, else a job shows twice."""
    order: list[str] = []
    for run in runs:
        if not order or order[-1] != run.job_id:
            order.append(run.job_id)
    return order


def most_at_once(runs: Iterable[Attempt], cut: Mapping[int, float] = {}) -> int:
    """The most attempts running at one moment."""
    edges = sorted(
        [(run.began, 1) for run in runs] + [(run.end(cut), -1) for run in runs],
        key=lambda edge: (edge[0], edge[1]),
    )
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


async def mentions(records: redis.Redis, prefix: str, labels: Iterable[str]) -> list[str]:
    """Where the store still names any of ``labels`` outside the jobs' own records: in a
    key's name, a hash's field, or a member of a list, set or sorted set (each found as
    ``"<key> <where>"``). Once a partition key's jobs are done, nothing should be left."""
    wanted = tuple(labels)
    found = []
    async for raw in records.scan_iter(match=f"{{{prefix}}}:*", count=1000):
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        if ":job:" in name:
            continue
        kind = await records.type(name)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "hash":
            parts = list(await records.hkeys(name))
        elif kind == "list":
            parts = list(await records.lrange(name, 0, -1))
        elif kind == "set":
            parts = list(await records.smembers(name))
        elif kind == "zset":
            parts = list(await records.zrange(name, 0, -1))
        else:
            parts = []
        for part in [name, *parts]:
            text = part.decode(errors="replace") if isinstance(part, bytes) else str(part)
            if any(label in text for label in wanted):
                found.append(f"{name} {text}")
    return found


async def wait_idle(client: httpx.AsyncClient, api: Proc, timeout: float) -> float:
    """Wait until no job of any queue is Queued, Scheduled or InProgress (the store's own
    counts, which include the jobs waiting behind their key); the seconds it took."""

    async def idle() -> bool:
        response = await client.get(f"{api.url}/admin/stats")
        assert response.status_code == 200, response.text
        counts = response.json().values()
        return sum(c["queued"] + c["scheduled"] + c["in_progress"] for c in counts) == 0

    return await wait_for(idle, timeout, "every job terminal", every=0.1)
