"""How big the fault scenarios are: a CI size by default, the full size on request.

``FAULTS_SCALE=full pytest tests/faults -s`` runs the full size and prints its figures;
the default (``ci``) keeps the whole test suite well under ten minutes on two cores.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Scale:
    """The knobs of the scenarios that grow with the scale."""

    name: str
    #: Worker kills: jobs submitted, workers killed (one every ``kill_interval`` s).
    kill_jobs: int
    kills: int
    kill_interval: float
    #: Redis crash: submissions per second, seconds of load before and between the two
    #: crashes, seconds each outage lasts.
    crash_rate: float
    crash_load_seconds: float
    outage_seconds: float
    #: Redis frozen: handlers each worker runs at once (all of them are caught by the freeze).
    frozen_concurrency: int


SCALES = {
    "ci": Scale(
        name="ci",
        kill_jobs=600,
        kills=4,
        kill_interval=2.0,
        crash_rate=40,
        crash_load_seconds=2.0,
        outage_seconds=2.0,
        frozen_concurrency=4,
    ),
    "full": Scale(
        name="full",
        kill_jobs=5000,
        kills=25,
        kill_interval=2.0,
        crash_rate=100,
        crash_load_seconds=8.0,
        outage_seconds=5.0,
        frozen_concurrency=16,
    ),
}


def current_scale() -> Scale:
    """The scale named by ``FAULTS_SCALE`` (``ci`` when unset)."""
    name = os.environ.get("FAULTS_SCALE", "ci")
    if name not in SCALES:
        raise ValueError(f"FAULTS_SCALE must be one of {', '.join(SCALES)}, not {name!r}")
    return SCALES[name]
