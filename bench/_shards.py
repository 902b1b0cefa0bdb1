"""The sharding scenario (issue 15), ours alone, on a real 3-master Redis Cluster.

The driver starts its own Cluster on loopback (``tests/redis_servers.start_cluster``: 3
masters, no replica, the 16384 slots split evenly) and drains the same number of no-op
jobs with ``shards=1`` (today's layout: every key on one hash tag, so on one master) and
``shards=3`` (``BENCH_SHARDS=3`` in ``peers/ours_app.py``), and, as the reference, on the
run's single ``redis-server`` (not a cluster node), interleaved in every repeat: 100
concurrent submitters queue the jobs, then one worker process of concurrency 100 drains
them (the drain scenario of ``_queues``, but with every master read apart). Both cluster
layouts also run with 400 submitters and worker slots (``shards1x400``, ``shards3x400``):
a process's calls of one event-loop turn share a script call per shard, so more of them
fill each shard's calls, and the Redis work per job falls. Every Redis server runs on the
machine's last CPU and the producer and the worker on the others (`_cpus.Placement`): on
two cores, three busy masters and a worker left to the scheduler share the worker's core
now and then, which costs the worker CPU per job that sharding itself does not (the same
instructions per job under cachegrind); both cluster layouts also run unpinned
(``shards1free``, ``shards3free``), for the record. Then the pickup latency of
both cluster layouts (an idle worker, one job at a time: submit -> handler start, and
submit -> result), as the ``pickup`` scenario measures it on a single server.

Around each phase the driver reads ``INFO`` on every master: ``commandstats`` (commands,
those run inside scripts included), ``used_cpu_user + used_cpu_sys`` (the server's CPU
time), ``total_reads_processed`` (round trips) and ``used_memory``. The figures: the drain
rate with ``shards=3`` over ``shards=1`` (median of the repeats' ratios; goal >= 90 %),
each master's share of the commands and of the CPU (goal with ``shards=3``: each within
+-15 % of a third; with ``shards=1`` one master does it all), round trips and script calls
per job in the drain (claims stay O(1) per job: a claim that visited every shard would
multiply the calls by the number of shards), the producer's CPU per job while it submits
(as steady on a busy machine as the worker's; ``BENCH_SHARDS_BASELINE=<rev>`` runs both
cluster layouts of a commit too, for before/after ratios in one run), Redis CPU
microseconds per job (enqueue +
drain, all masters, also net of what the idle servers spend on their own) and bytes per
queued and per finished (retained) job. The single server's column shows what the
cluster itself costs. These feed the capacity model of the README's "Scaling out"
section.
"""

from __future__ import annotations

import bisect
import dataclasses
import os
import threading
import time
from pathlib import Path
from typing import Any

from tests.redis_servers import start_cluster

from ._cpus import Placement
from ._driver import log, repeated
from ._envs import Library, ours_at, ours_with
from ._procs import WorkerProcess, produce
from ._queues import Plan
from ._redis import SCRIPT_CALLS, Server, Snapshot
from ._report import Target
from ._stats import latency_ms, median

MASTERS = 3
#: The layouts compared: name -> environment of the producer and the worker. ``single``
#: runs on the single server, the others on the cluster; the ``x<n>`` ones with ``n``
#: concurrent submitters and worker slots instead of the plan's concurrency (fuller
#: script calls per shard).
LAYOUTS = {
    "single": {},
    "shards1": {},
    "shards3": {"BENCH_SHARDS": "3"},
    "shards1x400": {},
    "shards3x400": {"BENCH_SHARDS": "3"},
    "shards1free": {},
    "shards3free": {"BENCH_SHARDS": "3"},
}
#: The layouts whose processes the scheduler places as it likes (the others: `Placement.split`).
UNPINNED = "free"
#: ``BENCH_SHARDS_BASELINE=<rev>`` also runs both cluster layouts of ours at commit
#: ``rev`` in every repeat (``ours@<rev>+shards1``, ``+shards3``): before and after a
#: change, in one run.
BASELINE = "BENCH_SHARDS_BASELINE"
#: The layouts whose pickup latency is measured too (an idle worker, one job at a time).
PICKUP_LAYOUTS = ("ours+shards1", "ours+shards3")
#: Each master's share with 3 shards may stray this far (relative) from a third.
TOLERANCE = 0.15


