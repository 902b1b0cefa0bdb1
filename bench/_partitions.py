"""The partition-key and tenant scenarios (issue 11), ours alone, on the shared Redis.

- **drain with keys**: the drain scenario (10,000 no-op jobs, one worker process of
  concurrency 100) for plain jobs and, interleaved in every repeat, for jobs spread over
  1,000 partition keys, jobs with a key each, and jobs with a tenant each. The figures:
  the keyed drain rate over the plain one (median of the repeats' ratios), and the Redis
  bytes per queued job over the plain job's (the label itself included). After each drain
  the keys left in Redis are counted by shape (ids masked): a keyed run must leave the
  same shapes and counts as the plain run, i.e. nothing per key or per tenant.
- **one key**: 2,000 jobs on a single key, submitted one at a time (so their order is
  their index), then one worker process of concurrency 100: jobs/s from the first start
  to the last, and from the handler's notes (start, a yield to the loop, end) whether
  they ran strictly one at a time and in order.
- **fairness**: the pickup latency (submit -> handler start, one job at a time) of tenant
  B's jobs with the worker idle, and again while it works off tenant A's backlog of
  100,000 jobs; the goal is busy <= 2 x idle + one round of claims (concurrency / the
  rate A's jobs started at meanwhile). The handler's notes also tell how many of A's jobs
  started between B's submission and B's start (one round: the concurrency, 100).
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import re
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from . import _queues
from ._driver import log, repeated
from ._envs import Library, ours, ours_with
from ._procs import WorkerProcess, produce
from ._queues import Plan
from ._redis import Server
from ._report import Target
from ._stats import latency_ms, median

#: The drain variants: (name, environment of the producer and the worker).
VARIANTS = {
    "1000keys": {"BENCH_KEYS": "1000"},
    "keyeach": {"BENCH_KEYS": "unique"},
    "tenanteach": {"BENCH_TENANTS": "unique"},
}
_ID = re.compile(rb"[0-9a-f-]{8,}|\d+")


def run(server: Server, plan: Plan) -> dict[str, Any]:
    """Every partition scenario, one after the other."""
    libraries = [ours()] + [ours_with(name, **env) for name, env in VARIANTS.items()]
    warm_up = dataclasses.replace(plan, drain_jobs=1_000)
    for library in libraries:  # scripts loaded, allocator warm: memory figures comparable
        _queues.drain(server, library, warm_up)
    found: dict[str, Any] = {"drain": repeated("partitions", _drain, server, libraries, plan)}
    found["one_key"] = [_one_key(server, plan) for _ in range(plan.repeats)]
    for fig in found["one_key"]:
        log(
            f"one key: {fig['rate']:,.0f} jobs/s, one at a time: {fig['one_at_a_time']}, "
            f"in order: {fig['in_order']}; {fig['round_trips_per_job']:.2f} round trips per "
            f"job, calls per job: {fig['calls_per_job']}"
        )
    found["fairness"] = _fairness(server, plan)
    server.flush()
    return found


def _drain(server: Server, library: Library, plan: Plan) -> dict[str, Any]:
    return _queues.drain(server, library, plan, probe=key_shapes)


def key_shapes(server: Server) -> dict[str, int]:
    """How many Redis keys there are of each shape (ids, tokens and numbers masked)."""
    shapes: Counter[str] = Counter()
    for key in server.client.scan_iter(count=1000):
        shapes[_ID.sub(b"*", key).decode(errors="replace")] += 1
    return dict(shapes)


def _one_key(server: Server, plan: Plan) -> dict[str, Any]:
    server.flush()
    jobs = plan.one_key_jobs
    one = ours_with("onekey", BENCH_KEYS="1")
    produce(one, server.url, "enqueue", f"--jobs={jobs}", "--concurrency=1", timeout=300)
    events = Path(tempfile.mkdtemp(prefix="bench-onekey-")) / "events"
    queued = server.snapshot()
    worker = WorkerProcess(
        one, server.url, concurrency=plan.concurrency, expect=jobs, BENCH_EVENTS=str(events)
    )
    try:
        report = worker.wait_for_jobs(jobs, timeout=60 + jobs / 20)
    finally:
        worker.stop()
    drained = server.snapshot()
    runs = _runs(events)
    ordered = sorted(runs.items(), key=lambda item: item[1][0])
    overlaps = sum(
        later[0] < earlier[1] for (_, earlier), (_, later) in itertools.pairwise(ordered)
    )
    return {
        "rate": (jobs - 1) / (report["last"] - report["first"]),
        "one_at_a_time": overlaps == 0 and len(runs) == jobs,
        "in_order": [i for i, _ in ordered] == list(range(jobs)),
        "overlaps": overlaps,
        "ran": len(runs),
        "duplicates": report.get("duplicates"),
        "round_trips_per_job": (drained.reads - queued.reads) / jobs,
        "calls_per_job": {
            name: calls / jobs for name, calls in drained.calls_since(queued).items()
        },
    }


def _runs(events: Path) -> dict[int, tuple[float, float]]:
    """Each job's (start, end) from the handler's notes."""
    starts: dict[int, float] = {}
    ends: dict[int, float] = {}
    for line in events.read_text().splitlines():
        kind, i, at = line.split()
        (starts if kind == "start" else ends)[int(i)] = float(at)
    return {i: (at, ends[i]) for i, at in starts.items()}


def _fairness(server: Server, plan: Plan) -> dict[str, Any]:
    server.flush()
    tenant_a = ours_with("tenantA", BENCH_TENANT="A")
    tenant_b = ours_with("tenantB", BENCH_TENANT="B")
    notes = Path(tempfile.mkdtemp(prefix="bench-fairness-"))
    worker = WorkerProcess(
        tenant_b, server.url, concurrency=plan.concurrency, BENCH_EVENTS=str(notes / "idle")
    )
    try:
        produce(tenant_b, server.url, "trickle", "--samples=1", timeout=120)
        _wait_for_notes(notes / "idle", 1)  # the worker is up
        idle = _trickle(server, tenant_b, plan, notes / "idle")
    finally:
        worker.stop()
    backlog = plan.fairness_backlog
    filled = _queues.fill_backlog(server.url, tenant_a, backlog)
    log(f"fairness: tenant A's {backlog:,} jobs queued in {filled:.1f} s")
    busy_notes = notes / "busy"
    # No BENCH_EXPECT: the probe would rewrite its report after every job past it.
    worker = WorkerProcess(
        tenant_a, server.url, concurrency=plan.concurrency, BENCH_EVENTS=str(busy_notes)
    )
    try:
        _wait_for_notes(busy_notes, 2 * plan.backlog_skip)  # a start and an end each
        submitted, busy = _trickle(server, tenant_b, plan, busy_notes)
    finally:
        worker.stop()
    a_starts = sorted(_starts(busy_notes, "start:A").values())
    ahead = [
        bisect.bisect_left(a_starts, at + took) - bisect.bisect_right(a_starts, at)
        for at, took in zip(submitted, busy, strict=True)
    ]
    window = submitted[-1] + busy[-1] - submitted[0]
    during = bisect.bisect_left(a_starts, submitted[0] + window) - bisect.bisect_right(
        a_starts, submitted[0]
    )
    rate = during / window  # A's jobs per second while B's jobs came in
    figures = {
        "backlog": backlog,
        "idle": latency_ms(idle[1]),
        "busy": latency_ms(busy),
        "a_jobs_started_meanwhile": {"p50": median(ahead), "max": max(ahead)},
        "drain_rate": rate,
        "round_ms": plan.concurrency / rate * 1e3,
        "concurrency": plan.concurrency,
        "backlog_left": backlog - len(a_starts),
    }
    log(
        f"fairness: B's pickup idle p50 {figures['idle']['p50']:.2f} ms; behind A's backlog "
        f"p50 {figures['busy']['p50']:.2f} ms p99 {figures['busy']['p99']:.2f} ms; one round "
        f"of claims {figures['round_ms']:.1f} ms; A's jobs started meanwhile p50 "
        f"{median(ahead)}, max {max(ahead)}; A's jobs left then {figures['backlog_left']:,}"
    )
    return figures


def _trickle(
    server: Server, library: Library, plan: Plan, notes: Path
) -> tuple[list[float], list[float]]:
    """Submit ``pickup_samples`` jobs of ``library``'s tenant one at a time, 20 ms apart,
    without waiting for them; when each was submitted, and the seconds until it started
    (from the worker's notes)."""
    samples = plan.pickup_samples
    first = 1_000  # after the indices of the warm-up
    args = (f"--samples={samples}", f"--start={first}")
    out = produce(library, server.url, "trickle", *args, timeout=300)
    tenant = library.env["BENCH_TENANT"]
    deadline = time.monotonic() + 60
    while True:
        starts = _starts(notes, f"start:{tenant}")
        if all(first + n in starts for n in range(samples)) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    submitted: list[float] = out["submitted"]
    return submitted, [starts[first + n] - at for n, at in enumerate(submitted)]


def _wait_for_notes(events: Path, count: int) -> None:
    """Wait until the handlers have written ``count`` notes."""
    deadline = time.monotonic() + 120
    while not events.exists() or len(events.read_bytes().splitlines()) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} notes not written in time")
        time.sleep(0.02)


