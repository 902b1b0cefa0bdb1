"""The embedded scenarios: one uvicorn process serving HTTP and running the worker pool on
the in-memory store, every setting at its default (``bench/embedded_app.py``).

- **fair share**: wrk loads our async POST; the jobs the pool ran per second during that
  load, against the bare route's requests/s in the same server (goal: >= 60 %).
- **tail latency**: the same server holding N finished jobs (preloaded, with
  ``max_retained=N``): our POST's p99 against the bare route's p99 (goal: <= 1.5x).

Before every load the driver waits until the pool has emptied the queue, so one run's
backlog never slows the next, and the two routes take turns at going first.
"""

from __future__ import annotations

import time
from typing import Any

from ._http import ROUTES, Load, Uvicorn
from ._stats import median

APP = "bench.embedded_app:app"
FAIR_SHARE_GOAL = 0.60
TAIL_GOAL = 1.5


def fair_share(connections: int, seconds: float, repeats: int) -> dict[str, Any]:
    """Jobs run per second under saturating load vs the bare route's requests/s."""
    app = Uvicorn("memory", True, "", app=APP)
    try:
        return {"repeats": _repeats(app, Load(connections, seconds), repeats)}
    finally:
        app.stop()


def tail_latency(connections: int, seconds: float, repeats: int, jobs: int) -> dict[str, Any]:
    """Our POST's p99 vs the bare route's with ``jobs`` finished jobs retained."""
    app = Uvicorn("memory", True, "", app=APP, extra_env={"BENCH_MAX_RETAINED": str(jobs)})
    try:
        empty = app.call("GET", "/bench/stats")
        began = time.monotonic()
        app.call("POST", f"/bench/preload?jobs={jobs}&port={app.port}", timeout=900)
        loaded = app.call("GET", "/bench/stats")
        found: dict[str, Any] = {
            "retained": jobs,
            "preload_seconds": time.monotonic() - began,
            "rss_per_job": (loaded["rss_bytes"] - empty["rss_bytes"]) / jobs,
        }
        found["repeats"] = _repeats(app, Load(connections, seconds), repeats)
        found["rss_bytes_at_end"] = app.call("GET", "/bench/stats")["rss_bytes"]
        return found
    finally:
        app.stop()


def _repeats(app: Uvicorn, load: Load, repeats: int) -> list[dict[str, Any]]:
    warm_up = Load(load.connections, 1.0)
    for path in ROUTES.values():
        _wait_idle(app)
        warm_up.run(app.port, path)
    runs = []
    for repeat in range(repeats):
        routes = list(ROUTES) if repeat % 2 == 0 else list(ROUTES)[::-1]
        run = {route: _one_load(app, load, route) for route in routes}
        run["fair_share"] = run["ours"]["jobs_per_s"] / run["bare"]["rps"]
        run["p99_ratio"] = run["ours"]["p99_ms"] / run["bare"]["p99_ms"]
        runs.append(run)
        print(f"[embedded] #{repeat + 1}: {brief(run)}", flush=True)
    return runs


def _one_load(app: Uvicorn, load: Load, route: str) -> dict[str, Any]:
    """One wrk run, with the jobs the pool ran meanwhile and the full GC passes it took."""
    _wait_idle(app)
    before = app.call("GET", "/bench/stats")
    began = time.monotonic()
    figures = load.run(app.port, ROUTES[route])
    seconds = time.monotonic() - began
    after = app.call("GET", "/bench/stats")
    figures["jobs_per_s"] = (after["ran"] - before["ran"]) / seconds
    figures["full_gcs"] = after["gc_collections"][2] - before["gc_collections"][2]
    figures["gc_ms"] = [
        (later - earlier) * 1e3
        for earlier, later in zip(before["gc_seconds"], after["gc_seconds"], strict=True)
    ]
    figures["gc_longest_ms"] = [seconds * 1e3 for seconds in after["gc_longest_since_last_read"]]
    return figures