def run(server: Server, plan: Plan) -> dict[str, Any]:
    """Warm every layout up, then drain with each, interleaved, ``plan.repeats`` times."""
    cluster = start_cluster(MASTERS)
    masters = [Server(node.port, node.process) for node in cluster.masters() if node.process]
    try:
        log(f"shards: a {MASTERS}-master cluster on ports {[m.port for m in masters]}")
        libraries = [ours_with(name, **env) for name, env in LAYOUTS.items()]
        if rev := os.environ.get(BASELINE):
            base = ours_at(rev)
            libraries += [
                dataclasses.replace(base, name=f"{base.name}+{name}", env=LAYOUTS[name])
                for name in ("shards1", "shards3")
            ]
        idle = idle_cpu([server, *masters])
        log(f"shards: idle servers' CPU {', '.join(f'{rate * 1e3:.1f}' for rate in idle)} ms/s")

        def scenario(_: Server, library: Library, sizes: Plan) -> dict[str, Any]:
            place = placement(library)
            if library.name == "ours+single":
                return drain(server.url, [server], idle[:1], library, sizes, place)
            wide = library.name.partition("x")[2]
            if wide:
                sizes = dataclasses.replace(sizes, concurrency=int(wide))
            return drain(cluster.url, masters, idle[1:], library, sizes, place)

        warm_up = dataclasses.replace(plan, drain_jobs=1_000)
        for library in libraries:  # scripts loaded on every master, allocators warm
            scenario(server, library, warm_up)
        found = repeated("shards", scenario, server, libraries, plan)
        cluster_layouts = [lib for lib in libraries if lib.name in PICKUP_LAYOUTS]

        def pickup(_: Server, library: Library, sizes: Plan) -> dict[str, Any]:
            return _pickup(cluster.url, masters, library, sizes, placement(library))

        pickups = repeated("shards-pickup", pickup, server, cluster_layouts, plan)
    finally:
        for master in masters:
            master.client.close()
        cluster.stop()
        Placement.anywhere().place_servers([server.process.pid])  # the next scenarios'
        server.flush()
    return {
        "masters": MASTERS,
        "jobs": plan.drain_jobs,
        "idle_cpu": idle,
        "drain": found,
        "pickup": pickups,
    }


def placement(library: Library) -> Placement:
    """Where ``library``'s layout runs its processes (see the module docstring)."""
    return Placement.anywhere() if library.name.endswith(UNPINNED) else Placement.split()


def _pickup(
    url: str, masters: list[Server], library: Library, plan: Plan, place: Placement
) -> dict[str, Any]:
    """An idle worker process, one job at a time (the pickup scenario of ``_queues``, on
    the cluster, flushed first: no other layout recorded): submit -> handler start, and
    submit -> result in the caller's hands."""
    for master in masters:
        master.flush()
    place.place_servers([master.process.pid for master in masters])
    worker = WorkerProcess(library, url, concurrency=plan.concurrency, wrap=place.wrap())
    try:
        args = (f"--samples={plan.pickup_samples}", f"--budget={plan.pickup_budget}")
        out = produce(
            library, url, "pickup", *args, timeout=plan.pickup_budget + 120, wrap=place.wrap()
        )
    finally:
        worker.stop()
    return {"pickup": latency_ms(out["pickup"]), "result": latency_ms(out["result"])}


