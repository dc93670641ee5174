"""Test support for router tests: real shards in-process on one Postgres database, the
cluster state in one MemoryStore (the table a router watches), routers in-process.

Shards take their symbols from configuration (ShardConfig.symbols); the tests write the
matching ACTIVE assignments and shard records into the registry themselves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import grpc
import psycopg

from api.status import decode_command_error
from cluster.memory import MemoryRegistry, MemoryStore
from cluster.model import Assignment, AssignmentState, ShardRecord
from cluster.registry import Registration
from matching.v1 import gateway_pb2, gateway_pb2_grpc, orders_pb2, types_pb2
from router.config import RouterConfig
from router.server import RouterNode
from shard.server import ShardNode
from tests.shard.support import config as shard_config
from tests.shard.support import place, prepare_db
from tests.tcp_proxy import TcpProxy
from tools.services.ports import free_port

T = types_pb2
BTC, ETH = "BTC-USDT", "ETH-USDT"  # ETH: tick 5, lot 10, min 20
BUY, SELL = T.SIDE_BUY, T.SIDE_SELL
TIMEOUT = 10.0  # every RPC of these tests
Stub = gateway_pb2_grpc.OrderGatewayServiceStub

__all__ = ["place", "prepare_db"]


def router_config(**overrides: Any) -> RouterConfig:
    base = RouterConfig(
        router_id="router-1", listen="127.0.0.1:0", shutdown_grace=1.0, link_connect_timeout=5.0
    )
    return replace(base, **overrides)


class Cluster:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.store = MemoryStore()
        self.admin = MemoryRegistry(self.store)
        self.shards: dict[str, ShardNode] = {}
        self.ports: dict[str, int] = {}
        self._registrations: dict[str, Registration] = {}

    async def start_shard(
        self,
        shard_id: str,
        symbols: tuple[str, ...],
        *,
        assign: bool = True,
        address: str = "",
        **overrides: Any,
    ) -> ShardNode:
        """A shard serving ``symbols`` (taking them in Postgres), registered (at ``address``
        if given, e.g. a proxy's; else its own); its symbols assigned ACTIVE to it unless
        ``assign`` is False. Restarts reuse the shard's port."""
        port = self.ports.setdefault(shard_id, free_port())
        cfg = shard_config(self.dsn, symbols, shard_id=shard_id, listen=f"127.0.0.1:{port}",
                           shutdown_grace=1.0, **overrides)  # fmt: skip
        node = ShardNode(cfg)
        await node.start()
        self.shards[shard_id] = node
        await self.join(shard_id, address)
        if assign:
            for symbol in symbols:
                await self.assign(symbol, shard_id)
        return node

    async def stop_shard(self, shard_id: str, *, leave: bool = False) -> None:
        await self.shards.pop(shard_id).stop()
        if leave:
            await self.leave(shard_id)

    async def join(self, shard_id: str, address: str = "") -> None:
        """Register the shard as a member, unless it is one."""
        if shard_id not in self._registrations:
            record = ShardRecord(shard_id, address or f"127.0.0.1:{self.ports[shard_id]}")
            self._registrations[shard_id] = await self.admin.register_shard(record, 5)

    async def leave(self, shard_id: str) -> None:
        """End the shard's membership (its process, if running, keeps running)."""
        registration = self._registrations.pop(shard_id, None)
        if registration is not None:
            await registration.close()

    async def assign(
        self, symbol: str, shard_id: str, state: AssignmentState = AssignmentState.ACTIVE
    ) -> Assignment:
        current = await self.admin.get_assignment(symbol)
        if current is None:
            wanted = Assignment(symbol, shard_id, state)
        elif current.shard_id == shard_id:
            wanted = replace(current, state=state, target="", revision=0)
        else:
            wanted = Assignment(symbol, shard_id, state)
        stored = await self.admin.cas_assignment(current.revision if current else 0, wanted)
        assert stored is not None
        return stored

    async def move(self, symbol: str, target: str) -> Assignment:
        """The first step of a planned move: MOVING on the current owner."""
        current = await self.admin.get_assignment(symbol)
        assert current is not None
        stored = await self.admin.cas_assignment(current.revision, current.moving_to(target))
        assert stored is not None
        return stored

    async def close(self) -> None:
        for shard_id in list(self.shards):
            await self.stop_shard(shard_id)
        for registration in self._registrations.values():
            await registration.close()
        await self.admin.close()


@asynccontextmanager
async def cluster(dsn: str) -> AsyncIterator[Cluster]:
    await prepare_db(dsn)
    state = Cluster(dsn)
    try:
        yield state
    finally:
        await state.close()


@asynccontextmanager
async def proxy_in_front(state: Cluster, shard_id: str) -> AsyncIterator[TcpProxy]:
    """A TCP proxy in front of ``shard_id``'s port (``state.ports``): start the shard with
    ``address=proxy.address`` and routers reach it only through the proxy."""
    proxy = TcpProxy(state.ports.setdefault(shard_id, free_port()))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


@asynccontextmanager
async def running_router(
    state: Cluster, **overrides: Any
) -> AsyncIterator[tuple[RouterNode, Stub]]:
    registry = MemoryRegistry(state.store)
    node = RouterNode(router_config(**overrides), registry)
    await node.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{node.port}")
    try:
        yield node, gateway_pb2_grpc.OrderGatewayServiceStub(channel)
    finally:
        await channel.close()
        await node.stop()
        await registry.close()


# --- calls ---------------------------------------------------------------------------------


def cmd(correlation_id: int = 0, **kind: Any) -> orders_pb2.OrderCommand:
    return orders_pb2.OrderCommand(correlation_id=correlation_id, **kind)


def limit(symbol: str, account: str, side: int, quantity: int, price: int,
          cloid: str = "", tif: int = T.TIME_IN_FORCE_GTC) -> orders_pb2.PlaceOrder:  # fmt: skip
    return place(symbol, account, side, quantity, price, cloid, tif=tif)


async def submit_order(stub: Stub, order: orders_pb2.PlaceOrder) -> orders_pb2.ExecutionReport:
    request = gateway_pb2.SubmitOrderRequest(order=order)
    reply: gateway_pb2.SubmitOrderResponse = await stub.SubmitOrder(request, timeout=TIMEOUT)
    return reply.report


async def batch(
    stub: Stub, commands: Sequence[orders_pb2.OrderCommand], timeout: float = TIMEOUT
) -> list[orders_pb2.CommandResult]:
    request = gateway_pb2.SubmitBatchRequest(commands=commands)
    return list((await stub.SubmitBatch(request, timeout=timeout)).results)


def error_of(err: grpc.aio.AioRpcError) -> orders_pb2.CommandError:
    found = decode_command_error(err.trailing_metadata())  # type: ignore[arg-type]
    assert found is not None, "no matching-command-error-bin trailer"
    return found


def trade(stub: Stub, timeout: float = 60.0) -> Any:
    """A Trade stream call (the generated stubs type it as a plain iterator)."""
    open_call: Any = stub.Trade
    return open_call(timeout=timeout)


# --- waiting and the durable record ---------------------------------------------------------


async def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return predicate()


async def open_orders(dsn: str, account: str) -> list[tuple[str, int]]:
    """(symbol, order_id) of the account's resting orders, from Postgres."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT symbol, order_id FROM orders WHERE account = %s AND leaves_qty > 0"
            " ORDER BY order_id",
            (account,),
        )
        return [(r[0], r[1]) for r in await cur.fetchall()]


async def journal(dsn: str, symbol: str) -> list[tuple[int, str, int]]:
    """(seq, account, status) of the symbol's journal rows, in seq order."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT seq, account, status FROM journal WHERE symbol = %s ORDER BY seq", (symbol,)
        )
        return [(r[0], r[1], r[2]) for r in await cur.fetchall()]
