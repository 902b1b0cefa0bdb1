"""The observability extras are optional: without them the package imports and runs, and
asking for metrics or the dashboard says which extra to install."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("prometheus_client", "jinja2", "opentelemetry"):
            raise ImportError(name)
sys.meta_path.insert(0, Hide())
from starlette.applications import Starlette
from async_endpoints import AsyncEndpoints, ConfigurationError
endpoints = AsyncEndpoints(Starlette())
for call in (endpoints.map_metrics, lambda: endpoints.map_dashboard(authorize=lambda r: True)):
    try:
        call()
    except ConfigurationError as exc:
        print(exc)
hidden = ("prometheus_client", "jinja2", "opentelemetry")
assert not [m for m in sys.modules if m.split(".")[0] in hidden]
"""


def test_without_the_extras_the_package_works_and_names_the_missing_extra() -> None:
    """map_metrics and map_dashboard raise ConfigurationError naming the extra."""
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        'metrics need prometheus-client: pip install "async-endpoints[metrics]"',
        'the dashboard needs Jinja2: pip install "async-endpoints[dashboard]"',
    ]


def test_map_dashboard_needs_authorize() -> None:
    """authorize is a required keyword: leaving it out is a TypeError at wiring time."""
    from starlette.applications import Starlette

    from async_endpoints import AsyncEndpoints

    endpoints = AsyncEndpoints(Starlette())
    try:
        endpoints.map_dashboard("/dashboard")  # type: ignore[call-arg]
    except TypeError as exc:
        assert "authorize" in str(exc)
    else:
        raise AssertionError("map_dashboard without authorize was accepted")