def idle_cpu(masters: list[Server], seconds: float = 3.0) -> list[float]:
    """Each idle master's own CPU seconds per second (its cron and the cluster bus), so
    that the CPU per job can be given net of it."""
    before, began = [master.snapshot() for master in masters], time.monotonic()
    time.sleep(seconds)
    after, took = [master.snapshot() for master in masters], time.monotonic() - began
    return [(a.cpu_seconds - b.cpu_seconds) / took for a, b in zip(after, before, strict=True)]


def drain(
    url: str,
    masters: list[Server],
    idle: list[float],
    library: Library,
    plan: Plan,
    place: Placement,
) -> dict[str, Any]:
    """Queue ``drain_jobs`` jobs (100 concurrent submitters) through ``url``, drain them
    with one worker process of concurrency 100; every master's counters read around each
    phase. ``idle`` is each master's CPU seconds per second when idle (`idle_cpu`); the
    processes run where ``place`` says."""
    for master in masters:
        master.flush()
    place.place_servers([master.process.pid for master in masters])
    jobs = plan.drain_jobs
    began = time.monotonic()
    empty = [master.snapshot() for master in masters]
    args = (f"--jobs={jobs}", f"--concurrency={plan.concurrency}")
    produced = produce(library, url, "enqueue", *args, timeout=600, wrap=place.wrap())
    queued_in = produced["seconds"]
    queued = [master.snapshot() for master in masters]
    keys = [int(master.client.dbsize()) for master in masters]
    worker = WorkerProcess(
        library, url, concurrency=plan.concurrency, expect=jobs, wrap=place.wrap()
    )
    sampler = CpuSampler(worker.process.pid)
    try:
        report = worker.wait_for_jobs(jobs, timeout=60 + jobs / 50)
        time.sleep(1.0)  # the last settlements land
    finally:
        sampler.stop()
        last_report = worker.stop()
    worker_cpu = sampler.at(report["last"]) - sampler.at(report["first"])
    final = last_report or report
    drained = [master.snapshot() for master in masters]
    idle_seconds = sum(idle) * (time.monotonic() - began)
    enqueue = [_phase(after, before) for after, before in zip(queued, empty, strict=True)]
    drain_ = [_phase(after, before) for after, before in zip(drained, queued, strict=True)]
    whole = [_phase(after, before) for after, before in zip(drained, empty, strict=True)]
    return {
        "enqueue_concurrent": jobs / queued_in,
        # The producer's CPU per job while it submits (None from a commit without it).
        "enqueue_cpu_us_per_job": produced["cpu_seconds"] / jobs * 1e6
        if "cpu_seconds" in produced
        else None,
        "drain": (jobs - 1) / (report["last"] - report["first"]),
        "exactly_once": final.get("started") == jobs
        and final.get("duplicates") == 0
        and final.get("missing") == 0
        and final.get("unexpected") == 0,
        "worker_cpu_us_per_job": worker_cpu / (jobs - 1) * 1e6,
        "commands_per_job": sum(p["commands"] for p in whole) / jobs,
        "script_calls_per_job_enqueue": sum(p["script_calls"] for p in enqueue) / jobs,
        "script_calls_per_job_drain": sum(p["script_calls"] for p in drain_) / jobs,
        "round_trips_per_job_enqueue": sum(p["reads"] for p in enqueue) / jobs,
        "round_trips_per_job_drain": sum(p["reads"] for p in drain_) / jobs,
        "redis_cpu_us_per_job": sum(p["cpu"] for p in whole) / jobs * 1e6,
        "redis_cpu_us_per_job_net": (sum(p["cpu"] for p in whole) - idle_seconds) / jobs * 1e6,
        "redis_cpu_us_per_job_busiest": max(p["cpu"] for p in whole) / jobs * 1e6,
        "memory_queued": sum(p["memory"] for p in enqueue) / jobs,
        "memory_finished": sum(p["memory"] for p in whole) / jobs,
        "command_shares": _shares([p["commands"] for p in whole]),
        "cpu_shares": _shares([p["cpu"] for p in whole]),
        "key_shares": _shares([float(n) for n in keys]),
        # Each master's memory over the jobs it holds (by its share of the keys).
        "memory_queued_per_shard": [
            p["memory"] / (jobs * share) if share > 0.05 else None
            for p, share in zip(enqueue, _shares([float(n) for n in keys]), strict=True)
        ],
        "per_master": [
            {"port": m.port, "keys_queued": n, "enqueue": e, "drain": d}
            for m, n, e, d in zip(masters, keys, enqueue, drain_, strict=True)
        ],
    }


