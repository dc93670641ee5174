"""Market data subscribers on a router: a bounded queue per stream, and depth groups.

Trimming: a symbol's feed holds the full published book (marketdata.book.L2Book of the
shard's top-N view). Subscribers that asked for fewer levels are grouped by depth; each group
keeps its own top-``depth`` view and turns every published delta into the diff of that view
(``marketdata.wire.diff_side``), computed once per group, not per subscriber. Forwarding the
published delta untrimmed would be wrong for a shallow subscriber: when a level leaves its
top ``depth``, the level that moves up was never in its snapshot nor in the delta. Every
delta is forwarded (possibly with no levels) so that ``prev_seq`` always chains for every
group. Groups of depth >= the published depth forward the published updates as they are.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from marketdata.book import L2Book, delta_update, snapshot_update
from matching.v1 import market_data_pb2
from router.md_wire import framed

MD = market_data_pb2
Levels = list[tuple[int, int, int]]


def status_update(
    symbol: str, seq: int, state: market_data_pb2.FeedState.ValueType, reason: str
) -> market_data_pb2.MarketDataUpdate:
    return MD.MarketDataUpdate(
        symbol=symbol, seq=seq, status=MD.FeedStatus(state=state, reason=reason)
    )


def top(book: L2Book, depth: int) -> tuple[Levels, Levels]:
    """(bids best first, asks best first), at most ``depth`` each."""
    bids = sorted(book.bids.items(), reverse=True)[:depth]
    asks = sorted(book.asks.items())[:depth]
    return [(p, q, n) for p, (q, n) in bids], [(p, q, n) for p, (q, n) in asks]


class Subscriber:
    """One StreamMarketData call: updates wait here, encoded (router.md_wire.framed), until
    its writer sends them.

    Bounded by ``limit`` updates: a push that would exceed it cuts the subscriber off
    (``cut_off``: ``overflowed``, the queue freed, ``on_overflow`` called; the stream then
    ends with RESOURCE_EXHAUSTED), so a reader that stalls never grows the router's memory.
    The writer cuts it off too when one write stalls too long."""

    def __init__(self, depth: int, limit: int) -> None:
        self.depth = depth
        self._limit = limit
        self._queue: deque[bytes] = deque()
        self._ready = asyncio.Event()
        self.overflowed = False  # cut off as too slow
        self.cut_off_reason = ""
        self.closed_reason = ""  # set by close(): the router is shutting down
        self.on_overflow: Callable[[], object] | None = None

    @property
    def done(self) -> bool:
        return self.overflowed or bool(self.closed_reason)

    def push(self, updates: list[bytes]) -> bool:
        """Queue framed ``updates`` (never blocks); False if this subscriber takes no more."""
        if self.done:
            return False
        if len(self._queue) + len(updates) > self._limit:
            self.cut_off("updates overflowed")
            return False
        self._queue.extend(updates)
        self._ready.set()
        return True

    def cut_off(self, why: str) -> None:
        """Too slow: take nothing more, free the queue, tell ``on_overflow``."""
        if self.overflowed:
            return
        self.overflowed = True
        self.cut_off_reason = why
        self._queue.clear()
        self._ready.set()
        if self.on_overflow is not None:
            self.on_overflow()

    def close(self, reason: str) -> None:
        self.closed_reason = reason
        self._ready.set()

    async def take(self, most: int) -> list[bytes]:
        """Up to ``most`` queued framed updates, waiting for one; [] once done."""
        while not self._queue and not self.done:
            self._ready.clear()
            await self._ready.wait()
        if self.done:
            return []
        queue = self._queue
        return [queue.popleft() for _ in range(min(most, len(queue)))]

    @property
    def queued(self) -> int:
        return len(self._queue)


class DepthGroup:
    """The subscribers of one symbol that share a depth, and their top-``depth`` view."""

    def __init__(self, symbol: str, depth: int, full: bool) -> None:
        self.symbol = symbol
        self.depth = depth
        self.full = full  # depth >= the published depth: forward published deltas as is
        self.members: dict[Subscriber, bool] = {}  # -> has been sent a snapshot
        self._bids: Levels = []
        self._asks: Levels = []

    def snapshot(
        self, book: L2Book, meta: market_data_pb2.OrderBookSnapshot
    ) -> market_data_pb2.MarketDataUpdate:
        """The group's snapshot of ``book`` (and the view its next deltas start from)."""
        self._bids, self._asks = top(book, self.depth)
        return snapshot_update(
            self.symbol, book.seq, self._bids, self._asks, meta.symbol_status,
            meta.as_of_unix_nanos,
        )  # fmt: skip

    def delta(
        self, update: market_data_pb2.MarketDataUpdate, book: L2Book
    ) -> market_data_pb2.MarketDataUpdate:
        """The group's form of a published delta that ``book`` has just applied (possibly
        with no levels: every delta goes out, so that prev_seq always chains)."""
        if self.full:
            return update  # the published view is this group's view
        old = (self._bids, self._asks)
        self._bids, self._asks = top(book, self.depth)
        return delta_update(
            self.symbol, update.seq, update.delta.prev_seq, old, (self._bids, self._asks)
        )

    def push(self, updates: list[market_data_pb2.MarketDataUpdate]) -> None:
        """To every member, encoded once; a member that takes no more (overflowed) leaves
        the group."""
        encoded = framed(updates)
        for subscriber in list(self.members):
            if not subscriber.push(encoded):
                del self.members[subscriber]
