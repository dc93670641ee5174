"""OrderGatewayService on the router: every command goes through the Dispatcher, so unary
calls, batches and streams are all coalesced into the same per-shard batches.

Statuses are the shard's for the same input (shared ``api`` validation and status table):
unary calls fail with the CommandError's status and trailer, batches and streams carry
the CommandError per command.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, TypeVar, cast

import grpc

from api.auth import (
    DENIED_ORDER,
    DENIED_STREAM,
    Principal,
    current,
    denied_commands,
    permission_denied,
    stream_accounts,
)
from api.deadlines import deadline_after
from api.request_validation import (
    validate_get_order_book_request,
    validate_get_order_request,
    validate_submit_batch_request,
    validate_trade_request,
)
from api.status import (
    COMMAND_ERROR_TRAILER,
    STATUS_DETAILS_TRAILER,
    Metadata,
    abort_malformed,
    abort_with_code,
    command_error_status,
)
from api.stream_session import run_session
from api.validation import Violation
from matching.v1 import gateway_pb2, gateway_pb2_grpc, orders_pb2
from router.config import RouterConfig
from router.links import LinkSet
from router.market_data import MarketData, ReadFailed
from router.metrics import RouterMetrics
from router.routing import Dispatcher, Table
from router.streams import TradeSession

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
Stub = gateway_pb2_grpc.OrderGatewayServiceStub
T = TypeVar("T")
_FORWARDED_TRAILERS = (COMMAND_ERROR_TRAILER, STATUS_DETAILS_TRAILER)


class RouterGateway(gateway_pb2_grpc.OrderGatewayServiceServicer):
    def __init__(
        self,
        dispatcher: Dispatcher,
        links: LinkSet,
        table: Table,
        config: RouterConfig,
        market_data: MarketData,
        metrics: RouterMetrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._dispatcher = dispatcher
        self._market_data = market_data
        self._links = links
        self._table = table
        self._config = config
        self._closing: set[asyncio.Task[Any]] = set()  # Trade streams cleaning up

    async def drain(self, timeout: float) -> None:
        """Let ended Trade streams finish their clean-up (cancel-on-disconnect) before the
        links close; bounded by ``timeout``."""
        await asyncio.sleep(0)  # streams cancelled by the server's stop start their clean-up
        if self._closing:
            await asyncio.wait(set(self._closing), timeout=timeout)

    def _deadline(self, context: Context | None, *, stream: bool = False) -> int:
        """ns since the epoch: the caller's deadline, else request_timeout from now. A
        stream's deadline bounds the whole stream, so its commands get request_timeout at
        most (a shard never executes a command older than that)."""
        timeout = self._config.request_timeout
        remaining = context.time_remaining() if context is not None else None
        if remaining is not None:
            timeout = min(timeout, remaining) if stream else remaining
        return deadline_after(timeout)

    # --- one command per call ---------------------------------------------------------

    async def SubmitOrder(
        self, request: gateway_pb2.SubmitOrderRequest, context: Context
    ) -> gateway_pb2.SubmitOrderResponse:
        command = orders_pb2.OrderCommand(place_order=request.order)
        return gateway_pb2.SubmitOrderResponse(report=(await self._one(command, context)).report)

    async def CancelOrder(
        self, request: gateway_pb2.CancelOrderRequest, context: Context
    ) -> gateway_pb2.CancelOrderResponse:
        command = orders_pb2.OrderCommand(cancel_order=request.cancel)
        return gateway_pb2.CancelOrderResponse(report=(await self._one(command, context)).report)

    async def AmendOrder(
        self, request: gateway_pb2.AmendOrderRequest, context: Context
    ) -> gateway_pb2.AmendOrderResponse:
        command = orders_pb2.OrderCommand(amend_order=request.amend)
        return gateway_pb2.AmendOrderResponse(report=(await self._one(command, context)).report)

    async def MassCancel(
        self, request: gateway_pb2.MassCancelRequest, context: Context
    ) -> gateway_pb2.MassCancelResponse:
        command = orders_pb2.OrderCommand(mass_cancel=request.mass_cancel)
        result = await self._one(command, context)
        return gateway_pb2.MassCancelResponse(result=result.mass_cancel)

    async def _one(
        self, command: orders_pb2.OrderCommand, context: Context
    ) -> orders_pb2.CommandResult:
        (result,) = await self._execute(current(), [command], self._deadline(context), "unary")
        if result.WhichOneof("result") == "error":
            await context.abort_with_status(command_error_status(result.error))
        return result

    # --- batches and streams ----------------------------------------------------------

    async def SubmitBatch(
        self, request: gateway_pb2.SubmitBatchRequest, context: Context
    ) -> gateway_pb2.SubmitBatchResponse:
        await _abort_if(validate_submit_batch_request(request), context)
        deadline = self._deadline(context)
        results = await self._execute(current(), request.commands, deadline, "batch")
        return gateway_pb2.SubmitBatchResponse(results=results)

    async def _execute(
        self,
        principal: Principal,
        commands: Sequence[orders_pb2.OrderCommand],
        deadline: int,
        kind: str,
    ) -> list[orders_pb2.CommandResult]:
        """Dispatch the commands ``principal`` may send; the others get PERMISSION_DENIED
        in their place (nothing is sent for them). ``kind`` labels the call's metrics."""
        started = time.perf_counter()
        results = await self._authorized(principal, commands, deadline)
        if self._metrics is not None:
            self._metrics.observe(kind, results, time.perf_counter() - started)
        return results

    async def _authorized(
        self, principal: Principal, commands: Sequence[orders_pb2.OrderCommand], deadline: int
    ) -> list[orders_pb2.CommandResult]:
        denied = set(denied_commands(principal, commands))
        if not denied:
            return await self._dispatcher.execute(commands, deadline)
        allowed = [c for i, c in enumerate(commands) if i not in denied]
        answers = iter(await self._dispatcher.execute(allowed, deadline) if allowed else [])
        return [
            _denied(command) if i in denied else next(answers) for i, command in enumerate(commands)
        ]

    async def Trade(  # type: ignore[override]
        self, request_iterator: AsyncIterator[gateway_pb2.TradeRequest], context: Context
    ) -> None:
        session = TradeSession(self._config.stream_inflight, self._config.stream_write_timeout)
        subscriptions = self._links.subscriptions
        principal = current()

        async def read() -> None:
            first = True
            async for request in request_iterator:
                await _abort_if(validate_trade_request(request, first_message=first), context)
                first = False
                if request.HasField("options"):
                    options = request.options
                    accounts = stream_accounts(principal, options.accounts)
                    if accounts is None:
                        await context.abort(grpc.StatusCode.PERMISSION_DENIED, DENIED_STREAM)
                    session.accounts = accounts or []
                    session.cancel_on_disconnect = options.cancel_on_disconnect
                    subscriptions.add(session, session.accounts, session.cancel_on_disconnect)
                if request.commands:
                    trade = functools.partial(self._trade, principal, request, context)
                    await session.enqueue(trade)

        async def close(clean: bool) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._closing.add(task)
            try:
                if session.cancel_on_disconnect and session.accounts and not clean:
                    with subscriptions.cancelling(session.accounts):
                        await self._cancel_accounts(session.accounts)
            finally:
                subscriptions.remove(session, session.accounts, session.cancel_on_disconnect)
                if task is not None:
                    self._closing.discard(task)

        await run_session(session, context, read, close)

    async def _trade(
        self, principal: Principal, request: gateway_pb2.TradeRequest, context: Context
    ) -> gateway_pb2.TradeResponse:
        deadline = self._deadline(context, stream=True)
        results = await self._execute(principal, request.commands, deadline, "trade")
        return gateway_pb2.TradeResponse(results=results)

    async def _cancel_accounts(self, accounts: list[str]) -> None:
        """Cancel-on-disconnect: a mass cancel of each account on every shard, and one per
        symbol in transit (no shard serves it now: it waits in the buffer for its owner, up
        to ``protective_wait``, however long other commands may wait there)."""
        commands = _mass_cancels(accounts, ["", *self._dispatcher.in_transit()])
        wait = self._config.protective_wait
        # Past the longest wait: a cancel drained from a buffer at its end still runs.
        deadline = time.time_ns() + int((wait + self._config.request_timeout) * 1e9)
        execute = functools.partial(
            self._dispatcher.execute, deadline=deadline, max_wait=wait, own=True
        )
        results = await execute(commands)
        sent = {(c.mass_cancel.symbol, c.mass_cancel.account) for c in commands}
        refused = refused_symbols(commands, results)
        again = [  # not those in transit: they had their own cancel already
            c for c in refused if (c.mass_cancel.symbol, c.mass_cancel.account) not in sent
        ]
        if again:  # a shard paused them (a move, a reload) before this router saw it
            results = [*results, *await execute(again)]
        failed = sum(len(r.mass_cancel.errors) + (r.WhichOneof("result") == "error")
                     for r in results) - len(refused)  # fmt: skip
        if failed:
            log.warning("cancel-on-disconnect: %d shard(s) not reached for %d account(s)",
                        failed, len(accounts))  # fmt: skip

    # --- reads ------------------------------------------------------------------------

    async def GetOrder(
        self, request: gateway_pb2.GetOrderRequest, context: Context
    ) -> gateway_pb2.GetOrderResponse:
        await _abort_if(validate_get_order_request(request), context)
        if not current().allows(request.account):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, DENIED_ORDER)
        stub = await self._owner(request.symbol, context)
        timeout = self._timeout(context)
        call = cast(
            "Awaitable[gateway_pb2.GetOrderResponse]", stub.GetOrder(request, timeout=timeout)
        )
        return await _forward(context, call)

    async def GetOrderBook(
        self, request: gateway_pb2.GetOrderBookRequest, context: Context
    ) -> gateway_pb2.GetOrderBookResponse:
        await _abort_if(validate_get_order_book_request(request), context)
        shard_book = functools.partial(self._book_from_shard, context=context)
        try:
            return await self._market_data.get_order_book(request, shard_book)
        except ReadFailed as exc:
            await abort_with_code(context, exc.code, exc.details, exc.trailers)

    async def _book_from_shard(
        self, request: gateway_pb2.GetOrderBookRequest, context: Context
    ) -> gateway_pb2.GetOrderBookResponse:
        """The owner's committed book (the cache's fallback); ReadFailed with the status."""
        stub = self._read_stub(request.symbol)
        try:
            return await cast(
                "Awaitable[gateway_pb2.GetOrderBookResponse]",
                stub.GetOrderBook(request, timeout=self._timeout(context)),
            )
        except grpc.aio.AioRpcError as err:
            raise ReadFailed(err.code(), err.details() or "", _forwarded(err)) from None

    async def StreamMarketData(  # type: ignore[override]
        self, request: gateway_pb2.StreamMarketDataRequest, context: Context
    ) -> None:
        await self._market_data.stream(request, context)

    async def _owner(self, symbol: str, context: Context) -> Stub:
        try:
            return self._read_stub(symbol)
        except ReadFailed as exc:
            await abort_with_code(context, exc.code, exc.details)

    def _read_stub(self, symbol: str) -> Stub:
        """The read stub of the symbol's reachable ACTIVE owner, else ReadFailed with the
        shard's status for an unknown (NOT_FOUND) or unserved (UNAVAILABLE) symbol."""
        assignment = self._table.assignment(symbol)
        if assignment is None:
            raise ReadFailed(grpc.StatusCode.NOT_FOUND, f"unknown symbol {symbol}")
        link = self._links.get(assignment.shard_id) if assignment.routable() else None
        if link is None or not link.ready:
            raise ReadFailed(grpc.StatusCode.UNAVAILABLE, f"{symbol} has no reachable owner; retry")
        return link.reads

    def _timeout(self, context: Context) -> float:
        return max(0.0, (self._deadline(context) - time.time_ns()) / 1e9)


