"""Small statistics: percentiles of latency samples and medians of repeated runs."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by the nearest-rank method."""
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))
    return ordered[rank]


def latency_ms(samples: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99 of samples in seconds, in milliseconds."""
    return {
        "p50": percentile(samples, 0.50) * 1e3,
        "p95": percentile(samples, 0.95) * 1e3,
        "p99": percentile(samples, 0.99) * 1e3,
        "n": len(samples),
    }


def median(values: Iterable[float | None]) -> float | None:
    """The median of the values that are not None (None when there are none)."""
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None