def _wait_idle(app: Uvicorn, timeout: float = 600.0) -> None:
    """Until the pool has run every queued job (a previous load's backlog)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = app.call("GET", "/bench/stats")
        if stats["waiting"] == 0 and stats["running"] == 0:
            return
        time.sleep(0.2)
    raise TimeoutError("the pool did not empty its queue")


def brief(run: dict[str, Any]) -> str:
    bare, ours = run["bare"], run["ours"]
    return (
        f"bare {bare['rps']:,.0f} req/s p99 {bare['p99_ms']:.1f} ms | ours {ours['rps']:,.0f} "
        f"req/s (not 202: {ours['other_status']}) p99 {ours['p99_ms']:.1f} ms, pool "
        f"{ours['jobs_per_s']:,.0f} jobs/s, {ours['full_gcs']} full GCs (longest "
        f"{ours['gc_longest_ms'][2]:.0f} ms) | fair share "
        f"{run['fair_share']:.2f}, p99 ours/bare {run['p99_ratio']:.2f}"
    )


def summary(found: dict[str, Any]) -> dict[str, Any]:
    """Medians over the repeats of each figure (ratios: the median of per-repeat ratios)."""
    runs = found["repeats"]

    def med(route: str, key: str) -> float | None:
        return median(run[route][key] for run in runs)

    figures = {
        f"{route}_{key}": med(route, key)
        for route in ROUTES
        for key in ("rps", "p50_ms", "p99_ms", "other_status", "jobs_per_s", "full_gcs")
    }
    figures["fair_share"] = median(run["fair_share"] for run in runs)
    figures["p99_ratio"] = median(run["p99_ratio"] for run in runs)
    figures["ours_refused_share"] = median(
        run["ours"]["other_status"] / max(1, run["ours"]["requests"]) for run in runs
    )
    return {key: value for key, value in found.items() if key != "repeats"} | figures


def table(embedded: dict[str, dict[str, Any]]) -> str:
    """The two rows: fair share (jobs/s vs bare req/s) and p99 with retained jobs."""
    lines = []
    if (fair := embedded.get("fair_share")) is not None:
        lines.append(
            f"fair share: bare {fair['bare_rps']:,.0f} req/s; our POST {fair['ours_rps']:,.0f}"
            f" req/s ({fair['ours_refused_share']:.0%} not 202); pool ran "
            f"{fair['ours_jobs_per_s']:,.0f} jobs/s = {fair['fair_share']:.2f} of bare "
            f"(goal >= {FAIR_SHARE_GOAL:.2f})"
        )
    if (tail := embedded.get("tail_latency")) is not None:
        lines.append(
            f"tail latency, {tail['retained']:,} finished jobs retained "
            f"({tail['rss_per_job']:,.0f} bytes RSS each): p99 bare {tail['bare_p99_ms']:.1f}"
            f" ms, our POST {tail['ours_p99_ms']:.1f} ms = {tail['p99_ratio']:.2f}x "
            f"(goal <= {TAIL_GOAL}x); full GCs per run {tail['ours_full_gcs']:.0f}; "
            f"pool {tail['ours_jobs_per_s']:,.0f} jobs/s, "
            f"{tail['ours_refused_share']:.0%} not 202"
        )
    return "\n".join(lines)


def targets(embedded: dict[str, dict[str, Any]]) -> list[tuple[str, str, bool]]:
    """(goal, measured, met) for each row that ran."""
    found = []
    if (fair := embedded.get("fair_share")) is not None:
        ratio = fair["fair_share"]
        name = f"embedded pool jobs/s >= {FAIR_SHARE_GOAL:.0%} of bare req/s"
        found.append((name, f"{ratio:.0%}", ratio >= FAIR_SHARE_GOAL))
    if (tail := embedded.get("tail_latency")) is not None:
        ratio = tail["p99_ratio"]
        name = f"POST p99 <= {TAIL_GOAL}x bare with {tail['retained']:,} jobs retained"
        found.append((name, f"{ratio:.2f}x", ratio <= TAIL_GOAL))
    return found
