"""What a run prints (the tables and the targets) and the JSON file it writes."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from . import (
    _control,
    _embedded,
    _events,
    _observability,
    _partitions,
    _prefer,
    _report,
    _schedules,
    _shards,
)

RESULTS = Path(__file__).resolve().parent / "results"


def print_and_save(
    runs: dict[str, Any], meta: dict[str, Any], libraries: list[str], output: Path | None
) -> Path:
    """Print the tables and the targets; write everything to ``output`` (or
    bench/results/bench-<time>.json) and return its path."""
    plan = meta["plan"]
    rows = _report.queue_rows(runs)
    if runs.get("backlog"):
        rows += _report.backlog_rows(runs["backlog"])
    if rows:
        print()
        print(
            f"async-endpoints vs peers: {meta['cpus']} CPUs, Redis {meta['redis']}, "
            f"Python {meta['python']}, median of {plan['repeats']} repeat(s)"
        )
        print(_report.table(rows, libraries))
    http = _report.http_summary(runs.get("http", {}))
    if http:
        print()
        print(
            f"HTTP: one uvicorn process ({meta['http_protocol']}, asyncio loop); load from "
            f"{meta['http_load']}, {plan['http_connections']} connections, "
            f"{plan['http_seconds']:g} s per run"
        )
        print(_report.http_table(http))
    if fig := runs.get("inprocess"):
        print()
        print(
            f"in-memory store, producer and pool in one process: drain {fig['drain']:,.0f} "
            f"jobs/s; pickup p50 {fig['pickup']['p50']:.3f} ms, p99 {fig['pickup']['p99']:.3f}"
            f" ms; result p50 {fig['result']['p50']:.3f} ms, p99 {fig['result']['p99']:.3f} ms"
        )
    embedded = {name: _embedded.summary(found) for name, found in runs.get("embedded", {}).items()}
    if embedded:
        print()
        print(
            f"embedded workers: one uvicorn process, in-memory store, default settings; "
            f"{plan['http_connections']} connections, {plan['embedded_seconds']:g} s per run"
        )
        print(_embedded.table(embedded))
    control, control_goals = _control.summary(runs, meta.get("baseline"))
    _section("job control (issue 10):", control)
    partitions, partition_goals = _partitions.summary(runs.get("partitions", {}))
    _section("partition keys and tenants (issue 11):", partitions)
    schedules, schedule_goals = _schedules.summary(runs.get("schedules", {}))
    _section("cron schedules (issue 12):", schedules)
    observability, observability_goals = _observability.summary(runs.get("observability", {}))
    _section("observability (issue 14):", observability)
    prefer, prefer_goals = _prefer.summary(runs.get("prefer", {}))
    _section("the HTTP pattern (issue 13):", prefer)
    events, events_goals = _events.summary(runs.get("events", {}))
    _section("job event streams (issue 13):", events)
    shards, shards_goals = _shards.summary(runs.get("shards", {}))
    _section("shards on a Redis Cluster (issue 15):", shards)
    goals = _report.targets(rows, http)
    goals += [_report.Target(*goal) for goal in _embedded.targets(embedded)]
    goals += control_goals + partition_goals + schedule_goals + observability_goals
    goals += prefer_goals + events_goals + shards_goals
    print()
    print("targets (issues 5, 9, 10 and 11), on this run's medians:")
    for goal in goals:
        print(f"  {'met' if goal.met else 'NOT met':8} {goal.name}: {goal.measured}")
    summary = {
        "rows": [dataclasses.asdict(row) | {"ratio": row.ratio()} for row in rows],
        "http": http,
        "embedded": embedded,
        "control": control,
        "partitions": partitions,
        "schedules": schedules,
        "observability": observability,
        "prefer": prefer,
        "events": events,
        "shards": shards,
        "targets": [dataclasses.asdict(goal) for goal in goals],
    }
    RESULTS.mkdir(exist_ok=True)
    path = output or RESULTS / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"meta": meta, "summary": summary, "runs": runs}, indent=1))
    print(f"\nwritten: {path}")
    return path


def _section(title: str, lines: list[str]) -> None:
    """Print ``title`` and the indented ``lines`` (nothing when there are none)."""
    if lines:
        print()
        print(title)
        for line in lines:
            print(f"  {line}")
