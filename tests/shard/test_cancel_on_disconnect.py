# mypy: disable-error-code="attr-defined"
# (grpc's stubs type aio stream calls as sync iterators: read() and its results are untyped)
"""Cancel-on-disconnect on a shard's Trade stream, and Execute's account (un)subscriptions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import psycopg

from matching.v1 import gateway_pb2, gateway_pb2_grpc, orders_pb2, shard_pb2, shard_pb2_grpc
from matching.v1 import types_pb2 as T
from persistence import failpoints
from shard.ownership import SymbolState
from tests.scrape import scrape
from tests.shard.support import config, gateway, place, prepare_db, running_node, submit
from tools.services.ports import free_port


def resting_count(dsn: str, account: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM orders WHERE account = %s AND leaves_qty > 0", (account,)
        ).fetchone()
    return int(row[0]) if row else 0


async def until_resting(dsn: str, account: str, expected: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while resting_count(dsn, account) != expected:
        assert time.monotonic() < deadline, resting_count(dsn, account)
        await asyncio.sleep(0.05)


async def trade_requests(
    account: str, done: asyncio.Event
) -> AsyncIterator[gateway_pb2.TradeRequest]:
    yield gateway_pb2.TradeRequest(
        options=gateway_pb2.TradeStreamOptions(cancel_on_disconnect=True, accounts=[account]),
        commands=[orders_pb2.OrderCommand(place_order=place("BTC-USDT", account, 1, 1, 100))],
    )
    await done.wait()


@asynccontextmanager
async def resting_trade_stream(
    port: int, account: str
) -> AsyncIterator[tuple[gateway_pb2_grpc.OrderGatewayServiceStub, Any, asyncio.Event]]:
    """A Trade stream with cancel-on-disconnect for ``account``, whose one order rests;
    setting the event half-closes it."""
    channel, stub = gateway(port)
    async with channel:
        done = asyncio.Event()
        call = stub.Trade(trade_requests(account, done))
        assert (await call.read()).results[0].report.order_id
        yield stub, call, done


async def test_clean_half_close_keeps_orders(pg_dsn: str) -> None:
    await prepare_db(pg_dsn)
    async with running_node(config(pg_dsn)) as node:
        async with resting_trade_stream(node.port, "calm") as (_, call, done):
            done.set()  # half-close after the answer
            assert await call.read() == grpc.aio.EOF
            assert await call.code() == grpc.StatusCode.OK
        await asyncio.sleep(0.3)
        assert resting_count(pg_dsn, "calm") == 1


async def test_broken_stream_cancels_the_accounts_orders(pg_dsn: str) -> None:
    await prepare_db(pg_dsn)
    async with running_node(config(pg_dsn)) as node:
        async with resting_trade_stream(node.port, "gone") as (_, call, _done):
            assert resting_count(pg_dsn, "gone") == 1
            call.cancel()  # what a client crash or a network failure looks like to the shard
        await until_resting(pg_dsn, "gone", 0)


async def test_execute_unsubscribe_stops_reports_and_cancel(pg_dsn: str) -> None:
    await prepare_db(pg_dsn)
    async with running_node(config(pg_dsn)) as node:
        sub = shard_pb2.AccountSubscription(account="maker", cancel_on_disconnect=True)
        requests: asyncio.Queue[shard_pb2.ExecuteRequest | None] = asyncio.Queue()

        async def stream() -> AsyncIterator[shard_pb2.ExecuteRequest]:
            while (item := await requests.get()) is not None:
                yield item

        def command(n: int, account: str, side: int) -> shard_pb2.ShardCommand:
            return shard_pb2.ShardCommand(
                correlation_id=n, place_order=place("BTC-USDT", account, side, 1, 100)
            )

        async with grpc.aio.insecure_channel(f"127.0.0.1:{node.port}") as channel:
            call = shard_pb2_grpc.ShardServiceStub(channel).Execute(stream())
            requests.put_nowait(shard_pb2.ExecuteRequest(subscribe=[sub], batch_id=1))
            requests.put_nowait(
                shard_pb2.ExecuteRequest(batch_id=2, commands=[command(1, "maker", 1)])
            )
            assert (await call.read()).batch_id == 2
            requests.put_nowait(
                shard_pb2.ExecuteRequest(
                    batch_id=3, unsubscribe_accounts=["maker"], commands=[command(2, "taker", 2)]
                )
            )
            answer = await call.read()
            # Unsubscribed before the taker traded: no unsolicited maker report came first.
            assert answer.batch_id == 3 and answer.results[0].report.fills
            requests.put_nowait(
                shard_pb2.ExecuteRequest(batch_id=4, commands=[command(3, "maker", 1)])
            )
            assert (await call.read()).batch_id == 4
            call.cancel()  # a broken stream: but "maker" was unsubscribed, so nothing cancels
        await asyncio.sleep(0.3)
        assert resting_count(pg_dsn, "maker") == 1


async def test_an_execute_stream_that_ends_cleanly_still_cancels_subscribed_accounts(
    pg_dsn: str,
) -> None:
    """shard.proto: an Execute stream that ends without first unsubscribing the account
    cancels its orders, even a clean half-close (a killed router can look like one)."""
    await prepare_db(pg_dsn)
    async with running_node(config(pg_dsn)) as node:
        sub = shard_pb2.AccountSubscription(account="subscribed", cancel_on_disconnect=True)
        placed = shard_pb2.ShardCommand(
            correlation_id=1, place_order=place("BTC-USDT", "subscribed", 1, 1, 100)
        )
        done = asyncio.Event()

        async def stream() -> AsyncIterator[shard_pb2.ExecuteRequest]:
            yield shard_pb2.ExecuteRequest(subscribe=[sub], batch_id=1, commands=[placed])
            await done.wait()

        async with grpc.aio.insecure_channel(f"127.0.0.1:{node.port}") as channel:
            call = shard_pb2_grpc.ShardServiceStub(channel).Execute(stream())
            assert (await call.read()).results[0].report.order_id
            assert resting_count(pg_dsn, "subscribed") == 1
            done.set()  # half-close after the answer: clean
            assert await call.read() == grpc.aio.EOF
        await until_resting(pg_dsn, "subscribed", 0)


async def test_a_stream_broken_while_its_symbol_reloads_cancels_once_the_symbol_serves(
    pg_dsn: str,
) -> None:
    """A failed commit sends BTC reloading (its epoch claim held up by a row lock here); the
    client's stream breaks meanwhile. Its BTC order is cancelled once BTC serves again."""
    await prepare_db(pg_dsn)
    async with running_node(config(pg_dsn)) as node:
        stream = resting_trade_stream(node.port, "gone")
        async with stream as (stub, call, _done), btc_reloading(pg_dsn, stub):
            owned = node.ownership.get("BTC-USDT")
            assert owned is not None and owned.state is SymbolState.RECOVERING
            call.cancel()
            await asyncio.sleep(0.3)
            assert resting_count(pg_dsn, "gone") == 1  # owed: BTC's book is away
        await until_resting(pg_dsn, "gone", 0)