async def _forward(context: Context, call: Awaitable[T]) -> T:
    """The shard's answer, or its status (code, text and our trailers) as ours."""
    try:
        return await call
    except grpc.aio.AioRpcError as err:
        await abort_with_code(context, err.code(), err.details() or "", _forwarded(err))


def _forwarded(err: grpc.aio.AioRpcError) -> Metadata:
    """The shard's trailers a router passes on to its caller."""
    return tuple((k, v) for k, v in (err.trailing_metadata() or ()) if k in _FORWARDED_TRAILERS)


def _denied(command: orders_pb2.OrderCommand) -> orders_pb2.CommandResult:
    return orders_pb2.CommandResult(
        correlation_id=command.correlation_id, error=permission_denied(command)
    )


async def _abort_if(violations: list[Violation], context: Context) -> None:
    if violations:
        await abort_malformed(context, violations)


def _mass_cancels(accounts: list[str], symbols: list[str]) -> list[orders_pb2.OrderCommand]:
    """Cancel-on-disconnect's commands: flagged, so the shards tell the accounts' streams
    on every router what they cancelled (orders.proto MassCancel.on_disconnect)."""
    return [
        orders_pb2.OrderCommand(
            mass_cancel=orders_pb2.MassCancel(symbol=s, account=a, on_disconnect=True)
        )
        for a in accounts
        for s in symbols
    ]


def refused_symbols(
    commands: list[orders_pb2.OrderCommand], results: list[orders_pb2.CommandResult]
) -> list[orders_pb2.OrderCommand]:
    """A mass cancel on one symbol for each symbol a shard-wide mass cancel could not
    reach for now (MassCancelResult.errors: retry the mass cancel for them), otherwise the
    same (its on_disconnect flag included)."""
    return [
        _on_symbol(cmd.mass_cancel, error.symbol)
        for cmd, result in zip(commands, results, strict=True)
        if not cmd.mass_cancel.symbol and result.WhichOneof("result") == "mass_cancel"
        for error in result.mass_cancel.errors
        if error.symbol and error.retryable
    ]


def _on_symbol(cancel: orders_pb2.MassCancel, symbol: str) -> orders_pb2.OrderCommand:
    one = orders_pb2.OrderCommand()
    one.mass_cancel.CopyFrom(cancel)
    one.mass_cancel.symbol = symbol
    return one
