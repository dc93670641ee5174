"""Test support for router market data.

``FormatPublisher`` writes real Redis in the documented format (marketdata/keys.py: SET the
snapshot, XADD trades, SPUBLISH one StreamMarketDataResponse per batch or a RESNAPSHOT): the
contract shard/publisher.py implements, driven directly so router tests do not depend on a
shard. ``Reader`` follows one StreamMarketData call and keeps a marketdata.book.L2Book per
symbol the way a client would. ``md_router`` runs a router whose table lists symbols on a
shard that does not exist (market data needs no shard).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from redis.asyncio.cluster import ClusterNode, RedisCluster

from cluster.memory import MemoryRegistry, MemoryStore
from cluster.model import Assignment, AssignmentState
from marketdata.book import GapError, L2Book
from marketdata.keys import DEFAULT_DEPTH, TRADES_MAXLEN, book_key, trades_key, updates_channel
from marketdata.wire import diff_side
from matching.v1 import gateway_pb2, gateway_pb2_grpc, market_data_pb2, types_pb2
from router.md_subscribers import top
from router.server import RouterNode
from tests.router.support import router_config
from tools.services import RedisCluster as LocalRedisCluster

MD = market_data_pb2
Stub = gateway_pb2_grpc.OrderGatewayServiceStub
Level = tuple[int, int, int]  # price, quantity, order count
Levels = list[Level]
WAIT = 20.0  # generous: two cores shared with other test runs


def levels_pb(levels: Iterable[tuple[int, int, int]]) -> list[market_data_pb2.PriceLevel]:
    return [market_data_pb2.PriceLevel(price=p, quantity=q, order_count=n) for p, q, n in levels]


def node_list(redis: LocalRedisCluster) -> tuple[str, ...]:
    return tuple(f"{host}:{port}" for host, port in redis.startup_nodes)


def cluster_client(redis: LocalRedisCluster) -> RedisCluster:
    nodes = [ClusterNode(host, port) for host, port in redis.startup_nodes]
    return RedisCluster(startup_nodes=nodes, socket_timeout=5.0, socket_connect_timeout=5.0)


async def shard_subscribers(client: RedisCluster, channel: str) -> int:
    """PUBSUB SHARDNUMSUB of ``channel`` on the node owning its slot."""
    await client.initialize()
    node = client.get_node_from_key(channel)
    reply = await client.execute_command("PUBSUB", "SHARDNUMSUB", channel, target_nodes=node)
    counts = dict(zip(reply[::2], reply[1::2], strict=True))
    return int(counts.get(channel.encode(), 0))


def node_index(redis: LocalRedisCluster, client: RedisCluster, symbol: str) -> int:
    """Index (for kill_node/start_node) of the node owning the symbol's slot."""
    return redis.ports.index(int(client.get_node_from_key(book_key(symbol)).port))


@dataclass
class _Symbol:
    seq: int = 0
    bids: dict[int, tuple[int, int]] = field(default_factory=dict)
    asks: dict[int, tuple[int, int]] = field(default_factory=dict)
    view: tuple[Levels, Levels] = ([], [])  # last published top-depth view


