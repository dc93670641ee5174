"""Failover and fencing with real processes, real etcd and real Postgres.

- kill -9 of an owner: its symbols trade again on a live shard within TTL + 2 s, and every
  acknowledged order is in the durable record.
- SIGSTOP of an owner past its lease: the symbol is reassigned; after SIGCONT the old owner's
  next commit is fenced and it drops the symbol; no commit ever carries a stale epoch.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import grpc
import psycopg

from matching.v1 import gateway_pb2, gateway_pb2_grpc, orders_pb2
from tests.checkers import check_durable_record
from tests.router.support import SELL, cmd, limit, trade
from tests.shard.support import place, submit
from tests.system.support import LEASE_TTL, SystemCluster, all_active, system_cluster
from tools.services.etcd import EtcdServer

SYMBOL = "BTC-USDT"


async def place_via(address: str, cloid: str, price: int) -> orders_pb2.CommandResult:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = gateway_pb2_grpc.OrderGatewayServiceStub(channel)
        cmd = orders_pb2.OrderCommand(place_order=place(SYMBOL, "alice", 1, 1, price, cloid))
        (result,) = await submit(stub, [cmd], timeout=10.0)
        return result


async def hinted_refusal(address: str, deadline_s: float) -> orders_pb2.CommandResult:
    """The old owner drops the symbol when its commit is fenced, which can be before its
    etcd watch, resumed after SIGCONT, has brought the new assignment: until then it
    refuses without an owner hint. Ask until the hint is there or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    while True:
        result = await place_via(address, "to-old-owner", 103)
        if result.error.owner_hint.shard_id or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.1)


async def owner_of(cluster: SystemCluster, symbol: str = SYMBOL) -> str:
    return (await cluster.view()).assignments[symbol].shard_id


async def trade_until_served(cluster: SystemCluster, prefix: str, deadline_s: float) -> float:
    """Place orders on whoever the registry says owns SYMBOL until one is acknowledged;
    returns when (monotonic) that happened."""
    deadline = time.monotonic() + deadline_s
    n = 0
    while time.monotonic() < deadline:
        n += 1
        view = await cluster.view()
        owner = view.assignments[SYMBOL]
        if owner.shard_id in view.shards and owner.shard_id in cluster.shards:
            try:
                result = await place_via(cluster.address(owner.shard_id), f"{prefix}-{n}", 90)
                if result.WhichOneof("result") == "report" and result.report.order_id:
                    return time.monotonic()
            except grpc.aio.AioRpcError:
                pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"{SYMBOL} not served within {deadline_s}s\n{cluster.logs()}")


async def test_kill_9_owner_fails_over_within_ttl_plus_2s(
    etcd_server: EtcdServer, pg_dsn: str, tmp_path: Path
) -> None:
    async with system_cluster(etcd_server, pg_dsn, tmp_path, ("shard-1", "shard-2")) as cluster:
        victim = await owner_of(cluster)
        acked = []
        for i in range(20):
            result = await place_via(cluster.address(victim), f"pre-{i}", 100 + i)
            assert result.report.order_id, result
            acked.append(result.report.order_id)
        before = (await cluster.view()).assignments[SYMBOL]
        cluster.shards[victim].kill()
        killed_at = time.monotonic()
        served_at = await trade_until_served(cluster, "post", LEASE_TTL + 10)
        assert served_at - killed_at <= LEASE_TTL + 2.0, served_at - killed_at
        after = (await cluster.view()).assignments[SYMBOL]
        assert after.shard_id != victim and after.epoch > before.epoch
        summary = check_durable_record(pg_dsn, acked)
        assert summary.resting >= len(acked)


