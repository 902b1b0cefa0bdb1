"""The job-control scenarios (issue 10): cancel latency, and listing with many jobs kept.

- **cancel**: a worker process keeps ``hold`` jobs running; the producer (another process)
  cancels them one at a time through the library's own API: ours ``endpoints.cancel`` (the
  store marks the job Canceled and pushes its id over pub/sub to the worker running it),
  SAQ ``Job.abort`` (the worker polls for aborted jobs every second). The figure is the
  time from the cancel call to the handler seeing its ``CancelledError`` in the worker,
  both read on CLOCK_MONOTONIC (one clock for every process on the machine).
- **listing**: ours alone, in this process, on the store's public API: ``list_jobs(limit=50)``
  and ``queue_stats`` timed with 10,000 and then with ``listing_jobs`` (1,000,000)
  finished jobs retained, so that the cost's growth with the number of jobs shows as a
  ratio measured in one run.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ._envs import Library
from ._procs import WorkerProcess, produce
from ._queues import Plan
from ._redis import Server
from ._report import Target
from ._stats import latency_ms, median

CANCEL_LIBRARIES = ("ours", "saq")
LISTING_PREFIX = "bench-listing"
FILL_BATCH = 1_000  # jobs per store call of the fill (submissions of one event-loop turn)
FILL_TASKS = 4  # fill batches under way at once


def cancel(server: Server, library: Library, plan: Plan) -> dict[str, Any]:
    """Cancel running jobs in a separate worker process, one at a time."""
    server.flush()
    events = Path(tempfile.mkdtemp(prefix="bench-cancel-")) / "events"
    worker = WorkerProcess(
        library, server.url, concurrency=plan.concurrency, BENCH_EVENTS=str(events)
    )
    try:
        args = (
            f"--samples={plan.cancel_samples}",
            f"--budget={plan.cancel_budget}",
            f"--pool={plan.cancel_pool}",
            f"--settle={plan.cancel_settle}",
        )
        out = produce(
            library,
            server.url,
            "cancel",
            *args,
            timeout=plan.cancel_budget + 180,
            BENCH_EVENTS=str(events),
        )
    finally:
        worker.stop()
    return {
        "cancel": latency_ms(out["cancel"]),
        "call": latency_ms(out["call"]),
        "missed": out["missed"],
    }


def listing(server: Server, plan: Plan) -> dict[str, Any]:
    """``list_jobs`` and ``queue_stats`` with 10,000, then ``plan.listing_jobs``, finished
    jobs retained (plus ``plan.listing_queued`` queued ones)."""
    server.flush()
    return asyncio.run(_listing(server, plan))


async def _listing(server: Server, plan: Plan) -> dict[str, Any]:
    from async_endpoints import JobStatus
    from async_endpoints_redis import RedisJobStore

    store = RedisJobStore(server.url, prefix=LISTING_PREFIX)
    await store.start()
    found: dict[str, Any] = {"sizes": []}
    try:
        kept = 0
        for size in (plan.listing_small, plan.listing_jobs):
            began = time.monotonic()
            await _fill_finished(store, size - kept)
            kept = size
            if not found["sizes"]:
                await _fill_queued(store, plan.listing_queued)
            fill = time.monotonic() - began
            memory = server.snapshot().used_memory
            figures: dict[str, Any] = {"fill_seconds": fill, "used_memory": memory}
            queries: dict[str, Callable[[], Awaitable[Any]]] = {
                "list_all": lambda: store.list_jobs(limit=50),
                "list_completed": lambda: store.list_jobs(status=JobStatus.COMPLETED, limit=50),
                "list_queued": lambda: store.list_jobs(status=JobStatus.QUEUED, limit=50),
                "queue_stats": lambda: store.queue_stats(("default",)),
            }
            page = await store.list_jobs(status=JobStatus.COMPLETED, limit=50)
            queries["list_completed_page_2"] = lambda cursor=page.next_cursor: store.list_jobs(
                status=JobStatus.COMPLETED, limit=50, cursor=cursor
            )
            for name, query in queries.items():
                figures[name] = await _timed(server, query, plan.listing_samples)
            stats = (await store.queue_stats(("default",)))[0]
            figures["stats"] = {"queued": stats.queued, "completed": stats.completed}
            found["sizes"].append(size)
            found[str(size)] = figures
    finally:
        await store.aclose()
    return found


async def _timed(
    server: Server, query: Callable[[], Awaitable[Any]], samples: int
) -> dict[str, float]:
    """Latency of ``query`` as the caller sees it (p50/p95/p99 ms), and the time Redis
    spent in its script per call (``redis_us``, from commandstats)."""
    for _ in range(5):  # warm-up: connections, script loads
        await query()
    seconds = []
    calls, usec = server.script_time()
    for _ in range(samples):
        began = time.perf_counter()
        await query()
        seconds.append(time.perf_counter() - began)
    calls_after, usec_after = server.script_time()
    inside = (usec_after - usec) / max(1, calls_after - calls)
    return {**latency_ms(seconds), "redis_us": inside}


async def _fill_finished(store: Any, count: int) -> None:
    """``count`` Completed jobs through the store's public API: submissions, claims and
    completions of one event-loop turn share a script call (FILL_BATCH jobs per turn), and
    FILL_TASKS batches are under way at once."""
    from async_endpoints import JobRequest, NewJob

    body = JobRequest(body='{"i":0}')
    batches = iter(range(0, count, FILL_BATCH))

    async def filler() -> None:
        for offset in batches:
            batch = min(FILL_BATCH, count - offset)
            jobs = [NewJob(uuid.uuid4(), "noop", 3, body) for _ in range(batch)]
            await asyncio.gather(*(store.enqueue(job) for job in jobs))
            claims = await store.claim(batch, lease=300.0)
            await asyncio.gather(*(store.complete(claim, 0.0) for claim in claims))

    await asyncio.gather(*(filler() for _ in range(FILL_TASKS)))


async def _fill_queued(store: Any, count: int) -> None:
    from async_endpoints import JobRequest, NewJob

    for offset in range(0, count, FILL_BATCH):
        batch = min(FILL_BATCH, count - offset)
        body = JobRequest(body='{"i":0}')
        jobs = [NewJob(uuid.uuid4(), "noop", 3, body) for _ in range(batch)]
        await asyncio.gather(*(store.enqueue(job) for job in jobs))


def summary(runs: dict[str, Any], baseline: str | None) -> tuple[list[str], list[Target]]:
    """The lines that show the issue-10 figures of this run, and its targets judged on
    them (medians of the repeats; ratios between figures of the same run)."""
    lines: list[str] = []
    goals: list[Target] = []
    drain = runs.get("drain", {})
    if baseline and "ours" in drain and baseline in drain:
        now, then = _median(drain["ours"], "drain"), _median(drain[baseline], "drain")
        ratio = _paired(drain["ours"], drain[baseline], "drain")
        lines.append(
            f"drain, ours / {baseline} (same run): medians {now:,.0f} / {then:,.0f} jobs/s "
            f"= {now / then:.1%}; median of the repeats' ratios {ratio:.1%}"
        )
        goals.append(Target(f"drain >= 95 % of {baseline}", f"{ratio:.1%}", ratio >= 0.95))
        base_memory = _median(drain[baseline], "memory_queued")
        base_trips = _median(drain[baseline], "round_trips_enqueue") + _median(
            drain[baseline], "round_trips_drain"
        )
        lines.append(
            f"{baseline}: {base_trips:.3f} round trips per job; {base_memory:.0f} B per queued job"
        )
    if "ours" in drain:
        trips = _median(drain["ours"], "round_trips_enqueue") + _median(
            drain["ours"], "round_trips_drain"
        )
        memory = _median(drain["ours"], "memory_queued")
        lines.append(f"drain path: {trips:.3f} round trips per job; {memory:.0f} B per queued job")
        goals.append(Target("<= 0.2 round trips per job", f"{trips:.3f}", trips <= 0.2))
    queues = runs.get("queues", {})
    if "ours" in queues and "ours+3queues" in queues:
        one, three = _median(queues["ours"], "drain"), _median(queues["ours+3queues"], "drain")
        ratio = _paired(queues["ours+3queues"], queues["ours"], "drain")
        lines.append(
            f"drain, three queues each holding jobs / one queue: medians {three:,.0f} / "
            f"{one:,.0f} jobs/s = {three / one:.1%}; median of the repeats' ratios {ratio:.1%}"
        )
        goals.append(
            Target("three-queue drain >= 95 % of one queue", f"{ratio:.1%}", ratio >= 0.95)
        )
    for library, repeats in runs.get("cancel", {}).items():
        p50 = _median(repeats, "cancel", "p50")
        p99 = _median(repeats, "cancel", "p99")
        call = _median(repeats, "call", "p50")
        samples = sum(run["cancel"]["n"] for run in repeats)
        missed = sum(run["missed"] for run in repeats)
        lines.append(
            f"cancel of a running job in a worker process, {library}: call -> handler sees "
            f"CancelledError p50 {p50:.2f} ms, p99 {p99:.2f} ms (the call itself p50 "
            f"{call:.2f} ms; {samples} samples, {missed} not seen within 10 s)"
        )
        if library == "ours":
            goals.append(Target("cancel p50 <= 5 ms", f"{p50:.2f} ms", p50 <= 5))
            goals.append(Target("cancel p99 <= 20 ms", f"{p99:.2f} ms", p99 <= 20))
    listing = runs.get("listing")
    if listing:
        lines += _listing_lines(listing)
        small, large = (listing[str(size)] for size in listing["sizes"])
        size = listing["sizes"][-1]
        worst = max(large[name]["p50"] for name in _LIST_QUERIES)
        goals.append(
            Target(f"list_jobs(limit=50) with {size:,} kept <= 5 ms", f"{worst:.2f} ms", worst <= 5)
        )
        ratio = large["queue_stats"]["p50"] / small["queue_stats"]["p50"]
        goals.append(
            Target(
                "queue_stats independent of the jobs kept (p50 ratio <= 1.25)",
                f"{ratio:.2f}",
                ratio <= 1.25,
            )
        )
    return lines, goals


_LIST_QUERIES = ("list_all", "list_completed", "list_completed_page_2", "list_queued")


def _listing_lines(listing: dict[str, Any]) -> list[str]:
    lines = [
        "listing on Redis with N finished jobs kept: p50 / p99 [ms] as the caller sees it, "
        "and the time inside Redis per call [us]:"
    ]
    sizes = listing["sizes"]
    lines.append(f"  {'':24}" + "".join(f"{f'N = {size:,}':>28}" for size in sizes))
    for name in (*_LIST_QUERIES, "queue_stats"):
        cells = "".join(
            f"{fig['p50']:>10.2f} /{fig['p99']:>6.2f} ms{fig.get('redis_us', 0):>7.0f} us"
            for fig in (listing[str(size)][name] for size in sizes)
        )
        lines.append(f"  {name:24}{cells}")
    return lines


def _paired(first: list[dict[str, Any]], second: list[dict[str, Any]], key: str) -> float:
    """The median of ``first[k][key] / second[k][key]`` over the repeats k: the two ran
    next to each other in every repeat (libraries interleaved), so each ratio compares
    runs under the same load of the machine."""
    ratios = [a[key] / b[key] for a, b in zip(first, second, strict=False) if b[key]]
    return float(median(ratios) or 0.0)


def _median(repeats: list[dict[str, Any]], *path: str) -> float:
    values = []
    for run in repeats:
        value: Any = run
        for key in path:
            value = value[key]
        values.append(float(value))
    return float(median(values) or 0.0)
