"""The package runs with its core dependencies alone: the optional extras (Redis,
metrics, traces, dashboard) and the development tools are imported only by the features
that need them, so the quick start's in-memory app starts on a bare install."""

from __future__ import annotations

import subprocess
import sys
import textwrap

#: Top-level modules that only an extra or the development tools install.
NOT_CORE = (
    "redis",
    "hiredis",
    "prometheus_client",
    "opentelemetry",
    "jinja2",
    "fastapi",
    "uvicorn",
    "playwright",
    "asgi_lifespan",
    "pytest",
)

SCRIPT = textwrap.dedent(
    """
    import asyncio
    import importlib.abc
    import sys

    BLOCKED = set(sys.argv[1].split(","))

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
            return None

    sys.meta_path.insert(0, Blocker())

    from starlette.applications import Starlette

    from async_endpoints import AsyncContext, AsyncEndpoints

    app = Starlette()
    endpoints = AsyncEndpoints(app)

    @endpoints.map_async_post("/echo")
    async def echo(ctx: AsyncContext[dict]) -> dict:
        return ctx.request

    endpoints.map_job_details("/jobs/{job_id}")
    endpoints.map_job_events()

    async def main() -> None:
        async with endpoints.running():
            job = await endpoints.submit("echo", {"n": 1})
            done = await endpoints.wait_for(job.id, timeout=10)
            print(done.status.value, done.result)

    asyncio.run(main())
    """
)


def test_the_in_memory_engine_runs_without_any_optional_dependency() -> None:
    """With every extra's module made unimportable, the package imports, maps routes,
    runs a job and reads its result."""
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, ",".join(NOT_CORE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Completed {'n': 1}"
