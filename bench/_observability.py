"""What observability costs (issue 14), ours alone.

**drain**: no-op jobs drained from the shared Redis by one in-process pool, in four
variants (and a fifth, below): ``off`` (no metrics, no tracer provider), ``metrics``
(`enable_metrics`), ``metrics+api`` (metrics, and opentelemetry-api's own no-op tracer
provider: the library makes no span, as without a provider) and ``metrics+traces`` (metrics, and
OpenTelemetry's SDK tracer provider with no span processor nor exporter: every attempt makes
a recording span, each submission too). Each variant runs in a fresh process (a tracer
provider cannot be unset), the variants interleaved within each repeat; the figures are
the median drain rate, its ratio to ``off`` and the median of the ratios within a repeat
(the pairs run back to back: steadier on a busy machine), and the draining process's CPU
time per job (less disturbed than the rate by other processes on the machine), as the
ratio ``off`` / variant.

The ``metrics+traces`` process also times the SDK alone: a bare span started and ended
(no parent, attributes nor context) in a loop, in microseconds per span, to set against
the microseconds per job of ``off`` (what 95 % leaves for everything tracing adds). The
``metrics+bare-sdk-span`` variant runs the same drain with each run span reduced to that
bare SDK span (not a mode of the library: a measurement of what the SDK costs in place, so
that ``metrics+traces`` minus it is what the library's tracing adds to the SDK's).

**dashboard**: server time of the dashboard's pages (queues, jobs by status, tenant and
name, a deep page through cursors, one job) with ``listing_jobs`` finished jobs retained by
the in-memory store, measured in-process through the ASGI app (no sockets), median of 15.

    .venv/bin/python -m bench --only observability [--quick]
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from starlette.applications import Starlette

from async_endpoints import AsyncContext, AsyncEndpoints, InMemoryJobStore
from async_endpoints_redis import RedisJobStore

from ._driver import log
from ._queues import Plan
from ._redis import Server
from ._report import Target

VARIANTS = ("off", "metrics", "metrics+api", "metrics+traces", "metrics+bare-sdk-span")
SDK_SPANS = 20_000  # bare spans timed for the SDK's own cost per span


def run(server: Server, plan: Plan) -> dict[str, Any]:
    """Drain rates per variant (with ratios to ``off``) and dashboard page times."""
    server.flush()
    rates: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    cpu: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    sdk_us: list[float] = []
    steps: dict[str, list[float]] = {step: [] for step in SPAN_STEPS}
    for _ in range(max(plan.repeats, 5)):
        for variant in VARIANTS:
            found = _child("drain", server.url, variant, str(plan.drain_jobs))
            rates[variant].append(found["jobs_per_s"])
            cpu[variant].append(found["cpu_us_per_job"])
            if "sdk_us_per_span" in found:
                sdk_us.append(found["sdk_us_per_span"])
                for step in SPAN_STEPS:
                    steps[step].append(found[f"span_us_{step}"])
    server.flush()
    off = statistics.median(rates["off"])
    drain = {
        variant: {
            "jobs_per_s": statistics.median(found),
            "ratio": statistics.median(found) / off,
            "paired_ratio": statistics.median(
                rate / base for rate, base in zip(found, rates["off"], strict=True)
            ),
            "repeats": found,
            "cpu_us_per_job": statistics.median(cpu[variant]),
            "cpu_ratio": statistics.median(cpu["off"]) / statistics.median(cpu[variant]),
        }
        for variant, found in rates.items()
    }
    for variant, figures in drain.items():
        log(
            f"observability drain {variant}: {figures['jobs_per_s']:,.0f} jobs/s "
            f"({figures['ratio']:.3f} of off, paired {figures['paired_ratio']:.3f}); "
            f"{figures['cpu_us_per_job']:.1f} us CPU per job ({figures['cpu_ratio']:.3f})"
        )
    sdk = {
        "us_per_span": statistics.median(sdk_us),
        "us_per_job_off": 1e6 / off,
        "steps_us": {step: statistics.median(found) for step, found in steps.items()},
    }
    log(
        f"observability: the SDK's bare span {sdk['us_per_span']:.1f} us; a job drained with "
        f"everything off {sdk['us_per_job_off']:.1f} us"
    )
    log("observability: a run span in a loop, step by step: " + _steps_text(sdk["steps_us"]))
    pages = _child("dashboard", str(plan.listing_jobs))
    for page, ms in pages.items():
        log(f"observability dashboard {page}: {ms:.1f} ms")
    return {"drain": drain, "sdk": sdk, "dashboard_ms": pages, "retained": plan.listing_jobs}


def _child(*args: str) -> Any:
    """Run one measurement in a fresh process; its JSON answer."""
    command = [sys.executable, "-m", "bench._observability", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


async def _drain(url: str, variant: str, jobs: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    if variant in ("metrics+traces", "metrics+bare-sdk-span"):
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider

        trace.set_tracer_provider(TracerProvider())  # no span processor, no exporter
        if variant == "metrics+traces":
            figures["sdk_us_per_span"] = _sdk_span_us()
            figures.update(_span_steps_us())
        else:
            _bare_run_spans()
    elif variant == "metrics+api":
        from opentelemetry import trace

        trace.set_tracer_provider(trace.NoOpTracerProvider())
    store = RedisJobStore(url, prefix=f"bench-obs-{uuid.uuid4().hex[:8]}")
    endpoints = AsyncEndpoints(store=store, max_concurrency=100, max_queue_size=jobs + 1)

    async def noop(ctx: AsyncContext[None]) -> None:
        return None

    endpoints.add_handler(noop, name="Noop")
    if variant != "off":
        endpoints.enable_metrics()
    async with endpoints.running(workers=False):
        for start in range(0, jobs, 500):
            batch = range(start, min(jobs, start + 500))
            await asyncio.gather(*(endpoints.submit("Noop") for _ in batch))
        began, cpu = time.perf_counter(), time.process_time()
        await endpoints.drain()
        figures["jobs_per_s"] = jobs / (time.perf_counter() - began)
        figures["cpu_us_per_job"] = (time.process_time() - cpu) / jobs * 1e6
        return figures


class _BareSpan:
    """An attempt's span reduced to the SDK's own work: started and ended, no parent,
    attributes nor context (the floor any instrumentation of the attempt pays)."""

    __slots__ = ("span",)

    def __init__(self, span: Any) -> None:
        self.span = span

    def failed(self, error: Any) -> None:
        pass

    def end(self) -> None:
        self.span.end()


def _bare_run_spans() -> None:
    """Make the pool's run spans `_BareSpan`s (a measurement of the SDK, not a mode of the
    library: the submit spans stay as they are)."""
    from async_endpoints import _worker

    def start(tracer: Any, job: Any) -> _BareSpan:
        return _BareSpan(tracer.start_span("async_endpoints.run"))

    _worker.start_run_span = start  # type: ignore[assignment]


def _sdk_span_us() -> float:
    """Microseconds per bare span of the SDK's tracer (best of 3 loops)."""
    from opentelemetry import trace

    tracer = trace.get_tracer_provider().get_tracer("bench")
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        for _ in range(SDK_SPANS):
            tracer.start_span("bench").end()
        best = min(best, time.perf_counter() - began)
    return best / SDK_SPANS * 1e6


