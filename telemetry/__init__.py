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
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from api.decoding import Handler

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


# The OpenTelemetry aio interceptor assumes streaming handlers are async generators; ours
# write through their context (bounded, ordered, with a write timeout), so long-lived streams
# are traced per batch by the pipeline's spans instead of per call here.
_UNTRACED_STREAMS = frozenset({"Execute", "Trade", "StreamMarketData"})


class _TracedCalls(grpc.aio.ServerInterceptor):
    """OpenTelemetry's server interceptor for every call but the long-lived streams.

    The method check is ours, not the instrumentation's ``filter_``: its filters split the
    method path with os.path and try isinstance against grpc's ABCs, three times for three
    names, on every call (~55 us per unary call on a router: decision 0005)."""

    def __init__(self) -> None:
        self._otel = aio_server_interceptor()  # type: ignore[no-untyped-call]

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        method = handler_call_details.method.rpartition("/")[2]
        if method in _UNTRACED_STREAMS:
            return await continuation(handler_call_details)
        handler: Handler | None = await self._otel.intercept_service(
            continuation, handler_call_details
        )
        return handler


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    return [_TracedCalls()]


def client_interceptors() -> list[Any]:
    return list(aio_client_interceptors())  # type: ignore[no-untyped-call]