class CpuSampler:
    """Reads a process's CPU time (user + system, ``/proc/<pid>/stat``) every 20 ms in a
    thread, so that the CPU it spent between two moments of the drain can be told."""

    def __init__(self, pid: int) -> None:
        self._path = Path(f"/proc/{pid}/stat")
        self._tick = os.sysconf("SC_CLK_TCK")
        self.samples: list[tuple[float, float]] = []  # (time.monotonic(), CPU seconds)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(0.02):
            try:
                fields = self._path.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                return
            # utime and stime are fields 14 and 15 of stat; 12 and 13 after the name.
            self.samples.append(
                (time.monotonic(), (int(fields[11]) + int(fields[12])) / self._tick)
            )

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)

    def at(self, moment: float) -> float:
        """The CPU seconds spent by ``moment`` (interpolated between samples)."""
        times = [at for at, _ in self.samples]
        index = bisect.bisect_left(times, moment)
        if index == 0 or index == len(self.samples):
            return self.samples[min(index, len(self.samples) - 1)][1]
        (t0, c0), (t1, c1) = self.samples[index - 1], self.samples[index]
        return c0 + (c1 - c0) * (moment - t0) / (t1 - t0)


def _phase(after: Snapshot, before: Snapshot) -> dict[str, Any]:
    """One master's counters over one phase."""
    calls = after.calls_since(before)
    return {
        "commands": float(sum(calls.values())),
        "script_calls": sum(n for name, n in calls.items() if name in SCRIPT_CALLS),
        "cpu": after.cpu_seconds - before.cpu_seconds,
        "reads": after.reads - before.reads,
        "memory": after.used_memory - before.used_memory,
        "calls": calls,
    }


def _shares(values: list[float]) -> list[float]:
    total = sum(values)
    return [value / total if total else 0.0 for value in values]


