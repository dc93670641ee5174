# mypy: disable-error-code="attr-defined"
# (grpc's stubs type aio stream calls as sync iterators: read() and its results are untyped)
"""ExecutionReport.side through a shard's gRPC gateway: the order's side for cancel and
amend answers too (the command does not name it), SIDE_UNSPECIFIED for a mass cancel or an
order that was not found, and the opposite side on a maker's report of a crossing amend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from matching.v1 import gateway_pb2, orders_pb2, types_pb2
from tests.shard.support import config, gateway, place, prepare_db, running_node

BTC = "BTC-USDT"
BUY, SELL, NO_SIDE = types_pb2.SIDE_BUY, types_pb2.SIDE_SELL, types_pb2.SIDE_UNSPECIFIED
TIMEOUT = 10.0


async def test_cancel_amend_and_mass_cancel_answers_carry_the_orders_side(pg_dsn: str) -> None:
    await prepare_db(pg_dsn)
    async with running_node(config(pg_dsn)) as node:
        channel, stub = gateway(node.port)
        async with channel:

            async def submit(order: orders_pb2.PlaceOrder) -> orders_pb2.ExecutionReport:
                request = gateway_pb2.SubmitOrderRequest(order=order)
                response: gateway_pb2.SubmitOrderResponse = await stub.SubmitOrder(
                    request, timeout=TIMEOUT
                )
                return response.report

            async def cancel(**fields: object) -> orders_pb2.ExecutionReport:
                msg = orders_pb2.CancelOrder(symbol=BTC, **fields)  # type: ignore[arg-type]
                request = gateway_pb2.CancelOrderRequest(cancel=msg)
                response: gateway_pb2.CancelOrderResponse = await stub.CancelOrder(
                    request, timeout=TIMEOUT
                )
                return response.report

            ask = await submit(place(BTC, "alice", SELL, 5, 100))
            bid = await submit(place(BTC, "bob", BUY, 3, 90, cloid="b-1"))
            assert (ask.side, bid.side) == (SELL, BUY)

            amend = orders_pb2.AmendOrder(
                symbol=BTC, account="alice", order_id=ask.order_id, new_quantity=4
            )
            amended = (
                await stub.AmendOrder(gateway_pb2.AmendOrderRequest(amend=amend), timeout=TIMEOUT)
            ).report
            assert (amended.status, amended.leaves_qty) == (types_pb2.ORDER_STATUS_NEW, 4)
            assert amended.side == SELL

            cancelled = await cancel(account="alice", order_id=ask.order_id)
            assert (cancelled.status, cancelled.order_id) == (
                types_pb2.ORDER_STATUS_CANCELED,
                ask.order_id,
            )
            assert cancelled.side == SELL
            by_cloid = await cancel(account="bob", client_order_id="b-1")
            assert (by_cloid.status, by_cloid.side) == (types_pb2.ORDER_STATUS_CANCELED, BUY)

            unknown = await cancel(account="alice", order_id=ask.order_id)
            assert unknown.reject_code == types_pb2.REJECT_CODE_UNKNOWN_ORDER
            assert unknown.side == NO_SIDE

            await submit(place(BTC, "carol", BUY, 1, 80))
            mass = orders_pb2.MassCancel(symbol=BTC, account="carol")
            result = (
                await stub.MassCancel(
                    gateway_pb2.MassCancelRequest(mass_cancel=mass), timeout=TIMEOUT
                )
            ).result
            [report] = result.reports
            assert (len(report.expired_order_ids), report.side) == (1, NO_SIDE)


async def test_maker_report_of_a_crossing_amend_has_the_makers_side(pg_dsn: str) -> None:
    await prepare_db(pg_dsn)
    async with running_node(config(pg_dsn)) as node:
        channel, stub = gateway(node.port)
        async with channel:
            done = asyncio.Event()

            async def maker_stream() -> AsyncIterator[gateway_pb2.TradeRequest]:
                yield gateway_pb2.TradeRequest(
                    options=gateway_pb2.TradeStreamOptions(accounts=["maker"]),
                    commands=[
                        orders_pb2.OrderCommand(
                            correlation_id=1, place_order=place(BTC, "maker", SELL, 2, 101)
                        )
                    ],
                )
                await done.wait()

            call = stub.Trade(maker_stream(), timeout=TIMEOUT)
            [placed] = (await call.read()).results
            assert (placed.correlation_id, placed.report.side) == (1, SELL)

            request = gateway_pb2.SubmitOrderRequest(order=place(BTC, "taker", BUY, 5, 99))
            bid = (await stub.SubmitOrder(request, timeout=TIMEOUT)).report
            amend = orders_pb2.AmendOrder(
                symbol=BTC, account="taker", order_id=bid.order_id, new_price=101
            )
            amended = (
                await stub.AmendOrder(gateway_pb2.AmendOrderRequest(amend=amend), timeout=TIMEOUT)
            ).report
            assert (amended.cum_qty, amended.side) == (2, BUY)

            [unsolicited] = (await call.read()).results
            report = unsolicited.report
            assert (unsolicited.correlation_id, report.kind) == (
                0,
                orders_pb2.REPORT_KIND_MAKER_FILL,
            )
            assert (report.order_id, report.status) == (
                placed.report.order_id,
                types_pb2.ORDER_STATUS_FILLED,
            )
            assert report.side == SELL
            done.set()
            call.cancel()
