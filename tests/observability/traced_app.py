"""A worker app for the cross-process tests: Redis store from ``REDIS_URL`` and
``AE_PREFIX``; the spans it ends are written as JSON lines to ``SPANS_FILE``; its metrics
are served on ``METRICS_PORT`` (as the README tells worker processes to). ``CLAIM_TIMEOUT``
(seconds, default 30) sets its claim timeout and its recovery interval (a tenth of it)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from async_endpoints import AsyncContext, AsyncEndpoints
from async_endpoints_redis import RedisJobStore


class FileExporter(SpanExporter):
    """Appends one JSON line per span to a file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a", encoding="utf-8") as out:
            for span in spans:
                line = {
                    "name": span.name,
                    "trace_id": f"{span.context.trace_id:032x}",
                    "span_id": f"{span.context.span_id:016x}",
                    "parent_id": None if span.parent is None else f"{span.parent.span_id:016x}",
                    "status": span.status.status_code.name,
                    "attributes": dict(span.attributes or {}),
                    "events": [event.name for event in span.events],
                }
                out.write(json.dumps(line) + "\n")
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(FileExporter(os.environ["SPANS_FILE"])))
trace.set_tracer_provider(provider)

claim_timeout = float(os.environ.get("CLAIM_TIMEOUT", "30"))
endpoints = AsyncEndpoints(
    store=RedisJobStore(os.environ["REDIS_URL"], prefix=os.environ["AE_PREFIX"]),
    max_retries=0,
    claim_timeout=claim_timeout,
    recovery_interval=claim_timeout / 10,
)


async def traced(ctx: AsyncContext[None]) -> str:
    return "traced"


async def failing(ctx: AsyncContext[None]) -> None:
    raise ValueError("failing on purpose")


async def hanging(ctx: AsyncContext[None]) -> str:
    """Hangs on its first attempt (the test kills its process), returns on the next."""
    if ctx.retry_count:
        return "after the recovery"
    await asyncio.Event().wait()
    return "never"


endpoints.add_handler(traced, name="Traced")
endpoints.add_handler(hanging, name="Hanging", max_retries=1)
endpoints.add_handler(failing, name="Failing")
endpoints.metrics.serve(int(os.environ["METRICS_PORT"]), "127.0.0.1")