#: What a run span costs in a tight loop, one step added at a time: the SDK's bare span,
#: then with the job's parent context and span kind, with the three attributes (built per
#: span, as the library does), made current meanwhile (attach, detach), and the library's
#: own `start_run_span` (all of them, and its bookkeeping).
SPAN_STEPS = ("bare", "parent", "attributes", "current", "library")


def _span_steps_us() -> dict[str, float]:
    """Microseconds per span of each of `SPAN_STEPS` (best of 3 loops, interleaved)."""
    from opentelemetry import context, trace

    from async_endpoints import JobRequest, NewJob
    from async_endpoints._tracing import _parent, start_run_span, submit_span, tracer

    made = tracer()
    with submit_span("Noop", uuid.uuid4()) as carried:
        pass
    job = NewJob(uuid.uuid4(), "Noop", 3, JobRequest(trace_context=carried)).stored(
        datetime.now(UTC)
    )
    parent, kind, name = _parent(carried or ""), trace.SpanKind.CONSUMER, "async_endpoints.run Noop"

    def attributes() -> dict[str, Any]:
        return {
            "async_endpoints.job_id": str(job.id),
            "async_endpoints.job_name": job.name,
            "async_endpoints.retry_count": job.retry_count,
        }

    def bare() -> None:
        made.start_span(name).end()

    def with_parent() -> None:
        made.start_span(name, context=parent, kind=kind).end()

    def with_attributes() -> None:
        made.start_span(name, context=parent, kind=kind, attributes=attributes()).end()

    def current() -> None:
        span = made.start_span(name, context=parent, kind=kind, attributes=attributes())
        context.detach(context.attach(trace.set_span_in_context(span, parent)))
        span.end()

    def library() -> None:
        start_run_span(made, job).end()

    steps = dict(
        zip(SPAN_STEPS, (bare, with_parent, with_attributes, current, library), strict=True)
    )
    best = dict.fromkeys(SPAN_STEPS, float("inf"))
    for _ in range(3):
        for step, once in steps.items():
            began = time.perf_counter()
            for _ in range(SDK_SPANS):
                once()
            best[step] = min(best[step], (time.perf_counter() - began) / SDK_SPANS * 1e6)
    return {f"span_us_{step}": us for step, us in best.items()}


