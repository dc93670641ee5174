"""Market data published by shards to a real 3-node Redis Cluster, followed by subscribers
that apply snapshot + deltas (marketdata.book.L2Book); real Postgres, in-process shards."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from redis.asyncio.cluster import RedisCluster

from cluster.memory import MemoryRegistry, MemoryStore
from cluster.model import Assignment, AssignmentState
from matching.v1 import gateway_pb2, orders_pb2
from persistence import failpoints
from shard.server import ShardNode
from tests.shard.publisher_support import (
    BookFollower,
    cluster_client,
    committed_top,
    durable_fills,
    md_config,
    node_index,
    read_snapshot,
    stream_trades,
    wait_synced,
    wait_until,
)
from tests.shard.support import (
    SYMBOLS,
    config,
    gateway,
    place,
    prepare_db,
    running_node,
    submit,
    wire_flow,
)
from tools.services import RedisCluster as LocalRedisCluster

BTC = "BTC-USDT"


@pytest.fixture
async def db(pg_dsn: str) -> str:
    await prepare_db(pg_dsn)
    return pg_dsn


@pytest.fixture
async def md(redis_cluster_clean: LocalRedisCluster) -> AsyncIterator[RedisCluster]:
    client = await cluster_client(redis_cluster_clean)
    yield client
    await client.aclose()


@pytest.fixture(autouse=True)
def no_failpoints() -> None:
    yield
    failpoints.configure("")


async def follow(md: RedisCluster, node: ShardNode, *symbols: str) -> list[BookFollower]:
    """Followers that start once the owner has published its first round (the RESNAPSHOT a
    newly taken symbol begins with), so a follower that counts RESNAPSHOTs sees only later
    ones."""
    assert node.publisher is not None
    for symbol in symbols:
        await node.publisher.flush(symbol)
    return [await BookFollower(md, s).start() for s in symbols]


def order(symbol: str, account: str, side: int, qty: int, price: int) -> orders_pb2.OrderCommand:
    return orders_pb2.OrderCommand(place_order=place(symbol, account, side, qty, price))


async def test_a_subscriber_rebuilds_the_committed_book_and_the_trades(
    db: str, redis_cluster_clean: LocalRedisCluster, md: RedisCluster
) -> None:
    async with running_node(md_config(db, redis_cluster_clean)) as node:
        followers = await follow(md, node, *SYMBOLS)
        channel, stub = gateway(node.port)
        pbs = wire_flow(21, 1500)
        async with channel:
            for start in range(0, len(pbs), 25):  # many committed batches
                await submit(stub, pbs[start : start + 25])
            for follower in followers:
                await wait_synced(follower, node)
                symbol = follower.symbol
                assert not follower.gaps and not follower.backwards()
                assert follower.messages > 1 and follower.resnapshots == 0
                served = await stub.GetOrderBook(
                    gateway_pb2.GetOrderBookRequest(symbol=symbol, depth=50)
                )
                assert served.seq == follower.seq
                assert follower.book.top() == (
                    [(lv.price, lv.quantity, lv.order_count) for lv in served.book.bids],
                    [(lv.price, lv.quantity, lv.order_count) for lv in served.book.asks],
                )
                snapshot = await read_snapshot(md, symbol)
                assert snapshot.seq == follower.seq
                fills = durable_fills(db, symbol)
                assert fills, f"the flow traded nothing on {symbol}"
                assert await stream_trades(md, symbol) == fills
        assert not node.publisher.degraded
        for follower in followers:
            await follower.close()


async def test_a_quiet_symbol_gets_a_fresh_snapshot_every_heartbeat(
    db: str, redis_cluster_clean: LocalRedisCluster, md: RedisCluster
) -> None:
    async with running_node(md_config(db, redis_cluster_clean)) as node:
        await wait_until(lambda: node.publisher.stats.snapshots >= 2, "first snapshots")
        first = await read_snapshot(md, BTC)
        fresher: list[int] = []

        async def read() -> None:
            fresher.append((await read_snapshot(md, BTC)).snapshot.as_of_unix_nanos)

        for _ in range(100):  # bounded: a heartbeat is due within 1.5 s
            await read()
            if fresher[-1] > first.snapshot.as_of_unix_nanos:
                break
            await asyncio.sleep(0.05)
        assert fresher[-1] > first.snapshot.as_of_unix_nanos
        assert (await read_snapshot(md, BTC)).seq == first.seq == 0


async def test_trading_goes_on_without_redis(db: str) -> None:
    async with running_node(config(db, redis_nodes=("127.0.0.1:1",), redis_timeout=0.5)) as node:
        channel, stub = gateway(node.port)
        async with channel:
            (result,) = await submit(stub, [order(BTC, "a", 2, 5, 100)])
        assert result.report.status == 1
        await wait_until(lambda: node.publisher.degraded, "publisher degraded")


async def test_a_burst_is_coalesced_into_one_snapshot_and_one_message(
    db: str, redis_cluster_clean: LocalRedisCluster, md: RedisCluster
) -> None:
    """Redis holds the publisher's writes (CLIENT PAUSE) while 20 batches commit one after
    the other: when it lets go, they go out as one snapshot and one message."""
    cfg = md_config(db, redis_cluster_clean, redis_timeout=30.0)
    async with running_node(cfg) as node:
        (follower,) = await follow(md, node, BTC)
        channel, stub = gateway(node.port)
        async with channel:
            await submit(stub, [order(BTC, "maker", 2, 1000, 100)])
            await wait_synced(follower, node)
            node_of_btc = md.get_node_from_key(f"md:{{{BTC}}}:book")
            messages, rounds = follower.messages, node.publisher.stats.rounds
            seen = len(follower.updates)
            await md.execute_command("CLIENT", "PAUSE", 20_000, "WRITE", target_nodes=node_of_btc)
            try:
                for i in range(20):  # 20 batches, each committed before the next is sent
                    (result,) = await submit(stub, [order(BTC, "taker", 1, 1 + i, 100)])
                    assert result.report.status == 3  # FILLED against the maker
            finally:
                await md.execute_command("CLIENT", "UNPAUSE", target_nodes=node_of_btc)
            await wait_synced(follower, node)
        burst = follower.messages - messages
        assert 1 <= burst <= 2, burst  # the round held by the pause, then all the rest
        assert burst <= node.publisher.stats.rounds - rounds
        updates = follower.updates[seen:]
        kinds = [u.WhichOneof("update") for u in updates]
        assert kinds.count("delta") == burst and kinds[0] == "delta"
        trades = [u.seq for u in updates if u.WhichOneof("update") == "trades"]
        assert trades == list(range(follower.seq - 19, follower.seq + 1))  # one per batch
        assert not follower.gaps and follower.resnapshots == 0
        await follower.close()


async def test_nothing_uncommitted_is_ever_published(
    db: str, redis_cluster_clean: LocalRedisCluster, md: RedisCluster
) -> None:
    failed_price = 777
    async with running_node(md_config(db, redis_cluster_clean)) as node:
        (follower,) = await follow(md, node, BTC)
        channel, stub = gateway(node.port)
        async with channel:
            await submit(stub, [order(BTC, "a", 2, 5, 100)])
            await wait_synced(follower, node)
            failpoints.configure("before_commit=fail")
            (failed,) = await submit(stub, [order(BTC, "b", 2, 5, failed_price)])
            assert failed.WhichOneof("result") == "error"
            failpoints.configure("")
            for _ in range(100):  # the symbol reloads in the background: retry like a client
                (after,) = await submit(stub, [order(BTC, "c", 2, 5, 101)])
                if after.WhichOneof("result") == "report":
                    break
                await asyncio.sleep(0.05)
            assert after.report.seq == 2  # the failed command's seq, reused
            await wait_synced(follower, node)
        assert follower.seq == 2
        assert failed_price not in follower.prices()
        assert {100, 101} <= follower.prices()
        snapshot = await read_snapshot(md, BTC)
        assert [lv.price for lv in snapshot.snapshot.asks] == [100, 101]
        await follower.close()


async def test_a_redis_node_down_degrades_market_data_not_trading(
    db: str, redis_cluster_clean: LocalRedisCluster, md: RedisCluster
) -> None:
    redis = redis_cluster_clean
    index = node_index(md, redis, BTC)
    async with running_node(md_config(db, redis, redis_timeout=1.0)) as node:
        publisher = node.publisher
        (follower,) = await follow(md, node, BTC)
        channel, stub = gateway(node.port)
        async with channel:
            await submit(stub, [order(BTC, "a", 2, 5, 100)])
            await wait_synced(follower, node)
            resnapshots = publisher.stats.resnapshots
            killed = time.time_ns()
            redis.kill_node(index)
            try:
                for i in range(200):  # bounded; every order is acknowledged meanwhile
                    (result,) = await submit(stub, [order(BTC, "b", 1, 1, 90 - i % 10)], 5.0)
                    assert result.report.status == 1, result
                    if publisher.degraded and i >= 10:
                        break
                    await asyncio.sleep(0.02)
                assert publisher.degraded
                assert node.engine.book(BTC).last_seq > follower.seq  # trading went on
            finally:
                await asyncio.to_thread(redis.start_node, index)  # the shard runs meanwhile
            await wait_until(lambda: not publisher.degraded, "publisher recovered")
            assert publisher.stats.resnapshots > resnapshots
            snapshot = await read_snapshot(md, BTC)
            assert snapshot.seq == node.pipeline.committed_books[BTC].seq
            assert snapshot.snapshot.as_of_unix_nanos > killed  # written after the restart
            await wait_synced(follower, node)
            assert follower.reconnects >= 1
            gaps = len(follower.gaps)
            await submit(stub, [order(BTC, "c", 2, 7, 101)])  # deltas chain again
            await wait_synced(follower, node)
        assert len(follower.gaps) == gaps and not follower.backwards()
        await follower.close()


@asynccontextmanager
async def two_shards(
    dsn: str, redis: LocalRedisCluster
) -> AsyncIterator[tuple[MemoryRegistry, list[ShardNode]]]:
    """Two cluster-mode shards publishing market data (as tests/shard/test_cluster_member.py)."""
    store = MemoryStore()
    admin = MemoryRegistry(store)
    async with AsyncExitStack() as stack:
        nodes = []
        for i in (1, 2):
            cfg = md_config(dsn, redis, symbols=(), shard_id=f"shard-{i}", lease_ttl=2)
            node = ShardNode(cfg, MemoryRegistry(store))
            await node.start()
            stack.push_async_callback(node.stop)
            nodes.append(node)
        for symbol in SYMBOLS:
            await admin.add_symbol(symbol)
        yield admin, nodes
        await admin.close()


async def assignment(admin: MemoryRegistry, check: Callable[[Assignment], bool]) -> Assignment:
    for _ in range(600):  # bounded: 30 s
        current = (await admin.snapshot()).assignments.get(BTC)
        if current is not None and check(current):
            return current
        await asyncio.sleep(0.05)
    raise AssertionError(f"assignment of {BTC} never satisfied the check")


async def test_the_book_follows_a_planned_move_without_going_back(
    db: str, redis_cluster_clean: LocalRedisCluster, md: RedisCluster
) -> None:
    async with two_shards(db, redis_cluster_clean) as (admin, nodes):
        before = await assignment(admin, lambda a: a.state is AssignmentState.ACTIVE)
        source = next(n for n in nodes if n.config.shard_id == before.shard_id)
        target = next(n for n in nodes if n is not source)
        (follower,) = await follow(md, source, BTC)
        flow = [c for c in wire_flow(5, 1200) if getattr(c, c.WhichOneof("command")).symbol == BTC]
        assert len(flow) > 400
        channel, stub = gateway(source.port)
        async with channel:
            for start in range(0, 300, 20):
                await submit(stub, flow[start : start + 20])
        await wait_synced(follower, source)
        moved_at = source.pipeline.committed_books[BTC].seq
        resnapshots = follower.resnapshots
        await admin.set_pin(BTC, target.config.shard_id)
        assert await admin.cas_assignment(before.revision, before.moving_to(target.config.shard_id))
        await assignment(
            admin,
            lambda a: a.shard_id == target.config.shard_id and a.state is AssignmentState.ACTIVE,
        )
        channel, stub = gateway(target.port)
        async with channel:
            for start in range(300, len(flow), 20):
                await submit(stub, flow[start : start + 20])
        await wait_synced(follower, target)
        assert follower.seq > moved_at
        assert follower.resnapshots == resnapshots + 1  # the new owner's first publish
        (restart,) = [u for u in follower.updates if u.HasField("status")]
        assert restart.seq == moved_at  # the new chain starts at the last committed seq
        assert not follower.backwards() and not follower.gaps
        assert follower.book.top() == committed_top(target, BTC)
        await follower.close()
