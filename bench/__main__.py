"""The benchmark driver: async-endpoints vs arq, SAQ, streaQ and taskiq, in one run.

    bench/run [--quick]        # from a fresh clone: makes .venv if needed, then this
    .venv/bin/python -m bench [--quick] [--only drain,pickup] [--libraries ours,saq]
    .venv/bin/python -m bench --only drain,queues --libraries ours --baseline 5562896
    .venv/bin/python -m bench --only partitions

Starts its own redis-server on a free 127.0.0.1 port, builds one virtual environment per
peer under bench/.venv-peers/ (their pins conflict), runs every scenario for every
library on that server (flushed in between), repeats each ``--repeats`` times with the
libraries interleaved, and prints medians with ratios (ours / best peer, ours / bare
route); everything, raw repeats included, goes to bench/results/bench-<time>.json.
bench/README.md says what each scenario measures and how each library is driven.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import (
    _batches,
    _control,
    _driver,
    _envs,
    _events,
    _http,
    _observability,
    _output,
    _partitions,
    _prefer,
    _queues,
    _schedules,
    _shards,
)
from ._driver import log
from ._queues import Plan
from ._redis import Server, start_server

SCENARIOS = (
    *("enqueue", "drain", "pickup", "commands", "backlog", "http", "inprocess", "embedded"),
    *("cancel", "queues", "listing", "partitions", "schedules", "observability", "prefer"),
    "batches",
    "events",
    "shards",
)
PEER_SCENARIOS = ("enqueue", "drain", "pickup", "commands", "backlog", "cancel")
THREE_QUEUES = "high,default,low"
REPEATED = {
    "enqueue": _queues.enqueue_sequential,
    "drain": _queues.drain,
    "pickup": _queues.pickup,
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 repeat (~3 min)")
    parser.add_argument("--repeats", type=int, help="repeats per scenario (default 3)")
    parser.add_argument("--libraries", default="ours,arq,saq,streaq,taskiq")
    parser.add_argument("--only", help=f"comma-separated, of: {','.join(SCENARIOS)}")
    parser.add_argument("--skip", default="", help="comma-separated scenarios to leave out")
    parser.add_argument("--drain-jobs", type=int, help="jobs per drain (default 10,000)")
    parser.add_argument("--backlog-large", type=int, help="large backlog (default 1,000,000)")
    parser.add_argument("--http-seconds", type=float, help="seconds per HTTP run (default 4)")
    parser.add_argument(
        "--embedded-seconds", type=float, help="seconds per embedded load (default 10)"
    )
    parser.add_argument(
        "--retained-jobs", type=int, help="finished jobs in the tail-latency row (200,000)"
    )
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also run ours at commit REV (ours@REV) in the drain and commands scenarios",
    )
    parser.add_argument("--cancel-samples", type=int, help="cancels per library and repeat")
    parser.add_argument("--listing-jobs", type=int, help="finished jobs kept (1,000,000)")
    parser.add_argument("--output", type=Path, help="the JSON file (default bench/results/)")
    return parser.parse_args()


def make_plan(args: argparse.Namespace) -> Plan:
    plan = _queues.QUICK if args.quick else Plan()
    changes = {
        "repeats": args.repeats,
        "drain_jobs": args.drain_jobs,
        "backlog_large": args.backlog_large,
        "http_seconds": args.http_seconds,
        "embedded_seconds": args.embedded_seconds,
        "retained_jobs": args.retained_jobs,
        "cancel_samples": args.cancel_samples,
        "listing_jobs": args.listing_jobs,
    }
    return dataclasses.replace(plan, **{k: v for k, v in changes.items() if v is not None})


def main() -> None:
    args = parse_args()
    plan = make_plan(args)
    wanted = set(args.only.split(",") if args.only else SCENARIOS) - set(args.skip.split(","))
    names = [name.strip() for name in args.libraries.split(",") if name.strip()]
    if not wanted & set(PEER_SCENARIOS):  # the other scenarios measure ours alone
        names = ["ours"]
    libraries = [_envs.ours() if name == "ours" else _envs.peer(name) for name in names]
    baseline = _envs.ours_at(args.baseline) if args.baseline and "ours" in names else None
    server = start_server()
    began = time.monotonic()
    log(f"redis-server {server.version()} on 127.0.0.1:{server.port}; {plan}")
    try:
        runs = run_scenarios(wanted, server, libraries, baseline, plan)
        meta = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "seconds": time.monotonic() - began,
            "redis": server.version(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_at_end": os.getloadavg(),
            "versions": {lib.name: _envs.versions(lib) for lib in libraries},
            "baseline": baseline.name if baseline else None,
            "git": _git_state(),
            "http_load": _http.Load(plan.http_connections, plan.http_seconds).tool,
            "http_protocol": _http.http_protocol(),
            "plan": dataclasses.asdict(plan),
        }
    finally:
        server.stop()
    columns = names + ([baseline.name] if baseline else [])
    _output.print_and_save(runs, meta, columns, args.output)
    log(f"done in {time.monotonic() - began:.0f} s")


def run_scenarios(
    wanted: set[str],
    server: Server,
    libraries: list[_envs.Library],
    baseline: _envs.Library | None,
    plan: Plan,
) -> dict[str, Any]:
    """Every wanted scenario, in a fixed order; the baseline commit (``ours@<rev>``) runs
    beside ours in the drain and commands scenarios."""
    with_baseline = libraries + ([baseline] if baseline else [])
    runs: dict[str, Any] = {}
    for name, scenario in REPEATED.items():
        if name in wanted:
            measured = with_baseline if name == "drain" else libraries
            runs[name] = _driver.repeated(name, scenario, server, measured, plan)
    if "commands" in wanted:
        once = dataclasses.replace(plan, repeats=1)
        found = _driver.repeated("commands", _queues.commands, server, with_baseline, once)
        runs["commands"] = {lib: repeats[0] for lib, repeats in found.items()}
    if "queues" in wanted:
        three = [_envs.ours(), _envs.ours_with("3queues", BENCH_QUEUES=THREE_QUEUES)]
        runs["queues"] = _driver.repeated("queues", _queues.drain, server, three, plan)
    if "cancel" in wanted:
        cancelling = [lib for lib in libraries if lib.name in _control.CANCEL_LIBRARIES]
        runs["cancel"] = _driver.repeated("cancel", _control.cancel, server, cancelling, plan)
    alone: dict[str, Callable[[], Any]] = {
        "partitions": lambda: _partitions.run(server, plan),
        "schedules": lambda: _schedules.run(server, plan),
        "batches": lambda: _batches.run(server, plan),
        "prefer": lambda: _prefer.run(server, plan),
        "events": lambda: _events.run(server, plan),
        "listing": lambda: _driver.listing(server, plan),
        "backlog": lambda: _driver.backlog(server, libraries, plan),
        "http": lambda: _driver.http(server, plan),
        "inprocess": lambda: _driver.in_process(plan),
        "embedded": lambda: _driver.embedded(plan),
        "observability": lambda: _observability.run(server, plan),
        "shards": lambda: _shards.run(server, plan),  # and on a Redis Cluster of its own
    }
    for name, scenario in alone.items():
        if name in wanted:
            runs[name] = scenario()
    return runs


def _git_state() -> dict[str, Any]:
    """The commit measured, and which files differed from it (the tree may be dirty)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {"head": head, "changed": [line[3:] for line in status]}


if __name__ == "__main__":
    main()
