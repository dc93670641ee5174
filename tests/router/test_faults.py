"""The router as a process over real etcd, and faults around it: etcd going away after
start (trading goes on from the last table), a shard crashing between commit and answer
(OUTCOME_UNKNOWN, then an idempotent retry by client_order_id)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from cluster.etcd import EtcdRegistry
from cluster.model import Assignment, AssignmentState, ShardRecord
from matching.v1 import gateway_pb2, gateway_pb2_grpc
from tests.checkers import check_durable_record
from tests.router.support import (
    BTC,
    BUY,
    ETH,
    SELL,
    Cluster,
    T,
    cluster,
    cmd,
    error_of,
    limit,
    open_orders,
    running_router,
    submit_order,
    trade,
    wait_until,
)
from tests.shard.support import config as shard_config
from tests.shard.support import prepare_db, running_node
from tools.services import EtcdServer
from tools.services.router_process import RouterProcess
from tools.services.shard_process import ShardProcess

pytestmark = pytest.mark.integration
PREFIX = "/router-test/"
ACTIVE = AssignmentState.ACTIVE


@pytest.fixture
async def etcd_cluster(etcd_server: EtcdServer) -> AsyncIterator[EtcdRegistry]:
    registry = EtcdRegistry([etcd_server.endpoint], prefix=PREFIX, timeout=2.0)
    await registry.connect()
    try:
        yield registry
    finally:
        await registry.close()


async def test_router_process_keeps_trading_when_etcd_goes_away(
    pg_dsn: str, etcd_server: EtcdServer, etcd_cluster: EtcdRegistry, tmp_path: Path
) -> None:
    await prepare_db(pg_dsn)
    async with running_node(shard_config(pg_dsn, (BTC, ETH), shard_id="shard-a")) as shard:
        await etcd_cluster.register_shard(ShardRecord("shard-a", f"127.0.0.1:{shard.port}"), 3)
        for symbol in (BTC, ETH):
            created = await etcd_cluster.create_assignment(
                Assignment(symbol, "shard-a", AssignmentState.ACTIVE)
            )
            assert created is not None
        router = RouterProcess(etcd_server.endpoint, tmp_path, etcd_prefix=PREFIX)
        await asyncio.to_thread(router.start)
        try:
            async with grpc.aio.insecure_channel(router.target) as channel:
                stub = gateway_pb2_grpc.OrderGatewayServiceStub(channel)
                maker = await submit_order(stub, limit(BTC, "maker", SELL, 2, 100))
                await asyncio.to_thread(etcd_server.stop)
                taker = await submit_order(stub, limit(BTC, "taker", BUY, 2, 100))
                assert [f.maker_order_id for f in taker.fills] == [maker.order_id]
                eth = await submit_order(stub, limit(ETH, "maker", SELL, 20, 100))
                assert eth.status == T.ORDER_STATUS_NEW
        finally:
            code = await asyncio.to_thread(router.stop)
        assert code == 0, router.log_tail()
    check_durable_record(pg_dsn, [maker.order_id, taker.order_id, eth.order_id])


@pytest.fixture
async def crashing_shard(
    pg_dsn: str, tmp_path: Path
) -> AsyncIterator[tuple[Cluster, list[ShardProcess]]]:
    """A shard process serving BTC that dies right after its second commit; the test adds
    its restarts to the list, all stopped after the test's routers (a shard's graceful stop
    waits for open Execute streams)."""
    async with cluster(pg_dsn) as state:
        process = ShardProcess(pg_dsn, tmp_path, (BTC,), "shard-a", "after_commit=crash:2")
        processes = [process]
        await asyncio.to_thread(process.start)
        try:
            await state.admin.register_shard(ShardRecord("shard-a", process.target), 5)
            await state.assign(BTC, "shard-a")
            yield state, processes
        finally:
            for each in processes:
                await asyncio.to_thread(each.stop)


async def test_a_shard_crash_after_commit_is_outcome_unknown_then_replayed(
    crashing_shard: tuple[Cluster, list[ShardProcess]], tmp_path: Path
) -> None:
    state, processes = crashing_shard
    process = processes[0]
    async with running_router(state, buffer_max_seconds=30.0) as (router, stub):
        maker = await submit_order(stub, limit(BTC, "maker", SELL, 2, 100, "m1"))
        taker = limit(BTC, "taker", BUY, 2, 100, "t1")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await submit_order(stub, taker)  # committed, then the shard dies
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        error = error_of(caught.value)
        assert error.reason == T.REJECT_CODE_OUTCOME_UNKNOWN and error.retryable
        assert process.wait_exit(10) == 137
        restarted = ShardProcess(state.dsn, tmp_path, (BTC,), "shard-a")
        restarted.port = process.port
        processes.append(restarted)
        await asyncio.to_thread(restarted.start)
        link = router.links.get("shard-a")
        assert link is not None and await wait_until(lambda: link.ready, 10.0)
        again = await submit_order(stub, taker)  # the same client order id
    assert again.replayed and again.status == T.ORDER_STATUS_FILLED
    assert [f.maker_order_id for f in again.fills] == [maker.order_id]
    summary = check_durable_record(state.dsn, [maker.order_id, again.order_id])
    assert summary.fills == 1  # executed once, whatever the retries


async def test_a_killed_router_still_cancels_on_disconnect(
    pg_dsn: str, etcd_server: EtcdServer, etcd_cluster: EtcdRegistry, tmp_path: Path
) -> None:
    """The router subscribes cancel-on-disconnect accounts on the shard stream, so the shard
    cancels their orders when the router dies; an account whose stream ended cleanly was
    unsubscribed first and keeps its orders."""
    await prepare_db(pg_dsn)
    async with running_node(shard_config(pg_dsn, (BTC, ETH), shard_id="shard-a")) as shard:
        await etcd_cluster.register_shard(ShardRecord("shard-a", f"127.0.0.1:{shard.port}"), 3)
        for symbol in (BTC, ETH):
            await etcd_cluster.create_assignment(Assignment(symbol, "shard-a", ACTIVE))
        router = RouterProcess(etcd_server.endpoint, tmp_path, etcd_prefix=PREFIX)
        await asyncio.to_thread(router.start)
        try:
            async with grpc.aio.insecure_channel(router.target) as channel:
                stub = gateway_pb2_grpc.OrderGatewayServiceStub(channel)
                calm = await _resting_stream(stub, "calm")
                await calm.done_writing()
                assert await calm.code() == grpc.StatusCode.OK
                mm = await _resting_stream(stub, "mm")
                assert len(await open_orders(pg_dsn, "mm")) == 2
                await asyncio.to_thread(router.kill)
                for _ in range(100):  # bounded: ~10 s
                    if not await open_orders(pg_dsn, "mm"):
                        break
                    await asyncio.sleep(0.1)
                mm.cancel()
        finally:
            await asyncio.to_thread(router.stop)
        assert await open_orders(pg_dsn, "mm") == []
        assert len(await open_orders(pg_dsn, "calm")) == 2
    check_durable_record(pg_dsn)


async def _resting_stream(stub: Any, account: str) -> Any:
    """A Trade stream with cancel-on-disconnect for ``account`` and one resting order of it
    on each symbol."""
    call = trade(stub)
    options = gateway_pb2.TradeStreamOptions(accounts=[account], cancel_on_disconnect=True)
    commands = [
        cmd(1, place_order=limit(BTC, account, SELL, 1, 900)),
        cmd(2, place_order=limit(ETH, account, SELL, 20, 900)),
    ]
    await call.write(gateway_pb2.TradeRequest(options=options, commands=commands))
    answer = await call.read()
    assert [r.report.status for r in answer.results] == [T.ORDER_STATUS_NEW] * 2, answer
    return call