async def _dashboard(retained: int) -> dict[str, float]:
    app = Starlette()
    store = InMemoryJobStore(max_retained=retained + 100)
    endpoints = AsyncEndpoints(app, store=store, max_concurrency=256, max_queue_size=None)

    async def noop(ctx: AsyncContext[None]) -> None:
        return None

    async def broken(ctx: AsyncContext[None]) -> None:
        raise RuntimeError("broken")

    endpoints.add_handler(noop, name="Noop")
    endpoints.add_handler(broken, name="Broken", max_retries=0)
    endpoints.map_dashboard("/d", authorize=lambda request: True)
    async with endpoints.running(workers=False):
        for start in range(0, retained, 50_000):
            for index in range(start, min(retained, start + 50_000)):
                tenant = "acme" if index % 3 == 0 else None
                await endpoints.submit("Broken" if index % 100 == 0 else "Noop", tenant=tenant)
            await endpoints.drain()
        one = (await endpoints.list_jobs(status="Completed", limit=1)).jobs[0]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            deep = "/d/jobs?status=Completed"
            for _ in range(20):
                found = re.search(r'href="([^"]+)" rel="next"', (await client.get(deep)).text)
                assert found is not None, "page 21 needs 1,050 retained jobs (--listing-jobs)"
                deep = found.group(1).replace("&amp;", "&")
            pages = {
                "queues": "/d/",
                "jobs": "/d/jobs",
                "failed": "/d/jobs?status=Failed",
                "tenant": "/d/jobs?tenant=acme",
                "name": "/d/jobs?name=Broken",
                "page 21": deep,
                "one job": f"/d/jobs/{one.id}",
            }
            return {name: await _page_ms(client, path) for name, path in pages.items()}


async def _page_ms(client: Any, path: str) -> float:
    samples = []
    for _ in range(15):
        began = time.perf_counter()
        answer = await client.get(path)
        samples.append((time.perf_counter() - began) * 1e3)
        assert answer.status_code == 200, (path, answer.status_code)
    return statistics.median(samples)


def _main(argv: list[str]) -> None:
    logging.disable(logging.CRITICAL)  # the Broken jobs' failures, by the thousand
    if argv[0] == "drain":
        print(json.dumps(asyncio.run(_drain(argv[1], argv[2], int(argv[3])))))
    else:
        print(json.dumps(asyncio.run(_dashboard(int(argv[1])))))


if __name__ == "__main__":
    _main(sys.argv[1:])


def _steps_text(steps: dict[str, float]) -> str:
    return ", ".join(f"{step} {us:.1f} us" for step, us in steps.items())


def summary(found: dict[str, Any]) -> tuple[list[str], list[Target]]:
    """The lines that show the issue-14 figures, and its targets judged on them."""
    if not found:
        return [], []
    drain, pages = found["drain"], found["dashboard_ms"]
    lines = [
        f"drain of no-op jobs from Redis: {variant} {figures['jobs_per_s']:,.0f} jobs/s "
        f"({figures['ratio']:.1%} of off, {figures['paired_ratio']:.1%} paired); "
        f"{figures['cpu_us_per_job']:.1f} us of this process's CPU per job "
        f"(off / this: {figures['cpu_ratio']:.1%})"
        for variant, figures in drain.items()
    ]
    sdk = found.get("sdk")
    if sdk:
        lines.append(
            f"the SDK's own bare span: {sdk['us_per_span']:.1f} us, against "
            f"{sdk['us_per_job_off']:.1f} us per job with everything off (95 % leaves "
            f"{sdk['us_per_job_off'] / 19:.1f} us per job)"
        )
        if "steps_us" in sdk:
            lines.append("a run span in a loop, step by step: " + _steps_text(sdk["steps_us"]))
    worst = max(pages.values())
    lines.append(
        f"dashboard pages with {found['retained']:,} retained jobs: "
        + ", ".join(f"{page} {ms:.1f} ms" for page, ms in pages.items())
    )
    ratio = drain["metrics+traces"]["ratio"]
    goals = [
        Target("drain with metrics and traces >= 95 % of off", f"{ratio:.1%}", ratio >= 0.95),
        Target(
            f"dashboard page with {found['retained']:,} retained <= 100 ms",
            f"{worst:.1f} ms",
            worst <= 100,
        ),
    ]
    return lines, goals
