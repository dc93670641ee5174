"""The router in front of real shards: unary calls, batches and Trade streams spanning two
shards, maker reports, cancel-on-disconnect, reads, two routers. Outcomes are checked from
the answers and from the durable record in Postgres."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import grpc
import psycopg
import pytest

from matching.v1 import gateway_pb2, gateway_pb2_grpc, orders_pb2
from tests.checkers import check_durable_record
from tests.router.support import (
    BTC,
    BUY,
    ETH,
    SELL,
    TIMEOUT,
    Cluster,
    Stub,
    T,
    batch,
    cluster,
    cmd,
    limit,
    open_orders,
    running_router,
    submit_order,
    trade,
    wait_until,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def two_shards(pg_dsn: str) -> Any:
    """shard-a serves BTC, shard-b serves ETH."""
    async with cluster(pg_dsn) as state:
        await state.start_shard("shard-a", (BTC,))
        await state.start_shard("shard-b", (ETH,))
        yield state


async def test_unary_place_amend_cancel_with_fills(two_shards: Cluster) -> None:
    async with running_router(two_shards) as (_, stub):
        maker = await submit_order(stub, limit(BTC, "maker", SELL, 5, 100, "m1"))
        assert (maker.status, maker.symbol, maker.leaves_qty) == (T.ORDER_STATUS_NEW, BTC, 5)
        resting_eth = await submit_order(stub, limit(ETH, "maker", SELL, 20, 500, "m2"))
        assert resting_eth.status == T.ORDER_STATUS_NEW and resting_eth.symbol == ETH
        taker = await submit_order(stub, limit(BTC, "taker", BUY, 3, 100, "t1"))
        assert taker.status == T.ORDER_STATUS_FILLED
        assert [(f.maker_order_id, f.price, f.quantity) for f in taker.fills] == [
            (maker.order_id, 100, 3)
        ]
        amend = orders_pb2.AmendOrder(symbol=BTC, account="maker", order_id=maker.order_id,
                                      new_quantity=4)  # fmt: skip
        amended = await stub.AmendOrder(gateway_pb2.AmendOrderRequest(amend=amend), timeout=TIMEOUT)
        assert (amended.report.cum_qty, amended.report.leaves_qty) == (3, 1)
        cancel = orders_pb2.CancelOrder(symbol=ETH, account="maker", client_order_id="m2")
        canceled = await stub.CancelOrder(
            gateway_pb2.CancelOrderRequest(cancel=cancel), timeout=TIMEOUT
        )
        assert canceled.report.status == T.ORDER_STATUS_CANCELED
        assert canceled.report.order_id == resting_eth.order_id
        got = await stub.GetOrder(
            gateway_pb2.GetOrderRequest(symbol=BTC, account="maker", client_order_id="m1"),
            timeout=TIMEOUT,
        )
        assert (got.order.order_id, got.order.cum_qty, got.order.leaves_qty) == (
            maker.order_id, 3, 1,
        )  # fmt: skip
        book = await stub.GetOrderBook(gateway_pb2.GetOrderBookRequest(symbol=BTC), timeout=TIMEOUT)
        assert [(lv.price, lv.quantity) for lv in book.book.asks] == [(100, 1)]
        assert not book.book.bids and book.seq == amended.report.seq
    acked = [maker.order_id, resting_eth.order_id, taker.order_id]
    summary = check_durable_record(two_shards.dsn, acked)
    assert summary.fills == 1 and summary.commands == {BTC: 3, ETH: 2}


async def test_submit_batch_spanning_two_shards_keeps_request_order(two_shards: Cluster) -> None:
    commands = []
    for i in range(20):
        symbol = BTC if i % 3 else ETH
        order = limit(symbol, f"acct-{i}", SELL, 20 + 10 * i, 1000 + 5 * i, f"c{i}")
        commands.append(cmd(1000 - i, place_order=order))  # ids not in any numeric order
    async with running_router(two_shards) as (_, stub):
        results = await batch(stub, commands)
    assert [r.correlation_id for r in results] == [c.correlation_id for c in commands]
    seqs: dict[str, list[int]] = defaultdict(list)
    for command, result in zip(commands, results, strict=True):
        assert result.WhichOneof("result") == "report", result
        assert result.report.symbol == command.place_order.symbol
        assert result.report.client_order_id == command.place_order.client_order_id
        assert result.report.status == T.ORDER_STATUS_NEW
        seqs[result.report.symbol].append(result.report.seq)
    for symbol, found in seqs.items():  # each symbol executed in request order
        assert found == sorted(found) and len(set(found)) == len(found), (symbol, found)
    check_durable_record(two_shards.dsn, [r.report.order_id for r in results])


async def test_mass_cancel_without_symbol_reaches_every_shard(two_shards: Cluster) -> None:
    async with running_router(two_shards) as (_, stub):
        placed = await batch(stub, [
            cmd(1, place_order=limit(BTC, "mm", SELL, 1, 200)),
            cmd(2, place_order=limit(ETH, "mm", SELL, 20, 200)),
            cmd(3, place_order=limit(ETH, "other", SELL, 20, 300)),
        ])  # fmt: skip
        assert all(r.report.status == T.ORDER_STATUS_NEW for r in placed)
        request = gateway_pb2.MassCancelRequest(mass_cancel=orders_pb2.MassCancel(account="mm"))
        result = (await stub.MassCancel(request, timeout=TIMEOUT)).result
        assert not result.errors
        cancelled = {r.symbol: list(r.expired_order_ids) for r in result.reports}
        assert cancelled == {BTC: [placed[0].report.order_id], ETH: [placed[1].report.order_id]}
        # The same in a batch: one merged result, and nothing left to cancel.
        (again,) = await batch(stub, [cmd(7, mass_cancel=orders_pb2.MassCancel(account="mm"))])
        assert again.correlation_id == 7 and not again.mass_cancel.errors
        assert {r.symbol for r in again.mass_cancel.reports} == {BTC, ETH}
        assert all(not r.expired_order_ids for r in again.mass_cancel.reports)
    assert await open_orders(two_shards.dsn, "mm") == []
    assert await open_orders(two_shards.dsn, "other") == [(ETH, placed[2].report.order_id)]


async def _read_until(call: Any, done: Any, limit_messages: int = 200) -> list[Any]:
    """Read stream results until ``done(results)``; bounded by count and the call timeout."""
    results: list[Any] = []
    for _ in range(limit_messages):
        response = await call.read()
        assert response is not grpc.aio.EOF, results
        results.extend(response.results)
        if done(results):
            return results
    raise AssertionError(f"stream condition not met after {limit_messages} messages")


async def test_trade_stream_spanning_two_shards(two_shards: Cluster) -> None:
    """Answers in request order, each symbol in seq order, and the unsolicited maker fills
    of the stream's account from both shards."""
    async with running_router(two_shards) as (_, stub):
        call = trade(stub)
        options = gateway_pb2.TradeStreamOptions(accounts=["mm"])
        sent: list[orders_pb2.OrderCommand] = []
        for m in range(5):
            commands = [
                cmd(m * 10 + 1, place_order=limit(BTC, "mm", SELL, 1, 100 + m)),
                cmd(m * 10 + 2, place_order=limit(ETH, "mm", SELL, 20, 500 + 5 * m)),
                cmd(m * 10 + 3, place_order=limit(BTC, "mm", SELL, 1, 110 + m)),
            ]
            sent.extend(commands)
            first = options if m == 0 else None
            await call.write(gateway_pb2.TradeRequest(options=first, commands=commands))
        answers = await _read_until(call, lambda rs: len(rs) >= len(sent))
        assert [r.correlation_id for r in answers] == [c.correlation_id for c in sent]
        seqs: dict[str, list[int]] = defaultdict(list)
        for answer in answers:
            assert answer.report.status == T.ORDER_STATUS_NEW, answer
            seqs[answer.report.symbol].append(answer.report.seq)
        assert all(s == sorted(s) for s in seqs.values()), seqs
        # Another client sweeps both books: the stream gets maker fills from both shards.
        await submit_order(stub, limit(BTC, "taker", BUY, 10, 200, tif=T.TIME_IN_FORCE_IOC))
        await submit_order(stub, limit(ETH, "taker", BUY, 100, 600, tif=T.TIME_IN_FORCE_IOC))
        fills = await _read_until(call, lambda rs: len(rs) >= 15)
        assert all(r.correlation_id == 0 for r in fills)
        assert all(r.report.kind == orders_pb2.REPORT_KIND_MAKER_FILL for r in fills)
        assert {r.report.account for r in fills} == {"mm"}
        by_symbol: dict[str, list[int]] = defaultdict(list)
        for r in fills:
            by_symbol[r.report.symbol].append(r.report.order_id)
        assert len(by_symbol[BTC]) == 10 and len(by_symbol[ETH]) == 5
        await call.done_writing()
        assert await call.code() == grpc.StatusCode.OK


