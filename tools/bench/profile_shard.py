"""`python -m tools.bench.profile_shard`: where an in-process shard's time goes.

Runs a shard node in this process on a private Postgres, then
1. latency: one Trade stream sending 40 messages of 100 orders at 10 messages/s — per
   message submit-to-report latency, and the batch commit time inside the shard;
2. profile: 4 concurrent SubmitBatch clients (4 calls in flight each) under cProfile —
   orders/s, CPU per order of this process (shard and clients together), and the functions
   with the most own time. cProfile slows Python code down, so treat these as shares.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
import statistics
import tempfile
import time
from pathlib import Path

import grpc

from matching.v1 import gateway_pb2, gateway_pb2_grpc
from persistence.rows import BatchRows
from shard.config import ShardConfig
from shard.server import ShardNode

from .load import ClientFlow, run_client
from .shard_setup import BENCH_SYMBOLS, prepare_bench_db


async def _single_stream_latency(node: ShardNode) -> str:
    start = node.pipeline._start_commit  # wrapped: each batch's time from match to commit
    commit_ms: list[float] = []

    class TimedCommit:
        def __init__(self, rows: BatchRows) -> None:
            self.started = time.perf_counter()
            self.inner = start(rows)

        async def commit(self) -> None:
            await self.inner.commit()
            commit_ms.append((time.perf_counter() - self.started) * 1e3)

        async def abort(self) -> None:
            await self.inner.abort()

    node.pipeline._start_commit = TimedCommit
    flow = ClientFlow(0, list(BENCH_SYMBOLS), 1, "latency")
    result = await run_client(f"127.0.0.1:{node.port}", flow, 100, 40, 10.0, 1, 10.0)
    node.pipeline._start_commit = start
    lat = sorted(result.latencies_ms)
    return (
        f"one Trade stream, 10 messages/s x 100 orders: p50 {statistics.median(lat):.1f} ms,"
        f" p99 {lat[int(0.99 * len(lat))]:.1f} ms; commit p50 {statistics.median(commit_ms):.1f} ms"
    )


async def _client(port: int, client: int, calls: int) -> None:
    flow = ClientFlow(client, list(BENCH_SYMBOLS), 1, "profile")
    requests = [gateway_pb2.SubmitBatchRequest(commands=flow.message(100)) for _ in range(calls)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = gateway_pb2_grpc.OrderGatewayServiceStub(channel)
        inflight = asyncio.Semaphore(4)

        async def one(request: gateway_pb2.SubmitBatchRequest) -> None:
            async with inflight:
                await stub.SubmitBatch(request, timeout=30)

        await asyncio.gather(*(one(r) for r in requests))


async def _profiled_load(node: ShardNode) -> str:
    clients, calls = 4, 40
    orders = clients * calls * 100
    profile = cProfile.Profile()
    wall, cpu = time.perf_counter(), time.process_time()
    profile.enable()
    await asyncio.gather(*(_client(node.port, c, calls) for c in range(clients)))
    profile.disable()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(20)
    head = (
        f"{clients} SubmitBatch clients under cProfile: {orders / wall:,.0f} orders/s,"
        f" {cpu / orders * 1e6:.0f} us CPU per order (shard + clients, profiled)"
    )
    return head + "\n" + out.getvalue()


async def _run(dsn: str) -> None:
    await prepare_bench_db(dsn)
    node = ShardNode(ShardConfig("profile", "127.0.0.1:0", dsn, BENCH_SYMBOLS))
    await node.start()
    try:
        print(await _single_stream_latency(node))
        print(await _profiled_load(node))
    finally:
        await node.stop()


def main() -> None:
    from tools.services.postgres import PostgresServer  # noqa: PLC0415 - heavy, tool-only

    with tempfile.TemporaryDirectory(prefix="spotmatch-profile-") as tmp:
        pg = PostgresServer(Path(tmp) / "pg")
        pg.start()
        try:
            asyncio.run(_run(pg.create_database("profile")))
        finally:
            pg.stop()


if __name__ == "__main__":
    main()
