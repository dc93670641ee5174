"""etcd stopped and restarted under load, through a router: trading goes on throughout (safety
lives in Postgres), nothing fails over because of the outage, and watches resume in shards and
router alike: a move after the restart completes and the router follows it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc

from matching.v1 import gateway_pb2_grpc, orders_pb2
from tests.checkers import check_durable_record
from tests.shard.support import place, submit
from tests.system.support import LEASE_TTL, SYMBOLS, all_active, system_cluster
from tools.services.etcd import EtcdServer


async def trade(router: str, stop: asyncio.Event) -> list[int]:
    """Place small crossing orders on every symbol through the router until ``stop``; every one
    must be acknowledged (bounded: at most 2,000 rounds)."""
    acked: list[int] = []
    async with grpc.aio.insecure_channel(router) as channel:
        stub = gateway_pb2_grpc.OrderGatewayServiceStub(channel)
        for n in range(2000):
            if stop.is_set():
                break
            for symbol in SYMBOLS:
                side = 1 + n % 2
                cmd = orders_pb2.OrderCommand(
                    place_order=place(symbol, f"acct-{side}", side, 20, 500, f"{symbol}-{n}")
                )
                (result,) = await submit(stub, [cmd], timeout=10.0)
                assert result.WhichOneof("result") == "report", (symbol, n, result)
                acked.append(result.report.order_id)
            await asyncio.sleep(0.01)
    return acked


async def test_trading_continues_through_an_etcd_restart(
    etcd_server: EtcdServer, pg_dsn: str, tmp_path: Path
) -> None:
    async with system_cluster(
        etcd_server, pg_dsn, tmp_path, ("shard-1", "shard-2"), ("router-1",)
    ) as cluster:
        before = await cluster.view()
        owners = {s: before.assignments[s].shard_id for s in SYMBOLS}
        router = cluster.routers["router-1"].target
        stop = asyncio.Event()
        load = asyncio.ensure_future(trade(router, stop))
        await asyncio.sleep(0.5)
        etcd_server.stop()
        down_at = time.monotonic()
        await asyncio.sleep(LEASE_TTL + 1.5)  # longer than a lease: only trading may go on
        assert not load.done(), load.exception() if load.done() else None
        etcd_server.start()
        outage = time.monotonic() - down_at
        await asyncio.sleep(1.0)
        stop.set()
        acked = await load
        assert len(acked) > 50, len(acked)
        after = await cluster.until(
            lambda v: all_active()(v) and set(v.shards) == {"shard-1", "shard-2"},
            what="both shards registered again",
        )
        for symbol in SYMBOLS:  # no failover because of the outage: same owner, same epoch
            assert after.assignments[symbol].shard_id == owners[symbol]
            assert after.assignments[symbol].epoch == before.assignments[symbol].epoch
        assert outage > LEASE_TTL
        # Watches resumed: a planned move issued after the restart completes.
        symbol = SYMBOLS[0]
        current = after.assignments[symbol]
        target = next(s for s in after.shards if s != current.shard_id)
        await cluster.admin.set_pin(symbol, target)
        assert await cluster.admin.cas_assignment(current.revision, current.moving_to(target))
        await cluster.until(
            lambda v: v.assignments[symbol].shard_id == target and all_active()(v),
            what="move after the etcd restart",
        )
        stop = asyncio.Event()
        more = asyncio.ensure_future(trade(router, stop))  # routed to the new owner
        await asyncio.sleep(0.5)
        stop.set()
        acked += await more
        check_durable_record(pg_dsn, acked)
