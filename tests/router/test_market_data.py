"""Routers serve market data from Redis Cluster: GetOrderBook (cache, else the owning shard)
and StreamMarketData (one shared feed per symbol; snapshot, chained deltas, trades;
re-snapshots, degraded feeds, slow readers cut off).

Redis is real (the session's 3-node cluster); the publisher side is the documented format
written directly (tests/router/md_support.py), plus one end-to-end test with a real shard.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import random
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from marketdata.book import L2Book
from marketdata.keys import updates_channel
from matching.v1 import gateway_pb2, market_data_pb2
from router.config import add_arguments, from_args
from router.md_subscribers import DepthGroup, Subscriber, top
from router.md_wire import framed
from tests.router.md_support import (
    FormatPublisher,
    Reader,
    cluster_client,
    md_router,
    node_index,
    node_list,
    shard_subscribers,
    wait_until,
)
from tests.router.support import (
    BTC,
    BUY,
    ETH,
    SELL,
    TIMEOUT,
    batch,
    cluster,
    cmd,
    limit,
    running_router,
)
from tools.services import RedisCluster
from tools.services.ports import free_port

MD = market_data_pb2
CACHE, SHARD = MD.BOOK_SOURCE_CACHE, MD.BOOK_SOURCE_SHARD
A, B, C = "AAA-USD", "BBB-USD", "CCC-USD"
QUIET = {"md_stale_after": 600.0}  # snapshots written by the tests stay fresh


@pytest.fixture
async def publisher(redis_cluster_clean: RedisCluster) -> AsyncIterator[FormatPublisher]:
    client = cluster_client(redis_cluster_clean)
    try:
        yield FormatPublisher(client)
    finally:
        await client.aclose()


# --- units: trimming and the bounded queue (no sockets) --------------------------------------


def test_a_depth_group_turns_published_deltas_into_exact_shallow_books() -> None:
    """Random published views; a depth-3 group's snapshot + deltas rebuild the top 3 exactly,
    including levels that move up into the top 3 without being in the published delta."""
    rng = random.Random(5)
    full = L2Book(depth=50)
    full.apply_snapshot(0, MD.OrderBookSnapshot())
    group = DepthGroup("X", 3, full=False)
    client = L2Book(depth=3)
    client.apply_snapshot(0, group.snapshot(full, MD.OrderBookSnapshot()).snapshot)
    for seq in range(1, 400):
        before = top(full, 50)
        side = rng.choice((full.bids, full.asks))
        for _ in range(rng.randint(1, 4)):
            price = rng.randint(1, 12)
            if rng.random() < 0.4:
                side.pop(price, None)
            else:
                side[price] = (rng.randint(1, 9), 1)
        after = top(full, 50)
        full.seq = seq
        published = _delta(seq, before, after)
        update = group.delta(published, full)
        assert update.delta.prev_seq == seq - 1
        client.apply_delta(update.seq, update.delta)
        assert client.top() == top(full, 3)


def _delta(
    seq: int,
    before: tuple[list[tuple[int, int, int]], ...],
    after: tuple[list[tuple[int, int, int]], ...],
) -> market_data_pb2.MarketDataUpdate:
    from marketdata.wire import diff_side
    from tests.router.md_support import levels_pb

    delta = MD.OrderBookDelta(
        prev_seq=seq - 1,
        bids=levels_pb(diff_side(before[0], after[0])),
        asks=levels_pb(diff_side(before[1], after[1])),
    )
    return MD.MarketDataUpdate(symbol="X", seq=seq, delta=delta)


def test_a_subscriber_queue_is_bounded_and_overflow_frees_it() -> None:
    subscriber = Subscriber(depth=10, limit=5)
    overflowed = []
    subscriber.on_overflow = lambda: overflowed.append(True)
    assert subscriber.push([b"u"] * 5)
    assert not subscriber.push([b"u"])
    assert subscriber.overflowed and overflowed == [True] and subscriber.queued == 0
    assert not subscriber.push([b"u"])  # stays cut off


def test_framed_updates_joined_are_a_response_of_those_updates() -> None:
    updates = [
        MD.MarketDataUpdate(symbol="X", seq=7, trades=MD.PublicTrades(trades=[
            MD.PublicTrade(price=101, quantity=3 + i, time_unix_nanos=1 << 60) for i in range(40)
        ])),
        MD.MarketDataUpdate(symbol="X", seq=8, status=MD.FeedStatus(state=MD.FEED_STATE_LIVE)),
        MD.MarketDataUpdate(),  # empty: a zero-length entry still counts as one update
    ]  # fmt: skip
    parsed = gateway_pb2.StreamMarketDataResponse.FromString(b"".join(framed(updates)))
    assert list(parsed.updates) == updates


def test_redis_flag_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOTMATCH_REDIS", "10.0.0.1:7000, 10.0.0.2:7000")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = from_args(parser.parse_args(["--etcd", "h:1", "--md-queue", "77"]))
    assert config.redis_nodes == ("10.0.0.1:7000", "10.0.0.2:7000")
    assert config.md_queue_max == 77
    with pytest.raises(SystemExit):
        from_args(parser.parse_args(["--etcd", "h:1", "--redis", "no-port"]))


# --- GetOrderBook ------------------------------------------------------------------------------


async def test_get_order_book_from_cache_else_from_the_shard(
    pg_dsn: str, redis_cluster_clean: RedisCluster, publisher: FormatPublisher
) -> None:
    async with cluster(pg_dsn) as state:
        await state.start_shard("shard-1", (BTC, ETH))
        async with running_router(state, redis_nodes=node_list(redis_cluster_clean), **QUIET) as (
            _,
            stub,
        ):
            await batch(stub, [cmd(1, place_order=limit(BTC, "mm", BUY, 10, 100 + i))
                               for i in range(3)])  # fmt: skip

            async def book(**kw: object) -> gateway_pb2.GetOrderBookResponse:
                request = gateway_pb2.GetOrderBookRequest(symbol=BTC, **kw)  # type: ignore[arg-type]
                return await stub.GetOrderBook(request, timeout=TIMEOUT)  # type: ignore[no-any-return]

            missing = await book()  # nothing cached yet: the shard answers
            assert (missing.source, missing.stale, missing.seq) == (SHARD, False, 3)
            assert [lv.price for lv in missing.book.bids] == [102, 101, 100]

            bids = [(1000 - i, 1, 1) for i in range(60)]  # deeper than the published depth
            await publisher.start(BTC, bids, [(2000, 5, 1)])
            cached = await book(depth=2)
            assert (cached.source, cached.stale, cached.seq) == (CACHE, False, 1)
            assert [lv.price for lv in cached.book.bids] == [1000, 999]
            assert cached.book.as_of_unix_nanos > 0 and cached.symbol == BTC
            assert len((await book()).book.bids) == 10  # 0 = the default depth
            assert len((await book(depth=500)).book.bids) == 50  # capped at the published depth

            forced = await book(from_shard=True)
            assert (forced.source, forced.seq) == (SHARD, 3)

            await publisher.heartbeat(BTC, age=700.0)  # older than md_stale_after
            stale = await book()
            assert (stale.source, stale.stale) == (SHARD, False)

            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetOrderBook(gateway_pb2.GetOrderBookRequest(symbol="NOPE-USD"),
                                        timeout=TIMEOUT)  # fmt: skip
            assert err.value.code() == grpc.StatusCode.NOT_FOUND

            await state.stop_shard("shard-1")  # neither is fresh: the stale entry, flagged
            last_resort = await book(depth=3)
            assert (last_resort.source, last_resort.stale, last_resort.seq) == (CACHE, True, 1)
            assert [lv.price for lv in last_resort.book.bids] == [1000, 999, 998]
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetOrderBook(gateway_pb2.GetOrderBookRequest(symbol=ETH),
                                        timeout=TIMEOUT)  # fmt: skip
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # no cache entry either


async def test_unreachable_redis_router_starts_trades_and_degrades(pg_dsn: str) -> None:
    dead = (f"127.0.0.1:{free_port()}",)
    async with cluster(pg_dsn) as state:
        await state.start_shard("shard-1", (BTC,))
        async with running_router(state, redis_nodes=dead, redis_timeout=0.3) as (_, stub):
            results = await batch(stub, [cmd(1, place_order=limit(BTC, "mm", SELL, 10, 105))])
            assert results[0].report.order_id > 0
            answer = await stub.GetOrderBook(gateway_pb2.GetOrderBookRequest(symbol=BTC),
                                             timeout=TIMEOUT)  # fmt: skip
            assert (answer.source, answer.stale, answer.seq) == (SHARD, False, 1)
            reader = Reader(stub, [BTC])
            try:
                assert await wait_until(lambda: "FEED_STATE_DEGRADED" in reader.kinds(BTC))
                assert reader.kinds(BTC)[0] == "FEED_STATE_DEGRADED"
            finally:
                await reader.close()


# --- StreamMarketData ----------------------------------------------------------------------------


async def test_a_stream_of_several_symbols_gets_snapshots_then_chained_deltas_and_trades(
    redis_cluster_clean: RedisCluster, publisher: FormatPublisher
) -> None:
    rng = random.Random(11)
    symbols = [A, B, C]
    for symbol in symbols:
        await publisher.start(symbol, [(50, 10, 1)], [(1050, 10, 1)])
    async with md_router(node_list(redis_cluster_clean), symbols, **QUIET) as (node, stub):
        readers = [Reader(stub, symbols), Reader(stub, symbols, depth=3), Reader(stub, [B], 50)]
        try:
            assert await wait_until(
                lambda: (
                    all(readers[0].seq(s) == readers[1].seq(s) == 1 for s in symbols)
                    and readers[2].seq(B) == 1
                )
            )
            for _ in range(300):
                await publisher.random_batch(rng, rng.choice(symbols))
            for reader in readers:
                for symbol in list(reader.books):
                    synced = functools.partial(reader.matches, publisher, symbol)
                    assert await wait_until(synced), symbol
                assert not reader.gaps
            for symbol in symbols:
                kinds = readers[0].kinds(symbol)
                assert kinds[0] == "snapshot" and kinds.count("snapshot") == 1
                assert set(kinds[1:]) <= {"delta", "trades"}
                # every trade published after the snapshot, in order, once
                got = [(u.seq, u.trades) for u in readers[0].trades(symbol)]
                sent = [(u.seq, u.trades) for u in publisher.trades.get(symbol, [])]
                assert got == sent and got
            feed = node.market_data.feeds.get(B) if node.market_data.feeds else None
            assert feed is not None and feed.subscribers == 3 and feed.subscriptions == 1
        finally:
            for reader in readers:
                await reader.close()


async def test_many_subscribers_of_a_symbol_share_one_redis_subscription(
    redis_cluster_clean: RedisCluster, publisher: FormatPublisher
) -> None:
    await publisher.start(A, [(50, 10, 1)], [(1050, 10, 1)])
    channel = updates_channel(A)
    async with md_router(node_list(redis_cluster_clean), [A], **QUIET) as (node, stub):
        assert node.market_data.feeds is not None
        readers = [Reader(stub, [A], depth=1 + i % 4) for i in range(20)]
        try:
            assert await wait_until(lambda: all(r.seq(A) == 1 for r in readers))
            assert await shard_subscribers(publisher.client, channel) == 1
            feed = node.market_data.feeds.get(A)
            assert feed is not None and feed.subscribers == 20 and feed.subscriptions == 1
            await publisher.batch(A, [("b", 51, 5, 1)])
            assert await wait_until(lambda: all(r.matches(publisher, A) for r in readers))
        finally:
            for reader in readers:
                await reader.close()
        # the last one leaving stops the feed and its subscription
        assert await wait_until(lambda: node.market_data.feeds.get(A) is None)  # type: ignore[union-attr]
        for _ in range(100):
            if await shard_subscribers(publisher.client, channel) == 0:
                break
            await asyncio.sleep(0.05)
        assert await shard_subscribers(publisher.client, channel) == 0


async def test_a_gap_forces_resnapshot_then_snapshot(
    redis_cluster_clean: RedisCluster, publisher: FormatPublisher
) -> None:
    await publisher.start(A, [(50, 10, 1)], [(1050, 10, 1)])
    async with md_router(node_list(redis_cluster_clean), [A], **QUIET) as (_, stub):
        reader = Reader(stub, [A])
        try:
            assert await wait_until(lambda: reader.seq(A) == 1)
            await publisher.batch(A, [("b", 51, 5, 1)])
            lost = await publisher.batch(A, [("b", 52, 5, 1)], publish=False)  # message lost
            last = await publisher.batch(A, [("a", 1051, 7, 2)], [[(1050, 3)]])
            assert await wait_until(lambda: reader.matches(publisher, A))
            # The trades of the message that showed the gap still go out, then the snapshot.
            assert reader.kinds(A) == [
                "snapshot", "delta", "trades", "FEED_STATE_RESNAPSHOT", "snapshot"
            ]  # fmt: skip
            resnapshot, snapshot = reader.updates[-2:]
            assert resnapshot.seq == 2 and snapshot.seq == last > lost
            assert not reader.gaps
            await publisher.batch(A, [("b", 50, 0, 0)])  # chains again from the new snapshot
            assert await wait_until(lambda: reader.matches(publisher, A))
            assert reader.kinds(A)[-1] == "delta" and not reader.gaps
        finally:
            await reader.close()


async def test_a_resnapshot_on_the_channel_is_forwarded_with_the_fresh_snapshot(
    redis_cluster_clean: RedisCluster, publisher: FormatPublisher
) -> None:
    await publisher.start(A, [(50, 10, 1)], [(1050, 10, 1)])
    async with md_router(node_list(redis_cluster_clean), [A], **QUIET) as (_, stub):
        reader = Reader(stub, [A], depth=2)
        try:
            assert await wait_until(lambda: reader.seq(A) == 1)
            await publisher.start(A, [(60, 1, 1), (59, 2, 1), (58, 3, 1)], [])  # a new owner
            assert await wait_until(lambda: reader.matches(publisher, A))
            assert reader.kinds(A) == ["snapshot", "FEED_STATE_RESNAPSHOT", "snapshot"]
            assert [lv.price for lv in reader.updates[-1].snapshot.bids] == [60, 59]
            # A RESNAPSHOT round that also had trades: the trades still reach the reader.
            publisher.symbols[A].seq += 1  # a command that traded, the top levels unchanged
            trade = MD.MarketDataUpdate(
                symbol=A, seq=publisher.symbols[A].seq, trades=MD.PublicTrades(
                    trades=[MD.PublicTrade(price=60, quantity=1, taker_side=2)]
                ),
            )  # fmt: skip
            await publisher.resnapshot(A, [trade])
            assert await wait_until(lambda: reader.trades(A) == [trade])
        finally:
            await reader.close()


async def test_the_audit_catches_a_lost_last_message_and_a_stale_publisher(
    redis_cluster_clean: RedisCluster, publisher: FormatPublisher
) -> None:
    await publisher.start(A, [(50, 10, 1)], [(1050, 10, 1)])
    nodes = node_list(redis_cluster_clean)
    async with md_router(nodes, [A], md_audit_interval=0.2, md_stale_after=600.0) as (_, stub):
        reader = Reader(stub, [A])
        try:
            assert await wait_until(lambda: reader.seq(A) == 1)
            await publisher.batch(A, [("b", 51, 5, 1)], publish=False)  # and nothing follows
            assert await wait_until(lambda: reader.matches(publisher, A))
            assert reader.kinds(A) == ["snapshot", "FEED_STATE_RESNAPSHOT", "snapshot"]
            await publisher.heartbeat(A, age=700.0)  # the publisher stopped refreshing
            assert await wait_until(lambda: reader.kinds(A)[-1] == "FEED_STATE_DEGRADED")
            await publisher.heartbeat(A)
            assert await wait_until(lambda: reader.kinds(A)[-1] == "FEED_STATE_LIVE")
            assert reader.matches(publisher, A)  # the book held all along stays right
        finally:
            await reader.close()


async def test_a_slow_subscriber_is_cut_off_while_another_keeps_receiving(
    redis_cluster_clean: RedisCluster, publisher: FormatPublisher
) -> None:
    await publisher.start(A, [(50, 10, 1)], [(1050, 10, 1)])
    async with md_router(node_list(redis_cluster_clean), [A], md_queue_max=50, **QUIET) as (
        node,
        stub,
    ):
        feeds = node.market_data.feeds
        assert feeds is not None
        fast = Reader(stub, [A])
        request = gateway_pb2.StreamMarketDataRequest(symbols=[A])
        open_call: Any = stub.StreamMarketData
        slow = open_call(request, timeout=120.0)  # never read until the end
        try:
            assert await wait_until(lambda: (f := feeds.get(A)) is not None and f.subscribers == 2)
            big = [[(1050, 1)] * 1000]  # ~15 kB of trades per batch fills the transport fast
            for i in range(2000):
                await publisher.batch(A, [("b", 100 + i % 40, 1 + i, 1)], big)
                feed = feeds.get(A)
                if feed is not None and feed.subscribers == 1:
                    break
            feed = feeds.get(A)
            assert feed is not None and feed.subscribers == 1  # the slow one is out
            await publisher.batch(A, [("b", 42, 4, 1)])
            assert await wait_until(lambda: fast.matches(publisher, A))
            assert fast.error is None and not fast.gaps
            received = 0
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for response in slow:
                    received += len(response.updates)
                    assert received < 100_000
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "too slow" in (err.value.details() or "")
        finally:
            slow.cancel()
            await fast.close()


async def test_a_subscriber_whose_write_stalls_is_cut_off_before_its_queue_fills(
    redis_cluster_clean: RedisCluster, publisher: FormatPublisher
) -> None:
    """A reader that stops reading on a symbol too quiet to overflow its queue: the stalled
    write alone cuts it off, and its queue and feed subscription are freed."""
    await publisher.start(A, [(50, 10, 1)], [(1050, 10, 1)])
    overrides = {"md_queue_max": 100_000, "stream_write_timeout": 0.5, **QUIET}
    async with md_router(node_list(redis_cluster_clean), [A], **overrides) as (node, stub):
        feeds = node.market_data.feeds
        assert feeds is not None
        request = gateway_pb2.StreamMarketDataRequest(symbols=[A])
        open_call: Any = stub.StreamMarketData
        slow = open_call(request, timeout=120.0)  # never read until the end
        try:
            assert await wait_until(lambda: (f := feeds.get(A)) is not None and f.subscribers == 1)
            big = [[(1050, 1)] * 1000]  # ~15 kB of trades per batch
            for i in range(600):  # ~9 MB: past any transport window, far below the queue
                await publisher.batch(A, [("b", 100 + i % 40, 1 + i, 1)], big)
            assert await wait_until(lambda: (f := feeds.get(A)) is None or f.subscribers == 0)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for _ in slow:
                    pass
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "write timed out" in (err.value.details() or "")
        finally:
            slow.cancel()


async def test_a_redis_node_down_degrades_the_feed_then_it_recovers(
    redis_cluster_clean: RedisCluster, publisher: FormatPublisher
) -> None:
    redis = redis_cluster_clean
    await publisher.start(A, [(50, 10, 1)], [(1050, 10, 1)])
    async with md_router(node_list(redis), [A], redis_timeout=0.5, **QUIET) as (node, stub):
        reader = Reader(stub, [A])
        try:
            assert await wait_until(lambda: reader.seq(A) == 1)
            index = node_index(redis, publisher.client, A)
            redis.kill_node(index)
            assert await wait_until(lambda: "FEED_STATE_DEGRADED" in reader.kinds(A))
            answer_kinds = len(reader.kinds(A))
            await asyncio.to_thread(redis.start_node, index)  # comes back empty
            await _retry(lambda: publisher.resnapshot(A))  # the publisher republishes
            assert await wait_until(lambda: "FEED_STATE_LIVE" in reader.kinds(A)[answer_kinds:])
            # Published only once the feed is live again: it must arrive as a chained delta.
            await publisher.batch(A, [("b", 51, 5, 1)])
            assert await wait_until(lambda: reader.matches(publisher, A))
            after = reader.kinds(A)[answer_kinds:]
            assert after[:3] == ["FEED_STATE_RESNAPSHOT", "snapshot", "FEED_STATE_LIVE"], after
            assert after[-1] == "delta" and not reader.gaps
            feed = node.market_data.feeds.get(A) if node.market_data.feeds else None
            assert feed is not None and feed.subscriptions >= 2
        finally:
            await reader.close()
            redis.ensure_running()


async def _retry(action: object, attempts: int = 100) -> None:
    """Redis calls right after a node restart may still see the cluster settling."""
    for attempt in range(attempts):
        try:
            await action()  # type: ignore[operator]
            return
        except Exception:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.1)