def _command(order: orders_pb2.PlaceOrder) -> orders_pb2.OrderCommand:
    return orders_pb2.OrderCommand(place_order=order)


@asynccontextmanager
async def btc_reloading(
    dsn: str, stub: gateway_pb2_grpc.OrderGatewayServiceStub
) -> AsyncIterator[None]:
    """A failed commit sends BTC reloading; its epoch claim, held up by a row lock, keeps it
    reloading until the block ends."""
    with psycopg.connect(dsn) as blocker:
        blocker.execute("SELECT 1 FROM symbol_owner WHERE symbol = 'BTC-USDT' FOR SHARE")
        failpoints.configure("before_commit=fail")
        try:
            [failed] = await submit(stub, [_command(place("BTC-USDT", "x", 1, 1, 80))])
        finally:
            failpoints.configure("")
        assert failed.error.retryable, failed
        yield
        blocker.commit()


async def test_a_mass_cancel_of_every_symbol_answers_for_a_reloading_one(pg_dsn: str) -> None:
    """A mass cancel without a symbol covers every symbol the shard owns: one reloading now
    gets a retryable error in the result, never silence (its orders stay, and the caller must
    know they did)."""
    await prepare_db(pg_dsn)
    async with running_node(config(pg_dsn)) as node:
        channel, stub = gateway(node.port)
        async with channel:
            for symbol, quantity in (("BTC-USDT", 1), ("ETH-USDT", 20)):
                [placed] = await submit(stub, [_command(place(symbol, "mm", 1, quantity, 90))])
                assert placed.report.status == T.ORDER_STATUS_NEW, placed
            async with btc_reloading(pg_dsn, stub):
                everything = orders_pb2.OrderCommand(
                    mass_cancel=orders_pb2.MassCancel(symbol="", account="mm")
                )
                [result] = await submit(stub, [everything])
    mass = result.mass_cancel
    assert [r.symbol for r in mass.reports] == ["ETH-USDT"]
    assert [(e.symbol, e.retryable) for e in mass.errors] == [("BTC-USDT", True)]
    assert resting_count(pg_dsn, "mm") == 1  # BTC's: the caller was told it was not cancelled


