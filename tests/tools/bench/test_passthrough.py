"""The raw two-hop pair (two real processes): every command answered, in order, with the
caller's own correlation id; SubmitOrder too; the load generators run against it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from matching.v1 import gateway_pb2, gateway_pb2_grpc, orders_pb2, types_pb2
from tools.bench.load import ClientFlow, run_client
from tools.bench.passthrough import PassthroughPair
from tools.bench.unary_load import run_unary

TIMEOUT = 30.0  # every call and stream here


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PassthroughPair]:
    with PassthroughPair(tmp_path_factory.mktemp("passthrough")) as started:
        yield started


def _command(correlation_id: int, n: int) -> orders_pb2.OrderCommand:
    if n % 3 == 2:  # a mix of kinds: the proxy forwards any command's bytes
        return orders_pb2.OrderCommand(
            correlation_id=correlation_id,
            cancel_order=orders_pb2.CancelOrder(symbol="S", account="a", client_order_id="x"),
        )
    return orders_pb2.OrderCommand(
        correlation_id=correlation_id,
        place_order=orders_pb2.PlaceOrder(
            symbol="S", account="a", side=types_pb2.SIDE_BUY, price=100 + n, quantity=1
        ),
    )


async def _stream(target: str, id_base: int, messages: int, size: int) -> list[list[int]]:
    """Send everything at once (so the proxy coalesces), return the ids of each answer."""
    sent = [[id_base + m * size + i for i in range(size)] for m in range(messages)]
    requests = [
        gateway_pb2.TradeRequest(commands=[_command(cid, i) for i, cid in enumerate(ids)])
        for ids in sent
    ]
    answers: list[list[int]] = []
    async with grpc.aio.insecure_channel(target) as channel:
        stub = gateway_pb2_grpc.OrderGatewayServiceStub(channel)
        async for reply in stub.Trade(iter(requests), timeout=TIMEOUT):
            assert all(r.WhichOneof("result") == "report" for r in reply.results)
            assert all(r.report.status == types_pb2.ORDER_STATUS_NEW for r in reply.results)
            assert all(r.report.order_id > 0 for r in reply.results)
            answers.append([r.correlation_id for r in reply.results])
    assert answers == sent
    return answers


async def test_trade_answers_every_command_in_order_with_its_correlation_id(
    pair: PassthroughPair,
) -> None:
    answered = await _stream(pair.target, 1, messages=5, size=7)
    assert sum(len(a) for a in answered) == 35


async def test_concurrent_streams_each_get_their_own_answers(pair: PassthroughPair) -> None:
    # Three streams share the proxy's one Execute stream: batches mix their commands, and
    # each stream must still get exactly its own, in order (ids overlap across streams).
    results = await asyncio.gather(*(_stream(pair.target, 1, 40, 50) for _ in range(3)))
    assert [sum(len(a) for a in r) for r in results] == [2_000] * 3


async def test_submit_order_gets_a_new_report(pair: PassthroughPair) -> None:
    order = orders_pb2.PlaceOrder(symbol="S", account="a", side=types_pb2.SIDE_SELL, quantity=1)
    async with grpc.aio.insecure_channel(pair.target) as channel:
        stub = gateway_pb2_grpc.OrderGatewayServiceStub(channel)
        replies = await asyncio.gather(
            *(
                stub.SubmitOrder(gateway_pb2.SubmitOrderRequest(order=order), timeout=TIMEOUT)
                for _ in range(20)
            )
        )
    assert {r.report.status for r in replies} == {types_pb2.ORDER_STATUS_NEW}
    assert len({r.report.order_id for r in replies}) == 20  # distinct, like real order ids


async def test_other_rpcs_are_unimplemented(pair: PassthroughPair) -> None:
    async with grpc.aio.insecure_channel(pair.target) as channel:
        stub = gateway_pb2_grpc.OrderGatewayServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.SubmitBatch(gateway_pb2.SubmitBatchRequest(), timeout=TIMEOUT)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_the_stream_load_generator_runs_against_it(pair: PassthroughPair) -> None:
    flow = ClientFlow(0, ["A", "B"], seed=1, run="pt")
    result = await run_client(pair.target, flow, 50, 30, None, 4, TIMEOUT)
    assert result.rpc_failures == []
    assert (result.orders, result.errors) == (1_500, 0)
    assert len(result.latencies_ms) == len(result.acks) == 30
    assert sum(n for _, n in result.acks) == 1_500


async def test_unary_load_against_the_proxy(pair: PassthroughPair) -> None:
    result = await run_unary(pair.target, ["A", "B"], 8, TIMEOUT, seed=1, run="u", max_calls=25)
    assert (result.orders, result.errors) == (200, 0)
    assert len(result.latencies_ms) == len(result.acks) == 200
    assert len(set(result.acked_order_ids)) == 200
    assert result.elapsed_s > 0


def test_the_pair_stops_and_a_stopped_proxy_refuses(tmp_path: Path) -> None:
    with PassthroughPair(tmp_path) as short_lived:
        target = short_lived.target
    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError) as raised:
        gateway_pb2_grpc.OrderGatewayServiceStub(channel).SubmitOrder(
            gateway_pb2.SubmitOrderRequest(), timeout=2.0
        )
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert (tmp_path / "passthrough-proxy.log").read_text()