def _starts(events: Path, kind: str) -> dict[int, float]:
    """When each job noted ``kind`` (``start:A``, say), by its index (the last note of an
    index that was used twice)."""
    found = {}
    for line in events.read_text().splitlines() if events.exists() else []:
        noted, i, at = line.split()
        if noted == kind:
            found[int(i)] = float(at)
    return found


def summary(found: dict[str, Any]) -> tuple[list[str], list[Target]]:
    """The lines that show the issue-11 figures, and its targets judged on them."""
    lines: list[str] = []
    goals: list[Target] = []
    drains = found.get("drain", {})
    plain = drains.get("ours", [])
    for name in VARIANTS:
        variant = drains.get(f"ours+{name}", [])
        if not (plain and variant):
            continue
        ratio = _paired(variant, plain, "drain")
        extra = _paired_difference(variant, plain, "memory_queued")
        left = _extra_shapes(variant, plain, "probe_drained")
        same_keys = not left
        queued_extra = _extra_shapes(variant, plain, "probe_queued")
        lines.append(
            f"drain, {name} / plain: {_median(variant, 'drain'):,.0f} / "
            f"{_median(plain, 'drain'):,.0f} jobs/s, median ratio {ratio:.1%}; {extra:+.0f} B "
            f"per queued job; keys only this variant had while queued: {queued_extra or 'none'}"
            f", after the drain: {left or 'none'}"
        )
        if name == "1000keys":
            goals.append(
                Target("drain over 1,000 keys >= 70 % of plain", f"{ratio:.1%}", ratio >= 0.7)
            )
        else:
            goals.append(
                Target(f"{name}: <= 100 extra B per queued job", f"{extra:+.0f} B", extra <= 100)
            )
            goals.append(Target(f"{name}: nothing left behind", str(same_keys), same_keys))
    if one_key := found.get("one_key"):
        rate = float(median(fig["rate"] for fig in one_key) or 0.0)
        serial = all(fig["one_at_a_time"] and fig["in_order"] for fig in one_key)
        lines.append(
            f"one key, {len(one_key)} runs: {rate:,.0f} jobs/s; strictly one at a time, "
            f"in order: {serial}"
        )
        goals.append(Target("one key >= 1,000 jobs/s", f"{rate:,.0f} jobs/s", rate >= 1000))
        goals.append(Target("one key strictly one at a time, in order", str(serial), serial))
    if fair := found.get("fairness"):
        bound = 2 * fair["idle"]["p50"] + fair["round_ms"]
        meanwhile = fair["a_jobs_started_meanwhile"]
        busy = fair["busy"]["p50"]
        lines.append(
            f"fairness: tenant B's pickup idle p50 {fair['idle']['p50']:.2f} ms; behind tenant A's "
            f"{fair['backlog']:,} jobs p50 {busy:.2f} ms, p99 {fair['busy']['p99']:.2f} ms "
            f"(n={fair['busy']['n']}); one round of claims {fair['round_ms']:.1f} ms; "
            f"A's jobs started between B's submission and its start: p50 "
            f"{meanwhile['p50']}, max {meanwhile['max']}"
            f" (one round: {fair['concurrency']})"
        )
        goals.append(
            Target(
                "fairness p50 <= 2 x idle + one round",
                f"{busy:.2f} <= {bound:.2f} ms",
                busy <= bound,
            )
        )
    return lines, goals


def _extra_shapes(
    variant: list[dict[str, Any]], plain: list[dict[str, Any]], probe: str
) -> list[str]:
    """The key shapes that ``variant``'s runs had at ``probe`` and plain runs had not."""
    seen = {shape for run in plain for shape in run[probe]}
    return sorted({shape for run in variant for shape in run[probe]} - seen)


def _median(repeats: list[dict[str, Any]], key: str) -> float:
    return float(median(run[key] for run in repeats) or 0.0)


def _paired(first: list[dict[str, Any]], second: list[dict[str, Any]], key: str) -> float:
    ratios = [a[key] / b[key] for a, b in zip(first, second, strict=False) if b[key]]
    return float(median(ratios) or 0.0)


def _paired_difference(
    first: list[dict[str, Any]], second: list[dict[str, Any]], key: str
) -> float:
    return float(median(a[key] - b[key] for a, b in zip(first, second, strict=False)) or 0.0)
