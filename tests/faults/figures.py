"""The measured figures of the fault scenarios, printed and kept for a JSON summary."""

from __future__ import annotations

import statistics
from typing import Any

#: scenario name -> its figures, filled by `report` as the scenarios run.
FIGURES: dict[str, dict[str, Any]] = {}


def report(scenario: str, **figures: Any) -> None:
    """Keep ``figures`` under ``scenario`` and print them (``pytest -s`` shows them)."""
    FIGURES[scenario] = figures
    shown = ", ".join(f"{name}={value}" for name, value in figures.items())
    print(f"\n[{scenario}] {shown}")


def spread(values: list[float]) -> dict[str, float | int | None]:
    """Count, p50 and max of ``values`` (seconds, rounded to milliseconds)."""
    if not values:
        return {"n": 0, "p50": None, "max": None}
    return {
        "n": len(values),
        "p50": round(statistics.median(values), 3),
        "max": round(max(values), 3),
    }
