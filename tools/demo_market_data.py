"""The market data part of `make run`: a StreamMarketData subscriber on one symbol, through a
router, applying snapshot + deltas the way a client must; a live line of its book, and at the
end a check that it holds exactly the book the owning shard committed."""

from __future__ import annotations

import asyncio

import grpc

from api.auth import bearer_interceptors
from marketdata.keys import DEFAULT_DEPTH
from matching.v1 import gateway_pb2_grpc
from tools.bench.load import percentile
from tools.bench.md_load import Subscriber, same_book

SYNC_TIMEOUT = 15.0


class DemoFeed:
    def __init__(self, router: str, symbol: str, label: str, token: str = "") -> None:
        self.label = label  # how the router is called in the display
        self.symbol = symbol
        interceptors = bearer_interceptors(token) if token else None
        self._channel = grpc.aio.insecure_channel(router, interceptors=interceptors)
        self._stub = gateway_pb2_grpc.OrderGatewayServiceStub(self._channel)
        self._subscriber = Subscriber(self._stub, symbol, depth=DEFAULT_DEPTH)
        self._seen_lags = 0

    async def wait_synced(self) -> None:
        async with asyncio.timeout(SYNC_TIMEOUT):
            await self._subscriber.synced.wait()

    def line(self) -> str:
        """Best bid and ask, seq, updates so far, and the lag of the trades since last time."""
        book, stats = self._subscriber.book, self._subscriber.stats
        bids, asks = book.top()
        bid = f"{bids[0][0]:,} x {bids[0][1]}" if bids else "-"
        ask = f"{asks[0][0]:,} x {asks[0][1]}" if asks else "-"
        lags = stats.lags_ms[self._seen_lags :]
        self._seen_lags = len(stats.lags_ms)
        lag = f"trade lag p50 {percentile(lags, 0.5):.0f} ms" if lags else "no trades"
        return (
            f"         {self.symbol} book via {self.label}: bid {bid} | ask {ask}"
            f"  seq {book.seq:,}  {stats.updates:,} updates  {lag}"
        )

    async def verify(self) -> tuple[bool, str]:
        """Whether the subscriber's book is the owner's committed book at the same seq."""
        same, seq, shard_seq = await same_book(self._subscriber, self._stub, SYNC_TIMEOUT)
        stats = self._subscriber.stats
        if not same:
            return False, (
                f"market data: the subscriber's {self.symbol} book (seq {seq:,}) does not"
                f" match the owner's (seq {shard_seq:,})"
            )
        return stats.gaps == 0, (
            f"market data: the subscriber's {self.symbol} book equals the owner's committed"
            f" book at seq {seq:,} ({stats.updates:,} updates, {stats.resnapshots}"
            f" re-snapshots, {stats.gaps} gaps)"
        )

    async def close(self) -> None:
        await self._subscriber.close()
        await self._channel.close()