class FormatPublisher:
    """A publisher of the documented format: one batch = SET snapshot, XADD trades, SPUBLISH
    delta + trades, in one pipeline of the symbol's slot (what a shard does after commit)."""

    def __init__(self, client: RedisCluster, depth: int = DEFAULT_DEPTH) -> None:
        self.client = client
        self.depth = depth
        self.symbols: dict[str, _Symbol] = {}
        self.trades: dict[str, list[market_data_pb2.MarketDataUpdate]] = {}

    def book(self, symbol: str) -> L2Book:
        """The published view of ``symbol`` as a subscriber's book of ``depth`` levels."""
        state = self.symbols[symbol]
        book = L2Book(depth=self.depth, seq=state.seq)
        bids, asks = state.view
        book.bids = {p: (q, n) for p, q, n in bids}
        book.asks = {p: (q, n) for p, q, n in asks}
        return book

    def snapshot(self, symbol: str, *, age: float = 0.0) -> market_data_pb2.MarketDataUpdate:
        state = self.symbols[symbol]
        bids, asks = state.view
        snap = MD.OrderBookSnapshot(
            bids=levels_pb(bids),
            asks=levels_pb(asks),
            symbol_status=types_pb2.SYMBOL_STATUS_TRADING,
            as_of_unix_nanos=time.time_ns() - int(age * 1e9),
        )
        return MD.MarketDataUpdate(symbol=symbol, seq=state.seq, snapshot=snap)

    async def start(
        self, symbol: str, bids: Sequence[Level] = (), asks: Sequence[Level] = ()
    ) -> None:
        """Take ``symbol`` with a book: SET the snapshot, SPUBLISH RESNAPSHOT (a new owner)."""
        state = self.symbols.setdefault(symbol, _Symbol())
        state.bids = {p: (q, n) for p, q, n in bids}
        state.asks = {p: (q, n) for p, q, n in asks}
        state.seq += 1
        await self.resnapshot(symbol)

    async def resnapshot(
        self, symbol: str, trades: Sequence[market_data_pb2.MarketDataUpdate] = ()
    ) -> None:
        """A fresh snapshot and a RESNAPSHOT on the channel (after an outage, a move), then
        the round's ``trades`` in the same message, as the shards publish them."""
        state = self.symbols[symbol]
        state.view = self._view(state)
        status = MD.MarketDataUpdate(
            symbol=symbol,
            seq=state.seq,
            status=MD.FeedStatus(state=MD.FEED_STATE_RESNAPSHOT, reason="publisher restart"),
        )
        self.trades.setdefault(symbol, []).extend(trades)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.set(book_key(symbol), self.snapshot(symbol).SerializeToString())
            pipe.spublish(updates_channel(symbol), _message([status, *trades]))
            await pipe.execute()

    async def heartbeat(self, symbol: str, age: float = 0.0) -> None:
        """Re-SET the snapshot (as_of ``age`` seconds ago), nothing on the channel."""
        await self.client.set(book_key(symbol), self.snapshot(symbol, age=age).SerializeToString())

    async def batch(
        self,
        symbol: str,
        changes: Sequence[tuple[str, int, int, int]] = (),
        trades: Sequence[Sequence[tuple[int, int]]] = (),
        *,
        publish: bool = True,
    ) -> int:
        """One committed batch: level ``changes`` (side "b"/"a", price, qty, count; qty 0
        removes), then one command per ``trades`` entry (its (price, qty) fills). The batch
        takes 1 + len(trades) seqs. ``publish=False`` SETs the snapshot but loses the
        channel message (a gap). Returns the batch's last seq."""
        state = self.symbols[symbol]
        prev = state.seq
        for side, price, qty, count in changes:
            levels = state.bids if side == "b" else state.asks
            if qty:
                levels[price] = (qty, count)
            else:
                levels.pop(price, None)
        updates = []
        for fills in trades:
            state.seq += 1
            updates.append(_trades_update(symbol, state.seq, fills))
        state.seq += 1
        old, state.view = state.view, self._view(state)
        delta = MD.OrderBookDelta(
            prev_seq=prev,
            bids=levels_pb(diff_side(old[0], state.view[0])),
            asks=levels_pb(diff_side(old[1], state.view[1])),
        )
        delta_update = MD.MarketDataUpdate(symbol=symbol, seq=state.seq, delta=delta)
        self.trades.setdefault(symbol, []).extend(updates)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.set(book_key(symbol), self.snapshot(symbol).SerializeToString())
            if updates:  # the publisher's format: one entry per round with its trades
                pipe.xadd(trades_key(symbol), {"u": _message(updates)},
                          maxlen=TRADES_MAXLEN, approximate=True)  # fmt: skip
            if publish:
                pipe.spublish(updates_channel(symbol), _message([delta_update, *updates]))
            await pipe.execute()
        return state.seq

    async def random_batch(self, rng: random.Random, symbol: str, levels: int = 70) -> int:
        """A batch of random level changes (prices 1..levels for bids, 1000+ for asks, so
        more levels than the published depth) and sometimes trades."""
        changes = []
        for _ in range(rng.randint(1, 6)):
            side = rng.choice("ba")
            price = rng.randint(1, levels) + (0 if side == "b" else 1000)
            qty = 0 if rng.random() < 0.3 else rng.randint(1, 50) * 10
            changes.append((side, price, qty, rng.randint(1, 5) if qty else 0))
        trades = [[(1000, rng.randint(1, 9))] * rng.randint(1, 3)
                  for _ in range(rng.randint(0, 2))]  # fmt: skip
        return await self.batch(symbol, changes, trades)

    def _view(self, state: _Symbol) -> tuple[Levels, Levels]:
        book = L2Book(depth=self.depth, bids=state.bids, asks=state.asks)
        return book.top()


