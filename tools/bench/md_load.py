"""Market-data load for `spotmatch bench cluster`: StreamMarketData subscribers and
GetOrderBook readers through a router.

Subscribers apply snapshot + deltas (marketdata.book.L2Book) the way a client must and time
every trade they receive: the lag is the receive time minus the trade's time, which the
shard stamps right after the trade's commit (``PublicTrade.time_unix_nanos``), both on this
box's clock. So ``lags_ms`` is commit -> subscriber, through Redis and the router.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any, cast

import grpc

from marketdata.book import GapError, L2Book
from matching.v1 import gateway_pb2, gateway_pb2_grpc, market_data_pb2

from .load import percentile

RESNAPSHOT = market_data_pb2.FEED_STATE_RESNAPSHOT
SYNC_TIMEOUT = 30.0  # every subscriber holds a snapshot
READ_TIMEOUT = 5.0  # one GetOrderBook call


@dataclass
class SubscriberStats:
    lags_ms: list[float] = field(default_factory=list)
    updates: int = 0
    resnapshots: int = 0
    gaps: int = 0
    failures: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """What the bench reports: the lag percentiles and the counts."""
        return {
            "lag_p50_ms": round(percentile(self.lags_ms, 0.50), 2),
            "lag_p99_ms": round(percentile(self.lags_ms, 0.99), 2),
            "trades_timed": len(self.lags_ms),
            "updates": self.updates,
            "resnapshots": self.resnapshots,
            "gaps": self.gaps,
            "failures": self.failures[:5],
        }

    def merge(self, other: SubscriberStats) -> None:
        self.lags_ms += other.lags_ms
        self.updates += other.updates
        self.resnapshots += other.resnapshots
        self.gaps += other.gaps
        self.failures += other.failures


class Subscriber:
    """One StreamMarketData call for one symbol; counts and times what it is sent."""

    def __init__(
        self, stub: gateway_pb2_grpc.OrderGatewayServiceStub, symbol: str, depth: int = 0
    ) -> None:
        self.symbol = symbol
        self.depth = depth  # asked of the router; 0 = its default
        self.book = L2Book(depth=1 << 30)  # holds what it is sent: the stream's depth
        self.stats = SubscriberStats()
        self.synced = asyncio.Event()
        self._call = stub.StreamMarketData(
            gateway_pb2.StreamMarketDataRequest(symbols=[symbol], depth=depth),
            timeout=24 * 3600,
        )
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for response in self._call:  # type: ignore[attr-defined]
                now = time.time_ns()
                for update in response.updates:
                    self._apply(update, now)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                self.stats.failures.append(f"{exc.code().name}: {exc.details()}")

    def _apply(self, update: market_data_pb2.MarketDataUpdate, now: int) -> None:
        self.stats.updates += 1
        kind = update.WhichOneof("update")
        if kind == "snapshot":
            self.book.apply_snapshot(update.seq, update.snapshot)
            self.synced.set()
        elif kind == "delta":
            try:
                self.book.apply_delta(update.seq, update.delta)
            except GapError:
                self.stats.gaps += 1  # the router never forwards one: a bug if counted
        elif kind == "trades":
            lags = self.stats.lags_ms
            for trade in update.trades.trades:
                lags.append((now - trade.time_unix_nanos) / 1e6)
        elif kind == "status" and update.status.state == RESNAPSHOT:
            self.stats.resnapshots += 1

    async def close(self) -> SubscriberStats:
        self._call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return self.stats


@contextlib.asynccontextmanager
async def subscribed(
    target: str, symbols: list[str], count: int
) -> AsyncIterator[list[Subscriber]]:
    """``count`` subscribers spread over ``symbols`` (round robin), each holding its first
    snapshot before the block runs; yields the list, whose stats fill while it runs."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = gateway_pb2_grpc.OrderGatewayServiceStub(channel)
        subscribers = [Subscriber(stub, symbols[i % len(symbols)]) for i in range(count)]
        try:
            async with asyncio.timeout(SYNC_TIMEOUT):
                await asyncio.gather(*(s.synced.wait() for s in subscribers))
            for s in subscribers:  # lags count from here: the load, not the start-up
                s.stats.lags_ms.clear()
            yield subscribers
        finally:
            for s in subscribers:
                await s.close()


async def same_book(
    subscriber: Subscriber, stub: gateway_pb2_grpc.OrderGatewayServiceStub, timeout: float
) -> tuple[bool, int, int]:
    """Wait (at most ``timeout`` s) until ``subscriber`` holds exactly the owning shard's
    committed book (asked of the shard, not the cache) at the same seq, to its depth.
    Returns (same, subscriber's seq, shard's seq)."""
    request = gateway_pb2.GetOrderBookRequest(
        symbol=subscriber.symbol, depth=subscriber.depth, from_shard=True
    )
    deadline = time.monotonic() + timeout
    book = subscriber.book
    while True:
        call = stub.GetOrderBook(request, timeout=READ_TIMEOUT)
        shard = await cast("Awaitable[gateway_pb2.GetOrderBookResponse]", call)
        levels = (
            [(lv.price, lv.quantity, lv.order_count) for lv in shard.book.bids],
            [(lv.price, lv.quantity, lv.order_count) for lv in shard.book.asks],
        )
        if book.seq == shard.seq and book.top() == levels:
            return True, book.seq, shard.seq
        if time.monotonic() > deadline:
            return False, book.seq, shard.seq
        await asyncio.sleep(0.1)


def collect(subscribers: list[Subscriber]) -> SubscriberStats:
    """Everything the subscribers saw since the last collect (each starts afresh)."""
    total = SubscriberStats()
    for s in subscribers:
        total.merge(s.stats)
        s.stats = SubscriberStats()
    return total


@dataclass
class BookReads:
    calls: int = 0
    errors: int = 0
    from_cache: int = 0
    elapsed_s: float = 0.0


async def read_books(target: str, symbols: list[str], callers: int, seconds: float) -> BookReads:
    """``callers`` concurrent GetOrderBook loops (one symbol after another) for ``seconds``."""
    result = BookReads()
    started = time.perf_counter()
    deadline = started + seconds
    async with grpc.aio.insecure_channel(target) as channel:
        stub = gateway_pb2_grpc.OrderGatewayServiceStub(channel)

        async def caller(n: int) -> None:
            i = n
            while time.perf_counter() < deadline:
                request = gateway_pb2.GetOrderBookRequest(symbol=symbols[i % len(symbols)])
                i += 1
                try:
                    answer = await stub.GetOrderBook(request, timeout=READ_TIMEOUT)
                except grpc.aio.AioRpcError:
                    result.errors += 1
                    continue
                result.calls += 1
                result.from_cache += answer.source == market_data_pb2.BOOK_SOURCE_CACHE

        await asyncio.gather(*(caller(n) for n in range(callers)))
    result.elapsed_s = time.perf_counter() - started
    return result
