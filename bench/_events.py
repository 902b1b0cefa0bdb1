"""Job event streams (issue 13): what 2,000 open streams cost one uvicorn process, and how
soon a status change reaches every stream of its job.

A uvicorn process (``bench/events_app.py``, its worker pool inside; asyncio's own event
loop) holds one job in a paused queue; a client process of its own
(``bench/_events_client.py``: a bare epoll loop, one ``recv`` and one clock read per ready
socket) opens ``STREAMS`` raw HTTP connections to ``GET /jobs/{id}/events`` and waits for
every first event, and this process reads the server's resident memory before and after:
the difference over the streams is the memory per stream (goal <= 50 KiB). Then it
resumes the queue: the job becomes InProgress and, 0.2 s later, Completed; each stream's
delay is the time its status event arrived in the client's socket (the kernel's receive
timestamp, so the client's own scheduling is not measured) minus the job's
``lastUpdatedAt`` (the server's clock at the change in the store, truncated to the
millisecond; same machine, both the realtime clock), over both changes and every stream
(goal: p99 <= 50 ms). The delay to the client's ``recv`` is shown too.

Variants: every stream on one job, ``repeats`` times, with uvicorn's pure-Python HTTP
(h11) and, when the ``httptools`` package is installed, with its httptools parser (what
``uvicorn[standard]`` installs); the streams spread over `SPREAD` jobs; every stream on one
job on Redis (the change then travels through the store's subscription). The machine's
load average is noted with each run: on a busy 2-core machine the figures move a lot, and
the server's pass over the streams of each change is shown in CPU time too (what it costs
with a core of its own). ``BENCH_EVENTS_FIFO=1`` gives the server and the client that core
(real-time scheduling; see `FIFO`).

    .venv/bin/python -m bench --only events
    BENCH_EVENTS_FIFO=1 .venv/bin/python -m bench --only events
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import os
import resource
import socket
import statistics
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
#: ``BENCH_EVENTS_FIFO=1`` runs the server and the client processes under ``chrt -f 5``
#: (real-time scheduling, root only): each gets a core whenever it has work, as on a
#: machine of its own, whatever else loads this one. Off by default; stated in the output.
FIFO = os.environ.get("BENCH_EVENTS_FIFO") == "1"


def _scheduled(command: list[str]) -> list[str]:
    return ["chrt", "-f", "5", *command] if FIFO else command


def http_implementations() -> list[str]:
    """uvicorn's HTTP implementations to measure: h11 always, httptools when installed."""
    found = ["h11"]
    if importlib.util.find_spec("httptools") is not None:
        found.append("httptools")
    return found


def run(server: Server, plan: Plan, store: str = "memory") -> dict[str, Any]:
    """Memory per open stream and status-change delays: every stream on one job (one
    change reaches them all at once; ``plan.repeats`` runs per HTTP implementation), the
    streams spread over `SPREAD` jobs, and every stream on one job on Redis."""
    streams = STREAMS if plan.repeats > 1 else 500
    found: dict[str, Any] = {"store": store}
    variants = [(f"one_job_{http}", 1, store, http) for http in http_implementations()]
    variants += [("spread", SPREAD, store, "h11"), ("redis_one_job", 1, "redis", "h11")]
    for name, jobs, kind, http in variants:
        repeats = max(1, plan.repeats) if name.startswith("one_job") else 1
        runs = []
        for _ in range(repeats):
            server.flush()
            url = server.url if kind == "redis" else None
            figures = _measure(url, streams, jobs, http) | {"store": kind}
            runs.append(figures)
            log(
                f"events ({kind}, uvicorn {http}{_fifo(figures)}, {streams} streams on {jobs} "
                "job(s), load "
                f"{figures['load']:.1f}): {figures['kib_per_stream']:.1f} KiB per stream; "
                f"status change to its streams p50 {figures['delay']['p50']:.1f} ms, "
                f"p99 {figures['delay']['p99']:.1f} ms (to the client's read: p99 "
                f"{figures['delay_to_read']['p99']:.1f} ms); the pass over the streams "
                + ", ".join(f"{f['cpu']:.1f}/{f['wall']:.1f}" for f in figures["fanout_ms"][:2])
                + " ms CPU/wall"
            )
        found[name] = {"runs": runs, "store": kind, "http": http, "streams": streams}
        found[name]["scheduling"] = "SCHED_FIFO" if FIFO else "default"
        found[name] |= {"jobs": jobs} | _medians(runs)
    server.flush()
    return found