async def _rest(stub: Stub, call: Any, account: str, options: Any) -> list[int]:
    """Rest one order of ``account`` on each shard through the stream; their ids."""
    commands = [
        cmd(1, place_order=limit(BTC, account, SELL, 1, 900)),
        cmd(2, place_order=limit(ETH, account, SELL, 20, 900)),
    ]
    await call.write(gateway_pb2.TradeRequest(options=options, commands=commands))
    answers = await _read_until(call, lambda rs: len(rs) >= 2)
    assert [a.report.status for a in answers] == [T.ORDER_STATUS_NEW] * 2, answers
    return [a.report.order_id for a in answers]


async def _no_open_orders(dsn: str, account: str) -> bool:
    """Whether the account's open orders are all gone within ~10 s (cancels are async)."""
    for _ in range(200):
        if not await open_orders(dsn, account):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_cancel_on_disconnect_cancels_on_both_shards(two_shards: Cluster) -> None:
    dsn = two_shards.dsn
    async with running_router(two_shards) as (router, stub):
        await submit_order(stub, limit(BTC, "bystander", SELL, 1, 900))
        # A clean half-close after every answer is not a disconnect (gateway.proto).
        clean = trade(stub)
        options = gateway_pb2.TradeStreamOptions(accounts=["calm"], cancel_on_disconnect=True)
        kept = await _rest(stub, clean, "calm", options)
        await clean.done_writing()
        assert await clean.code() == grpc.StatusCode.OK
        subscriptions = router.links.subscriptions
        assert await wait_until(lambda: not subscriptions.current(), TIMEOUT)
        assert [o for _, o in await open_orders(dsn, "calm")] == kept
        # A stream that goes away is.
        call = trade(stub)
        options = gateway_pb2.TradeStreamOptions(accounts=["mm"], cancel_on_disconnect=True)
        placed = await _rest(stub, call, "mm", options)
        assert [o for _, o in await open_orders(dsn, "mm")] == placed
        call.cancel()
        assert await _no_open_orders(dsn, "mm")
        assert len(await open_orders(dsn, "bystander")) == 1
        assert [o for _, o in await open_orders(dsn, "calm")] == kept
    check_durable_record(dsn, [*placed, *kept])


