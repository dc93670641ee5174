"""One tracer provider for the whole test session, installed before any server starts.

OpenTelemetry's global provider can be set once per process, and telemetry.setup_tracing()
leaves an existing one alone; so every in-process node in the test session exports to this
in-memory exporter, sampling everything.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

EXPORTER = InMemorySpanExporter()


def install() -> None:
    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)