def _medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median over the runs of each figure the summary shows."""
    return {
        "kib_per_stream": statistics.median(r["kib_per_stream"] for r in runs),
        "delay": {
            key: statistics.median(r["delay"][key] for r in runs)
            for key in ("p50", "p95", "p99", "max")
        },
        "p99_runs": [round(r["delay"]["p99"], 1) for r in runs],
        "read_p99": statistics.median(r["delay_to_read"]["p99"] for r in runs),
        "fanout_cpu_ms": statistics.median(
            max((f["cpu"] for f in r["fanout_ms"]), default=math.nan) for r in runs
        ),
        "fanout_wall_ms": statistics.median(
            max((f["wall"] for f in r["fanout_ms"]), default=math.nan) for r in runs
        ),
    }


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _measure(
    redis_url: str | None, streams: int, jobs: int = 1, http: str = "h11"
) -> dict[str, Any]:
    """Serve the events app in a uvicorn process of its own (HTTP implementation ``http``,
    asyncio's event loop) and measure it."""
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
    command += ["--http", http, "--loop", "asyncio"]
    child = subprocess.Popen(_scheduled(command), cwd=ROOT, env=env)
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
            *_scheduled(command), cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE
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
            passes = (await http.get("/bench/fanout")).json()
        finally:
            if client.returncode is None:
                client.kill()
            await client.wait()
    found = [(status, delay) for stream in report["delays"] for status, delay, _ in stream]
    delays = [delay for _, delay in found]
    reads = [read for stream in report["delays"] for _, _, read in stream]
    by_status = {
        status: latency_ms([delay for seen, delay in found if seen == status])
        for status in ("InProgress", "Completed")
    }
    return {
        "streams": streams,
        "jobs": jobs,
        "left_open": report["open"],
        "load": os.getloadavg()[0],
        "scheduling": "SCHED_FIFO" if FIFO else "default",
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_stream": (after - before) / max(1, streams - 1),
        "delay": latency_ms(delays) | {"max": max(delays) * 1e3},
        "delay_to_read": latency_ms(reads) | {"max": max(reads) * 1e3},
        # each status change's pass over its streams: wall and CPU ms (one job: the largest)
        "fanout_ms": [
            {"status": p["status"], "wall": p["wall"] * 1e3, "cpu": p["cpu"] * 1e3}
            for p in passes
            if p["status"] != "progress" and p["streams"] == max(q["streams"] for q in passes)
        ],
        "by_status": by_status,
    }


async def _expect(lines: asyncio.StreamReader, word: str) -> None:
    async with asyncio.timeout(120):
        line = (await lines.readline()).decode().strip()
    if line != word:
        raise RuntimeError(f"the events client said {line!r}, not {word!r}")


def summary(found: dict[str, Any]) -> tuple[list[str], list[Target]]:
    """The lines that show the figures (medians over the runs), and the issue's two
    targets judged on them, on every stream watching one job (the most a change must
    reach), for each HTTP implementation measured."""
    if not found:
        return [], []
    lines, goals = [], []
    for name, fig in found.items():
        if not isinstance(fig, dict) or "delay" not in fig:
            continue
        delay, runs = fig["delay"], fig["p99_runs"]
        each = f" (p99 of the {len(runs)} runs: {runs})" if len(runs) > 1 else ""
        lines.append(
            f"{fig['streams']} open streams on {fig['jobs']} job(s), one uvicorn process "
            f"({fig['store']} store, HTTP {fig['http']}{_fifo(fig)}): "
            f"{fig['kib_per_stream']:.1f} KiB "
            f"per stream; a status change reaches its job's streams p50 {delay['p50']:.1f} "
            f"ms, p95 {delay['p95']:.1f} ms, p99 {delay['p99']:.1f} ms, max "
            f"{delay['max']:.1f} ms{each}; to the client's read p99 {fig['read_p99']:.1f} ms"
        )
        if fig["jobs"] == 1:
            lines.append(
                f"  the server's pass over the {fig['streams']} streams of one change (the "
                f"larger of its two changes, median of the runs): {fig['fanout_cpu_ms']:.1f} ms "
                f"of CPU, {fig['fanout_wall_ms']:.1f} ms on the wall clock (the rest: waiting "
                "for a core)"
            )
        if not name.startswith("one_job"):
            continue
        goals.append(
            Target(
                name="event streams: memory per open stream <= 50 KiB "
                f"(HTTP {fig['http']}{_fifo(fig)})",
                measured=f"{fig['kib_per_stream']:.1f} KiB",
                met=fig["kib_per_stream"] <= 50,
            )
        )
        goals.append(
            Target(
                name="event streams: a status change reaches all streams of its job, p99 "
                f"<= 50 ms (HTTP {fig['http']}{_fifo(fig)})",
                measured=f"p99 {delay['p99']:.1f} ms ({fig['streams']} streams on one job, "
                f"median of {len(runs)} runs)",
                met=delay["p99"] <= 50,
            )
        )
    return lines, goals


def _fifo(fig: dict[str, Any]) -> str:
    return ", server and client SCHED_FIFO" if fig.get("scheduling") == "SCHED_FIFO" else ""
