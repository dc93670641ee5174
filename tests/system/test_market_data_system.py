"""Market data end to end, with real processes: shards publishing to a real 3-node Redis
Cluster, a router serving StreamMarketData, real etcd and Postgres. A subscriber that applies
snapshot + deltas holds exactly the book the owning shard committed, under a random order flow,
across a planned move and across a kill -9 of the owner and its failover; it never sees a
delta that does not chain (a move or a failover may send a RESNAPSHOT, never a gap)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest

from cluster.operations import move
from marketdata.keys import DEFAULT_DEPTH
from matching.v1 import gateway_pb2_grpc
from tests.checkers import check_durable_record
from tests.system.support import (
    LEASE_TTL,
    SystemCluster,
    all_active,
    rated_load,
    system_cluster,
)
from tools.bench.load import LoadResult
from tools.bench.md_load import Subscriber, same_book
from tools.services.etcd import EtcdServer
from tools.services.redis_cluster import RedisCluster

pytestmark = pytest.mark.integration

SYMBOL = "BTC-USDT"
SYNC_TIMEOUT = 30.0  # the subscriber catches up with the committed book


async def follow_while_trading(
    cluster: SystemCluster, disturb: Callable[[], Awaitable[None]], tag: str
) -> tuple[Subscriber, LoadResult]:
    """A subscriber follows SYMBOL while orders flow through the router and ``disturb`` (an
    async callable) moves or kills the owner half-way; returns once trading has ended."""
    router = cluster.routers["router-1"].target
    channel = grpc.aio.insecure_channel(router)
    stub = gateway_pb2_grpc.OrderGatewayServiceStub(channel)
    subscriber = Subscriber(stub, SYMBOL, depth=DEFAULT_DEPTH)
    async with asyncio.timeout(SYNC_TIMEOUT):
        await subscriber.synced.wait()
    running = asyncio.ensure_future(rated_load(router, SYMBOL, 5.0, 2, 5, tag))
    await asyncio.sleep(2.0)
    await disturb()
    result = await running
    # The new owner trades and publishes.
    result.merge(await rated_load(router, SYMBOL, 1.5, 2, 5, f"{tag}-after"))
    same, seq, shard_seq = await same_book(subscriber, stub, SYNC_TIMEOUT)
    assert same and seq > 0, (seq, shard_seq)
    assert subscriber.stats.gaps == 0 and not subscriber.stats.failures
    await subscriber.close()
    await channel.close()
    return subscriber, result


async def test_a_subscriber_follows_the_book_across_a_planned_move(
    etcd_server: EtcdServer, pg_dsn: str, tmp_path: Path, redis_cluster_clean: RedisCluster
) -> None:
    shards = ("shard-1", "shard-2")
    async with system_cluster(
        etcd_server, pg_dsn, tmp_path, shards, ("router-1",), redis=redis_cluster_clean
    ) as cluster:
        source = (await cluster.view()).assignments[SYMBOL].shard_id
        target = next(s for s in shards if s != source)

        async def planned_move() -> None:
            moved = await move(cluster.admin, SYMBOL, target, wait=20.0)
            assert moved.completed, moved

        _, result = await follow_while_trading(cluster, planned_move, "mv")
        assert (await cluster.view()).assignments[SYMBOL].shard_id == target
        assert result.errors == 0 and result.rpc_failures == []
        check_durable_record(pg_dsn, result.acked_order_ids)


async def test_a_subscriber_follows_the_book_across_a_kill_9_and_failover(
    etcd_server: EtcdServer, pg_dsn: str, tmp_path: Path, redis_cluster_clean: RedisCluster
) -> None:
    shards = ("shard-1", "shard-2")
    async with system_cluster(
        etcd_server, pg_dsn, tmp_path, shards, ("router-1",), redis=redis_cluster_clean
    ) as cluster:
        victim = (await cluster.view()).assignments[SYMBOL].shard_id

        async def kill_the_owner() -> None:
            cluster.shards[victim].kill()
            await cluster.until(
                lambda v: all_active()(v) and v.assignments[SYMBOL].shard_id != victim,
                timeout=LEASE_TTL + 15,
                what="failover to the live shard",
            )

        subscriber, result = await follow_while_trading(cluster, kill_the_owner, "kill")
        # The new owner starts its chain with a RESNAPSHOT: discarded, never a wrong book.
        assert subscriber.stats.resnapshots >= 1
        check_durable_record(pg_dsn, result.acked_order_ids)
