"""Running the scenarios: repeats with the libraries interleaved, and progress lines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from . import _control, _embedded, _http, _queues, inprocess
from ._envs import Library
from ._queues import Plan
from ._redis import Server
from ._stats import latency_ms, median

BULK_LIBRARIES = ("ours", "streaq")  # with a bulk path to queue 1,000,000 jobs quickly


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def repeated(
    name: str,
    scenario: Callable[[Server, Library, Plan], dict[str, Any]],
    server: Server,
    libraries: list[Library],
    plan: Plan,
) -> dict[str, list[dict[str, Any]]]:
    """``scenario`` for every library, ``plan.repeats`` times, libraries interleaved and
    their order rotated so that no library always runs first."""
    runs: dict[str, list[dict[str, Any]]] = {lib.name: [] for lib in libraries}
    for repeat in range(plan.repeats):
        shift = repeat % len(libraries)
        for library in libraries[shift:] + libraries[:shift]:
            began = time.monotonic()
            try:
                run = scenario(server, library, plan)
            except Exception as exc:  # one library failing must not sink the run
                log(f"{name} {library.name} #{repeat + 1}: FAILED: {exc}")
                continue
            runs[library.name].append(run)
            took = time.monotonic() - began
            log(f"{name} {library.name} #{repeat + 1}: {brief(run)} ({took:.1f} s)")
    return {lib: reps for lib, reps in runs.items() if reps}


def brief(run: dict[str, Any]) -> str:
    """A one-line summary of one repeat's figures."""
    parts = []
    for key, value in run.items():
        if isinstance(value, float):
            parts.append(f"{key}={value:,.2f}")
        elif isinstance(value, dict) and "p50" in value:
            parts.append(f"{key} p50={value['p50']:.2f}ms p99={value['p99']:.2f}ms n={value['n']}")
        elif isinstance(value, bool | int):
            parts.append(f"{key}={value}")
    return " ".join(parts)


def backlog(server: Server, libraries: list[Library], plan: Plan) -> dict[str, Any]:
    """Drain rate with a small and a large backlog, for the libraries with a bulk path
    (arq, SAQ and taskiq queue one job per round trip: 1,000,000 would take minutes).

    The large backlog is queued once, in database 1; the small one in database 0, again
    for every repeat. Each repeat drains ``backlog_timed`` jobs from each, alternating
    which goes first, so that drift in the machine's load hits both alike.
    """
    found: dict[str, Any] = {}
    small_url, large_url = server.url_for(0), server.url_for(1)
    for library in (lib for lib in libraries if lib.name in BULK_LIBRARIES):
        name, small, large = library.name, plan.backlog_small, plan.backlog_large
        entry: dict[str, Any] = {"sizes": [small, large], "small": [], "large": []}
        server.flush()
        empty = server.snapshot()
        entry["fill_seconds"] = _queues.fill_backlog(large_url, library, large)
        entry["memory_queued_large"] = (server.snapshot().used_memory - empty.used_memory) / large
        log(f"backlog {name}: {large:,} queued in {entry['fill_seconds']:.1f} s")
        for repeat in range(plan.repeats):
            server.flush(0)
            _queues.fill_backlog(small_url, library, small)
            runs = [("small", small_url), ("large", large_url)]
            for size, url in runs if repeat % 2 == 0 else runs[::-1]:
                entry[size].append(_queues.backlog_drain(url, library, plan))
                queued = small if size == "small" else large
                log(f"backlog {name} {queued:,} #{repeat + 1}: {entry[size][-1]:,.0f} jobs/s")
        found[name] = entry
        server.flush()
    return found


def http(server: Server, plan: Plan) -> dict[str, Any]:
    """Both routes under load in every configuration (one uvicorn process each)."""
    load = _http.Load(plan.http_connections, plan.http_seconds)
    warm_up = _http.Load(plan.http_connections, 1.0)
    found: dict[str, Any] = {}
    for label, store, workers in _http.CONFIGS:
        server.flush()
        app = _http.Uvicorn(store, workers, server.url)
        routes: dict[str, list[dict[str, Any]]] = {route: [] for route in _http.ROUTES}
        try:
            for path in _http.ROUTES.values():
                warm_up.run(app.port, path)
            for repeat in range(plan.repeats):
                for route, path in _http.ROUTES.items():
                    fig = load.run(app.port, path)
                    routes[route].append(fig)
                    log(
                        f"http {label} {route} #{repeat + 1}: {fig['rps']:,.0f} req/s "
                        f"p50 {fig['p50_ms']:.2f} ms p99 {fig['p99_ms']:.2f} ms "
                        f"(not 202: {fig['other_status']})"
                    )
        finally:
            app.stop()
        found[label] = routes
    return found


def in_process(plan: Plan) -> dict[str, Any]:
    """Ours on the in-memory store, producer and pool in one process (bench.inprocess)."""
    pickups, results = asyncio.run(inprocess.pickup(max(plan.pickup_samples, 200)))
    rates = [asyncio.run(inprocess.drain_rate(plan.drain_jobs)) for _ in range(plan.repeats)]
    found = {"pickup": latency_ms(pickups), "result": latency_ms(results), "drain": median(rates)}
    log(f"in-process, in-memory store: {brief(found)}")
    return found


def embedded(plan: Plan) -> dict[str, Any]:
    """The embedded scenarios (bench/_embedded.py): fair share, then tail latency."""
    args = (plan.http_connections, plan.embedded_seconds, plan.repeats)
    log("embedded, fair share: in-memory store, default settings")
    found = {"fair_share": _embedded.fair_share(*args)}
    log(f"embedded, tail latency: {plan.retained_jobs:,} finished jobs retained")
    found["tail_latency"] = _embedded.tail_latency(*args, plan.retained_jobs)
    return found


def listing(server: Server, plan: Plan) -> dict[str, Any]:
    """list_jobs and queue_stats with few and with many finished jobs kept (bench/_control)."""
    found = _control.listing(server, plan)
    for size in found["sizes"]:
        fig = found[str(size)]
        log(
            f"listing, {size:,} finished jobs kept (filled in {fig['fill_seconds']:.1f} s): "
            + " ".join(
                f"{name} p50={fig[name]['p50']:.2f}ms p99={fig[name]['p99']:.2f}ms"
                for name in ("list_all", "list_completed", "list_queued", "queue_stats")
            )
        )
    server.flush()
    return found
