"""The job-queue scenarios, each run for one library on the shared Redis (flushed first).

Every scenario returns one repeat's figures as a dict; the driver repeats and takes
medians. Throughputs are jobs per second; latencies are in milliseconds; memory in bytes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._envs import Library
from ._procs import WorkerProcess, produce
from ._redis import SCRIPT_CALLS, Monitor, Server
from ._stats import latency_ms


@dataclass(frozen=True)
class Plan:
    """Sizes of one run (``--quick`` shrinks them)."""

    repeats: int = 3
    sequential_jobs: int = 2_000
    drain_jobs: int = 10_000
    concurrency: int = 100
    pickup_samples: int = 200
    pickup_budget: float = 10.0  # seconds per library and repeat (pollers take ~0.5 s/job)
    monitor_jobs: int = 500
    backlog_small: int = 10_000
    backlog_large: int = 1_000_000
    backlog_skip: int = 1_000  # jobs a backlog run lets start before the clock starts
    backlog_timed: int = 5_000  # jobs timed per backlog run
    http_seconds: float = 4.0
    http_connections: int = 50
    embedded_seconds: float = 10.0  # seconds per load in the embedded scenarios
    retained_jobs: int = 200_000  # finished jobs the tail-latency server holds
    cancel_samples: int = 200  # cancels timed per library and repeat (at most)
    cancel_budget: float = 20.0  # seconds per library and repeat (SAQ takes ~0.5 s each)
    cancel_pool: int = 64  # hold jobs kept running in the worker (20 cancels/s x ~2 s)
    cancel_settle: float = 1.05  # seconds a hold job runs before it is cancelled
    listing_small: int = 10_000  # finished jobs retained, first reading
    listing_jobs: int = 1_000_000  # finished jobs retained, second reading
    listing_queued: int = 1_000  # queued jobs beside them
    listing_samples: int = 200  # calls timed per query
    one_key_jobs: int = 2_000  # jobs on a single partition key
    fairness_backlog: int = 100_000  # tenant A's jobs queued ahead of tenant B's


QUICK = Plan(
    repeats=1,
    sequential_jobs=500,
    drain_jobs=2_000,
    pickup_samples=50,
    pickup_budget=4.0,
    monitor_jobs=200,
    backlog_large=100_000,
    backlog_skip=500,
    backlog_timed=3_000,
    http_seconds=2.0,
    embedded_seconds=3.0,
    retained_jobs=50_000,
    cancel_samples=50,
    cancel_budget=8.0,
    listing_jobs=100_000,
    one_key_jobs=500,
    fairness_backlog=20_000,
)


def enqueue_sequential(server: Server, library: Library, plan: Plan) -> dict[str, Any]:
    """One producer, one submission at a time."""
    server.flush()
    jobs = plan.sequential_jobs
    out = produce(library, server.url, "enqueue", f"--jobs={jobs}", timeout=300)
    return {"enqueue_sequential": jobs / out["seconds"]}


def drain(
    server: Server,
    library: Library,
    plan: Plan,
    probe: Callable[[Server], Any] | None = None,
) -> dict[str, Any]:
    """Queue ``drain_jobs`` no-op jobs (100 concurrent submissions, timed), then drain them
    with one worker process of concurrency 100, timed from the first handler start to the
    last. Memory and commands are read around each phase; every job must run once.
    ``probe(server)``, when given, looks at Redis once the jobs are queued and once they
    are drained (``probe_queued``, ``probe_drained``)."""
    server.flush()
    jobs = plan.drain_jobs
    empty = server.snapshot()
    args = (f"--jobs={jobs}", f"--concurrency={plan.concurrency}")
    queued_in = produce(library, server.url, "enqueue", *args, timeout=600)["seconds"]
    queued = server.snapshot()
    probed = {} if probe is None else {"probe_queued": probe(server)}
    worker = WorkerProcess(library, server.url, concurrency=plan.concurrency, expect=jobs)
    try:
        report = worker.wait_for_jobs(jobs, timeout=60 + jobs / 50)
        time.sleep(1.0)  # the last settlements land
    finally:
        last_report = worker.stop()
    final = last_report or report
    drained = server.snapshot()
    if probe is not None:
        probed["probe_drained"] = probe(server)
    enqueue_calls = queued.calls_since(empty)
    drain_calls = drained.calls_since(queued)
    return {
        "enqueue_concurrent": jobs / queued_in,
        "drain": (jobs - 1) / (report["last"] - report["first"]),
        "ran": final.get("started"),
        "duplicates": final.get("duplicates"),
        "missing": final.get("missing"),
        "exactly_once": final.get("started") == jobs
        and final.get("duplicates") == 0
        and final.get("missing") == 0
        and final.get("unexpected") == 0,
        "memory_queued": (queued.used_memory - empty.used_memory) / jobs,
        "memory_finished": (drained.used_memory - empty.used_memory) / jobs,
        "commands_enqueue": sum(enqueue_calls.values()) / jobs,
        "commands_drain": sum(drain_calls.values()) / jobs,
        "redis_cpu_us_enqueue": (queued.cpu_seconds - empty.cpu_seconds) / jobs * 1e6,
        "redis_cpu_us_drain": (drained.cpu_seconds - queued.cpu_seconds) / jobs * 1e6,
        "round_trips_enqueue": (queued.reads - empty.reads) / jobs,
        "round_trips_drain": (drained.reads - queued.reads) / jobs,
        "calls_enqueue": enqueue_calls,
        "calls_drain": drain_calls,
        **{f"after_drain_{key}": value for key, value in server.key_expiry().items()},
        **probed,
    }


def commands(server: Server, library: Library, plan: Plan) -> dict[str, Any]:
    """The drain path under MONITOR (untimed): top-level commands and script calls per
    job, and the commands run inside scripts, counted apart."""
    server.flush()
    jobs = plan.monitor_jobs
    monitor = Monitor(server.port)
    try:
        args = (f"--jobs={jobs}", f"--concurrency={plan.concurrency}")
        produce(library, server.url, "enqueue", *args, timeout=300)
        worker = WorkerProcess(library, server.url, concurrency=plan.concurrency, expect=jobs)
        try:
            worker.wait_for_jobs(jobs, timeout=120)
            time.sleep(1.0)
        finally:
            worker.stop()
    finally:
        monitor.stop()
    top, inside = monitor.top, monitor.inside
    return {
        "top_level": sum(top.values()) / jobs,
        "script_calls": sum(n for name, n in top.items() if name in SCRIPT_CALLS) / jobs,
        "inside_scripts": sum(inside.values()) / jobs,
        "top_level_by_command": {name: n / jobs for name, n in top.most_common()},
        "inside_by_command": {name: n / jobs for name, n in inside.most_common()},
    }


def pickup(server: Server, library: Library, plan: Plan) -> dict[str, Any]:
    """An idle worker process, one job at a time: submit -> handler start, and submit ->
    result in the caller's hands through the library's own result API."""
    server.flush()
    worker = WorkerProcess(library, server.url, concurrency=plan.concurrency)
    try:
        args = (f"--samples={plan.pickup_samples}", f"--budget={plan.pickup_budget}")
        out = produce(library, server.url, "pickup", *args, timeout=plan.pickup_budget + 120)
    finally:
        worker.stop()
    return {"pickup": latency_ms(out["pickup"]), "result": latency_ms(out["result"])}


def fill_backlog(url: str, library: Library, jobs: int) -> float:
    """Queue ``jobs`` jobs with the library's bulk path; return the seconds it took."""
    out = produce(library, url, "bulk", f"--jobs={jobs}", timeout=900)
    seconds: float = out["seconds"]
    return seconds


def backlog_drain(url: str, library: Library, plan: Plan) -> float:
    """Start a worker on whatever is queued; jobs/s over ``backlog_timed`` jobs, timed
    once ``backlog_skip`` jobs have started (the worker's own start-up left out)."""
    skip, timed = plan.backlog_skip, plan.backlog_timed
    worker = WorkerProcess(
        library, url, concurrency=plan.concurrency, expect=skip + timed, skip=skip
    )
    try:
        report = worker.wait_for_jobs(skip + timed, timeout=60 + (skip + timed) / 50)
    finally:
        worker.stop()
    rate: float = (timed - 1) / (report["last"] - report["first"])
    return rate
