"""Shards in a cluster: placement, planned moves, rollback and failover, driven by the
controller through a real in-memory registry, with real Postgres underneath."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from cluster.memory import MemoryRegistry, MemoryStore
from cluster.model import Assignment, AssignmentState, ClusterView
from matching.v1 import gateway_pb2, orders_pb2
from shard.server import ShardNode
from tests.checkers import check_durable_record
from tests.shard.support import config, gateway, place, prepare_db, submit

SYMBOLS = ("BTC-USDT", "ETH-USDT")


@asynccontextmanager
async def cluster(dsn: str, n: int) -> AsyncIterator[tuple[MemoryRegistry, list[ShardNode]]]:
    await prepare_db(dsn)
    store = MemoryStore()
    admin = MemoryRegistry(store)
    async with AsyncExitStack() as stack:
        nodes = []
        for i in range(1, n + 1):
            cfg = config(dsn, (), shard_id=f"shard-{i}", lease_ttl=2)
            node = ShardNode(cfg, MemoryRegistry(store))
            await node.start()
            stack.push_async_callback(node.stop)
            nodes.append(node)
        for symbol in SYMBOLS:
            await admin.add_symbol(symbol)
        yield admin, nodes
        await admin.close()


async def until(
    registry: MemoryRegistry, check: Callable[[ClusterView], bool], timeout: float = 15.0
) -> ClusterView:
    deadline = time.monotonic() + timeout
    while True:
        view = await registry.snapshot()
        if check(view):
            return view
        assert time.monotonic() < deadline, f"timed out; last view: {view}"
        await asyncio.sleep(0.05)


def all_active(view: ClusterView) -> bool:
    return all(
        s in view.assignments and view.assignments[s].state is AssignmentState.ACTIVE
        for s in SYMBOLS
    )


def node_of(nodes: list[ShardNode], shard_id: str) -> ShardNode:
    return next(n for n in nodes if n.config.shard_id == shard_id)


async def rest_order(node: ShardNode, symbol: str, cloid: str, price: int) -> int:
    """A resting buy of 20 at ``price`` ticks of 5 (valid for both symbols' reference data)."""
    channel, stub = gateway(node.port)
    async with channel:
        cmd = orders_pb2.OrderCommand(place_order=place(symbol, "alice", 1, 20, price * 5, cloid))
        (result,) = await submit(stub, [cmd])
    assert result.WhichOneof("result") == "report", result
    return result.report.order_id


async def test_new_symbols_are_placed_and_served_by_their_owner(pg_dsn: str) -> None:
    async with cluster(pg_dsn, 2) as (admin, nodes):
        view = await until(admin, all_active)
        for symbol in SYMBOLS:
            owner = node_of(nodes, view.assignments[symbol].shard_id)
            other = next(n for n in nodes if n is not owner)
            assert owner.ownership.serving().count(symbol) == 1
            assert symbol not in other.ownership.owned()
            assert await rest_order(owner, symbol, f"c-{symbol}", 100) > 0
            channel, stub = gateway(other.port)
            async with channel:
                cmd = orders_pb2.OrderCommand(place_order=place(symbol, "bob", 2, 20, 1000))
                (result,) = await submit(stub, [cmd])
            assert result.error.reason == 100  # NOT_OWNER
            assert result.error.owner_hint.shard_id == owner.config.shard_id
        assert len({view.controller}) == 1 and view.controller.startswith("shard-")


async def test_planned_move_keeps_the_book_and_raises_the_epoch(pg_dsn: str) -> None:
    async with cluster(pg_dsn, 2) as (admin, nodes):
        view = await until(admin, all_active)
        before = view.assignments["BTC-USDT"]
        source = node_of(nodes, before.shard_id)
        target = next(n for n in nodes if n is not source)
        resting = await rest_order(source, "BTC-USDT", "resting-1", 100)
        await admin.set_pin("BTC-USDT", target.config.shard_id)  # keeps rebalancing away
        assert await admin.cas_assignment(before.revision, before.moving_to(target.config.shard_id))
        after = (
            await until(
                admin,
                lambda v: (
                    v.assignments["BTC-USDT"].shard_id == target.config.shard_id and all_active(v)
                ),
            )
        ).assignments["BTC-USDT"]
        assert after.epoch > before.epoch
        assert "BTC-USDT" not in source.ownership.owned()
        channel, stub = gateway(target.port)
        async with channel:
            book = await stub.GetOrderBook(gateway_pb2.GetOrderBookRequest(symbol="BTC-USDT"))
        assert [(lv.price, lv.quantity) for lv in book.book.bids] == [(500, 20)]
        newer = await rest_order(target, "BTC-USDT", "resting-2", 99)
        assert newer > resting  # order ids stay unique across the move
        summary = check_durable_record(pg_dsn, [resting, newer])
        assert summary.resting == 2


async def test_move_to_a_shard_that_is_gone_is_rolled_back(pg_dsn: str) -> None:
    async with cluster(pg_dsn, 2) as (admin, nodes):
        view = await until(admin, all_active)
        before = view.assignments["ETH-USDT"]
        source = node_of(nodes, before.shard_id)
        moving = Assignment(
            "ETH-USDT", before.shard_id, AssignmentState.MOVING, before.epoch, "shard-404"
        )
        assert await admin.cas_assignment(before.revision, moving)
        rolled = await until(
            admin, lambda v: v.assignments["ETH-USDT"].state is AssignmentState.ACTIVE
        )
        assert rolled.assignments["ETH-USDT"].shard_id == before.shard_id
        assert rolled.assignments["ETH-USDT"].epoch == before.epoch
        assert await rest_order(source, "ETH-USDT", "after-rollback", 100) > 0


async def test_a_shard_leaving_fails_its_symbols_over(pg_dsn: str) -> None:
    async with cluster(pg_dsn, 2) as (admin, nodes):
        view = await until(admin, all_active)
        leaving = node_of(nodes, view.assignments["BTC-USDT"].shard_id)
        staying = next(n for n in nodes if n is not leaving)
        before = await rest_order(leaving, "BTC-USDT", "before-failover", 100)
        await leaving.stop()
        nodes.remove(leaving)
        after = await until(
            admin,
            lambda v: (
                all_active(v)
                and all(a.shard_id == staying.config.shard_id for a in v.assignments.values())
            ),
        )
        assert after.assignments["BTC-USDT"].epoch > view.assignments["BTC-USDT"].epoch
        after_id = await rest_order(staying, "BTC-USDT", "after-failover", 101)
        assert after_id > before
        assert check_durable_record(pg_dsn, [before, after_id]).resting == 2
        # the exit stack stops `leaving` again on the way out: stop() must be idempotent
