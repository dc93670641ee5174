"""One feed per streamed symbol per router: a single Redis subscription shared by every
subscriber of the symbol, kept in sync by snapshot + chained deltas.

Start (and every re-start): SSUBSCRIBE the symbol's channel and wait for the confirmation
FIRST, then GET the snapshot; messages that arrive meanwhile wait on the connection and are
applied after it, skipping what the snapshot already covers (the publisher SETs a snapshot
before it SPUBLISHes the message of the same batch, so nothing falls in between). Each delta
must chain (``prev_seq`` == the seq held) or the feed re-snapshots: subscribers get
FeedStatus RESNAPSHOT, then the fresh snapshot. A RESNAPSHOT published on the channel is
handled the same way.

Redis trouble (a call failing or timing out, a subscription reset) makes the feed DEGRADED:
subscribers are told, the book is dropped, and the feed reconnects with backoff, then sends
RESNAPSHOT + snapshot + LIVE. A periodic audit GETs the snapshot: missing → DEGRADED; older
than ``md_stale_after`` → DEGRADED (publisher lagging) until fresh again → LIVE; newer than
what the channel delivered a whole audit interval later → messages were lost → re-snapshot.
Trades of commands that fall inside a gap are not replayed (the RESNAPSHOT marks the hole).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from google.protobuf.message import DecodeError

from marketdata.book import GapError, L2Book
from marketdata.keys import updates_channel
from matching.v1 import gateway_pb2, market_data_pb2
from router.config import RouterConfig
from router.md_redis import CacheUnavailable, MarketDataCache, Subscription
from router.md_subscribers import DepthGroup, Subscriber, status_update
from router.md_wire import framed

log = logging.getLogger(__name__)

MD = market_data_pb2
RETRY_MIN = 0.1  # first reconnect delay; doubles up to config.md_retry_max
WAITING_POLL = 0.5  # while the cache has no snapshot of the symbol, GET it this often


class SymbolFeed:
    def __init__(self, symbol: str, cache: MarketDataCache, config: RouterConfig) -> None:
        self.symbol = symbol
        self._cache = cache
        self._config = config
        self._groups: dict[int, DepthGroup] = {}
        self._book: L2Book | None = None  # None: no usable snapshot (starting, degraded...)
        self._meta = MD.OrderBookSnapshot()  # status and as_of of the last snapshot
        self._trade_seq = -1  # trades up to this seq are covered
        self._delivered_seq = 0
        self._degraded: str | None = None  # why, while the book is unusable
        self._lagging = False  # the cache's snapshot is older than md_stale_after
        self._audit_seq = -1  # snapshot seq the last audit saw
        self._task: asyncio.Task[None] | None = None
        self.subscriptions = 0  # Redis subscriptions opened (tests, stats)
        self.resnapshots = 0

    # --- membership (called by stream handlers; never waits) ---------------------------

    def add(self, subscriber: Subscriber) -> None:
        depth = subscriber.depth
        group = self._groups.get(depth)
        if group is None:
            full = depth >= self._config.md_max_depth
            group = self._groups[depth] = DepthGroup(self.symbol, depth, full)
        group.members[subscriber] = False
        if self._book is not None:
            group.members[subscriber] = True
            updates = [group.snapshot(self._book, self._meta)]
            if self._lagging:
                updates.append(self._status(MD.FEED_STATE_DEGRADED, "cache snapshot is stale"))
            group.push(updates)
        elif self._degraded is not None:
            group.push([self._status(MD.FEED_STATE_DEGRADED, self._degraded)])

    def remove(self, subscriber: Subscriber) -> None:
        group = self._groups.get(subscriber.depth)
        if group is not None:
            group.members.pop(subscriber, None)
            if not group.members:
                del self._groups[subscriber.depth]

    @property
    def subscribers(self) -> int:
        return sum(len(g.members) for g in self._groups.values())

    @property
    def degraded(self) -> bool:
        return self._degraded is not None or self._lagging

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"md-feed-{self.symbol}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # --- the subscription loop --------------------------------------------------------

    async def _run(self) -> None:
        backoff = RETRY_MIN
        while True:
            subscription: Subscription | None = None
            try:
                subscription = await self._cache.subscribe(updates_channel(self.symbol))
                self.subscriptions += 1
                await self._resync()
                backoff = RETRY_MIN
                await self._pump(subscription)
            except CacheUnavailable as exc:
                self._degrade("cache unavailable", exc)
            except Exception:  # a bug must not leave subscribers waiting silently
                log.exception("%s market data feed failed; restarting it", self.symbol)
                self._degrade("internal error")
            finally:
                if subscription is not None:
                    await subscription.close()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._config.md_retry_max)

    async def _pump(self, subscription: Subscription) -> None:
        interval = self._config.md_audit_interval
        next_audit = time.monotonic() + interval
        while True:
            wait = max(0.0, next_audit - time.monotonic())
            if self._book is None:
                wait = min(wait, WAITING_POLL)
            data = await subscription.next(wait)
            if self._book is None:
                await self._resync()  # what the message says is in the snapshot by now
            elif data is not None and not self._apply(data):
                await self._resync()
            if time.monotonic() >= next_audit:
                await self._audit()
                next_audit = time.monotonic() + interval

    # --- applying ---------------------------------------------------------------------

    def _apply(self, data: bytes) -> bool:
        """Apply one channel message and fan it out; False if the feed must re-snapshot."""
        book = self._book
        assert book is not None
        try:
            message = gateway_pb2.StreamMarketDataResponse.FromString(data)
        except DecodeError:
            log.warning("%s: unparseable channel message; re-snapshotting", self.symbol)
            return False
        out: dict[DepthGroup, list[market_data_pb2.MarketDataUpdate]] = {
            g: [] for g in self._groups.values()
        }
        chained = True
        for update in message.updates:
            kind = update.WhichOneof("update")
            if kind == "delta":
                if not chained or update.seq <= book.seq:
                    continue  # the coming snapshot / the one held already covers it
                try:
                    book.apply_delta(update.seq, update.delta)
                except GapError:
                    log.info("%s: gap (delta %d->%d at seq %d); re-snapshotting", self.symbol,
                             update.delta.prev_seq, update.seq, book.seq)  # fmt: skip
                    chained = False
                    continue
                for group, updates in out.items():
                    updates.append(group.delta(update, book))
            elif kind == "trades" and update.seq > self._trade_seq:
                # Trades are not book state: they go out even when the book re-snapshots.
                self._trade_seq = update.seq
                for updates in out.values():
                    updates.append(update)
            elif kind == "status" and update.status.state == MD.FEED_STATE_RESNAPSHOT:
                chained = False
        for group, updates in out.items():
            if updates:
                group.push(updates)
        self._delivered_seq = book.seq
        return chained

    async def _resync(self) -> None:
        """GET the snapshot and send it (after RESNAPSHOT to who holds a book)."""
        self._book = None  # subscribers joining meanwhile wait for this snapshot
        update = await self._cache.get_book(self.symbol)
        if update is None:
            self._degrade("no snapshot in the cache")
        else:
            self._install(update)

    def _install(self, update: market_data_pb2.MarketDataUpdate) -> None:
        book = L2Book(depth=self._config.md_max_depth)
        book.apply_snapshot(update.seq, update.snapshot)
        recovered = self._degraded is not None
        resnapshot = self._status(MD.FEED_STATE_RESNAPSHOT, "re-snapshot")
        self._book, self._meta = book, update.snapshot
        self._trade_seq = self._audit_seq = update.seq
        self._degraded = None
        self._lagging = not self._fresh(update)
        after = []
        if self._lagging:
            after.append(self._status(MD.FEED_STATE_DEGRADED, "cache snapshot is stale"))
        elif recovered:
            after.append(self._status(MD.FEED_STATE_LIVE, "cache available"))
        marker = framed([resnapshot])
        for group in self._groups.values():
            fresh = framed([group.snapshot(book, update.snapshot), *after])
            for subscriber, synced in list(group.members.items()):
                group.members[subscriber] = True
                if not subscriber.push([*marker, *fresh] if synced else fresh):
                    del group.members[subscriber]
        self._delivered_seq = update.seq
        self.resnapshots += 1

    def _degrade(self, reason: str, exc: Exception | None = None) -> None:
        self._book = None
        if self._degraded is None:
            log.warning("%s market data degraded: %s%s", self.symbol, reason,
                        f" ({exc})" if exc is not None else "")  # fmt: skip
            self._degraded = reason
            self._lagging = False
            self._push_all([self._status(MD.FEED_STATE_DEGRADED, reason)])

    async def _audit(self) -> None:
        book = self._book
        if book is None:
            return  # waiting for a snapshot anyway
        update = await self._cache.get_book(self.symbol)
        if update is None:
            self._degrade("snapshot missing from the cache")
            return
        lost = self._audit_seq > book.seq  # a snapshot seen an interval ago never came by
        self._audit_seq = update.seq
        if lost:
            log.info("%s: channel behind the cache (seq %d < %d); re-snapshotting",
                     self.symbol, book.seq, update.seq)  # fmt: skip
            self._install(update)
            return
        lagging = not self._fresh(update)
        if lagging != self._lagging:
            self._lagging = lagging
            state = MD.FEED_STATE_DEGRADED if lagging else MD.FEED_STATE_LIVE
            self._push_all([self._status(state, "cache snapshot is stale" if lagging
                                         else "cache snapshot is fresh")])  # fmt: skip

    # --- helpers ----------------------------------------------------------------------

    def _fresh(self, update: market_data_pb2.MarketDataUpdate) -> bool:
        age = time.time_ns() - update.snapshot.as_of_unix_nanos
        return age <= self._config.md_stale_after * 1e9

    def _status(
        self, state: market_data_pb2.FeedState.ValueType, reason: str
    ) -> market_data_pb2.MarketDataUpdate:
        return status_update(self.symbol, self._delivered_seq, state, reason)

    def _push_all(self, updates: list[market_data_pb2.MarketDataUpdate]) -> None:
        for group in self._groups.values():
            group.push(updates)


class FeedSet:
    """The router's feeds: the first subscriber of a symbol starts its feed, the last one
    leaving stops it."""

    def __init__(self, cache: MarketDataCache, config: RouterConfig) -> None:
        self._cache = cache
        self._config = config
        self._feeds: dict[str, SymbolFeed] = {}
        self._stopping: set[asyncio.Task[None]] = set()

    def join(self, subscriber: Subscriber, symbols: list[str]) -> None:
        for symbol in symbols:
            feed = self._feeds.get(symbol)
            if feed is None:
                feed = self._feeds[symbol] = SymbolFeed(symbol, self._cache, self._config)
                feed.start()
            feed.add(subscriber)

    def leave(self, subscriber: Subscriber, symbols: list[str]) -> None:
        """Idempotent: also called after an overflow already took the subscriber out."""
        for symbol in symbols:
            feed = self._feeds.get(symbol)
            if feed is None:
                continue
            feed.remove(subscriber)
            if not feed.subscribers:
                del self._feeds[symbol]
                task = asyncio.create_task(feed.stop())
                self._stopping.add(task)
                task.add_done_callback(self._stopping.discard)

    def get(self, symbol: str) -> SymbolFeed | None:
        return self._feeds.get(symbol)

    def __len__(self) -> int:
        return len(self._feeds)

    async def close(self) -> None:
        feeds, self._feeds = list(self._feeds.values()), {}
        await asyncio.gather(*(f.stop() for f in feeds), *self._stopping)
