"""OrderGatewayService on a shard, for shard-aware clients that come straight to the owner."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from api.auth import DENIED_ORDER, DENIED_STREAM, Principal, current, stream_accounts
from api.deadlines import deadline_after
from api.request_validation import (
    validate_get_order_book_request,
    validate_get_order_request,
    validate_submit_batch_request,
    validate_trade_request,
)
from api.status import abort_with_code, bad_request_status, command_error_status
from api.stream_session import run_session
from api.validation import Violation
from matching.v1 import (
    gateway_pb2,
    gateway_pb2_grpc,
    market_data_pb2,
    orders_pb2,
)
from persistence.errors import PersistenceError
from shard.config import ShardConfig
from shard.errors import Overloaded
from shard.pipeline import BookView, Pipeline
from shard.results import RequestTimers, execute_commands, order_to_pb
from shard.service import cancel_on_disconnect
from shard.streams import StreamSession, Subscribers

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
FindOrder = Callable[[str, str, int, str], Awaitable[tuple[object, ...] | None]]


def _trade_wrap(results: list[orders_pb2.CommandResult], _: Any) -> gateway_pb2.TradeResponse:
    return gateway_pb2.TradeResponse(results=results)


class GatewayServicer(gateway_pb2_grpc.OrderGatewayServiceServicer):
    def __init__(
        self,
        pipeline: Pipeline,
        subscribers: Subscribers,
        config: ShardConfig,
        find_order: FindOrder,
        timers: RequestTimers,
    ) -> None:
        self._find_order = find_order
        self._unary, self._batch, self._trade = map(timers.get, ("unary", "batch", "trade"))
        self._pipeline = pipeline
        self._subscribers = subscribers
        self._config = config

    # --- one command per call ---------------------------------------------------------

    async def SubmitOrder(
        self, request: gateway_pb2.SubmitOrderRequest, context: Context
    ) -> gateway_pb2.SubmitOrderResponse:
        report = await self._one(orders_pb2.OrderCommand(place_order=request.order), context)
        return gateway_pb2.SubmitOrderResponse(report=report)

    async def CancelOrder(
        self, request: gateway_pb2.CancelOrderRequest, context: Context
    ) -> gateway_pb2.CancelOrderResponse:
        report = await self._one(orders_pb2.OrderCommand(cancel_order=request.cancel), context)
        return gateway_pb2.CancelOrderResponse(report=report)

    async def AmendOrder(
        self, request: gateway_pb2.AmendOrderRequest, context: Context
    ) -> gateway_pb2.AmendOrderResponse:
        report = await self._one(orders_pb2.OrderCommand(amend_order=request.amend), context)
        return gateway_pb2.AmendOrderResponse(report=report)

    async def MassCancel(
        self, request: gateway_pb2.MassCancelRequest, context: Context
    ) -> gateway_pb2.MassCancelResponse:
        command = orders_pb2.OrderCommand(mass_cancel=request.mass_cancel)
        result = await self._execute_one(command, context)
        return gateway_pb2.MassCancelResponse(result=result.mass_cancel)

    async def _one(
        self, command: orders_pb2.OrderCommand, context: Context
    ) -> orders_pb2.ExecutionReport:
        return (await self._execute_one(command, context)).report

    async def _execute_one(
        self, command: orders_pb2.OrderCommand, context: Context
    ) -> orders_pb2.CommandResult:
        _bound_by_call_deadline(command, context)
        answer = gateway_pb2.SubmitBatchResponse()
        await execute_commands(
            self._pipeline, [command], answer.results, principal=current(), timed=self._unary
        )
        (result,) = answer.results
        if result.WhichOneof("result") == "error":
            status = command_error_status(result.error)
            await context.abort(status.code, status.details, status.trailing_metadata)
        return result

    # --- batches and streams ----------------------------------------------------------

    async def SubmitBatch(
        self, request: gateway_pb2.SubmitBatchRequest, context: Context
    ) -> gateway_pb2.SubmitBatchResponse:
        await _abort_if(validate_submit_batch_request(request), context)
        response = gateway_pb2.SubmitBatchResponse()
        await execute_commands(
            self._pipeline, request.commands, response.results, request.ByteSize(), current(),
            self._batch,
        )  # fmt: skip
        return response

    async def Trade(  # type: ignore[override]
        self, request_iterator: AsyncIterator[gateway_pb2.TradeRequest], context: Context
    ) -> None:
        session = StreamSession(self._config.stream_inflight, self._config.stream_write_timeout)
        principal = current()

        async def read() -> None:
            first = True
            async for request in request_iterator:
                await _abort_if(validate_trade_request(request, first_message=first), context)
                first = False
                if request.HasField("options"):
                    accounts = stream_accounts(principal, request.options.accounts)
                    if accounts is None:
                        await context.abort(grpc.StatusCode.PERMISSION_DENIED, DENIED_STREAM)
                    self._apply_options(request.options, accounts or [], session)
                if request.commands:
                    await session.enqueue(functools.partial(self._run, principal, request))

        async def close(clean: bool) -> None:
            self._subscribers.unsubscribe_all(session)
            await cancel_on_disconnect(self._pipeline, session, clean=clean)

        await run_session(session, context, read, close)

    def _apply_options(
        self, options: gateway_pb2.TradeStreamOptions, accounts: list[str], session: StreamSession
    ) -> None:
        self._subscribers.subscribe(session, _trade_wrap, accounts)
        if options.cancel_on_disconnect:
            session.cancel_on_disconnect.update(accounts)

    async def _run(
        self, principal: Principal, request: gateway_pb2.TradeRequest
    ) -> gateway_pb2.TradeResponse:
        response = gateway_pb2.TradeResponse()
        await execute_commands(
            self._pipeline, request.commands, response.results, request.ByteSize(), principal,
            self._trade,
        )  # fmt: skip
        return response

    # --- reads ------------------------------------------------------------------------

    async def GetOrder(
        self, request: gateway_pb2.GetOrderRequest, context: Context
    ) -> gateway_pb2.GetOrderResponse:
        """The committed state of an order (never state that has not committed yet)."""
        await _abort_if(validate_get_order_request(request), context)
        if not current().allows(request.account):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, DENIED_ORDER)
        try:
            row = await self._find_order(
                request.symbol, request.account, request.order_id, request.client_order_id
            )
        except PersistenceError as exc:
            log.warning("GetOrder failed: %s", exc)
            await abort_with_code(
                context, grpc.StatusCode.UNAVAILABLE, "order lookup failed: database unavailable"
            )
        except Overloaded as exc:
            await abort_with_code(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        if row is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such order for this account")
        return gateway_pb2.GetOrderResponse(order=order_to_pb(row))

    async def StreamMarketData(
        self, request: gateway_pb2.StreamMarketDataRequest, context: Context
    ) -> AsyncIterator[gateway_pb2.StreamMarketDataResponse]:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "market data streams are served by routers (not implemented yet)",
        )
        yield gateway_pb2.StreamMarketDataResponse()  # pragma: no cover - abort raises

    async def GetOrderBook(
        self, request: gateway_pb2.GetOrderBookRequest, context: Context
    ) -> gateway_pb2.GetOrderBookResponse:
        await _abort_if(validate_get_order_book_request(request), context)
        view = self._pipeline.committed_books.get(request.symbol)
        if view is None:
            code = (
                grpc.StatusCode.UNAVAILABLE
                if self._pipeline.ownership.is_known(request.symbol)
                else grpc.StatusCode.NOT_FOUND
            )
            await context.abort(code, f"this shard does not serve {request.symbol}")
        return book_response(view, request.depth)


def book_response(view: BookView, depth: int) -> gateway_pb2.GetOrderBookResponse:
    n = depth or 10
    book = market_data_pb2.OrderBookSnapshot(
        bids=[
            market_data_pb2.PriceLevel(
                price=lv.price, quantity=lv.quantity, order_count=lv.order_count
            )
            for lv in view.bids[:n]
        ],
        asks=[
            market_data_pb2.PriceLevel(
                price=lv.price, quantity=lv.quantity, order_count=lv.order_count
            )
            for lv in view.asks[:n]
        ],
        symbol_status=2 if view.halted else 1,  # type: ignore[arg-type]
    )
    return gateway_pb2.GetOrderBookResponse(
        symbol=view.symbol, seq=view.seq, book=book, source=market_data_pb2.BOOK_SOURCE_SHARD
    )


def _bound_by_call_deadline(command: orders_pb2.OrderCommand, context: Context) -> None:
    """A unary call's command is not executed past the call's deadline (orders.proto)."""
    remaining = context.time_remaining()
    if remaining is None:
        return
    deadline = deadline_after(remaining)
    own = command.deadline_unix_nanos
    command.deadline_unix_nanos = min(own, deadline) if own > 0 else deadline


async def _abort_if(violations: list[Violation], context: Context) -> None:
    if violations:
        status = bad_request_status(violations)
        await context.abort(status.code, status.details, status.trailing_metadata)
