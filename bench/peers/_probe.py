"""What every benchmark handler does: note that job ``i`` started, and when.

Standard library only: it is imported by the worker processes of every library, each in
its own environment. The handler returns ``time.monotonic()`` at its start, which the
producer compares with its own submit time (CLOCK_MONOTONIC is one clock for every process
on a Linux machine). In a drain the worker process also counts the jobs it started, by
index, and writes a report (JSON) when ``BENCH_EXPECT`` jobs have started, again on any
duplicate after that, and at exit, so the driver can check that every job ran exactly once.

Environment: ``BENCH_EXPECT`` (jobs the drain waits for; 0 for none), ``BENCH_SKIP`` (jobs
started before the clock starts: ``first`` is the start of job ``BENCH_SKIP + 1``) and
``BENCH_REPORT`` (the report's path).

The cancel scenario's handler holds until cancelled: it notes ``start <i> <time>`` when it
begins and ``cancel <i> <time>`` the moment it sees its ``CancelledError``, one line each,
appended to the file ``BENCH_EVENTS`` (the producer reads it).
"""

from __future__ import annotations

import atexit
import json
import os
import time
from collections import Counter

_EXPECT = int(os.environ.get("BENCH_EXPECT", "0"))
_SKIP = int(os.environ.get("BENCH_SKIP", "0"))
_REPORT = os.environ.get("BENCH_REPORT", "")
_EVENTS = os.environ.get("BENCH_EVENTS", "")
_events_fd: int | None = None
_counts: Counter[int] = Counter()
_marks: dict[str, float] = {}


def hit(i: int) -> float:
    """Record that job ``i`` started; return the start time (``time.monotonic()``)."""
    now = time.monotonic()
    _counts[i] += 1
    started = _marks.setdefault("started", 0) + 1
    _marks["started"] = started
    if started == _SKIP + 1:
        _marks["first"] = now
    if started == _EXPECT:
        _marks["last"] = now
        write_report()
    elif started > _EXPECT > 0 and (_counts[i] > 1 or i >= _EXPECT):
        write_report()  # a duplicate or a stray job after the count was reached
    return now


def event(kind: str, i: int) -> float:
    """Append ``<kind> <i> <time.monotonic()>`` to ``BENCH_EVENTS``; return the time (taken
    before the write)."""
    global _events_fd
    now = time.monotonic()
    if _EVENTS:
        if _events_fd is None:
            _events_fd = os.open(_EVENTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(_events_fd, f"{kind} {i} {now:.6f}\n".encode())
    return now


def write_report() -> None:
    """Write the counts so far to ``BENCH_REPORT`` (atomically; nothing without a path)."""
    if not _REPORT:
        return
    expected = set(range(_EXPECT))
    report = {
        "started": int(_marks.get("started", 0)),
        "unique": len(_counts),
        "duplicates": sum(n - 1 for n in _counts.values() if n > 1),
        "missing": len(expected - _counts.keys()),
        "unexpected": len(_counts.keys() - expected),
        "first": _marks.get("first"),
        "last": _marks.get("last"),
        "final": False,
    }
    _write(report)


def _write(report: dict[str, object]) -> None:
    partial = f"{_REPORT}.{os.getpid()}.tmp"
    with open(partial, "w") as file:
        json.dump(report, file)
    os.replace(partial, _REPORT)


@atexit.register
def _final_report() -> None:
    if _REPORT and _counts:
        write_report()
        with open(_REPORT) as file:
            report = json.load(file)
        report["final"] = True
        _write(report)
