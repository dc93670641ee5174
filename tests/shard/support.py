"""Test support for shard tests: database set-up, in-process and subprocess shards, clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import grpc
import psycopg

from matching.v1 import gateway_pb2, gateway_pb2_grpc, orders_pb2
from persistence.claims import Claimed
from persistence.migrate import migrate
from persistence.symbols import create_symbol
from shard.config import ShardConfig
from shard.engine import (
    AmendOrder,
    CancelOrder,
    Command,
    MassCancel,
    PlaceOrder,
    SetSymbolStatus,
    SymbolSpec,
)
from shard.server import ShardNode
from tests.shard.engine.flows import DEFAULT_SYMBOLS, random_flow

SYMBOLS = ("BTC-USDT", "ETH-USDT")  # reference data as in tests/shard/engine/flows.py


async def prepare_db(dsn: str, specs: tuple[SymbolSpec, ...] = DEFAULT_SYMBOLS) -> None:
    await migrate(dsn)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        for spec in specs:
            row = await create_symbol(
                conn,
                spec.symbol,
                spec.tick_size,
                spec.lot_size,
                spec.min_quantity,
                spec.max_quantity,
            )
            assert row.symbol_id == spec.symbol_id


async def all_new(wanted: object) -> Claimed:
    """An Admission claim that finds every client order id new (no database)."""
    return Claimed([], {})


def to_pb(cmd: Command, correlation_id: int = 0) -> orders_pb2.OrderCommand:
    """A domain command as the wire carries it (tests drive the shard with domain flows)."""
    out = orders_pb2.OrderCommand(correlation_id=correlation_id)
    if isinstance(cmd, PlaceOrder):
        out.place_order.CopyFrom(
            place(
                cmd.symbol,
                cmd.account,
                int(cmd.side),
                cmd.quantity,
                cmd.price,
                cmd.client_order_id,
                int(cmd.order_type),
                int(cmd.time_in_force),
                int(cmd.stp),
            )
        )
        out.place_order.post_only = cmd.post_only
    elif isinstance(cmd, CancelOrder):
        out.cancel_order.CopyFrom(
            orders_pb2.CancelOrder(
                symbol=cmd.symbol,
                account=cmd.account,
                order_id=cmd.order_id,
                client_order_id=cmd.client_order_id,
            )
        )
    elif isinstance(cmd, AmendOrder):
        out.amend_order.CopyFrom(
            orders_pb2.AmendOrder(
                symbol=cmd.symbol,
                account=cmd.account,
                order_id=cmd.order_id,
                client_order_id=cmd.client_order_id,
                new_price=cmd.new_price,
                new_quantity=cmd.new_quantity,
            )
        )
    elif isinstance(cmd, MassCancel):
        out.mass_cancel.CopyFrom(
            orders_pb2.MassCancel(symbol=cmd.symbol, account=cmd.account, side=int(cmd.side or 0))
        )  # type: ignore[arg-type]
    else:
        raise ValueError(f"not a gateway command: {cmd!r}")
    return out


def config(dsn: str, symbols: tuple[str, ...] = SYMBOLS, **overrides: Any) -> ShardConfig:
    base = ShardConfig(shard_id="shard-1", listen="127.0.0.1:0", pg_dsn=dsn, symbols=symbols)
    return replace(base, **overrides)


@asynccontextmanager
async def running_node(cfg: ShardConfig) -> AsyncIterator[ShardNode]:
    node = ShardNode(cfg)
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


def place(
    symbol: str,
    account: str,
    side: int,
    quantity: int,
    price: int,
    cloid: str = "",
    order_type: int = 1,
    tif: int = 1,
    stp: int = 1,
) -> orders_pb2.PlaceOrder:
    return orders_pb2.PlaceOrder(
        symbol=symbol,
        account=account,
        side=side,
        quantity=quantity,
        price=price,  # type: ignore[arg-type]
        order_type=order_type,
        time_in_force=tif,
        stp_mode=stp,
        client_order_id=cloid,  # type: ignore[arg-type]
    )


def gateway(port: int) -> tuple[grpc.aio.Channel, gateway_pb2_grpc.OrderGatewayServiceStub]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return channel, gateway_pb2_grpc.OrderGatewayServiceStub(channel)


def wire_flow(seed: int, n: int) -> list[orders_pb2.OrderCommand]:
    """A seeded engine flow as gateway commands: admin commands and values the wire cannot
    carry (beyond int64) are left out; everything else, malformed fields included, stays."""
    out = []
    for i, cmd in enumerate(random_flow(seed, n)):
        if isinstance(cmd, SetSymbolStatus):
            continue
        try:
            out.append(to_pb(cmd, i + 1))
        except ValueError:
            continue
    return out


async def submit(
    stub: gateway_pb2_grpc.OrderGatewayServiceStub,
    commands: Sequence[orders_pb2.OrderCommand],
    timeout: float = 10.0,
) -> list[orders_pb2.CommandResult]:
    """One SubmitBatch call; its results in command order."""
    request = gateway_pb2.SubmitBatchRequest(commands=commands)
    return list((await stub.SubmitBatch(request, timeout=timeout)).results)