async def test_sigstopped_owner_is_fenced_after_reassignment(
    etcd_server: EtcdServer, pg_dsn: str, tmp_path: Path
) -> None:
    async with system_cluster(etcd_server, pg_dsn, tmp_path, ("shard-1", "shard-2")) as cluster:
        victim = await owner_of(cluster)
        proc = cluster.shards[victim]
        assert (await place_via(proc.target, "before-stop", 100)).report.order_id
        stale_epoch = (await cluster.view()).assignments[SYMBOL].epoch
        proc.signal(signal.SIGSTOP)
        try:
            # Sent while stopped: the kernel buffers it; the shard sees it only after SIGCONT,
            # when the symbol has been reassigned and fenced in Postgres.
            pending = asyncio.ensure_future(place_via(proc.target, "while-stopped", 101))
            await cluster.until(
                lambda v: v.assignments[SYMBOL].shard_id != victim and all_active()(v),
                timeout=LEASE_TTL + 15,
                what="reassignment away from the stopped owner",
            )
        finally:
            proc.signal(signal.SIGCONT)
        result = await pending
        # Either fenced at commit (outcome unknown, nothing written) or refused up front.
        assert result.WhichOneof("result") == "error", result
        assert result.error.reason in (100, 103, 109), result.error
        new_owner = (await cluster.view()).assignments[SYMBOL]
        assert new_owner.epoch > stale_epoch
        assert (await place_via(cluster.address(new_owner.shard_id), "after", 102)).report.order_id
        dropped = await hinted_refusal(proc.target, deadline_s=10.0)
        assert dropped.error.reason == 100, dropped  # NOT_OWNER: it let the symbol go
        assert dropped.error.owner_hint.shard_id == new_owner.shard_id, dropped
        check_durable_record(pg_dsn)  # includes: journal epochs never go backwards
        with psycopg.connect(pg_dsn) as conn:
            stale = conn.execute(
                "SELECT count(*) FROM journal WHERE symbol = %s AND client_order_id = %s",
                (SYMBOL, "while-stopped"),
            ).fetchone()
        assert stale == (0,)


async def test_a_maker_gone_while_its_owner_is_frozen_is_cancelled_on_the_new_owner(
    etcd_server: EtcdServer, pg_dsn: str, tmp_path: Path
) -> None:
    """A cancel-on-disconnect maker goes while the owner of its symbol is stopped: the
    router's shard-wide cancel gets no answer from it, and the symbol fails over with the
    maker's orders in its book; the stopped owner never runs again (kill -9), so nothing it
    would have done on SIGCONT helps. The router retries the cancel on the symbols that
    shard held, which wait for their new owner, so the orders are cancelled there."""
    shard_ids, router_ids = ("shard-1", "shard-2"), ("router-1",)
    async with system_cluster(etcd_server, pg_dsn, tmp_path, shard_ids, router_ids) as cluster:
        victim = await owner_of(cluster)
        async with grpc.aio.insecure_channel(cluster.routers["router-1"].target) as channel:
            call = trade(gateway_pb2_grpc.OrderGatewayServiceStub(channel))
            options = gateway_pb2.TradeStreamOptions(accounts=["mm"], cancel_on_disconnect=True)
            quotes = [cmd(i + 1, place_order=limit(SYMBOL, "mm", SELL, 1, 9_000 + i))
                      for i in range(2)]  # fmt: skip
            await call.write(gateway_pb2.TradeRequest(options=options, commands=quotes))
            answer = await call.read()
            placed = [r.report.order_id for r in answer.results]
            assert all(placed), answer
            proc = cluster.shards[victim]
            proc.signal(signal.SIGSTOP)
            try:
                call.cancel()
                await cluster.until(
                    lambda v: v.assignments[SYMBOL].shard_id != victim and all_active()(v),
                    timeout=LEASE_TTL + 15,
                    what="failover away from the stopped owner",
                )
            finally:
                proc.kill()
        deadline = time.monotonic() + 15.0
        while await _resting(pg_dsn, "mm") and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert await _resting(pg_dsn, "mm") == [], cluster.logs()
        check_durable_record(pg_dsn, placed)


async def _resting(dsn: str, account: str) -> list[int]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT order_id FROM orders WHERE account = %s AND leaves_qty > 0", (account,)
        )
        return [row[0] for row in await cur.fetchall()]