class ExecuteStream:
    """A router's Execute stream, written to on demand."""

    def __init__(self, channel: grpc.aio.Channel, router_id: str) -> None:
        self._requests: asyncio.Queue[shard_pb2.ExecuteRequest] = asyncio.Queue()
        options = shard_pb2.ExecuteStreamOptions(router_id=router_id)
        self._requests.put_nowait(shard_pb2.ExecuteRequest(options=options))
        self.call = shard_pb2_grpc.ShardServiceStub(channel).Execute(self._stream())

    async def _stream(self) -> AsyncIterator[shard_pb2.ExecuteRequest]:
        while True:
            yield await self._requests.get()

    def send(self, **fields: Any) -> None:
        self._requests.put_nowait(shard_pb2.ExecuteRequest(**fields))

    def subscribe(self, account: str, *, cancel_on_disconnect: bool = False) -> None:
        sub = shard_pb2.AccountSubscription(
            account=account, cancel_on_disconnect=cancel_on_disconnect
        )
        self.send(subscribe=[sub])

    async def read(self) -> shard_pb2.ExecuteResponse:
        return await asyncio.wait_for(self.call.read(), 10)


def system_cancels(message: shard_pb2.ExecuteResponse) -> list[tuple[str, list[int]]]:
    return [
        (r.report.account, list(r.report.expired_order_ids))
        for r in message.results
        if r.report.kind == orders_pb2.REPORT_KIND_SYSTEM_CANCEL
    ]


async def test_a_router_whose_link_broke_is_told_on_reconnecting_what_was_cancelled(
    pg_dsn: str,
) -> None:
    """The shard cancels what router r1's broken link subscribed with cancel-on-disconnect.
    A router subscribed to the account then (r2) is told at once; r1 is told when it
    reconnects and subscribes again, once; r2 reconnecting is not told twice."""
    await prepare_db(pg_dsn)
    metrics = free_port()
    async with (
        running_node(config(pg_dsn, metrics_listen=f"127.0.0.1:{metrics}")) as node,
        grpc.aio.insecure_channel(f"127.0.0.1:{node.port}") as channel,
    ):
        broken, other = ExecuteStream(channel, "r1"), ExecuteStream(channel, "r2")
        broken.subscribe("mm", cancel_on_disconnect=True)
        other.subscribe("mm")
        placed = shard_pb2.ShardCommand(
            correlation_id=1, place_order=place("BTC-USDT", "mm", 1, 1, 100)
        )
        broken.send(batch_id=1, commands=[placed])
        order_id = (await broken.read()).results[0].report.order_id
        assert order_id
        broken.call.cancel()  # the link breaks; router r1 and its clients stay up
        assert system_cancels(await other.read()) == [("mm", [order_id])]
        await until_resting(pg_dsn, "mm", 0)
        seen = await asyncio.to_thread(scrape, metrics)
        assert seen[("spotmatch_shard_held_system_cancels", (("shard", "shard-1"),))] == 1

        again = ExecuteStream(channel, "r1")
        again.subscribe("mm", cancel_on_disconnect=True)
        assert system_cancels(await again.read()) == [("mm", [order_id])]

        other.call.cancel()
        other_again = ExecuteStream(channel, "r2")
        other_again.subscribe("mm")
        probe = shard_pb2.ShardCommand(
            correlation_id=2, place_order=place("BTC-USDT", "probe", 1, 1, 90)
        )
        other_again.send(batch_id=7, commands=[probe])
        first = await other_again.read()  # a held report would come before the answer
        assert first.batch_id == 7 and not system_cancels(first), first
        again.call.cancel()
        other_again.call.cancel()
