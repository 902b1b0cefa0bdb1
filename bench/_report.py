"""Medians of the repeats, the tables (figures and ratios) and the targets of issue 5."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ._stats import median

Runs = dict[str, list[dict[str, Any]]]  # library -> one dict per repeat


@dataclass(frozen=True)
class Row:
    """One figure per library (the median over repeats; None when not measured).

    ``better`` is "high" or "low" for figures compared with the best peer, "" for facts
    that are not compared (sample counts, checks).
    """

    section: str
    label: str
    unit: str
    better: str
    values: dict[str, float | None]
    digits: int = 0

    def best_peer(self) -> tuple[str, float] | None:
        peers = [(lib, v) for lib, v in self.values.items() if is_peer(lib) and v is not None]
        if not self.better or not peers:
            return None
        pick = max if self.better == "high" else min
        return pick(peers, key=lambda item: item[1])

    def ratio(self) -> float | None:
        """Ours / the best peer."""
        best, ours = self.best_peer(), self.values.get("ours")
        if best is None or ours is None or best[1] == 0:
            return None
        return ours / best[1]


def is_peer(library: str) -> bool:
    """Another library: not ours, nor a variant of ours (``ours@<rev>``, ``ours+<what>``)."""
    return library.split("@")[0].split("+")[0] != "ours"


def medians(runs: Runs, get: Callable[[dict[str, Any]], Any]) -> dict[str, float | None]:
    return {lib: median(get(run) for run in repeats) for lib, repeats in runs.items()}


# (key in a drain repeat, label, unit, better, digits)
_DRAIN_FIGURES = [
    ("drain", "drain 10k no-op jobs: 1 worker process, concurrency 100", "jobs/s", "high", 0),
    ("memory_queued", "Redis memory per queued job", "bytes", "low", 0),
    ("memory_finished", "Redis memory per finished job (retained)", "bytes", "low", 0),
    ("after_drain_expiring_share", "share of keys with a TTL after the drain", "", "", 2),
    ("round_trips_enqueue", "round trips per job: enqueue", "", "low", 2),
    ("round_trips_drain", "round trips per job: claim + run + settle", "", "low", 2),
    ("round_trips", "round trips per job: drain path total", "", "low", 2),
    ("commands", "commands per job (commandstats, incl. in scripts)", "", "low", 1),
    ("redis_cpu_us", "Redis CPU per job: drain path total", "us", "low", 1),
]
_COMMAND_FIGURES = [
    ("top_level", "top-level commands per job (MONITOR)"),
    ("script_calls", "  of which script calls (EVALSHA/FCALL)"),
    ("inside_scripts", "commands run inside scripts per job"),
]


def _with_totals(run: dict[str, Any]) -> dict[str, Any]:
    totals = {
        name: run[f"{name}_enqueue"] + run[f"{name}_drain"]
        for name in ("round_trips", "commands", "redis_cpu_us")
    }
    return run | totals


def queue_rows(runs: dict[str, Any]) -> list[Row]:
    """The rows of the job-queue scenarios that ran."""
    rows: list[Row] = []
    if enqueue := runs.get("enqueue"):
        values = medians(enqueue, lambda r: r["enqueue_sequential"])
        rows.append(Row("enqueue", "sequential, 1 producer", "jobs/s", "high", values))
    if drain := runs.get("drain"):
        values = medians(drain, lambda r: r["enqueue_concurrent"])
        rows.append(Row("enqueue", "100 concurrent submissions", "jobs/s", "high", values))
        drain = {lib: [_with_totals(r) for r in reps] for lib, reps in drain.items()}
        for key, label, unit, better, digits in _DRAIN_FIGURES:
            values = medians(drain, lambda r, key=key: r[key])
            rows.append(Row("drain", label, unit, better, values, digits))
        once = {lib: float(all(r["exactly_once"] for r in reps)) for lib, reps in drain.items()}
        rows.insert(-8, Row("drain", "every job ran exactly once (1 = yes)", "", "", once))
    if commands := runs.get("commands"):
        for key, label in _COMMAND_FIGURES:
            values = {lib: run[key] for lib, run in commands.items()}
            rows.append(Row("commands", label, "", "low", values, 2))
    if pickup := runs.get("pickup"):
        rows += list(_latency_rows(pickup))
    return rows


def _latency_rows(pickup: Runs) -> Iterable[Row]:
    for kind, label in [("pickup", "submit -> handler start"), ("result", "submit -> result")]:
        for q in ("p50", "p95", "p99"):
            values = medians(pickup, lambda r, kind=kind, q=q: r[kind][q])
            yield Row("latency (idle worker process)", f"{label} {q}", "ms", "low", values, 2)
        counts = {lib: float(sum(r[kind]["n"] for r in reps)) for lib, reps in pickup.items()}
        yield Row("latency (idle worker process)", f"{label}: samples", "", "", counts)


def backlog_rows(backlog: dict[str, Any]) -> list[Row]:
    small = {lib: median(entry["small"]) for lib, entry in backlog.items()}
    large = {lib: median(entry["large"]) for lib, entry in backlog.items()}
    scaling = {lib: (large[lib] or 0) / small[lib] if small[lib] else None for lib in backlog}
    memory = {lib: entry.get("memory_queued_large") for lib, entry in backlog.items()}
    fill = {lib: entry.get("fill_seconds") for lib, entry in backlog.items()}
    sizes = next(iter(backlog.values()))["sizes"]
    section = "backlog (bulk-queued; rate once the first jobs have started)"
    return [
        Row(section, f"drain rate, {sizes[0]:,} queued", "jobs/s", "high", small),
        Row(section, f"drain rate, {sizes[1]:,} queued", "jobs/s", "high", large),
        Row(section, "large / small backlog rate", "", "high", scaling, 2),
        Row(section, f"Redis memory per queued job ({sizes[1]:,})", "bytes", "low", memory),
        Row(section, f"time to queue {sizes[1]:,} (bulk path)", "s", "", fill, 1),
    ]


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(rows: list[Row], libraries: list[str]) -> str:
    """The rows as a fixed-width table, with ours / best peer (and which peer)."""
    width = max((len(_label(row)) for row in rows), default=40) + 2
    cell = max([10, *(len(lib) + 2 for lib in libraries)])
    head = f"{'':{width}}" + "".join(f"{lib:>{cell}}" for lib in libraries) + "   ours/best peer"
    lines = [head]
    section = None
    for row in rows:
        if row.section != section:
            section = row.section
            lines.append(f"-- {section} " + "-" * max(0, len(head) - len(section) - 4))
        cells = "".join(f"{_fmt(row.values.get(lib), row.digits):>{cell}}" for lib in libraries)
        ratio, best = row.ratio(), row.best_peer()
        note = "" if ratio is None or best is None else f"{ratio:.2f}x ({best[0]})"
        lines.append(f"{_label(row):{width}}{cells}   {note}")
    return "\n".join(lines)


def _label(row: Row) -> str:
    return f"{row.label} [{row.unit}]" if row.unit else row.label


def http_summary(http: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per configuration and route: median req/s, p50 and p99; and ours / bare req/s."""
    summary: dict[str, dict[str, Any]] = {}
    for config, routes in http.items():
        figures = {
            route: {
                **{key: median(r[key] for r in runs) for key in ("rps", "p50_ms", "p99_ms")},
                "refused": median(r["other_status"] / max(1, r["requests"]) for r in runs),
            }
            for route, runs in routes.items()
        }
        bare, ours = figures.get("bare", {}).get("rps"), figures.get("ours", {}).get("rps")
        summary[config] = {**figures, "ratio": ours / bare if bare and ours else None}
    return summary