def summary(found: dict[str, Any]) -> tuple[list[str], list[Target]]:
    """The table of the issue-15 figures, and its targets judged on them."""
    drains = found.get("drain", {})
    single = drains.get("ours+single", [])
    one, three = drains.get("ours+shards1", []), drains.get("ours+shards3", [])
    if not (one and three):
        return [], []
    ratio = _paired(three, one, "drain")
    columns = [
        ("single server", single),
        ("shards=1", one),
        ("shards=3", three),
        ("shards=1, 400", drains.get("ours+shards1x400", [])),
        ("shards=3, 400", drains.get("ours+shards3x400", [])),
    ]
    lines = [
        f"{found['masters']}-master Redis Cluster on loopback (and the single server beside "
        f"it), {found['jobs']:,} jobs per drain, one worker process (concurrency 100; "
        f"400 submitters and slots in the last two); medians of {len(three)} repeat(s); the "
        f"servers on CPU {sorted(Placement.split().servers)}, the clients on "
        f"{sorted(Placement.split().clients)}",
        f"{'':34}" + "".join(f"{name:>15}" for name, _ in columns),
    ]
    rows = [
        ("drain, jobs/s", "drain", "{:,.0f}"),
        ("worker process CPU per job, us", "worker_cpu_us_per_job", "{:.1f}"),
        ("enqueue, jobs/s", "enqueue_concurrent", "{:,.0f}"),
        ("producer process CPU per job, us", "enqueue_cpu_us_per_job", "{:.1f}"),
        ("Redis commands per job", "commands_per_job", "{:.2f}"),
        ("script calls per job, enqueue", "script_calls_per_job_enqueue", "{:.3f}"),
        ("script calls per job, drain", "script_calls_per_job_drain", "{:.3f}"),
        ("round trips per job, enqueue", "round_trips_per_job_enqueue", "{:.3f}"),
        ("round trips per job, drain", "round_trips_per_job_drain", "{:.3f}"),
        ("Redis CPU per job, us", "redis_cpu_us_per_job", "{:.1f}"),
        ("  net of the idle servers' own", "redis_cpu_us_per_job_net", "{:.1f}"),
        ("  on the busiest master", "redis_cpu_us_per_job_busiest", "{:.1f}"),
        ("bytes per queued job", "memory_queued", "{:,.0f}"),
        ("bytes per finished job (kept)", "memory_finished", "{:,.0f}"),
    ]
    for label, key, form in rows:
        cells = [form.format(_median(runs, key)) if runs else "-" for _, runs in columns]
        lines.append(f"{label:34}" + "".join(f"{cell:>15}" for cell in cells))
    cells = ["/".join(_per_shard(runs, "memory_queued_per_shard")) for _, runs in columns]
    lines.append(f"{'bytes per queued job, each master':34}" + "".join(f"{c:>15}" for c in cells))
    for label, key in (("commands", "command_shares"), ("CPU", "cpu_shares")):
        cells = [_share_cells(runs, key) if runs else "-" for _, runs in columns[1:]]
        cells.insert(0, "-")
        lines.append(f"{f'share of {label} per master':34}" + "".join(f"{c:>15}" for c in cells))
    lines.append(
        f"drain rate shards=3 / shards=1: {ratio:.1%}, shards=1 on the cluster / single server: "
        f"{_paired(one, single, 'drain'):.1%} (medians of the repeats' ratios); every job "
        f"exactly once: {all(run['exactly_once'] for run in single + one + three)}"
    )
    if (wide_one := columns[3][1]) and (wide_three := columns[4][1]):
        lines.append(
            f"with 400 submitters and slots, shards=3 / shards=1: Redis CPU per job "
            f"{_paired(wide_three, wide_one, 'redis_cpu_us_per_job_net'):.1%}, drain "
            f"{_paired(wide_three, wide_one, 'drain'):.1%}"
        )
    lines.append(
        f"shards=3 / shards=1: enqueue {_paired(three, one, 'enqueue_concurrent'):.1%} (producer "
        f"CPU per job {_paired(three, one, 'enqueue_cpu_us_per_job'):.1%}), worker "
        f"CPU per job {_paired(three, one, 'worker_cpu_us_per_job'):.1%}, Redis CPU per job "
        f"{_paired(three, one, 'redis_cpu_us_per_job_net'):.1%}"
    )
    free_one, free_three = drains.get("ours+shards1free", []), drains.get("ours+shards3free", [])
    if free_one and free_three:
        lines.append(
            f"unpinned (the scheduler places the servers and the worker), shards=3 / "
            f"shards=1: drain {_paired(free_three, free_one, 'drain'):.1%}, worker CPU per job "
            f"{_paired(free_three, free_one, 'worker_cpu_us_per_job'):.1%} (three busy servers "
            f"share the worker's core now and then: the drain goal is judged pinned)"
        )
    for name, runs in found.get("pickup", {}).items():
        pick = {
            what: {q: _median([run[what] for run in runs], q) for q in ("p50", "p99")}
            for what in ("pickup", "result")
        }
        lines.append(
            f"{name.removeprefix('ours+')}, idle worker, one job at a time: submit -> start "
            f"p50 {pick['pickup']['p50']:.2f} ms, p99 {pick['pickup']['p99']:.2f} ms; submit "
            f"-> result p50 {pick['result']['p50']:.2f} ms, p99 {pick['result']['p99']:.2f} ms"
        )
    for name in sorted({name.partition("+")[0] for name in drains if "@" in name}):
        base_one, base_three = drains.get(f"{name}+shards1", []), drains.get(f"{name}+shards3", [])
        if base_one and base_three:
            lines.append(
                f"{name} (the baseline commit), shards=3 / shards=1: drain "
                f"{_paired(base_three, base_one, 'drain'):.1%}, worker CPU per job "
                f"{_paired(base_three, base_one, 'worker_cpu_us_per_job'):.1%}, enqueue "
                f"{_paired(base_three, base_one, 'enqueue_concurrent'):.1%}, Redis CPU per job "
                f"{_paired(base_three, base_one, 'redis_cpu_us_per_job_net'):.1%}; script calls "
                f"per job, enqueue {_median(base_three, 'script_calls_per_job_enqueue'):.3f}, "
                f"drain {_median(base_three, 'script_calls_per_job_drain'):.3f}"
            )
    low, high = (1 - TOLERANCE) / MASTERS, (1 + TOLERANCE) / MASTERS
    goals = [Target("shards=3 drain >= 90 % of shards=1", f"{ratio:.1%}", ratio >= 0.9)]
    # The drain is bound by the worker's CPU; on a busy machine its wall-clock rate follows
    # what the machine leaves it, its CPU per job does not: the rate at equal CPU.
    at_equal_cpu = _paired(one, three, "worker_cpu_us_per_job")
    goals.append(
        Target(
            "shards=3 drain at equal CPU (worker CPU per job, shards=1 / shards=3) >= 90 %",
            f"{at_equal_cpu:.1%}",
            at_equal_cpu >= 0.9,
        )
    )
    for label, key in (("commands", "command_shares"), ("Redis CPU", "cpu_shares")):
        every = [share for run in three for share in run[key]]
        measured = ", ".join(f"{share:.1%}" for share in _median_shares(three, key))
        goals.append(
            Target(
                f"shards=3: each master's share of {label} within +-15 % of a third",
                f"{measured} (every repeat's shares in {min(every):.1%}..{max(every):.1%})",
                low <= min(every) and max(every) <= high,
            )
        )
    busiest = min(max(run["command_shares"]) for run in one)
    goals.append(
        Target("shards=1: one master runs the commands", f"{busiest:.1%}", busiest >= 0.95)
    )
    claims = _median(three, "script_calls_per_job_drain") / (
        _median(one, "script_calls_per_job_drain") or 1.0
    )
    goals.append(
        Target(
            f"claims O(1) per job: script calls per job in the drain, shards=3 / shards=1 "
            f"< {MASTERS} (a claim visiting every shard would be {MASTERS}x)",
            f"{claims:.2f}x",
            claims < MASTERS,
        )
    )
    return lines, goals


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(median(run.get(key) for run in runs) or 0.0)


def _paired(first: list[dict[str, Any]], second: list[dict[str, Any]], key: str) -> float:
    """The median of the repeats' ratios ``first / second`` (0 when there are none)."""
    pairs = zip(first, second, strict=False)
    ratios = [a[key] / b[key] for a, b in pairs if a.get(key) is not None and b.get(key)]
    return float(median(ratios) or 0.0)


def _median_shares(runs: list[dict[str, Any]], key: str) -> list[float]:
    return [float(median(run[key][i] for run in runs) or 0.0) for i in range(MASTERS)]


def _per_shard(runs: list[dict[str, Any]], key: str) -> list[str]:
    """The median of each master's figure ``key`` ("-" where it held no jobs)."""
    width = max((len(run.get(key) or []) for run in runs), default=0)
    found = [median((run.get(key) or [None] * width)[i] for run in runs) for i in range(width)]
    return [f"{value:,.0f}" if value is not None else "-" for value in found] or ["-"]


def _share_cells(runs: list[dict[str, Any]], key: str) -> str:
    return "/".join(f"{share:.0%}" for share in _median_shares(runs, key))
