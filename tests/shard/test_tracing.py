"""A trace crosses client → shard → batch match → batch commit (in-memory exporter)."""

from __future__ import annotations

from typing import Any

import grpc
from opentelemetry import trace

from matching.v1 import gateway_pb2, gateway_pb2_grpc, orders_pb2
from telemetry import client_interceptors
from tests.shard.support import config, gateway, place, prepare_db, running_node
from tests.tracing_setup import EXPORTER


async def test_a_trace_crosses_client_shard_and_commit(pg_dsn: str) -> None:
    await prepare_db(pg_dsn)
    EXPORTER.clear()
    async with running_node(config(pg_dsn)) as node:
        channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{node.port}", interceptors=client_interceptors()
        )
        async with channel:
            stub = gateway_pb2_grpc.OrderGatewayServiceStub(channel)
            with trace.get_tracer("test").start_as_current_span("client-request") as root:
                await stub.SubmitOrder(
                    gateway_pb2.SubmitOrderRequest(order=place("BTC-USDT", "a", 2, 5, 100))
                )
    spans = EXPORTER.get_finished_spans()
    trace_id = root.get_span_context().trace_id
    in_trace = [s for s in spans if s.context.trace_id == trace_id]
    server = [s for s in in_trace if s.kind == trace.SpanKind.SERVER]
    assert any("SubmitOrder" in s.name for s in in_trace if s.kind == trace.SpanKind.CLIENT)
    assert server, [s.name for s in spans]
    server_ctx = server[0].context
    for name in ("shard.batch.match", "shard.batch.commit"):
        batch_spans = [s for s in spans if s.name == name]
        assert any(
            link.context.span_id == server_ctx.span_id and link.context.trace_id == trace_id
            for s in batch_spans
            for link in s.links
        ), f"no {name} span links the request's server span"


async def test_unary_calls_get_a_server_span_and_long_lived_streams_none(pg_dsn: str) -> None:
    await prepare_db(pg_dsn)
    EXPORTER.clear()
    async with running_node(config(pg_dsn)) as node:
        channel, stub = gateway(node.port)
        async with channel:
            await stub.SubmitOrder(
                gateway_pb2.SubmitOrderRequest(order=place("BTC-USDT", "a", 2, 5, 100))
            )
            open_trade: Any = stub.Trade  # typed by the stubs as a plain iterator
            call = open_trade(timeout=30.0)
            command = orders_pb2.OrderCommand(place_order=place("BTC-USDT", "b", 1, 5, 90))
            await call.write(gateway_pb2.TradeRequest(commands=[command]))
            answer = await call.read()
            await call.done_writing()
            assert answer.results[0].report.order_id > 0
            assert await call.code() == grpc.StatusCode.OK
    server = [s.name for s in EXPORTER.get_finished_spans() if s.kind == trace.SpanKind.SERVER]
    assert any(name.endswith("/SubmitOrder") for name in server), server
    assert not any(name.endswith("/Trade") for name in server), server
