"""Fixtures of the fault-injection scenarios.

They reuse the multi-process fixtures of tests/e2e (a durable redis-server of the test's
own, process cleanup, a client reading the test app's run records) and add the scale, the
environment of the fault apps and the summary of measured figures.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import procs, records, redis_server
from tests.redis_servers import RedisServer

from .figures import FIGURES
from .scale import Scale, current_scale

__all__ = ["procs", "records", "redis_server"]


@pytest.fixture(scope="session")
def scale() -> Scale:
    """The size of the scenarios: ``FAULTS_SCALE=full`` for the full size, else CI size."""
    return current_scale()


@pytest.fixture
def env(redis_server: RedisServer) -> dict[str, str]:
    """The environment of tests.apps.redis_app processes: fast leases and recovery, and
    retries enough that a job hit by several faults still completes."""
    return {
        "REDIS_URL": redis_server.url,
        "AE_PREFIX": f"faults-{uuid.uuid4().hex[:8]}",
        "CLAIM_TIMEOUT": "2",
        "RECOVERY_INTERVAL": "0.2",
        "MAX_RETRIES": "10",
    }


@pytest.fixture(scope="session", autouse=True)
def figures_summary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Write the figures the scenarios measured to ``<pytest tmp>/faults-figures.json``."""
    yield
    if FIGURES:
        path = Path(tmp_path_factory.getbasetemp()) / "faults-figures.json"
        summary: dict[str, Any] = {"scale": current_scale().name, "scenarios": FIGURES}
        path.write_text(json.dumps(summary, indent=2))
        print(f"\nfault figures written to {path}")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Show the measured figures after the run, even without ``-s``."""
    if not FIGURES:
        return
    terminalreporter.section(f"fault-injection figures ({current_scale().name} size)")
    for scenario, figures in FIGURES.items():
        terminalreporter.line(f"{scenario}: {json.dumps(figures)}")