async def test_a_shard_leaving_membership_does_not_cancel_orders_of_connected_clients(
    two_shards: Cluster,
) -> None:
    """The router closes its link to a shard that left membership (a lapsed lease, say)
    while the shard may still serve: its clients are still connected, so their
    cancel-on-disconnect orders must stay (the link's end is no client's disconnect)."""
    state, dsn = two_shards, two_shards.dsn
    shard_a = state.shards["shard-a"]
    async with running_router(state) as (router, stub):
        call = trade(stub)
        options = gateway_pb2.TradeStreamOptions(accounts=["mm"], cancel_on_disconnect=True)
        placed = await _rest(stub, call, "mm", options)
        assert await wait_until(lambda: "mm" in shard_a.subscribers.accounts(), TIMEOUT)
        await state.leave("shard-a")
        assert await wait_until(lambda: router.links.get("shard-a") is None, TIMEOUT)
        # The shard drops the router's stream; a cancel it ran then would be queued ahead
        # of the taker below (one pipeline, in order), so the taker would find no maker.
        assert await wait_until(lambda: not shard_a.subscribers.accounts(), TIMEOUT)
        direct = grpc.aio.insecure_channel(f"127.0.0.1:{state.ports['shard-a']}")
        async with direct:
            taker_stub = gateway_pb2_grpc.OrderGatewayServiceStub(direct)
            taker = await submit_order(taker_stub, limit(BTC, "taker", BUY, 1, 900))
        assert [f.maker_order_id for f in taker.fills] == [placed[0]]
        assert [o for _, o in await open_orders(dsn, "mm")] == placed[1:]
        # Back in membership, the new link subscribes again: a disconnect now cancels there.
        await state.join("shard-a")
        assert await wait_until(lambda: "mm" in shard_a.subscribers.accounts(), TIMEOUT)
        again = cmd(3, place_order=limit(BTC, "mm", SELL, 1, 950))
        await call.write(gateway_pb2.TradeRequest(commands=[again]))
        (answer,) = await _read_until(call, lambda rs: len(rs) >= 1)
        assert answer.report.status == T.ORDER_STATUS_NEW
        call.cancel()
        assert await _no_open_orders(dsn, "mm")
    check_durable_record(dsn, [*placed, taker.order_id, answer.report.order_id])