def _trades_update(
    symbol: str, seq: int, fills: Sequence[tuple[int, int]]
) -> market_data_pb2.MarketDataUpdate:
    trades = [
        MD.PublicTrade(
            price=p,
            quantity=q,
            taker_side=types_pb2.SIDE_BUY,
            match_index=i,
            time_unix_nanos=time.time_ns(),
        )
        for i, (p, q) in enumerate(fills)
    ]
    return MD.MarketDataUpdate(symbol=symbol, seq=seq, trades=MD.PublicTrades(trades=trades))


def _message(updates: list[market_data_pb2.MarketDataUpdate]) -> bytes:
    return gateway_pb2.StreamMarketDataResponse(updates=updates).SerializeToString()


# --- routers and readers ---------------------------------------------------------------------


@asynccontextmanager
async def md_router(
    redis_nodes: tuple[str, ...], symbols: Sequence[str], **overrides: Any
) -> AsyncIterator[tuple[RouterNode, Stub]]:
    """A router whose table lists ``symbols`` (owned by a shard that is not running)."""
    store = MemoryStore()
    admin = MemoryRegistry(store)
    for symbol in symbols:
        stored = await admin.cas_assignment(
            0, Assignment(symbol, "shard-x", AssignmentState.ACTIVE)
        )
        assert stored is not None
    registry = MemoryRegistry(store)
    node = RouterNode(router_config(redis_nodes=redis_nodes, **overrides), registry)
    await node.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{node.port}")
    try:
        yield node, gateway_pb2_grpc.OrderGatewayServiceStub(channel)
    finally:
        await channel.close()
        await node.stop()
        await registry.close()
        await admin.close()


class Reader:
    """Reads one StreamMarketData call in the background, applying it like a client."""

    def __init__(self, stub: Stub, symbols: Sequence[str], depth: int = 0) -> None:
        self.depth = depth or 10
        request = gateway_pb2.StreamMarketDataRequest(symbols=symbols, depth=depth)
        open_call: Any = stub.StreamMarketData
        self.call = open_call(request, timeout=120.0)
        self.updates: list[market_data_pb2.MarketDataUpdate] = []
        self.books: dict[str, L2Book] = {}
        self.gaps: list[str] = []  # deltas that did not chain: the router must never send one
        self.error: grpc.aio.AioRpcError | None = None
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for response in self.call:
                for update in response.updates:
                    self.updates.append(update)
                    self._apply(update)
        except grpc.aio.AioRpcError as err:
            self.error = err

    def _apply(self, update: market_data_pb2.MarketDataUpdate) -> None:
        kind = update.WhichOneof("update")
        if kind == "snapshot":
            book = self.books[update.symbol] = L2Book(depth=self.depth)
            book.apply_snapshot(update.seq, update.snapshot)
        elif kind == "delta":
            book = self.books.get(update.symbol, L2Book(depth=self.depth))
            try:
                book.apply_delta(update.seq, update.delta)
            except GapError as exc:
                self.gaps.append(str(exc))
        elif kind == "status" and update.status.state == MD.FEED_STATE_RESNAPSHOT:
            self.books.pop(update.symbol, None)

    def seq(self, symbol: str) -> int:
        book = self.books.get(symbol)
        return -1 if book is None else book.seq

    def kinds(self, symbol: str) -> list[str]:
        """Each update of ``symbol``: snapshot/delta/trades or the status' state name."""
        out = []
        for u in self.updates:
            if u.symbol == symbol:
                kind = u.WhichOneof("update")
                out.append(MD.FeedState.Name(u.status.state) if kind == "status" else str(kind))
        return out

    def trades(self, symbol: str) -> list[market_data_pb2.MarketDataUpdate]:
        return [u for u in self.updates if u.symbol == symbol and u.HasField("trades")]

    def matches(self, publisher: FormatPublisher, symbol: str) -> bool:
        """Holds exactly the publisher's top-``depth`` book at the publisher's seq."""
        book = self.books.get(symbol)
        if book is None or book.seq != publisher.symbols[symbol].seq:
            return False
        return top(book, self.depth) == top(publisher.book(symbol), self.depth)

    async def close(self) -> None:
        self.call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()
