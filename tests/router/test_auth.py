"""Authentication through a router in front of a real shard (decision 0018): tokens map to
the accounts they may trade, the router refuses the rest, shards accept only the cluster's
token on ShardService. Refusals are checked to change nothing in Postgres."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from api.auth import Credentials, Principal, bearer_interceptors
from api.status import decode_command_error
from matching.v1 import gateway_pb2, gateway_pb2_grpc, orders_pb2, shard_pb2, shard_pb2_grpc
from tests.router.support import (
    BTC,
    BUY,
    SELL,
    TIMEOUT,
    Cluster,
    Stub,
    T,
    batch,
    cluster,
    cmd,
    journal,
    limit,
    open_orders,
    running_router,
    submit_order,
    trade,
)

pytestmark = pytest.mark.integration

CLUSTER_TOKEN = "cluster-token-for-tests-0123456789"
MAKER_TOKEN = "maker-token-for-tests-0123456789"
DENIED = grpc.StatusCode.PERMISSION_DENIED
CLIENTS = Credentials.of_token(MAKER_TOKEN, Principal("maker-desk", frozenset({"maker"})))


@pytest.fixture
async def guarded(pg_dsn: str) -> Any:
    """shard-a serves BTC and requires the cluster token."""
    async with cluster(pg_dsn) as state:
        await state.start_shard("shard-a", (BTC,), cluster_token=CLUSTER_TOKEN)
        yield state


@asynccontextmanager
async def router(state: Cluster) -> AsyncIterator[int]:
    """A router that checks CLIENTS and presents the cluster token; yields its port."""
    async with running_router(state, credentials=CLIENTS, cluster_token=CLUSTER_TOKEN) as (
        node,
        _,
    ):
        yield node.port


@asynccontextmanager
async def client(port: int, token: str | None) -> AsyncIterator[Stub]:
    interceptors = bearer_interceptors(token) if token else None
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", interceptors=interceptors)
    try:
        yield gateway_pb2_grpc.OrderGatewayServiceStub(channel)
    finally:
        await channel.close()


async def test_an_allowed_account_trades_and_its_orders_are_durable(guarded: Cluster) -> None:
    async with router(guarded) as port, client(port, MAKER_TOKEN) as stub:
        report = await submit_order(stub, limit(BTC, "maker", SELL, 5, 100, "m1"))
        assert report.status == T.ORDER_STATUS_NEW
        book = await stub.GetOrderBook(gateway_pb2.GetOrderBookRequest(symbol=BTC), timeout=TIMEOUT)
        assert [(lv.price, lv.quantity) for lv in book.book.asks] == [(100, 5)]
        found = await stub.GetOrder(
            gateway_pb2.GetOrderRequest(symbol=BTC, account="maker", order_id=report.order_id),
            timeout=TIMEOUT,
        )
        assert found.order.leaves_qty == 5
    assert await open_orders(guarded.dsn, "maker") == [(BTC, report.order_id)]


@pytest.mark.parametrize("token", [None, "not-a-known-token-0123456789"])
async def test_calls_without_a_known_token_are_unauthenticated(
    guarded: Cluster, token: str | None
) -> None:
    async with router(guarded) as port, client(port, token) as stub:
        calls = [
            stub.SubmitOrder(
                gateway_pb2.SubmitOrderRequest(order=limit(BTC, "maker", SELL, 5, 100, "x1")),
                timeout=TIMEOUT,
            ),
            stub.SubmitBatch(gateway_pb2.SubmitBatchRequest(commands=[]), timeout=TIMEOUT),
            stub.GetOrderBook(gateway_pb2.GetOrderBookRequest(symbol=BTC), timeout=TIMEOUT),
        ]
        for call in calls:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        stream = trade(stub)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stream.read()
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")  # health stays open
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        await channel.close()
    assert await journal(guarded.dsn, BTC) == []


async def test_another_accounts_commands_are_refused_and_change_nothing(guarded: Cluster) -> None:
    async with running_router(guarded, cluster_token=CLUSTER_TOKEN) as (_, open_stub):
        victim = await submit_order(open_stub, limit(BTC, "victim", SELL, 5, 100, "v1"))
    before = await journal(guarded.dsn, BTC)
    async with router(guarded) as port, client(port, MAKER_TOKEN) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await submit_order(stub, limit(BTC, "victim", BUY, 5, 100, "v2"))
        assert err.value.code() == DENIED
        found = decode_command_error(err.value.trailing_metadata())  # type: ignore[arg-type]
        assert found is not None and found.reason == T.REJECT_CODE_PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as err:
            mass = orders_pb2.MassCancel(account="victim")
            await stub.MassCancel(gateway_pb2.MassCancelRequest(mass_cancel=mass), timeout=TIMEOUT)
        assert err.value.code() == DENIED
        with pytest.raises(grpc.aio.AioRpcError) as err:
            request = gateway_pb2.GetOrderRequest(
                symbol=BTC, account="victim", order_id=victim.order_id
            )
            await stub.GetOrder(request, timeout=TIMEOUT)
        assert err.value.code() == DENIED
        cancel = orders_pb2.CancelOrder(symbol=BTC, account="victim", order_id=victim.order_id)
        mixed = await batch(
            stub,
            [
                cmd(1, cancel_order=cancel),
                cmd(2, place_order=limit(BTC, "maker", BUY, 2, 90, "m1")),
            ],
        )
        assert [r.correlation_id for r in mixed] == [1, 2]
        assert mixed[0].error.reason == T.REJECT_CODE_PERMISSION_DENIED
        assert mixed[0].error.symbol == BTC
        assert mixed[1].report.status == T.ORDER_STATUS_NEW
    assert await open_orders(guarded.dsn, "victim") == [(BTC, victim.order_id)]
    after = await journal(guarded.dsn, BTC)
    assert after[: len(before)] == before
    assert [account for _, account, _ in after[len(before) :]] == ["maker"]


async def test_a_trade_stream_covers_only_allowed_accounts(guarded: Cluster) -> None:
    async with router(guarded) as port, client(port, MAKER_TOKEN) as stub:
        foreign = trade(stub)
        options = gateway_pb2.TradeStreamOptions(accounts=["maker", "victim"])
        await foreign.write(gateway_pb2.TradeRequest(options=options))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await foreign.read()
        assert err.value.code() == DENIED

        # No accounts named: the stream covers the credential's own, so it gets their
        # maker fills, and a command for another account is refused on it.
        own = trade(stub)
        place = cmd(1, place_order=limit(BTC, "maker", SELL, 5, 100, "m1"))
        await own.write(gateway_pb2.TradeRequest(options=gateway_pb2.TradeStreamOptions(),
                                                 commands=[place]))  # fmt: skip
        assert (await own.read()).results[0].report.status == T.ORDER_STATUS_NEW
        stranger = cmd(2, place_order=limit(BTC, "victim", BUY, 1, 100, "v1"))
        await own.write(gateway_pb2.TradeRequest(commands=[stranger]))
        refused = (await own.read()).results[0]
        assert refused.error.reason == T.REJECT_CODE_PERMISSION_DENIED
        async with running_router(guarded, cluster_token=CLUSTER_TOKEN) as (_, open_stub):
            taker = await submit_order(open_stub, limit(BTC, "taker", BUY, 2, 100, "t1"))
        assert taker.status == T.ORDER_STATUS_FILLED
        maker_fill = (await own.read()).results[0].report
        assert (maker_fill.kind, maker_fill.account) == (orders_pb2.REPORT_KIND_MAKER_FILL, "maker")
        await own.done_writing()
        assert await own.code() == grpc.StatusCode.OK
    assert await open_orders(guarded.dsn, "victim") == []


async def test_a_shard_with_a_cluster_token_refuses_other_callers(guarded: Cluster) -> None:
    port = guarded.ports["shard-a"]
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        execute: Any = shard_pb2_grpc.ShardServiceStub(channel).Execute
        call = execute(timeout=TIMEOUT)
        with pytest.raises(grpc.aio.AioRpcError) as err:  # the write itself may see it
            await call.write(shard_pb2.ExecuteRequest())
            await call.read()
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gateway_pb2_grpc.OrderGatewayServiceStub(channel).SubmitOrder(
                gateway_pb2.SubmitOrderRequest(order=limit(BTC, "maker", SELL, 5, 100, "s1")),
                timeout=TIMEOUT,
            )
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await channel.close()
    assert await journal(guarded.dsn, BTC) == []


async def test_shard_aware_clients_trade_their_accounts_on_the_shard(pg_dsn: str) -> None:
    async with cluster(pg_dsn) as state:
        await state.start_shard("shard-a", (BTC,), cluster_token=CLUSTER_TOKEN, credentials=CLIENTS)
        async with client(state.ports["shard-a"], MAKER_TOKEN) as stub:
            report = await submit_order(stub, limit(BTC, "maker", SELL, 5, 100, "m1"))
            assert report.status == T.ORDER_STATUS_NEW
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await submit_order(stub, limit(BTC, "victim", SELL, 5, 100, "v1"))
            assert err.value.code() == DENIED
        async with client(state.ports["shard-a"], CLUSTER_TOKEN) as stub:  # the cluster: all
            other = await submit_order(stub, limit(BTC, "victim", SELL, 5, 101, "v2"))
            assert other.status == T.ORDER_STATUS_NEW
        assert await open_orders(pg_dsn, "victim") == [(BTC, other.order_id)]
