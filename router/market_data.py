"""GetOrderBook and StreamMarketData on the router, served from the Redis Cluster cache.

GetOrderBook: unless ``from_shard``, the symbol's cached snapshot answers if it is fresh
(``as_of`` within ``md_stale_after``): BOOK_SOURCE_CACHE. A missing or stale entry, or Redis
failing, sends the request to the owning shard: BOOK_SOURCE_SHARD. If the shard cannot answer
either and a stale cache entry exists, that entry answers with ``stale`` set; otherwise the
shard's status is the answer. Depth: 0 means ``md_default_depth`` (the shard's default);
larger requests are capped at ``md_max_depth``, the depth the shards publish.

StreamMarketData: one shared feed per symbol (router.md_feeds), one bounded queue per call
(router.md_subscribers), updates batched into responses of at most ``md_batch_max``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from api.request_validation import validate_stream_market_data_request
from api.status import Metadata, abort_malformed, abort_with_code
from matching.v1 import gateway_pb2, market_data_pb2
from router.config import RouterConfig
from router.errors import RouterError
from router.md_feeds import FeedSet
from router.md_redis import CacheUnavailable, MarketDataCache
from router.md_subscribers import Subscriber
from router.routing import Table

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
ShardBook = Callable[[gateway_pb2.GetOrderBookRequest], Awaitable[gateway_pb2.GetOrderBookResponse]]
WARN_EVERY = 10.0  # seconds between two warnings about the cache failing GetOrderBook


class ReadFailed(RouterError):
    """A read could not be answered: the status to fail the call with."""

    def __init__(self, code: grpc.StatusCode, details: str, trailers: Metadata = ()) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.trailers = trailers


class MarketData:
    def __init__(self, config: RouterConfig, table: Table) -> None:
        self._config = config
        self._table = table
        self.cache: MarketDataCache | None = None
        self.feeds: FeedSet | None = None
        if config.redis_nodes:
            self.cache = MarketDataCache(
                config.redis_nodes, config.redis_timeout, config.redis_max_connections
            )
            self.feeds = FeedSet(self.cache, config)
        self._streams: set[Subscriber] = set()
        self._warned_at = 0.0

    def depth(self, requested: int) -> int:
        return min(requested or self._config.md_default_depth, self._config.md_max_depth)

    def _require_known(self, symbol: str) -> None:
        if self._table.assignment(symbol) is None:
            raise ReadFailed(grpc.StatusCode.NOT_FOUND, f"unknown symbol {symbol}")

    # --- GetOrderBook -----------------------------------------------------------------

    async def get_order_book(
        self, request: gateway_pb2.GetOrderBookRequest, shard_book: ShardBook
    ) -> gateway_pb2.GetOrderBookResponse:
        """The book from the cache or the owning shard; ReadFailed if neither answers."""
        self._require_known(request.symbol)
        depth = self.depth(request.depth)
        cached = None if request.from_shard else await self._cached(request.symbol)
        if cached is not None and self._fresh(cached):
            return _from_cache(request.symbol, cached, depth, stale=False)
        asked = gateway_pb2.GetOrderBookRequest(symbol=request.symbol, depth=depth)
        try:
            return await shard_book(asked)
        except ReadFailed:
            if cached is None:
                raise
            return _from_cache(request.symbol, cached, depth, stale=True)

    async def _cached(self, symbol: str) -> market_data_pb2.MarketDataUpdate | None:
        if self.cache is None:
            return None
        try:
            return await self.cache.get_book(symbol)
        except CacheUnavailable as exc:
            now = time.monotonic()
            if now - self._warned_at >= WARN_EVERY:
                self._warned_at = now
                log.warning("GetOrderBook falls back to shards: %s", exc)
            return None

    def _fresh(self, update: market_data_pb2.MarketDataUpdate) -> bool:
        age = time.time_ns() - update.snapshot.as_of_unix_nanos
        return age <= self._config.md_stale_after * 1e9

    # --- StreamMarketData -------------------------------------------------------------

    async def stream(self, request: gateway_pb2.StreamMarketDataRequest, context: Context) -> None:
        violations = validate_stream_market_data_request(request)
        if violations:
            await abort_malformed(context, violations)
        symbols = list(dict.fromkeys(request.symbols))
        for symbol in symbols:
            try:
                self._require_known(symbol)
            except ReadFailed as exc:
                await abort_with_code(context, exc.code, exc.details)
        feeds = self.feeds
        if feeds is None:
            await abort_with_code(context, grpc.StatusCode.UNAVAILABLE,
                                  "this router has no market data cache configured")  # fmt: skip
        subscriber = Subscriber(self.depth(request.depth), self._config.md_queue_max)
        loop = asyncio.get_running_loop()
        # Out of the feed's fan-out loop: leaving stops feeds left without subscribers.
        subscriber.on_overflow = lambda: loop.call_soon(feeds.leave, subscriber, symbols)
        self._streams.add(subscriber)
        feeds.join(subscriber, symbols)
        try:
            await self._write(subscriber, context)
        finally:
            self._streams.discard(subscriber)
            feeds.leave(subscriber, symbols)
        if subscriber.overflowed:
            log.warning("cut off a market data stream: %s", subscriber.cut_off_reason)
            context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
            context.set_details(f"market data reader too slow: {subscriber.cut_off_reason}")
        else:
            context.set_code(grpc.StatusCode.UNAVAILABLE)
            context.set_details(subscriber.closed_reason)

    async def _write(self, subscriber: Subscriber, context: Context) -> None:
        """Batches of queued updates until the subscriber is done (cut off or shutdown).

        A reader that stops reading blocks the write (HTTP/2 flow control); the feeds keep
        queueing meanwhile, up to the subscriber's bound, and then cut it off; a write that
        stalls past ``stream_write_timeout`` cuts it off too (a quiet symbol never fills
        the bound). The stalled write itself ends only when the peer drains or goes: only
        then can the status go (as for Trade streams, api/stream_session.py)."""
        most = self._config.md_batch_max
        timeout = self._config.stream_write_timeout
        while True:
            updates = await subscriber.take(most)
            if not updates:
                return
            write = asyncio.ensure_future(context.write(b"".join(updates)))  # encoded already
            done, _ = await asyncio.wait({write}, timeout=timeout)
            if not done:
                subscriber.cut_off("write timed out")
                with contextlib.suppress(Exception):
                    await write
                return
            write.result()  # a failed write ends the stream as before

    # --- life cycle -------------------------------------------------------------------

    def end_streams(self, reason: str) -> None:
        """End every stream (UNAVAILABLE ``reason``): shutting down."""
        for subscriber in list(self._streams):
            subscriber.close(reason)

    async def close(self) -> None:
        self.end_streams("router shutting down")
        if self.feeds is not None:
            await self.feeds.close()
        if self.cache is not None:
            await self.cache.close()


def _from_cache(
    symbol: str, update: market_data_pb2.MarketDataUpdate, depth: int, *, stale: bool
) -> gateway_pb2.GetOrderBookResponse:
    snapshot = update.snapshot
    book = market_data_pb2.OrderBookSnapshot(
        bids=snapshot.bids[:depth],
        asks=snapshot.asks[:depth],
        symbol_status=snapshot.symbol_status,
        as_of_unix_nanos=snapshot.as_of_unix_nanos,
    )
    return gateway_pb2.GetOrderBookResponse(
        symbol=symbol,
        seq=update.seq,
        book=book,
        source=market_data_pb2.BOOK_SOURCE_CACHE,
        stale=stale,
    )
