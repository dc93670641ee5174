# mypy: disable-error-code="attr-defined"
# (grpc's stubs type aio stream calls as sync iterators: read() and its results are untyped)
"""A symbol that changes owner keeps its reports in seq order on a client's stream: a maker
fill the old owner committed last, still on its way to the router, reaches the stream before
the new owner's answer to a later cancel (router/handovers.py waits for the old owner's
release marker, ExecuteResponse.released)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from cluster.model import AssignmentState
from matching.v1 import gateway_pb2, orders_pb2
from router.server import RouterNode
from tests.router.support import (
    BTC,
    BUY,
    SELL,
    TIMEOUT,
    Stub,
    T,
    cluster,
    cmd,
    limit,
    proxy_in_front,
    running_router,
    submit_order,
    trade,
    wait_until,
)

pytestmark = pytest.mark.integration


async def test_the_old_owners_last_fill_reaches_the_stream_before_the_new_owners_answer(
    pg_dsn: str,
) -> None:
    async with (
        cluster(pg_dsn) as state,
        proxy_in_front(state, "shard-a") as proxy,  # the old owner's replies can be held
        grpc.aio.insecure_channel(f"127.0.0.1:{state.ports['shard-a']}") as direct,
    ):  # direct: a shard-aware client, past the proxy and the router
        old = await state.start_shard("shard-a", (BTC,), address=proxy.address)
        async with running_router(state, handover_wait=30.0, buffer_max_seconds=30.0) as (
            router,
            stub,
        ):
            ended: list[str] = []
            router.dispatcher.handovers.on_end = ended.append
            call = trade(stub)
            options = gateway_pb2.TradeStreamOptions(accounts=["maker"])
            place = cmd(1, place_order=limit(BTC, "maker", SELL, 2, 500, "m"))
            await call.write(gateway_pb2.TradeRequest(options=options, commands=[place]))
            (placed,) = (await asyncio.wait_for(call.read(), TIMEOUT)).results
            assert placed.report.status == T.ORDER_STATUS_NEW, placed

            # The old owner's last batch fills the maker; the report sits in the proxy.
            proxy.hold_replies()
            taker = await submit_order(Stub(direct), limit(BTC, "taker", BUY, 1, 500, "t"))
            assert taker.status == T.ORDER_STATUS_FILLED

            # A planned move, done by hand: MOVING, the old owner lets go, the new one
            # fences and loads, ACTIVE.
            await state.move(BTC, "shard-b")
            await old.custody.quiesce(BTC)
            old.custody.drop(BTC, "shard-b")
            await state.start_shard("shard-b", (BTC,), assign=False)
            await state.assign(BTC, "shard-b")
            assert await wait_until(lambda: _active_on(router, "shard-b"), TIMEOUT)

            cancel = orders_pb2.CancelOrder(
                symbol=BTC, account="maker", order_id=placed.report.order_id
            )
            await call.write(gateway_pb2.TradeRequest(commands=[cmd(2, cancel_order=cancel)]))
            # It waits for the old owner's marker, behind the fill, both held back.
            assert await wait_until(lambda: router.dispatcher.buffers.count(BTC) == 1, TIMEOUT)
            await asyncio.sleep(0.3)
            assert router.dispatcher.buffers.count(BTC) == 1
            proxy.release_replies()

            reports: list[orders_pb2.ExecutionReport] = []
            async with asyncio.timeout(TIMEOUT):
                while len(reports) < 2:
                    reports.extend(r.report for r in (await call.read()).results)
            call.cancel()
    fill, cancelled = reports
    assert fill.kind == orders_pb2.REPORT_KIND_MAKER_FILL, fill
    assert fill.order_id == placed.report.order_id and fill.leaves_qty == 1
    assert cancelled.status == T.ORDER_STATUS_CANCELED, cancelled
    assert placed.report.seq < fill.seq < cancelled.seq
    assert ended == ["marker"]  # the old owner's marker ended the wait, not the time bound


def _active_on(router: RouterNode, shard_id: str) -> bool:
    assignment = router.table.assignment(BTC)
    return (
        assignment is not None
        and assignment.shard_id == shard_id
        and assignment.state is AssignmentState.ACTIVE
    )
