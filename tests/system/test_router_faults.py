"""Through the router, with real processes: a planned move of a busy symbol under load, a shard
killed under load, and a router killed under load with clients retrying on the other router."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import psycopg

from cluster.operations import move
from matching.v1 import gateway_pb2, gateway_pb2_grpc
from tests.checkers import check_durable_record
from tests.scrape import symbol_changes
from tests.shard.support import place
from tests.system.support import (
    LEASE_TTL,
    SystemCluster,
    all_active,
    rated_load,
    system_cluster,
)
from tools.bench.load import LoadResult, percentile
from tools.services.etcd import EtcdServer

SYMBOL = "BTC-USDT"  # tick 1, lot 1: the load generator's orders are valid on it


async def load(router: str, seconds: float, clients: int = 3) -> LoadResult:
    return await rated_load(router, SYMBOL, seconds, clients, 11, "sys")


async def test_planned_move_under_load_rejects_and_loses_nothing(
    etcd_server: EtcdServer, pg_dsn: str, tmp_path: Path
) -> None:
    shard_ids, router_ids = ("shard-1", "shard-2"), ("router-1",)
    async with system_cluster(etcd_server, pg_dsn, tmp_path, shard_ids, router_ids) as cluster:
        router = cluster.routers["router-1"].target
        running = asyncio.ensure_future(load(router, 6.0))
        await asyncio.sleep(2.0)
        view = await cluster.view()
        source = view.assignments[SYMBOL].shard_id
        target = next(s for s in shard_ids if s != source)
        before = {
            s: await asyncio.to_thread(symbol_changes, cluster.metrics[s], s) for s in shard_ids
        }
        moved = await move(cluster.admin, SYMBOL, target, wait=20.0)
        result = await running
        after_move = {
            s: await asyncio.to_thread(symbol_changes, cluster.metrics[s], s) for s in shard_ids
        }
        gained = {
            s: {c: after_move[s][c] - before[s].get(c, 0.0) for c in after_move[s]}
            for s in shard_ids
        }
        assert gained[source] == {"served": 0, "recovering": 0, "moving": 1, "released": 1}
        assert gained[target] == {"served": 1, "recovering": 0, "moving": 0, "released": 0}
        assert moved.completed and moved.observed_pause is not None, moved
        assert result.rpc_failures == [], result.rpc_failures
        assert result.errors == 0, result.error_reasons  # no command refused or failed
        assert result.orders > 1000
        after = (await cluster.view()).assignments[SYMBOL]
        assert after.shard_id == target and after.epoch > view.assignments[SYMBOL].epoch
        check_durable_record(pg_dsn, result.acked_order_ids)
        # The old owner's release marker reached the router (decision 0024): its wait for
        # it ended on the marker, not on the time bound.
        router_log = cluster.routers["router-1"].log_path.read_text(errors="replace")
        assert "did not confirm releasing" not in router_log
        # The pause is a performance figure (target p99 <= 100 ms, see docs/benchmarks.md);
        # here it is only reported.
        print(
            f"\nmove pause (MOVING write to ACTIVE seen) {moved.observed_pause * 1e3:.0f} ms;"
            f" message latency p50 {percentile(result.latencies_ms, 0.5):.1f} ms"
            f" p99 {percentile(result.latencies_ms, 0.99):.1f} ms max"
            f" {max(result.latencies_ms):.1f} ms"
        )


async def test_shard_killed_under_load_trades_again_and_loses_nothing(
    etcd_server: EtcdServer, pg_dsn: str, tmp_path: Path
) -> None:
    shard_ids, router_ids = ("shard-1", "shard-2"), ("router-1",)
    async with system_cluster(etcd_server, pg_dsn, tmp_path, shard_ids, router_ids) as cluster:
        router = cluster.routers["router-1"].target
        victim = (await cluster.view()).assignments[SYMBOL].shard_id
        running = asyncio.ensure_future(load(router, 3.0))
        await asyncio.sleep(1.5)
        cluster.shards[victim].kill()
        result = await running
        # The streams in flight when the owner died end or report retriable errors; what was
        # acknowledged must be durable.
        check_durable_record(pg_dsn, result.acked_order_ids)
        await cluster.until(
            lambda v: all_active()(v) and v.assignments[SYMBOL].shard_id != victim,
            timeout=LEASE_TTL + 10,
            what="failover",
        )
        after = await load(router, 1.0, clients=1)
        assert after.orders > 0 and after.errors == 0, after.error_reasons
        assert after.rpc_failures == []
        check_durable_record(pg_dsn, result.acked_order_ids + after.acked_order_ids)


async def submit_until_acked(
    cluster: SystemCluster, order: int, routers: list[str], dead: set[str]
) -> int:
    """One order, retried with the same client order id on the next router until acked."""
    request = gateway_pb2.SubmitOrderRequest(
        order=place(SYMBOL, "retrier", 1 + order % 2, 1, 1_000_000 + order % 7, f"r-{order}")
    )
    for attempt in range(20):
        live = [r for r in routers if r not in dead] or routers
        address = cluster.routers[live[attempt % len(live)]].target
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                stub = gateway_pb2_grpc.OrderGatewayServiceStub(channel)
                reply = await stub.SubmitOrder(request, timeout=5.0)
            return reply.report.order_id
        except grpc.aio.AioRpcError as exc:
            assert exc.code() in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.CANCELLED,
                grpc.StatusCode.UNKNOWN,
            ), exc
            await asyncio.sleep(0.05)
    raise AssertionError(f"order {order} never acknowledged\n{cluster.logs()}")


async def test_router_killed_under_load_clients_retry_on_the_other(
    etcd_server: EtcdServer, pg_dsn: str, tmp_path: Path
) -> None:
    routers = ["router-1", "router-2"]
    async with system_cluster(
        etcd_server, pg_dsn, tmp_path, ("shard-1",), tuple(routers)
    ) as cluster:
        dead: set[str] = set()
        n = 400

        async def worker(start: int) -> list[int]:
            return [await submit_until_acked(cluster, i, routers, dead) for i in range(start, n, 8)]

        workers = asyncio.gather(*(worker(w) for w in range(8)))
        await asyncio.sleep(0.5)
        cluster.routers["router-1"].kill()
        dead.add("router-1")
        acked = [oid for ids in await workers for oid in ids]
        assert len(acked) == n and all(acked)
        assert len(set(acked)) == n  # a retried order kept its id: no duplicates
        check_durable_record(pg_dsn, acked)
        with psycopg.connect(pg_dsn) as conn:
            row = conn.execute(
                "SELECT count(*), count(DISTINCT client_order_id) FROM orders WHERE account = %s",
                ("retrier",),
            ).fetchone()
        assert row == (n, n)
