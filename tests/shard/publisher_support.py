"""Test support for the market-data publisher: a subscriber that follows one symbol the way a
client must (SSUBSCRIBE first, then read the snapshot key, then apply every message with
marketdata.book.L2Book) and records everything it saw, plus readers of the durable record."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import psycopg
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisError

from marketdata.book import GapError, L2Book
from marketdata.keys import DEFAULT_DEPTH, book_key, trades_key, updates_channel
from matching.v1 import gateway_pb2, market_data_pb2
from shard.config import ShardConfig
from shard.server import ShardNode
from tests.shard.support import config
from tools.services import RedisCluster as LocalRedisCluster

Trade = tuple[int, int, int, int]  # (seq, match_index, price, quantity)
Top = tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]
RESNAPSHOT = market_data_pb2.FEED_STATE_RESNAPSHOT
WAIT = 30.0  # generous: the machine is shared; every wait polls with this deadline


def md_config(dsn: str, redis: LocalRedisCluster, **overrides: Any) -> ShardConfig:
    nodes = tuple(f"{host}:{port}" for host, port in redis.startup_nodes)
    return config(dsn, redis_nodes=nodes, **overrides)


async def cluster_client(redis: LocalRedisCluster) -> RedisCluster:
    client = RedisCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in redis.startup_nodes],
        socket_timeout=5,
        socket_connect_timeout=5,
    )
    await client.initialize()
    return client


def node_index(client: RedisCluster, redis: LocalRedisCluster, symbol: str) -> int:
    """Which node of ``redis`` holds ``symbol``'s slot (all its keys and its channel)."""
    return redis.ports.index(client.get_node_from_key(book_key(symbol)).port)


class BookFollower:
    """One symbol's market data as a subscriber sees it; reconnects (and re-snapshots) when
    its node goes away, the way a router must."""

    def __init__(self, client: RedisCluster, symbol: str, depth: int = DEFAULT_DEPTH) -> None:
        node = client.get_node_from_key(book_key(symbol))
        self._address = (node.host, node.port)
        self.symbol = symbol
        self.book = L2Book(depth)
        self.seqs: list[int] = []  # the book's seq after every change
        self.updates: list[market_data_pb2.MarketDataUpdate] = []  # every channel update
        self.snapshots: list[market_data_pb2.MarketDataUpdate] = []  # every snapshot read
        self.messages = 0
        self.resnapshots = 0
        self.reconnects = 0
        self.gaps: list[str] = []
        self._conn: aioredis.Redis | None = None
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> BookFollower:
        await self._subscribe()
        await self._resnapshot()
        self._task = asyncio.create_task(self._run())
        return self

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._disconnect()

    @property
    def seq(self) -> int:
        return self.book.seq

    def prices(self) -> set[int]:
        """Every price any snapshot or delta this follower saw carried."""
        seen: set[int] = set()
        for u in self.snapshots:
            seen.update(lv.price for lv in (*u.snapshot.bids, *u.snapshot.asks))
        for u in self.updates:
            if u.HasField("delta"):
                seen.update(lv.price for lv in (*u.delta.bids, *u.delta.asks))
        return seen

    def backwards(self) -> list[tuple[int, int]]:
        return [(a, b) for a, b in zip(self.seqs, self.seqs[1:], strict=False) if b < a]

    async def _subscribe(self) -> None:
        host, port = self._address
        self._conn = aioredis.Redis(host=host, port=port, socket_connect_timeout=2)
        self._pubsub = self._conn.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.ssubscribe(updates_channel(self.symbol))

    async def _disconnect(self) -> None:
        with contextlib.suppress(Exception):
            if self._pubsub is not None:
                await self._pubsub.aclose()
            if self._conn is not None:
                await self._conn.aclose()

    async def _run(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=0.2)
                if message is not None and message["type"] == "smessage":
                    self.messages += 1
                    response = gateway_pb2.StreamMarketDataResponse.FromString(message["data"])
                    await self._apply(response)
            except (RedisError, OSError):
                await self._reconnect()

    async def _reconnect(self) -> None:
        """Subscribe again, then re-snapshot: what was published meanwhile is lost."""
        self.reconnects += 1
        while True:
            await self._disconnect()
            try:
                await self._subscribe()
                await self._resnapshot()
                return
            except (RedisError, OSError):
                await asyncio.sleep(0.05)

    async def _apply(self, response: gateway_pb2.StreamMarketDataResponse) -> None:
        for update in response.updates:
            self.updates.append(update)
            kind = update.WhichOneof("update")
            if kind == "status" and update.status.state == RESNAPSHOT:
                self.resnapshots += 1
                await self._resnapshot()
            elif kind == "delta":
                if self.book.seq < 0:
                    await self._resnapshot()
                if update.seq <= self.book.seq:
                    continue  # already in the snapshot read after subscribing
                try:
                    self.book.apply_delta(update.seq, update.delta)
                except GapError as exc:
                    self.gaps.append(str(exc))
                    await self._resnapshot()
                    continue
                self.seqs.append(update.seq)

    async def _resnapshot(self) -> None:
        assert self._conn is not None
        raw = await self._conn.get(book_key(self.symbol))
        if raw is None:
            return
        update = market_data_pb2.MarketDataUpdate.FromString(raw)
        self.snapshots.append(update)
        self.book.apply_snapshot(update.seq, update.snapshot)
        self.seqs.append(update.seq)


def committed_top(node: ShardNode, symbol: str, depth: int = DEFAULT_DEPTH) -> Top:
    view = node.pipeline.committed_books[symbol]
    return [tuple(lv) for lv in view.bids[:depth]], [tuple(lv) for lv in view.asks[:depth]]  # type: ignore[misc]


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f}s"
        await asyncio.sleep(0.02)


async def wait_synced(follower: BookFollower, node: ShardNode, timeout: float = WAIT) -> None:
    """Until the follower holds the shard's committed book at its committed seq."""
    symbol = follower.symbol
    await wait_until(
        lambda: (
            follower.seq == node.pipeline.committed_books[symbol].seq
            and follower.book.top() == committed_top(node, symbol)
        ),
        f"{symbol} follower in sync with the committed book",
        timeout,
    )


async def read_snapshot(client: RedisCluster, symbol: str) -> market_data_pb2.MarketDataUpdate:
    raw = await client.get(book_key(symbol))
    assert raw is not None, f"no snapshot of {symbol}"
    return market_data_pb2.MarketDataUpdate.FromString(raw)


async def stream_trades(client: RedisCluster, symbol: str) -> list[Trade]:
    out: list[Trade] = []
    for _, fields in await client.xrange(trades_key(symbol)):
        assert fields is not None
        entry = gateway_pb2.StreamMarketDataResponse.FromString(fields[b"u"])
        for update in entry.updates:
            out += [(update.seq, t.match_index, t.price, t.quantity) for t in update.trades.trades]
    return out


def durable_fills(dsn: str, symbol: str) -> list[Trade]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT seq, match_index, price, quantity FROM fills WHERE symbol = %s"
            " ORDER BY seq, match_index",
            (symbol,),
        ).fetchall()
    return [(int(s), int(i), int(p), int(q)) for s, i, p, q in rows]
