"""The router's Redis Cluster client for market data: snapshot reads and channel subscriptions.

Redis is a cache here: every call is bounded by ``timeout`` and any failure (connection
refused, cluster down, timeout, a reply that does not parse) is one ``CacheUnavailable``, so
callers degrade instead of waiting. The client is created without touching the network and
initialises on first use, so a router starts and trades while Redis is unreachable.

Node connections keep redis-py's default of no silent reconnect (``Retry(NoBackoff(), 0)``);
a subscription that saw a connection error is thrown away, never resumed, because messages
published while it was down are lost and only a fresh snapshot can tell what they were.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from google.protobuf.message import DecodeError
from redis.asyncio.cluster import ClusterNode, ClusterPubSub, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError

from marketdata.keys import book_key
from matching.v1 import market_data_pb2
from router.errors import RouterError

log = logging.getLogger(__name__)
T = TypeVar("T")


class CacheUnavailable(RouterError):
    """Redis did not answer in time or answered with an error: market data is degraded."""

    retriable = True


def parse_nodes(nodes: tuple[str, ...]) -> list[tuple[str, int]]:
    out = []
    for node in nodes:
        host, _, port = node.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"redis node {node!r} is not host:port")
        out.append((host, int(port)))
    return out


class MarketDataCache:
    """One RedisCluster client per router, shared by GetOrderBook and every symbol feed."""

    def __init__(self, nodes: tuple[str, ...], timeout: float, max_connections: int) -> None:
        self.timeout = timeout  # every Redis call, connecting included
        self._client = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in parse_nodes(nodes)],
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # One quick retry (after a topology refresh) covers a moved slot; more would only
            # stretch an outage past the caller's timeout.
            retry=Retry(NoBackoff(), 1),
            max_connections=max_connections,  # per node: GETs plus one per subscribed symbol
        )

    async def _bounded(self, what: str, call: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.timeout):
                return await call
        except (TimeoutError, RedisError, RedisClusterException, OSError) as exc:
            raise CacheUnavailable(f"redis {what}: {type(exc).__name__}") from exc

    async def _initialized(self) -> None:
        # The cluster client initialises lazily and retries on the next call if it failed,
        # but pub/sub needs the slot map first.
        await self._bounded("initialize", self._client.initialize())

    async def get_book(self, symbol: str) -> market_data_pb2.MarketDataUpdate | None:
        """The symbol's latest published snapshot (a MarketDataUpdate), None if there is none."""
        raw = await self._bounded("GET", self._client.get(book_key(symbol)))
        if raw is None:
            return None
        try:
            data = raw if isinstance(raw, bytes) else raw.encode()  # no decode_responses
            update = market_data_pb2.MarketDataUpdate.FromString(data)
        except DecodeError as exc:
            raise CacheUnavailable(f"unparseable snapshot of {symbol}") from exc
        if update.WhichOneof("update") != "snapshot":
            raise CacheUnavailable(f"the book key of {symbol} holds no snapshot")
        return update

    async def subscribe(self, channel: str) -> Subscription:
        """An active subscription: SSUBSCRIBE sent and confirmed by the channel's node, so
        everything published from now on is delivered (read a snapshot only after this)."""
        await self._initialized()
        subscription = Subscription(self._client.pubsub(), channel, self.timeout)
        try:
            await subscription.open()
        except BaseException:
            await subscription.close()
            raise
        return subscription

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.timeout):
                await self._client.aclose()


class Subscription:
    """One sharded pub/sub channel on its own connection to the node owning its slot."""

    def __init__(self, pubsub: ClusterPubSub, channel: str, timeout: float) -> None:
        self._pubsub = pubsub
        self.channel = channel
        self._timeout = timeout

    async def _bounded(self, what: str, call: Awaitable[T], timeout: float) -> T:
        try:
            async with asyncio.timeout(timeout):
                return await call
        except (TimeoutError, RedisError, RedisClusterException, OSError) as exc:
            raise CacheUnavailable(f"redis {what} {self.channel}: {type(exc).__name__}") from exc

    async def open(self) -> None:
        await self._bounded("SSUBSCRIBE", self._pubsub.ssubscribe(self.channel), self._timeout)
        deadline = time.monotonic() + self._timeout
        while (left := deadline - time.monotonic()) > 0:
            message = await self._read(left)
            if message is not None and _kind(message) == "ssubscribe":
                return
        raise CacheUnavailable(f"no SSUBSCRIBE confirmation for {self.channel}")

    async def next(self, wait: float) -> bytes | None:
        """The next message's payload, None if none arrived within ``wait`` seconds.

        CacheUnavailable if the subscription broke: a connection error, or a second
        SSUBSCRIBE confirmation (redis-py re-subscribed after a reconnect: messages published
        in between were lost)."""
        message = await self._read(wait)
        if message is None:
            return None
        kind = _kind(message)
        if kind == "smessage":
            data = message["data"]
            return data if isinstance(data, bytes) else str(data).encode()
        raise CacheUnavailable(f"subscription to {self.channel} was reset ({kind})")

    async def _read(self, wait: float) -> dict[str, Any] | None:
        if not self._pubsub.node_pubsub_mapping:
            # redis-py dropped the node's connection (topology change): nothing will arrive.
            raise CacheUnavailable(f"subscription to {self.channel} was dropped")
        read = self._pubsub.get_sharded_message(timeout=wait)
        message: dict[str, Any] | None = await self._bounded("read", read, wait + self._timeout)
        return message

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._timeout):
                await self._pubsub.aclose()


def _kind(message: dict[str, Any]) -> str:
    kind = message.get("type")
    return kind.decode() if isinstance(kind, bytes) else str(kind)
