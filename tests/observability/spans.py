"""One tracer provider with an in-memory exporter, made the global provider only while a
test that traces runs (`tracing`), so that the rest of the suite runs untraced.

OpenTelemetry lets a process set its global provider once; like OpenTelemetry's own test
utilities, `tracing` resets that private state before and after. The provider is always
the same object, so tracers that already resolved it stay right.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

EXPORTER = InMemorySpanExporter()
PROVIDER = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))


def install_provider(provider: trace.TracerProvider | None) -> None:
    """Make ``provider`` the global tracer provider (None: none, as before any was set)."""
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]
    if provider is not None:
        trace.set_tracer_provider(provider)


@contextmanager
def tracing() -> Iterator[InMemorySpanExporter]:
    """The global tracer provider is the in-memory one inside the block (spans cleared)."""
    EXPORTER.clear()
    install_provider(PROVIDER)
    try:
        yield EXPORTER
    finally:
        install_provider(None)
        EXPORTER.clear()
