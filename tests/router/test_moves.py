"""Symbols without a reachable owner: buffered during a move and delivered to the new owner,
bounded by time and count; NOT_OWNER answers retried once after a table refresh; a broken
shard link gives callers a retryable status, never a hang; bounded link queues."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from cluster.model import AssignmentState
from matching.v1 import gateway_pb2, orders_pb2
from router.server import RouterNode
from tests.checkers import check_durable_record
from tests.router.support import (
    BTC,
    BUY,
    ETH,
    SELL,
    TIMEOUT,
    Cluster,
    T,
    batch,
    cluster,
    cmd,
    error_of,
    journal,
    limit,
    open_orders,
    running_router,
    submit_order,
    trade,
    wait_until,
)

pytestmark = pytest.mark.integration
RC = T.RejectCode


@pytest.fixture
async def two_shards(pg_dsn: str) -> Any:
    """shard-a serves BTC, shard-b serves ETH."""
    async with cluster(pg_dsn) as state:
        await state.start_shard("shard-a", (BTC,))
        await state.start_shard("shard-b", (ETH,))
        yield state


def _state(router: RouterNode, symbol: str) -> AssignmentState | None:
    assignment = router.table.assignment(symbol)
    return None if assignment is None else assignment.state


async def test_a_moving_symbol_is_buffered_then_delivered_to_the_new_owner(
    two_shards: Cluster,
) -> None:
    state = two_shards
    async with running_router(state, buffer_max_seconds=60.0) as (router, stub):
        maker = await submit_order(stub, limit(BTC, "maker", SELL, 5, 100, "m1"))
        await state.move(BTC, "shard-c")
        assert await wait_until(lambda: _state(router, BTC) is AssignmentState.MOVING, TIMEOUT)
        waiting = []
        for i in range(3):  # one at a time, so their arrival order is known
            order = limit(BTC, f"taker-{i}", BUY, 1, 100, f"t{i}")
            waiting.append(asyncio.ensure_future(submit_order(stub, order)))
            assert await wait_until(lambda n=i + 1: router.dispatcher.buffers.count(BTC) == n,
                                    TIMEOUT)  # fmt: skip
        mixed = await batch(stub, [cmd(1, place_order=limit(ETH, "x", SELL, 20, 900))])
        assert mixed[0].report.status == T.ORDER_STATUS_NEW  # other symbols are unaffected
        assert not any(task.done() for task in waiting)
        # The old owner lets go, the new one fences and loads the book, then ACTIVE.
        await state.stop_shard("shard-a", leave=True)
        await state.start_shard("shard-c", (BTC,), assign=False)
        assert not any(task.done() for task in waiting)
        await state.assign(BTC, "shard-c")
        reports = await asyncio.wait_for(asyncio.gather(*waiting), TIMEOUT)
    assert [r.status for r in reports] == [T.ORDER_STATUS_FILLED] * 3
    assert [r.seq for r in reports] == [2, 3, 4]  # arrival order, after the maker's seq 1
    assert [r.fills[0].maker_leaves_qty for r in reports] == [4, 3, 2]
    assert all(r.fills[0].maker_order_id == maker.order_id for r in reports)
    assert [row[1] for row in await journal(state.dsn, BTC)] == [
        "maker", "taker-0", "taker-1", "taker-2",
    ]  # fmt: skip
    check_durable_record(state.dsn, [maker.order_id, *(r.order_id for r in reports)])


async def test_buffer_bounds_answer_unavailable_symbol_moving(two_shards: Cluster) -> None:
    state = two_shards
    async with running_router(state, buffer_max_seconds=0.3, buffer_max_commands=2) as (
        router,
        stub,
    ):
        await state.move(BTC, "shard-b")
        assert await wait_until(lambda: _state(router, BTC) is AssignmentState.MOVING, TIMEOUT)
        with pytest.raises(grpc.aio.AioRpcError) as caught:  # past the time bound
            await submit_order(stub, limit(BTC, "late", BUY, 1, 100, "l1"))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        error = error_of(caught.value)
        assert (error.reason, error.retryable, error.symbol) == (
            RC.REJECT_CODE_SYMBOL_MOVING, True, BTC,
        )  # fmt: skip
        too_many = [cmd(i, place_order=limit(BTC, "many", BUY, 1, 100)) for i in (1, 2, 3)]
        results = await batch(stub, [*too_many, cmd(4, place_order=limit(ETH, "e", BUY, 20, 5))])
        assert [r.error.reason for r in results[:3]] == [RC.REJECT_CODE_SYMBOL_MOVING] * 3
        assert results[3].report.status == T.ORDER_STATUS_NEW
    assert await journal(state.dsn, BTC) == []  # nothing reached the shard


async def test_not_owner_answer_is_retried_once_after_a_refresh(two_shards: Cluster) -> None:
    state = two_shards
    await state.assign(ETH, "shard-a")  # wrong: shard-a does not serve ETH
    async with running_router(state, buffer_max_seconds=30.0) as (router, stub):
        pending = asyncio.ensure_future(submit_order(stub, limit(ETH, "mm", SELL, 20, 500, "e1")))
        assert await wait_until(lambda: router.dispatcher.retried == 1, TIMEOUT)
        assert not pending.done()  # waiting for the table to name another owner
        await state.assign(ETH, "shard-b")
        report = await asyncio.wait_for(pending, TIMEOUT)
        assert (report.status, report.symbol, report.seq) == (T.ORDER_STATUS_NEW, ETH, 1)
        assert router.dispatcher.retried == 1
    check_durable_record(state.dsn, [report.order_id])


async def test_not_owner_twice_returns_the_shards_error(two_shards: Cluster) -> None:
    state = two_shards
    await state.assign(ETH, "shard-a")
    async with running_router(state, buffer_max_seconds=0.5) as (router, stub):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await submit_order(stub, limit(ETH, "mm", SELL, 20, 500, "e1"))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert error_of(caught.value).reason == RC.REJECT_CODE_NOT_OWNER
        assert router.dispatcher.retried == 1  # once, not more
        results = await batch(stub, [
            cmd(1, place_order=limit(ETH, "mm", SELL, 20, 500)),
            cmd(2, place_order=limit(BTC, "mm", SELL, 1, 500)),
        ])  # fmt: skip
        assert results[0].error.reason == RC.REJECT_CODE_NOT_OWNER and results[0].error.retryable
        assert results[1].report.status == T.ORDER_STATUS_NEW
        assert router.dispatcher.retried == 2
    assert await journal(state.dsn, ETH) == []


async def test_a_broken_link_gives_retryable_errors_then_recovers(two_shards: Cluster) -> None:
    state = two_shards
    async with running_router(state, buffer_max_seconds=0.5) as (router, stub):
        await submit_order(stub, limit(BTC, "warm", BUY, 1, 10))
        await state.stop_shard("shard-a")  # still registered and assigned: a crash, say
        link = router.links.get("shard-a")
        assert link is not None and await wait_until(lambda: not link.ready, TIMEOUT)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await submit_order(stub, limit(BTC, "down", BUY, 1, 10))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert error_of(caught.value).retryable
        call = trade(stub, timeout=TIMEOUT)
        commands = [cmd(1, place_order=limit(BTC, "s", BUY, 1, 10)),
                    cmd(2, place_order=limit(ETH, "s", BUY, 20, 10))]  # fmt: skip
        await call.write(gateway_pb2.TradeRequest(commands=commands))
        answer = await call.read()
        assert [r.correlation_id for r in answer.results] == [1, 2]
        assert answer.results[0].error.retryable
        assert answer.results[0].error.code == T.ERROR_CODE_UNAVAILABLE
        assert answer.results[1].report.status == T.ORDER_STATUS_NEW
        call.cancel()
        # A mass cancel for every symbol names the ones it could not reach: a caller can
        # retry on them (the unreachable shard held BTC), and ETH's shard ran it.
        sweep = gateway_pb2.MassCancelRequest(mass_cancel=orders_pb2.MassCancel(account="s"))
        swept = (await stub.MassCancel(sweep, timeout=TIMEOUT)).result
        assert [(e.symbol, e.retryable) for e in swept.errors] == [(BTC, True)]
        assert [r.symbol for r in swept.reports] == [ETH]
        # Back on the same address: the link reconnects and the symbol trades again.
        await state.start_shard("shard-a", (BTC,), assign=False)
        assert await wait_until(lambda: link.ready, TIMEOUT)
        report = await submit_order(stub, limit(BTC, "up", BUY, 1, 10))
        assert report.status == T.ORDER_STATUS_NEW
    assert [row[1] for row in await journal(state.dsn, BTC)] == ["warm", "up"]


async def test_cancel_on_disconnect_with_a_link_down_cancels_once_when_it_is_back(
    two_shards: Cluster,
) -> None:
    """shard-a is down (still assigned): its symbols get their own cancel, which waits in the
    buffer, and the shard-wide cancel names them as not reached. They are not cancelled a
    second time for that: one mass cancel in the journal once the shard is back."""
    state = two_shards
    async with running_router(state) as (router, stub):
        call = trade(stub)
        options = gateway_pb2.TradeStreamOptions(accounts=["mm"], cancel_on_disconnect=True)
        place = cmd(1, place_order=limit(BTC, "mm", SELL, 1, 900))
        await call.write(gateway_pb2.TradeRequest(options=options, commands=[place]))
        assert (await call.read()).results[0].report.status == T.ORDER_STATUS_NEW
        await state.stop_shard("shard-a")
        link = router.links.get("shard-a")
        assert link is not None and await wait_until(lambda: not link.ready, TIMEOUT)
        call.cancel()
        assert await wait_until(lambda: router.dispatcher.buffers.count(BTC) == 1, TIMEOUT)
        await state.start_shard("shard-a", (BTC,), assign=False)
        assert router.gateway is not None
        await router.gateway.drain(TIMEOUT)  # the stream's whole clean-up is done
    assert await open_orders(state.dsn, "mm") == []
    assert [row[1] for row in await journal(state.dsn, BTC)] == ["mm", "mm"]  # place, cancel


async def test_a_full_link_queue_is_resource_exhausted(two_shards: Cluster) -> None:
    state = two_shards
    async with running_router(state, link_max_queued=2) as (_, stub):
        three = [cmd(i, place_order=limit(BTC, "q", BUY, 1, 10)) for i in (1, 2, 3)]
        results = await batch(stub, [*three, cmd(4, place_order=limit(ETH, "q", BUY, 20, 10))])
        for result in results[:3]:
            assert result.error.reason == RC.REJECT_CODE_OVERLOADED, result
            assert result.error.code == T.ERROR_CODE_RESOURCE_EXHAUSTED and result.error.retryable
        assert results[3].report.status == T.ORDER_STATUS_NEW
    async with running_router(state, link_max_queued=0) as (_, stub):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await submit_order(stub, limit(BTC, "q", BUY, 1, 10))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_of(caught.value).reason == RC.REJECT_CODE_OVERLOADED
    assert await journal(state.dsn, BTC) == []


@pytest.mark.parametrize(
    "buffer_seconds",
    [60.0, 0.3],
    ids=["buffer-outlasts-the-move", "move-outlasts-the-buffer"],
)
async def test_cancel_on_disconnect_reaches_a_symbol_that_was_moving(
    two_shards: Cluster, buffer_seconds: float
) -> None:
    """No shard serves a symbol between its old owner letting go and its new owner loading
    it: the router's cancel for it waits in the move buffer and reaches the new owner. It
    waits up to protective_wait (45 s), even where other commands would have been answered
    SYMBOL_MOVING after buffer_max_seconds (here the new owner starts 1 s after the cancel
    was buffered)."""
    state = two_shards
    async with running_router(state, buffer_max_seconds=buffer_seconds) as (router, stub):
        call = trade(stub)
        options = gateway_pb2.TradeStreamOptions(accounts=["mm"], cancel_on_disconnect=True)
        place = cmd(1, place_order=limit(BTC, "mm", SELL, 1, 900))
        await call.write(gateway_pb2.TradeRequest(options=options, commands=[place]))
        placed = (await call.read()).results[0].report
        assert placed.status == T.ORDER_STATUS_NEW
        await state.move(BTC, "shard-c")
        assert await wait_until(lambda: _state(router, BTC) is AssignmentState.MOVING, TIMEOUT)
        await state.stop_shard("shard-a", leave=True)  # let go: nobody serves BTC now
        call.cancel()
        assert await wait_until(lambda: router.dispatcher.buffers.count(BTC) == 1, TIMEOUT)
        await asyncio.sleep(1.0)
        await state.start_shard("shard-c", (BTC,), assign=False)  # loads mm's resting order
        await state.assign(BTC, "shard-c")
        for _ in range(200):  # bounded: ~10 s
            if not await open_orders(state.dsn, "mm"):
                break
            await asyncio.sleep(0.05)
    assert await open_orders(state.dsn, "mm") == []
    check_durable_record(state.dsn, [placed.order_id])
