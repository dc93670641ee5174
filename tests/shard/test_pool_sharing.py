"""The writer's pool comes first: order lookups and reloads hold few connections at once,
and lookups past a bounded queue are refused (real Postgres, the node in-process)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from matching.v1 import gateway_pb2
from shard.errors import Overloaded
from shard.server import READS_AT_ONCE, READS_QUEUED, ShardNode
from tests.shard.support import config, gateway, prepare_db, running_node

pytestmark = pytest.mark.integration
BTC = "BTC-USDT"


@pytest.fixture
async def db(pg_dsn: str) -> str:
    await prepare_db(pg_dsn)
    return pg_dsn


def count_connections(node: ShardNode) -> list[int]:
    """[now, most] connections the node's pool has lent out at once, from here on."""
    held = [0, 0]
    lend = node.pool.connection

    @contextlib.asynccontextmanager
    async def counted(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async with lend(*args, **kwargs) as conn:
            held[0] += 1
            held[1] = max(held)
            try:
                yield conn
            finally:
                held[0] -= 1

    node.pool.connection = counted  # type: ignore[method-assign]
    return held


async def test_a_flood_of_order_lookups_holds_few_connections_and_is_bounded(db: str) -> None:
    flood = READS_AT_ONCE + READS_QUEUED + 36
    async with running_node(config(db)) as node:
        held = count_connections(node)
        lookups = [node._find_order(BTC, "a", 1, "") for _ in range(flood)]
        outcomes = await asyncio.gather(*lookups, return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, Overloaded)]
    assert len(refused) == 36
    assert [o for o in outcomes if not isinstance(o, Overloaded)] == [None] * (flood - 36)
    assert held[1] == READS_AT_ONCE


async def test_a_refused_lookup_is_resource_exhausted_for_the_client(db: str) -> None:
    async with running_node(config(db)) as node:
        channel, stub = gateway(node.port)
        async with channel:
            node._reads_waiting = READS_AT_ONCE + READS_QUEUED  # as if that many were queued
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetOrder(
                    gateway_pb2.GetOrderRequest(symbol=BTC, account="a", order_id=1), timeout=10
                )
            node._reads_waiting = 0
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "too many order lookups" in (caught.value.details() or "")
