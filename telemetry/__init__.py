"""OpenTelemetry set-up shared by routers and shards: tracer provider, gRPC interceptors.

The standard OTEL_* variables work (the SDK reads OTEL_TRACES_SAMPLER,
OTEL_TRACES_SAMPLER_ARG, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, ...). Spans are
exported over OTLP only when OTEL_EXPORTER_OTLP_ENDPOINT is set and the exporter package is
installed; otherwise tracing still propagates context but exports nothing. Tests install
their own provider (with an in-memory exporter) before a server starts; setup_tracing
leaves an existing provider alone.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from .server_spans import ServerSpans

log = logging.getLogger(__name__)

DEFAULT_SAMPLE_RATIO = 0.01  # when OTEL_TRACES_SAMPLER is unset: 1 % of new traces


def setup_tracing(service_name: str) -> None:
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return  # already configured (by a test, or an earlier call)
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    sampler = (
        None
        if "OTEL_TRACES_SAMPLER" in os.environ
        else ParentBased(TraceIdRatioBased(DEFAULT_SAMPLE_RATIO))
    )
    provider = TracerProvider(resource=resource, sampler=sampler)
    _add_otlp_exporter(provider)
    trace.set_tracer_provider(provider)


def _add_otlp_exporter(provider: TracerProvider) -> None:
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found]  # noqa: PLC0415
            OTLPSpanExporter,
        )
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
    except ImportError:
        log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but opentelemetry-exporter-otlp is "
            "not installed; spans are not exported"
        )
        return
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    return [ServerSpans()]


def client_interceptors() -> list[Any]:
    return list(aio_client_interceptors())  # type: ignore[no-untyped-call]
