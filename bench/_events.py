"""Job event streams (issue 13): what 2,000 open streams cost one uvicorn process, and how
soon a status change reaches every stream of its job.

A uvicorn process (``bench/events_app.py``, its worker pool inside) holds one job in a
paused queue; this process opens ``STREAMS`` raw HTTP connections to
``GET /jobs/{id}/events`` (asyncio protocols that only note when bytes arrive, so the
client adds little), waits for every first event, and reads the server's resident memory
before and after: the difference over the streams is the memory per stream (goal <= 50
KiB). Then it resumes the queue: the job becomes InProgress and, 0.2 s later, Completed;
each stream's delay is the time its status event arrived minus the job's
``lastUpdatedAt`` (the server's clock at the change, ms; same machine), over both changes
and every stream (goal: p99 <= 50 ms). Three variants: every stream on one job, the
streams spread over `SPREAD` jobs (in-memory store), and every stream on one job on
Redis (the change then travels through the store's subscription).

    .venv/bin/python -m bench --only events
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from ._driver import log
from ._queues import Plan
from ._redis import Server
from ._report import Target
from ._stats import latency_ms

STREAMS = 2000
SPREAD = 100  # jobs the streams are spread over in the second variant (20 streams each)
ROOT = Path(__file__).resolve().parent.parent


class _Stream(asyncio.Protocol):
    """One raw event stream: the bytes and when each chunk came."""

    def __init__(self) -> None:
        self.chunks: list[tuple[float, bytes]] = []
        self.first = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.chunks.append((time.time(), data))
        if not self.first.done() and b"event: status" in data:
            self.first.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def delays(self) -> list[tuple[str, float]]:
        """Seconds from each status change (after the first event) to its arrival, with
        the status."""
        found: list[tuple[str, float]] = []
        for arrived, data in self.chunks:
            for block in data.decode(errors="replace").split("\r\n\r\n"):
                if "event: status" not in block or "data: " not in block:
                    continue
                job = json.loads(block.split("data: ", 1)[1].split("\r\n", 1)[0])
                if job["status"] in ("InProgress", "Completed"):
                    changed = datetime.fromisoformat(job["lastUpdatedAt"].rstrip("Z") + "+00:00")
                    found.append((job["status"], arrived - changed.timestamp()))
        return found


def run(server: Server, plan: Plan, store: str = "memory") -> dict[str, Any]:
    """Memory per open stream and status-change delays, on ``store``: every stream on one
    job (one change reaches them all at once), and the streams spread over `SPREAD` jobs."""
    streams = STREAMS if plan.repeats > 1 else 500
    found: dict[str, Any] = {"store": store}
    variants = (("one_job", 1, store), ("spread", SPREAD, store), ("redis_one_job", 1, "redis"))
    for name, jobs, kind in variants:
        server.flush()
        url = server.url if kind == "redis" else None
        found[name] = figures = _measure(url, streams, jobs) | {"store": kind}
        log(
            f"events ({kind}, {streams} streams on {jobs} job(s)): "
            f"{figures['kib_per_stream']:.1f} KiB per stream; status change to its streams "
            f"p50 {figures['delay']['p50']:.1f} ms, p99 {figures['delay']['p99']:.1f} ms"
        )
    server.flush()
    return found


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _measure(redis_url: str | None, streams: int, jobs: int = 1) -> dict[str, Any]:
    """Serve the events app in a uvicorn process of its own and measure it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, streams + 1000)), hard))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")}
    if redis_url:
        env["BENCH_REDIS_URL"] = redis_url
    command = [sys.executable, "-m", "uvicorn", "bench.events_app:app", "--port", str(port)]
    command += ["--log-level", "warning", "--backlog", str(streams + 100)]
    child = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        return asyncio.run(_against(child.pid, port, streams, jobs))
    finally:
        child.terminate()
        child.wait(timeout=30)


async def _against(pid: int, port: int, streams: int, jobs: int) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for _ in range(300):
            try:
                await http.post("/bench/pause")
                break
            except httpx.TransportError:
                await asyncio.sleep(0.1)
        ids = [(await http.post("/steps")).json()["id"] for _ in range(jobs)]
        requests = [f"GET /jobs/{i}/events HTTP/1.1\r\nHost: bench\r\n\r\n".encode() for i in ids]
        loop = asyncio.get_running_loop()
        # One stream first, so that what every stream shares is paid before the reading.
        opened = [await _open(loop, port, requests[0])]
        await asyncio.sleep(0.5)
        before = _rss_kib(pid)
        for first in range(1, streams, 100):
            count = min(100, streams - first)
            batch = [_open(loop, port, requests[(first + n) % jobs]) for n in range(count)]
            opened += await asyncio.gather(*batch)
        await asyncio.gather(*(stream.first for stream in opened))
        await asyncio.sleep(0.5)
        after = _rss_kib(pid)
        await http.post("/bench/resume")
        async with asyncio.timeout(60):
            await asyncio.gather(*(stream.closed for stream in opened))
    found = [delay for stream in opened for delay in stream.delays()]
    delays = [delay for _, delay in found]
    by_status = {
        status: latency_ms([delay for seen, delay in found if seen == status])
        for status in ("InProgress", "Completed")
    }
    return {
        "streams": streams,
        "jobs": jobs,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_stream": (after - before) / max(1, streams - 1),
        "delay": latency_ms(delays) | {"max": max(delays) * 1e3},
        "by_status": by_status,
    }


async def _open(loop: asyncio.AbstractEventLoop, port: int, request: bytes) -> _Stream:
    transport, stream = await loop.create_connection(_Stream, "127.0.0.1", port)
    transport.write(request)
    await stream.first
    return stream


def summary(found: dict[str, Any]) -> tuple[list[str], list[Target]]:
    """The lines that show the figures, and the issue's two targets judged on them (on
    the variant where every stream watches one job: the most a change must reach)."""
    if not found:
        return [], []
    lines = []
    for name in ("one_job", "spread", "redis_one_job"):
        if name not in found:
            continue
        fig, delay = found[name], found[name]["delay"]
        lines.append(
            f"{fig['streams']} open streams on {fig['jobs']} job(s), one uvicorn process "
            f"({fig['store']} store): {fig['kib_per_stream']:.1f} KiB per stream; a status "
            f"change reaches its job's streams p50 {delay['p50']:.1f} ms, p99 "
            f"{delay['p99']:.1f} ms, max {delay['max']:.1f} ms"
        )
    one = found["one_job"]
    goals = [
        Target(
            name="event streams: memory per open stream <= 50 KiB",
            measured=f"{one['kib_per_stream']:.1f} KiB",
            met=one["kib_per_stream"] <= 50,
        ),
        Target(
            name="event streams: a status change reaches all streams of its job, p99 <= 50 ms",
            measured=f"p99 {one['delay']['p99']:.1f} ms ({one['streams']} streams on one job)",
            met=one["delay"]["p99"] <= 50,
        ),
    ]
    return lines, goals
