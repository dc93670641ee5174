"""Server spans (telemetry/server_spans.py) over a real grpc.aio server on loopback, with the
suite's in-memory exporter (everything sampled): one span per unary call in the caller's
trace, its status from how the call ended, no span for streams, and each method's handler
wrapped once (api/interception.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan

from api.decoding import DecodeGuard
from api.interception import Handler, HandlerWrapper
from matching.v1 import gateway_pb2, gateway_pb2_grpc, market_data_pb2, orders_pb2
from telemetry import client_interceptors, server_interceptors
from tests.tracing_setup import EXPORTER

SUBMIT = "/matching.v1.OrderGatewayService/SubmitOrder"
Context = grpc.aio.ServicerContext[Any, Any]

# What the servicer does, by the order's quantity.
ABORT_UNAVAILABLE, ABORT_NOT_FOUND, RAISE = 7, 8, 9


class _Servicer(gateway_pb2_grpc.OrderGatewayServiceServicer):
    async def SubmitOrder(
        self, request: gateway_pb2.SubmitOrderRequest, context: Context
    ) -> gateway_pb2.SubmitOrderResponse:
        quantity = request.order.quantity
        if quantity == ABORT_UNAVAILABLE:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "shard away")
        if quantity == ABORT_NOT_FOUND:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such symbol")
        if quantity == RAISE:
            raise RuntimeError("a bug")
        return gateway_pb2.SubmitOrderResponse()

    async def StreamMarketData(  # type: ignore[override]
        self, request: gateway_pb2.StreamMarketDataRequest, context: Context
    ) -> AsyncIterator[gateway_pb2.StreamMarketDataResponse]:
        yield gateway_pb2.StreamMarketDataResponse(
            updates=[market_data_pb2.MarketDataUpdate(symbol="BTC-USD")]
        )


class _Counting(HandlerWrapper):
    def __init__(self) -> None:
        super().__init__()
        self.wraps: list[str] = []

    def wrap(self, method: str, handler: Handler) -> Handler:
        self.wraps.append(method)
        return handler


@asynccontextmanager
async def _served(*interceptors: grpc.aio.ServerInterceptor) -> AsyncIterator[Any]:
    server = grpc.aio.server(interceptors=[*interceptors, DecodeGuard(), *server_interceptors()])
    servicer = _Servicer()  # type: ignore[abstract]  # the stubs mark every method abstract
    gateway_pb2_grpc.add_OrderGatewayServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        target = f"127.0.0.1:{port}"
        async with grpc.aio.insecure_channel(target, interceptors=client_interceptors()) as ch:
            yield gateway_pb2_grpc.OrderGatewayServiceStub(ch)
    finally:
        await server.stop(None)


async def _submit(stub: Any, quantity: int) -> grpc.StatusCode:
    request = gateway_pb2.SubmitOrderRequest(order=orders_pb2.PlaceOrder(quantity=quantity))
    try:
        await stub.SubmitOrder(request, timeout=10)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _server_spans() -> list[ReadableSpan]:
    return [s for s in EXPORTER.get_finished_spans() if s.kind == trace.SpanKind.SERVER]


async def test_a_unary_call_gets_a_server_span_in_the_callers_trace() -> None:
    EXPORTER.clear()
    async with _served() as stub:
        with trace.get_tracer("test").start_as_current_span("caller") as caller:
            assert await _submit(stub, 1) == grpc.StatusCode.OK
    (span,) = _server_spans()
    assert span.name == SUBMIT
    assert span.context.trace_id == caller.get_span_context().trace_id
    client = [s for s in EXPORTER.get_finished_spans() if s.kind == trace.SpanKind.CLIENT]
    assert span.parent is not None and span.parent.span_id == client[0].context.span_id
    attributes = dict(span.attributes or {})
    assert attributes.pop("net.peer.port")
    assert attributes == {
        "rpc.system": "grpc",
        "rpc.service": "matching.v1.OrderGatewayService",
        "rpc.method": "SubmitOrder",
        "rpc.grpc.status_code": 0,
        "net.peer.ip": "127.0.0.1",
    }
    assert span.status.status_code == trace.StatusCode.UNSET


@pytest.mark.parametrize(
    ("quantity", "code", "span_status", "exception_event"),
    [
        (ABORT_UNAVAILABLE, grpc.StatusCode.UNAVAILABLE, trace.StatusCode.ERROR, False),
        (ABORT_NOT_FOUND, grpc.StatusCode.NOT_FOUND, trace.StatusCode.UNSET, False),
        (RAISE, grpc.StatusCode.UNKNOWN, trace.StatusCode.ERROR, True),
    ],
)
async def test_the_span_records_how_the_call_ended(
    quantity: int, code: grpc.StatusCode, span_status: trace.StatusCode, exception_event: bool
) -> None:
    """A caller's mistake (NOT_FOUND) is no server error; a failure of the server is, and an
    exception that escapes the handler is recorded on the span."""
    EXPORTER.clear()
    async with _served() as stub:
        assert await _submit(stub, quantity) == code
    (span,) = _server_spans()
    assert (span.attributes or {})["rpc.grpc.status_code"] == code.value[0]
    assert span.status.status_code == span_status
    assert any(e.name == "exception" for e in span.events) == exception_event


async def test_streams_get_no_server_span() -> None:
    EXPORTER.clear()
    async with _served() as stub:
        request = gateway_pb2.StreamMarketDataRequest(symbols=["BTC-USD"])
        replies = [reply async for reply in stub.StreamMarketData(request, timeout=10)]
    assert [u.symbol for u in replies[0].updates] == ["BTC-USD"]
    assert _server_spans() == []


async def test_each_method_is_wrapped_once_however_many_calls() -> None:
    counting = _Counting()
    async with _served(counting) as stub:
        for quantity in (1, 1, ABORT_NOT_FOUND, 1):
            await _submit(stub, quantity)
        await _submit(stub, 1)
    assert counting.wraps == [SUBMIT]


async def test_a_handler_that_changes_is_wrapped_again_never_served_stale() -> None:
    """Keyed by method but checked by identity: an inner interceptor that builds a new
    handler per call gets a new wrapper per call."""

    async def behavior(request: Any, context: Any) -> Any:
        return request

    made: list[Handler] = []

    async def fresh(details: grpc.HandlerCallDetails) -> Handler | None:
        made.append(grpc.unary_unary_rpc_method_handler(behavior))
        return made[-1]

    async def none(details: grpc.HandlerCallDetails) -> Handler | None:
        return None

    class Details(grpc.HandlerCallDetails):
        method = SUBMIT
        invocation_metadata = ()

    counting = _Counting()
    continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]] = fresh
    served = [await counting.intercept_service(continuation, Details()) for _ in range(3)]
    assert served == made and len(counting.wraps) == 3
    assert await counting.intercept_service(none, Details()) is None
    assert len(counting.wraps) == 3