def http_table(summary: dict[str, dict[str, Any]]) -> str:
    head = f"{'configuration':30}{'route':>6}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'not 202':>9}"
    lines = [head + "  ours/bare"]
    for config, figures in summary.items():
        for route in ("bare", "ours"):
            fig = figures.get(route)
            if fig is None:
                continue
            ratio = figures["ratio"]
            note = f"{ratio:.2f}" if route == "ours" and ratio is not None else ""
            lines.append(
                f"{config:30}{route:>6}{_fmt(fig['rps'], 0):>9}{_fmt(fig['p50_ms'], 2):>9}"
                f"{_fmt(fig['p99_ms'], 2):>9}{fig['refused']:>9.0%}  {note}"
            )
    return "\n".join(lines)


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    met: bool


def targets(rows: list[Row], http: dict[str, dict[str, Any]]) -> list[Target]:
    """The targets of issue 5 that this run measured, judged on its medians."""

    def ours(prefix: str) -> float | None:
        row = next((r for r in rows if r.label.startswith(prefix)), None)
        return None if row is None else row.values.get("ours")

    found: list[Target] = []
    drain = next((r for r in rows if r.label.startswith("drain 10k")), None)
    if drain is not None and (ratio := drain.ratio()) is not None:
        found.append(Target("drain >= 2x the best peer", f"{ratio:.2f}x", ratio >= 2))
    checks = [
        ("pickup p50 <= 1.0 ms", "submit -> handler start p50", 1.0, "{:.2f} ms"),
        ("pickup p99 <= 3 ms", "submit -> handler start p99", 3.0, "{:.2f} ms"),
        ("result visible p50 <= 1.5 ms", "submit -> result p50", 1.5, "{:.2f} ms"),
        ("<= 3 Redis round trips per job", "round trips per job: drain path", 3, "{:.2f}"),
        ("<= 400 bytes per queued job", "Redis memory per queued job", 400, "{:.0f} B"),
    ]
    for name, prefix, limit, form in checks:
        if (value := ours(prefix)) is not None:
            found.append(Target(name, form.format(value), value <= limit))
    for config, limit in [("in-memory, API-only", 0.8), ("Redis, API-only", 0.6)]:
        if (ratio := http.get(config, {}).get("ratio")) is not None:
            name = f"HTTP submit, {config}: >= {limit:.0%} of bare"
            found.append(Target(name, f"{ratio:.0%}", ratio >= limit))
    if (scaling := ours("large / small backlog")) is not None:
        name = "drain rate with the large backlog within 10 % of the small"
        found.append(Target(name, f"{scaling:.2f}", scaling >= 0.9))
    return found