async def test_a_shard_leaving_membership_still_cancels_for_a_client_already_gone(
    two_shards: Cluster,
) -> None:
    """A client with cancel-on-disconnect goes; the router's cancel is still running (one
    part waits in the buffer for ETH, which is moving) and cannot reach shard-a (a batch
    held by a row lock is in flight on the link; the cancel queues behind it). Then shard-a
    leaves membership: the link's end must still cancel that client's orders there, so it
    unsubscribes only the clients that are still connected."""
    state, dsn = two_shards, two_shards.dsn
    shard_a = state.shards["shard-a"]
    options = gateway_pb2.TradeStreamOptions(accounts=["mm"], cancel_on_disconnect=True)
    gone_options = gateway_pb2.TradeStreamOptions(accounts=["gone"], cancel_on_disconnect=True)
    connect = psycopg.AsyncConnection.connect(dsn)
    async with (
        running_router(state, buffer_max_seconds=0.5) as (router, stub),
        await connect as lock,
    ):
        staying, going = trade(stub), trade(stub)
        kept = await _rest(stub, staying, "mm", options)
        doomed = await _rest(stub, going, "gone", gone_options)
        await lock.execute("SELECT 1 FROM symbol_owner WHERE symbol = %s FOR UPDATE", (BTC,))
        held = asyncio.ensure_future(submit_order(stub, limit(BTC, "x", BUY, 1, 10)))
        link_a = router.links.get("shard-a")
        assert link_a is not None
        await state.move(ETH, "shard-c")  # shard-b is not told: it keeps serving ETH
        assert await wait_until(lambda: ETH in router.dispatcher.in_transit(), TIMEOUT)
        going.cancel()
        assert await wait_until(lambda: router.dispatcher.buffers.count(ETH) == 1, TIMEOUT)
        assert await wait_until(lambda: link_a.queued > 0, TIMEOUT)  # unsent, behind `held`
        await state.leave("shard-a")
        assert await wait_until(lambda: not shard_a.subscribers.accounts(), TIMEOUT)
        await lock.rollback()  # the held batch commits; what the stream's end ran follows
        await asyncio.wait([held], timeout=TIMEOUT)  # its answer was lost with the link
        assert await _no_open_orders(dsn, "gone")  # ETH: shard-b's part of the router's cancel
        assert [o for _, o in await open_orders(dsn, "mm")] == kept
        await state.assign(ETH, "shard-b")  # the move rolls back: the buffered cancel drains
        assert await wait_until(lambda: not router.dispatcher.buffers.count(ETH), TIMEOUT)
        staying.cancel()
    check_durable_record(dsn, [*kept, *doomed])


async def test_two_routers_over_the_same_shards(two_shards: Cluster) -> None:
    async with (
        running_router(two_shards, router_id="r1") as (_, one),
        running_router(two_shards, router_id="r2") as (_, two),
    ):
        watcher = trade(one)
        first = gateway_pb2.TradeRequest(options=gateway_pb2.TradeStreamOptions(accounts=["mm"]))
        await watcher.write(first)
        maker = await submit_order(one, limit(ETH, "mm", SELL, 20, 500))
        resting = await submit_order(two, limit(BTC, "mm", SELL, 2, 100))
        taker = await submit_order(two, limit(ETH, "taker", BUY, 20, 500))
        assert [f.maker_order_id for f in taker.fills] == [maker.order_id]
        taker_btc = await submit_order(one, limit(BTC, "taker", BUY, 2, 100))
        assert [f.maker_order_id for f in taker_btc.fills] == [resting.order_id]
        fills = await _read_until(watcher, lambda rs: len(rs) >= 2)
        assert {(r.report.symbol, r.report.order_id) for r in fills} == {
            (ETH, maker.order_id), (BTC, resting.order_id),
        }  # fmt: skip
        watcher.cancel()
    summary = check_durable_record(two_shards.dsn, [maker.order_id, resting.order_id])
    assert summary.fills == 2


async def test_reads_of_unknown_symbols_and_market_data(two_shards: Cluster) -> None:
    async with running_router(two_shards) as (_, stub):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetOrderBook(gateway_pb2.GetOrderBookRequest(symbol="NOPE"), timeout=TIMEOUT)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetOrder(
                gateway_pb2.GetOrderRequest(symbol=BTC, account="nobody", order_id=1),
                timeout=TIMEOUT,
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # the shard's answer
        stream: Any = stub.StreamMarketData(
            gateway_pb2.StreamMarketDataRequest(symbols=[BTC]), timeout=TIMEOUT
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stream.read()
        # This router runs without Redis: market data streams are unavailable, said so.
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "no market data cache" in (caught.value.details() or "")
