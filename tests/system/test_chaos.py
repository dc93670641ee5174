"""Chaos under load (marker ``soak``): one fault after another, then the durable record.

Three shards, one router, real etcd and Postgres. The load generator trades BTC-USDT through
the router for the whole run; a market maker quotes ETH-USDT on cancel-on-disconnect
streams. A seeded sequence of faults, each followed by a wait until every symbol is ACTIVE
on a live shard again:
- kill -9 of an owner, and its restart (the controller may move symbols back to it);
- a planned move of a symbol to another shard (a pin);
- SIGSTOP of an owner past its lease, then SIGCONT (fenced, it lets the symbol go).
Between faults the market maker disconnects and reconnects: its orders from before the
disconnect must all be cancelled (they may have been reloaded by a new owner meanwhile),
and those of its last session must still rest at the end (no cancel owed by an earlier
disconnect may run late). At the end: every acknowledged order is in Postgres, the fills
equal the reference matcher's replay of the journal, sequences are gap-free and epochs
never go backwards (tests/checkers.py).

Bounded: SPOTMATCH_SOAK_SECONDS (default 30) of faults, at most MAX_FAULTS of them. CI runs
the default; longer runs only lengthen the sequence.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest

from cluster.operations import move
from matching.v1 import gateway_pb2, gateway_pb2_grpc
from tests.checkers import check_durable_record
from tests.router.support import SELL, T, cmd, limit, trade
from tests.system.support import LEASE_TTL, SYMBOLS, SystemCluster, all_active, rated_load
from tests.system.support import system_cluster as start_cluster
from tools.services.etcd import EtcdServer

SOAK_SECONDS = float(os.environ.get("SPOTMATCH_SOAK_SECONDS", "30"))
RECOVERY_S = LEASE_TTL + 15  # a fault's symbols are ACTIVE on a live shard again within this
pytestmark = [pytest.mark.soak, pytest.mark.timeout(int(SOAK_SECONDS + 4 * RECOVERY_S) + 240)]

MAX_FAULTS = 40
SEED = int(os.environ.get("SPOTMATCH_SOAK_SEED", "7"))
LOAD_SYMBOL, MM_SYMBOL = SYMBOLS  # ETH-USDT: tick 5, lot 10, min 20
MM = "mm"
SHARDS = ("shard-1", "shard-2", "shard-3")

Fault = Callable[[SystemCluster, random.Random], Awaitable[str]]


async def kill_and_restart(cluster: SystemCluster, rng: random.Random) -> str:
    victim = (await cluster.view()).assignments[rng.choice(SYMBOLS)].shard_id
    cluster.shards[victim].kill()
    await cluster.until(_served_without(victim), RECOVERY_S, f"failover from killed {victim}")
    await asyncio.to_thread(cluster.start_shard, victim)
    await cluster.until(lambda v: victim in v.shards and all_active()(v), RECOVERY_S, "rejoin")
    return f"kill -9 {victim}"


async def planned_move(cluster: SystemCluster, rng: random.Random) -> str:
    view = await cluster.view()
    symbol = rng.choice(SYMBOLS)
    source = view.assignments[symbol].shard_id
    target = rng.choice([s for s in SHARDS if s != source and s in view.shards])
    moved = await move(cluster.admin, symbol, target, wait=RECOVERY_S)
    assert moved.completed, moved
    return f"move {symbol} {source}->{target}"


async def stop_past_lease(cluster: SystemCluster, rng: random.Random) -> str:
    victim = (await cluster.view()).assignments[rng.choice(SYMBOLS)].shard_id
    proc = cluster.shards[victim]
    proc.signal(signal.SIGSTOP)
    try:
        await cluster.until(_served_without(victim), RECOVERY_S, f"failover from stopped {victim}")
    finally:
        proc.signal(signal.SIGCONT)
    await cluster.until(lambda v: victim in v.shards and all_active()(v), RECOVERY_S, "resume")
    return f"SIGSTOP {victim}"


def _served_without(shard_id: str) -> Callable[[Any], bool]:
    def check(view: Any) -> bool:
        return all_active()(view) and all(view.assignments[s].shard_id != shard_id for s in SYMBOLS)

    return check


FAULTS: tuple[Fault, ...] = (kill_and_restart, planned_move, stop_past_lease)


class Maker:
    """Quotes MM_SYMBOL far from any trade, on one cancel-on-disconnect stream at a time."""

    def __init__(self, router: str, dsn: str) -> None:
        self._dsn = dsn
        self._channel = grpc.aio.insecure_channel(router)
        self._stub = gateway_pb2_grpc.OrderGatewayServiceStub(self._channel)
        self._call: Any = None
        self.sessions = 0
        self.current: set[str] = set()  # client order ids of the open session's orders
        self.gone: set[str] = set()  # those of ended sessions: must all be cancelled

    async def reconnect(self) -> None:
        if self._call is not None:
            self._call.cancel()
            self.gone |= self.current
            await self._until_cancelled()
        self.sessions += 1
        self._call = trade(self._stub)
        options = gateway_pb2.TradeStreamOptions(accounts=[MM], cancel_on_disconnect=True)
        await self._call.write(gateway_pb2.TradeRequest(options=options))
        self.current = {f"mm-{self.sessions}-{i}" for i in range(2)}
        await self._place(sorted(self.current))

    async def _place(self, cloids: list[str]) -> None:
        """Retried with the same ids (idempotent) until each is acknowledged, bounded."""
        deadline = time.monotonic() + RECOVERY_S
        while cloids:
            assert time.monotonic() < deadline, f"maker orders not acknowledged: {cloids}"
            commands = [
                cmd(i + 1, place_order=limit(MM_SYMBOL, MM, SELL, 20, 9_000, cloid))
                for i, cloid in enumerate(cloids)
            ]
            await self._call.write(gateway_pb2.TradeRequest(commands=commands))
            answer = await self._answer()
            acked = {
                c for c, r in zip(cloids, answer.results, strict=True)
                if r.WhichOneof("result") == "report"
                and r.report.status == T.ORDER_STATUS_NEW
            }  # fmt: skip
            cloids = [c for c in cloids if c not in acked]
            if cloids:
                await asyncio.sleep(0.2)

    async def _answer(self) -> gateway_pb2.TradeResponse:
        while True:  # skips unsolicited reports (correlation id 0)
            answer: gateway_pb2.TradeResponse = await self._call.read()
            if answer.results and answer.results[0].correlation_id != 0:
                return answer

    async def _until_cancelled(self) -> None:
        deadline = time.monotonic() + RECOVERY_S
        while self.gone & await resting_cloids(self._dsn):
            assert time.monotonic() < deadline, "orders of a gone maker still rest"
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        if self._call is not None:
            self._call.cancel()
        await self._channel.close()


async def resting_cloids(dsn: str) -> set[str]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT client_order_id FROM orders WHERE account = %s AND leaves_qty > 0", (MM,)
        )
        return {row[0] for row in await cur.fetchall()}


async def test_a_sequence_of_faults_under_load_loses_nothing_acknowledged(
    etcd_server: EtcdServer, pg_dsn: str, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    async with start_cluster(etcd_server, pg_dsn, tmp_path, SHARDS, ("router-1",)) as cluster:
        router = cluster.routers["router-1"].target
        seconds = SOAK_SECONDS + RECOVERY_S  # the last fault may outlast the deadline
        load = asyncio.ensure_future(rated_load(router, LOAD_SYMBOL, seconds, 1, 5, "chaos"))
        maker = Maker(router, pg_dsn)
        done: list[str] = []
        try:
            deadline = time.monotonic() + SOAK_SECONDS
            while time.monotonic() < deadline and len(done) < MAX_FAULTS:
                await maker.reconnect()
                done.append(await rng.choice(FAULTS)(cluster, rng))
            await maker.reconnect()
            result = await load  # meanwhile a cancel owed by an earlier disconnect could run
            assert await resting_cloids(pg_dsn) == maker.current, (done, cluster.logs())
        finally:
            await maker.close()
            if not load.done():
                load.cancel()
    print(
        f"\nfaults ({len(done)}): {', '.join(done)}; load: {result.orders} commands answered,"
        f" {len(result.acked_order_ids)} placements acknowledged, {result.errors} refused or"
        f" failed {dict(result.error_reasons)}; maker sessions: {maker.sessions}"
    )
    assert len(done) >= 3
    assert result.rpc_failures == [], result.rpc_failures
    assert len(result.acked_order_ids) > 1000
    check_durable_record(pg_dsn, result.acked_order_ids)
