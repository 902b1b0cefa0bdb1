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
        command = [sys.executable, "-m", "bench._events_client", str(port), str(streams), *ids]
        client = await asyncio.create_subprocess_exec(
            *command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert client.stdin is not None and client.stdout is not None
        try:
            # One stream first, so that what every stream shares is paid before the reading.
            await _expect(client.stdout, "one")
            await asyncio.sleep(0.5)
            before = _rss_kib(pid)
            client.stdin.write(b"more\n")
            await _expect(client.stdout, "all")
            await asyncio.sleep(0.5)
            after = _rss_kib(pid)
            await http.post("/bench/resume")
            async with asyncio.timeout(90):
                report = json.loads(await client.stdout.read())
        finally:
            if client.returncode is None:
                client.kill()
            await client.wait()
    found = [(status, delay) for stream in report["delays"] for status, delay in stream]
    delays = [delay for _, delay in found]
    by_status = {
        status: latency_ms([delay for seen, delay in found if seen == status])
        for status in ("InProgress", "Completed")
    }
    return {
        "streams": streams,
        "jobs": jobs,
        "left_open": report["open"],
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_stream": (after - before) / max(1, streams - 1),
        "delay": latency_ms(delays) | {"max": max(delays) * 1e3},
        "by_status": by_status,
    }


async def _expect(lines: asyncio.StreamReader, word: str) -> None:
    async with asyncio.timeout(120):
        line = (await lines.readline()).decode().strip()
    if line != word:
        raise RuntimeError(f"the events client said {line!r}, not {word!r}")


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
