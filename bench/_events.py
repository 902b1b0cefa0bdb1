"""Job event streams (issue 13): what 2,000 open streams cost one uvicorn process, and how
soon a status change reaches every stream of its job.

A uvicorn process (``bench/events_app.py``, its worker pool inside, in-memory store, or
Redis with ``--events-store redis``) holds one job in a paused queue; this process opens
``STREAMS`` raw HTTP connections to ``GET /jobs/{id}/events`` (asyncio protocols that only
note when bytes arrive, so the client adds little), waits for every first event, and reads
the server's resident memory before and after: the difference over the streams is the
memory per stream (goal <= 50 KiB). Then it resumes the queue: the job becomes InProgress
and, 0.2 s later, Completed; each stream's delay is the time its status event arrived
minus the job's ``lastUpdatedAt`` (the server's wall clock at the change, ms; same
machine), over both changes and every stream (goal: p99 <= 50 ms).

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

    def delays(self) -> list[float]:
        """Seconds from each status change (after the first event) to its arrival."""
        found: list[float] = []
        for arrived, data in self.chunks:
            for block in data.decode(errors="replace").split("\r\n\r\n"):
                if "event: status" not in block or "data: " not in block:
                    continue
                job = json.loads(block.split("data: ", 1)[1].split("\r\n", 1)[0])
                if job["status"] in ("InProgress", "Completed"):
                    changed = datetime.fromisoformat(job["lastUpdatedAt"].rstrip("Z") + "+00:00")
                    found.append(arrived - changed.timestamp())
        return found


def run(server: Server, plan: Plan, store: str = "memory") -> dict[str, Any]:
    """Memory per open stream and status-change delays, on ``store``."""
    server.flush()
    streams = STREAMS if plan.repeats > 1 else 500
    found = asyncio.run(_measure(server.url if store == "redis" else None, streams))
    server.flush()
    log(
        f"events ({store}): {streams} streams, {found['kib_per_stream']:.1f} KiB per stream; "
        f"status change to every stream p50 {found['delay']['p50']:.1f} ms, "
        f"p99 {found['delay']['p99']:.1f} ms"
    )
    return found | {"store": store}


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def _measure(redis_url: str | None, streams: int) -> dict[str, Any]:
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
        return await _against(child.pid, port, streams)
    finally:
        child.terminate()
        child.wait(timeout=30)


async def _against(pid: int, port: int, streams: int) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for _ in range(300):
            try:
                await http.post("/bench/pause")
                break
            except httpx.TransportError:
                await asyncio.sleep(0.1)
        job_id = (await http.post("/steps")).json()["id"]
        loop = asyncio.get_running_loop()
        request = f"GET /jobs/{job_id}/events HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
        # One stream first, so that what every stream shares is paid before the reading.
        opened: list[_Stream] = []
        for _ in range(1):
            opened.append(await _open(loop, port, request))
        await asyncio.sleep(0.5)
        before = _rss_kib(pid)
        for first in range(1, streams, 100):
            batch = [_open(loop, port, request) for _ in range(min(100, streams - first))]
            opened += await asyncio.gather(*batch)
        await asyncio.gather(*(stream.first for stream in opened))
        await asyncio.sleep(0.5)
        after = _rss_kib(pid)
        await http.post("/bench/resume")
        async with asyncio.timeout(60):
            await asyncio.gather(*(stream.closed for stream in opened))
    delays = [delay for stream in opened for delay in stream.delays()]
    return {
        "streams": streams,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_stream": (after - before) / max(1, streams - 1),
        "delay": latency_ms(delays) | {"max": max(delays) * 1e3},
    }


async def _open(loop: asyncio.AbstractEventLoop, port: int, request: bytes) -> _Stream:
    transport, stream = await loop.create_connection(_Stream, "127.0.0.1", port)
    transport.write(request)
    await stream.first
    return stream


def summary(found: dict[str, Any]) -> tuple[list[str], list[Target]]:
    """The lines that show the figures, and the issue's two targets judged on them."""
    if not found:
        return [], []
    delay = found["delay"]
    lines = [
        f"{found['streams']} open event streams in one uvicorn process ({found['store']} "
        f"store): {found['kib_per_stream']:.1f} KiB per stream",
        f"a status change reaches every stream of its job: p50 {delay['p50']:.1f} ms, "
        f"p99 {delay['p99']:.1f} ms, max {delay['max']:.1f} ms",
    ]
    goals = [
        Target(
            name="event streams: memory per open stream <= 50 KiB",
            measured=f"{found['kib_per_stream']:.1f} KiB",
            met=found["kib_per_stream"] <= 50,
        ),
        Target(
            name="event streams: a status change reaches all streams of its job, p99 <= 50 ms",
            measured=f"p99 {delay['p99']:.1f} ms",
            met=delay["p99"] <= 50,
        ),
    ]
    return lines, goals
