"""`make run` / `spotmatch demo`: a local cluster, live trading through a router, a planned move.

1. `LocalCluster`: etcd, Postgres, a 3-node Redis Cluster, three shards, two routers, on
   loopback under the run directory; demo symbols created and placed.
2. A mixed market-maker load (batched Trade streams) through router 1, with a live line of
   orders/s, latency p50/p99, fills and errors every half second; meanwhile a market data
   subscriber follows the first symbol's book through router 2 (a line every two seconds).
   Routers check the clients' bearer token and shards the routers' cluster token (decision
   0018); the demo shows an order without a token and one for another account refused.
3. Half-way, a planned move of that symbol to another shard, with the pause it caused.
4. A summary, every acknowledged order checked in Postgres, the subscriber's book checked
   against the owner's committed book, the cluster's status table.
5. The cluster keeps serving until Ctrl-C (or returns at once with ``wait=False``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from api.auth import bearer
from cluster.etcd import EtcdRegistry
from cluster.operations import MoveResult, move
from tools.bench.load import ClientFlow, LoadResult, percentile, run_client
from tools.cluster.launcher import LocalCluster
from tools.demo_auth import DemoAuth, show_refusals, write_demo_auth
from tools.demo_market_data import DemoFeed

SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD")


@dataclass(frozen=True)
class DemoParams:
    run_dir: Path
    duration_s: float = 10.0
    clients: int = 4
    batch: int = 50
    window: int = 2
    wait: bool = True  # keep serving until Ctrl-C


def run_cluster_demo(params: DemoParams) -> int:
    run = f"demo{int(time.time())}"
    flows = [ClientFlow(c, list(SYMBOLS), 7, run) for c in range(params.clients)]
    with tempfile.TemporaryDirectory(prefix="spotmatch-demo-auth-") as secrets:
        auth = write_demo_auth(Path(secrets), [f.account for f in flows])
        cluster = LocalCluster(
            params.run_dir,
            shards=3,
            routers=2,
            symbols=SYMBOLS,
            router_args=auth.router_args,
        )
        return _run(cluster, params, flows, auth)


def _run(cluster: LocalCluster, params: DemoParams, flows: list[ClientFlow], auth: DemoAuth) -> int:
    print(f"starting a local cluster under {params.run_dir} (etcd, Postgres, Redis Cluster,")
    print("3 shards, 2 routers; about 15 s) ...", flush=True)
    cluster.start()
    try:
        _print_endpoints(cluster)
        accounts = ", ".join(f.account for f in flows)
        print(f"  auth       routers check client tokens; this demo's makers ({accounts})")
        print(f"             present 'authorization: Bearer {auth.token}'")
        ok = asyncio.run(_trade(cluster, params, flows, auth.token))
        _status(params.run_dir)
        if params.wait:
            _serve_until_interrupted(cluster)
        return 0 if ok else 1
    finally:
        print("stopping the cluster ...", flush=True)
        cluster.stop()


def _print_endpoints(cluster: LocalCluster) -> None:
    print("\ncluster up:")
    for i, address in enumerate(cluster.router_addresses, 1):
        print(f"  router-{i}   {address}   (OrderGatewayService: clients connect here)")
    for i, address in enumerate(cluster.shard_addresses, 1):
        print(f"  shard-{i}    {address}")
    print(f"  etcd       {cluster.etcd_endpoint}")
    print(f"  postgres   {cluster.pg_dsn}")
    print(f"  redis      {', '.join(cluster.redis_nodes)}")


async def _trade(cluster: LocalCluster, p: DemoParams, flows: list[ClientFlow], token: str) -> bool:
    router = cluster.router_addresses[0]
    results = [LoadResult() for _ in flows]
    routers = cluster.router_addresses
    feed = DemoFeed(routers[-1], SYMBOLS[0], f"router-{len(routers)}", token)
    await feed.wait_synced()
    refused = await show_refusals(router, token, SYMBOLS[0])
    print(f"\ntrading: {p.clients} market-maker streams through {router}, {p.batch} orders per")
    print(f"message, {p.duration_s:.0f} s; half-way {SYMBOLS[0]} moves to another shard\n")
    started = time.perf_counter()
    load = asyncio.gather(
        *(
            run_client(
                router,
                f,
                p.batch,
                10_000_000,
                None,
                p.window,
                p.duration_s,
                r,
                metadata=bearer(token),
            )
            for f, r in zip(flows, results, strict=True)
        )
    )
    mover = asyncio.ensure_future(_move_half_way(cluster, p.duration_s / 2))
    progress = asyncio.ensure_future(_show_progress(results, started, feed))
    await load
    progress.cancel()
    moved = await mover
    total = LoadResult()
    for r in results:
        total.merge(r)
    elapsed = time.perf_counter() - started
    ok = _summary(total, elapsed, moved, cluster.pg_dsn)
    same_book, verdict = await feed.verify()
    print(verdict)
    await feed.close()
    return ok and same_book and refused


async def _show_progress(results: list[LoadResult], started: float, feed: DemoFeed) -> None:
    seen_orders, seen_lat = 0, 0
    last = started
    for tick in itertools.count(1):
        await asyncio.sleep(0.5)
        now = time.perf_counter()
        orders = sum(r.orders for r in results)
        lat = [x for r in results for x in r.latencies_ms]
        window = lat[seen_lat:] or [0.0]
        print(
            f"  {now - started:5.1f}s  {(orders - seen_orders) / (now - last):8.0f} orders/s"
            f"  p50 {percentile(window, 0.5):6.1f} ms  p99 {percentile(window, 0.99):6.1f} ms"
            f"  fills {sum(r.fills for r in results):7d}  errors {sum(r.errors for r in results)}",
            flush=True,
        )
        if tick % 4 == 0:
            print(feed.line(), flush=True)
        seen_orders, seen_lat, last = orders, len(lat), now


async def _move_half_way(cluster: LocalCluster, delay: float) -> MoveResult | None:
    await asyncio.sleep(delay)
    registry = EtcdRegistry([cluster.etcd_endpoint], prefix=cluster.etcd_prefix)
    await registry.connect()
    try:
        view = await registry.snapshot()
        current = view.assignments[SYMBOLS[0]].shard_id
        target = sorted(s for s in view.shards if s != current)[0]
        return await move(registry, SYMBOLS[0], target, wait=10.0, view=view)
    finally:
        await registry.close()


def _summary(total: LoadResult, elapsed: float, moved: MoveResult | None, dsn: str) -> bool:
    lat = total.latencies_ms
    print(
        f"\n{total.orders:,} orders in {elapsed:.1f} s = {total.orders / elapsed:,.0f} orders/s;"
        f" per message p50 {percentile(lat, 0.5):.1f} ms, p99 {percentile(lat, 0.99):.1f} ms;"
        f" {total.fills:,} fills; {total.errors} errors"
    )
    if total.rpc_failures:
        print("stream failures: " + "; ".join(total.rpc_failures[:3]))
    if moved is not None:
        pause = f"{moved.observed_pause * 1e3:.0f} ms" if moved.observed_pause else "-"
        print(
            f"planned move of {moved.symbol}: {moved.from_shard} -> {moved.to_shard},"
            f" {moved.outcome}, routers buffered it for at most {pause}"
        )
    missing = _missing(dsn, total.acked_order_ids)
    print(f"durability: {len(total.acked_order_ids) - missing:,} of"
          f" {len(total.acked_order_ids):,} acknowledged orders found in Postgres")  # fmt: skip
    return missing == 0 and total.errors == 0 and not total.rpc_failures


def _missing(dsn: str, order_ids: list[int]) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM unnest(%s::bigint[]) AS a(id)"
            " WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.order_id = a.id)",
            (order_ids,),
        ).fetchone()
    return int(row[0]) if row else len(order_ids)


def _status(run_dir: Path) -> None:
    print(f"\n$ spotmatch ctl --run-dir {run_dir} status", flush=True)
    command = [sys.executable, "-m", "spotmatch", "ctl", "--run-dir", str(run_dir), "status"]
    subprocess.run(command, check=False, timeout=30)


def _serve_until_interrupted(cluster: LocalCluster) -> None:
    router = cluster.router_addresses[0]
    print("\nthe cluster keeps serving. Try, in another terminal:")
    print(f"  .venv/bin/spotmatch ctl --run-dir {cluster.run_dir} status")
    print(f"  grpcurl -plaintext {router} list")
    print("Ctrl-C stops everything.", flush=True)
    stop = False

    def interrupted(*_: object) -> None:
        nonlocal stop
        stop = True

    previous = signal.signal(signal.SIGTERM, interrupted)
    with contextlib.suppress(KeyboardInterrupt):
        while not stop:
            time.sleep(0.5)
    signal.signal(signal.SIGTERM, previous)
