"""`spotmatch bench cluster`: a local cluster driven through one router, against its ceiling.

Starts a local cluster (tools/cluster/launcher.py: etcd, Postgres, Redis Cluster, shards,
routers) and the raw two-hop pair (tools/bench/passthrough.py), creates the bench symbols
and waits until each is ACTIVE and tradable through the router. Then, per run:
1. max throughput: ``clients`` Trade streams through the router, ``window`` messages of
   ``batch`` commands in flight each;
2. open loop at ``rate`` orders/s (default: half of this run's maximum), latency from each
   message's due time (no coordinated omission);
3. market data: ``md_subscribers`` StreamMarketData subscribers (spread over the symbols,
   in a process of their own: tools/bench/md_process.py) follow snapshot + deltas while
   the max-throughput load of step 1 runs again: the lag of every trade from its commit to
   a subscriber, and the throughput against step 1's;
   then ``book_readers`` concurrent GetOrderBook callers for the phase's duration;
4. unary: ``unary_clients`` concurrent SubmitOrder callers through the router;
5. the raw two-hop ceiling: the same Trade load and the same unary load through the
   passthrough pair, in the same run, so ``ratio`` compares like with like on a drifting box;
then reconciles every acknowledged order id against Postgres' ``orders`` table. With several
runs every figure is the median over runs (each run is kept in ``run_results``).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .cluster_setup import bench_symbols, create_bench_symbols, missing_acks, wait_routable
from .cpu import CpuMeter, per_order_by_kind
from .load import MAX_RATE, ClientFlow, LoadResult, drive_streams, percentile
from .md_load import read_books
from .md_process import subscriber_process
from .output import Progress
from .passthrough import PassthroughPair
from .timeline import timeline
from .unary_load import run_unary

_ROUTER_PHASES = ("max", "max_with_md", "open_loop", "open_loop_with_md", "unary")
_RAW_PHASES = ("raw_two_hop", "raw_two_hop_unary")


@dataclass(frozen=True)
class ClusterBenchParams:
    clients: int = 4
    batch: int = 100
    window: int = 4
    duration_s: float = 10.0
    rate: float | None = None  # open-loop orders/s; None: half of the run's measured maximum
    max_rate: float = MAX_RATE  # closed loop: orders/s worth of messages prepared per run
    unary_clients: int = 64
    md_subscribers: int = 100
    book_readers: int = 16
    symbols: int = 10
    runs: int = 1
    seed: int = 1
    shards: int = 3
    routers: int = 2
    plot: Path | None = None


async def drive(
    target: str,
    symbols: list[str],
    p: ClusterBenchParams,
    rate: float | None,
    run: str,
    *,
    echo: bool = False,
) -> LoadResult:
    """``p.clients`` Trade streams (closed loop, or open loop at ``rate`` orders/s)."""
    flows = [ClientFlow(c, symbols, p.seed, run) for c in range(p.clients)]
    return await drive_streams(
        target, flows, p.batch, p.window, p.duration_s, rate, p.max_rate, echo=echo
    )


def summarize(result: LoadResult) -> dict[str, Any]:
    lat = result.latencies_ms
    return {
        "orders_per_sec": round(result.orders / result.elapsed_s) if result.elapsed_s else 0,
        "orders": result.orders,
        "p50_ms": round(percentile(lat, 0.50), 2),
        "p99_ms": round(percentile(lat, 0.99), 2),
        "p999_ms": round(percentile(lat, 0.999), 2),
        "errors": result.errors + len(result.rpc_failures),
        "error_reasons": dict(result.error_reasons),
        "rpc_failures": result.rpc_failures[:5],
        "exhausted": result.exhausted,
    }


async def metered(
    pids: dict[str, int], load: Awaitable[LoadResult]
) -> tuple[LoadResult, dict[str, float]]:
    """``load``'s result and the CPU per order of the processes ``pids`` names, by kind."""
    meter = CpuMeter(pids)
    meter.start()
    result = await load
    return result, per_order_by_kind(meter.stop(), result.orders)


async def one_run(
    n: int, e: _Endpoints, symbols: list[str], p: ClusterBenchParams, progress: Progress
) -> tuple[dict[str, Any], list[int]]:
    """One run of every phase; returns its record and the order ids acknowledged."""
    router, raw = e.router, e.raw
    tag = f"{time.strftime('%H%M%S')}-{n}"  # accounts (and so client order ids) are per run
    where = f"run {n + 1}/{p.runs}:"
    progress.update(f"{where} max throughput through the router, {p.duration_s:g}s")
    peak, peak_cpu = await metered(e.pids, drive(router, symbols, p, None, f"max-{tag}"))
    rate = p.rate or max(1_000.0, peak.orders / peak.elapsed_s / 2)
    progress.update(f"{where} open loop at {rate:,.0f} orders/s")
    steady = await drive(router, symbols, p, rate, f"open-{tag}")
    record, acked = await _market_data_phases(e, symbols, p, rate, tag, progress)
    progress.update(f"{where} unary, {p.unary_clients} callers in flight")
    unary, unary_cpu = await metered(
        e.pids, run_unary(router, symbols, p.unary_clients, p.duration_s, p.seed, f"u-{tag}")
    )
    progress.update(f"{where} raw two-hop ceiling (passthrough pair)")
    ceiling = await drive(raw, symbols, p, None, f"raw-{tag}", echo=True)
    raw_unary = await run_unary(raw, symbols, p.unary_clients, p.duration_s, p.seed, "raw")
    record |= {
        "max": {**summarize(peak), "cpu_us_per_order": peak_cpu},
        "open_loop": {"rate": round(rate), **summarize(steady)},
        "unary": {**summarize(unary), "cpu_us_per_order": unary_cpu},
        "raw_two_hop": summarize(ceiling),
        "raw_two_hop_unary": summarize(raw_unary),
        "timeline": {
            "max": timeline(peak, peak.started, p.duration_s),
            "open_loop": timeline(steady, steady.started, p.duration_s),
        },
    }
    record["ratio"] = _ratio(record["max"], record["raw_two_hop"])
    record["unary_ratio"] = _ratio(record["unary"], record["raw_two_hop_unary"])
    acked += [*peak.acked_order_ids, *steady.acked_order_ids, *unary.acked_order_ids]
    return record, acked


async def _market_data_phases(
    e: _Endpoints, symbols: list[str], p: ClusterBenchParams, rate: float, tag: str,
    progress: Progress,
) -> tuple[dict[str, Any], list[int]]:  # fmt: skip
    """With ``p.md_subscribers`` following the books: the max-throughput load (for the
    throughput ratio) and the open-loop load at ``rate`` (the lag at a sustainable load);
    then GetOrderBook callers."""
    progress.update(f"{p.md_subscribers} market data subscribers: max throughput, open loop")
    router = e.router
    async with subscriber_process(router, symbols, p.md_subscribers) as subscribers:
        pids = {**e.pids, "subscribers": subscribers.pid}
        peak, peak_cpu = await metered(pids, drive(router, symbols, p, None, f"md-max-{tag}"))
        at_max = await subscribers.collect()
        steady = await drive(router, symbols, p, rate, f"md-open-{tag}")
        at_rate = await subscribers.collect()
    progress.update(f"{p.book_readers} GetOrderBook callers, {p.duration_s:g}s")
    books = await read_books(router, symbols, p.book_readers, p.duration_s)
    record = {
        "max_with_md": {**summarize(peak), "cpu_us_per_order": peak_cpu},
        "open_loop_with_md": {"rate": round(rate), **summarize(steady)},
        "md": at_rate,
        "md_at_max": at_max,
        "orderbook": {
            "calls_per_sec": round(books.calls / books.elapsed_s) if books.elapsed_s else 0,
            "errors": books.errors,
            "from_cache": round(books.from_cache / books.calls, 3) if books.calls else 0.0,
        },
    }
    return record, [*peak.acked_order_ids, *steady.acked_order_ids]


def _ratio(measured: dict[str, Any], ceiling: dict[str, Any]) -> float:
    top = ceiling["orders_per_sec"]
    return round(measured["orders_per_sec"] / top, 3) if top else 0.0


def bench_cluster(p: ClusterBenchParams, progress: Progress) -> tuple[dict[str, Any], list[str]]:
    """Start the cluster and the passthrough pair, measure, stop both (also on failure)."""
    from tools.cluster.launcher import LocalCluster  # noqa: PLC0415 - heavy, bench-only

    with tempfile.TemporaryDirectory(prefix="spotmatch-bench-cluster-") as tmp:
        cluster = LocalCluster(Path(tmp) / "cluster", shards=p.shards, routers=p.routers)
        progress.update(f"starting a local cluster: {p.shards} shards, {p.routers} routers")
        cluster.start()  # stops what it started and raises if anything fails to start
        try:
            progress.update("starting the raw two-hop pair")
            with PassthroughPair(Path(tmp) / "passthrough") as pair:
                endpoints = _Endpoints(
                    router=cluster.router_addresses[0],
                    raw=pair.target,
                    etcd=cluster.etcd_endpoint,
                    etcd_prefix=cluster.etcd_prefix,
                    pg_dsn=cluster.pg_dsn,
                    pids={r.name: r.pid for r in cluster.state().processes},
                )
                result = asyncio.run(_measure(endpoints, p, progress))
        finally:
            progress.update("stopping the cluster")
            cluster.stop()
    if p.plot is not None:
        result["plot"] = str(_plot(result, p.plot))
    progress.done()
    return result, _lines(result)


@dataclass(frozen=True)
class _Endpoints:
    router: str
    raw: str  # the passthrough proxy
    etcd: str
    etcd_prefix: str
    pg_dsn: str
    pids: dict[str, int]  # the cluster's processes by name ("shard-1", "postgres", ...)


async def _measure(e: _Endpoints, p: ClusterBenchParams, progress: Progress) -> dict[str, Any]:
    symbols = bench_symbols(p.symbols)
    progress.update(f"creating {len(symbols)} symbols; waiting until each is ACTIVE")
    await create_bench_symbols(e.etcd, e.etcd_prefix, e.pg_dsn, symbols)
    acked = await wait_routable(e.router, symbols)
    progress.update("warm-up")
    warm = ClusterBenchParams(clients=1, batch=p.batch, window=p.window, duration_s=1.0)
    for target in (e.router, e.raw):
        echo = target == e.raw
        result = await drive(target, symbols, warm, None, f"warm-{time.time_ns()}", echo=echo)
        if target == e.router:
            acked += result.acked_order_ids
    runs = []
    for n in range(p.runs):
        record, ids = await one_run(n, e, symbols, p, progress)
        runs.append(record)
        acked += ids
    progress.update(f"reconciling {len(set(acked)):,} acknowledged orders against Postgres")
    missing = await asyncio.to_thread(missing_acks, e.pg_dsn, acked)
    return _result(runs, p, e.router, len(set(acked)), missing)


def _result(
    runs: list[dict[str, Any]], p: ClusterBenchParams, router: str, acked: int, missing: int
) -> dict[str, Any]:
    def med(phase: str, key: str) -> float:
        return round(float(statistics.median(r[phase][key] for r in runs)), 2)

    ops, raw = med("max", "orders_per_sec"), med("raw_two_hop", "orders_per_sec")
    unary, raw_unary = med("unary", "orders_per_sec"), med("raw_two_hop_unary", "orders_per_sec")
    with_md = med("max_with_md", "orders_per_sec")
    return {
        "target": "cluster",
        "orders_per_sec": round(ops),
        # The latency of that same max-throughput run (as `bench shard` reports it); the
        # open loop's is its own pair below.
        "p50_ms": med("max", "p50_ms"),
        "p99_ms": med("max", "p99_ms"),
        "errors": sum(r[ph]["errors"] for r in runs for ph in _ROUTER_PHASES),
        "raw_two_hop_orders_per_sec": round(raw),
        "ratio": round(ops / raw, 3) if raw else 0.0,
        "unary_orders_per_sec": round(unary),
        "unary_p50_ms": med("unary", "p50_ms"),
        "unary_p99_ms": med("unary", "p99_ms"),
        "raw_two_hop_unary_orders_per_sec": round(raw_unary),
        "unary_ratio": round(unary / raw_unary, 3) if raw_unary else 0.0,
        "md_lag_p50_ms": med("md", "lag_p50_ms"),
        "md_lag_p99_ms": med("md", "lag_p99_ms"),
        "md_lag_at_max_p50_ms": med("md_at_max", "lag_p50_ms"),
        "md_lag_at_max_p99_ms": med("md_at_max", "lag_p99_ms"),
        "orderbook_calls_per_sec": round(med("orderbook", "calls_per_sec")),
        "md_throughput_ratio": round(with_md / ops, 3) if ops else 0.0,
        "md_orders_per_sec": round(with_md),
        "md_gaps": sum(r[ph]["gaps"] for r in runs for ph in ("md", "md_at_max")),
        "md_failures": [f for r in runs for ph in ("md", "md_at_max") for f in r[ph]["failures"]][
            :5
        ],
        "cpu_us_per_order": _median_cpu(runs, "max"),
        "md_cpu_us_per_order": _median_cpu(runs, "max_with_md"),
        "unary_cpu_us_per_order": _median_cpu(runs, "unary"),
        "open_loop_p50_ms": med("open_loop", "p50_ms"),
        "open_loop_p99_ms": med("open_loop", "p99_ms"),
        "open_loop_rate": round(med("open_loop", "rate")),
        "open_loop_orders_per_sec": round(med("open_loop", "orders_per_sec")),
        "raw_errors": sum(
            r[ph]["errors"] for r in runs for ph in ("raw_two_hop", "raw_two_hop_unary")
        ),
        "acked_orders": acked,
        "missing_acks": missing,
        "exhausted": any(r[ph]["exhausted"] for r in runs for ph in ("max", "raw_two_hop")),
        "runs": len(runs),
        "router": router,
        "params": {k: v for k, v in asdict(p).items() if k != "plot"},
        "run_results": runs,
    }


def _median_cpu(runs: list[dict[str, Any]], phase: str) -> dict[str, float]:
    kinds = runs[0][phase]["cpu_us_per_order"]
    return {k: statistics.median(r[phase]["cpu_us_per_order"][k] for r in runs) for k in kinds}


def _plot(result: dict[str, Any], path: Path) -> Path:
    from .plot import write_plot  # noqa: PLC0415 - matplotlib only when a plot is asked for

    runs = sorted(result["run_results"], key=lambda r: r["max"]["orders_per_sec"])
    median_run = runs[len(runs) // 2]
    rate = median_run["open_loop"]["rate"]
    phases = {
        f"max throughput: {median_run['max']['orders_per_sec']:,} orders/s": median_run["timeline"][
            "max"
        ],
        f"open loop at {rate:,} orders/s": median_run["timeline"]["open_loop"],
    }
    p = result["params"]
    title = (
        f"spotmatch bench cluster: {p['shards']} shards, one router, {p['clients']} Trade"
        f" streams x {p['window']} x {p['batch']} orders (0.5 s buckets)"
    )
    return write_plot(path, phases, title)


def _lines(r: dict[str, Any]) -> list[str]:
    runs = f" (medians of {r['runs']} runs)" if r["runs"] > 1 else ""
    return [
        f"through one router{runs}:",
        f"  max throughput: {r['orders_per_sec']:,} orders/s  p50 {r['p50_ms']} ms"
        f"  p99 {r['p99_ms']} ms",
        f"  open loop at {r['open_loop_rate']:,}/s: {r['open_loop_orders_per_sec']:,} orders/s"
        f"  p50 {r['open_loop_p50_ms']} ms  p99 {r['open_loop_p99_ms']} ms",
        f"  unary, {r['params']['unary_clients']} callers: {r['unary_orders_per_sec']:,}"
        f" orders/s  p50 {r['unary_p50_ms']} ms  p99 {r['unary_p99_ms']} ms",
        f"  errors: {r['errors']}",
        f"market data, {r['params']['md_subscribers']} subscribers: lag commit -> subscriber"
        f" at the open-loop rate p50 {r['md_lag_p50_ms']} ms  p99 {r['md_lag_p99_ms']} ms"
        f" (at max throughput p50 {r['md_lag_at_max_p50_ms']}  p99 {r['md_lag_at_max_p99_ms']});"
        f" gaps {r['md_gaps']}",
        f"  max throughput with them {r['md_orders_per_sec']:,} orders/s"
        f" (ratio {r['md_throughput_ratio']:.2f} of without)",
        f"CPU per order at max throughput, us: {_cpu_line(r['cpu_us_per_order'])};"
        f" with the subscribers: {_cpu_line(r['md_cpu_us_per_order'])};"
        f" unary, per call: {_cpu_line(r['unary_cpu_us_per_order'])}",
        f"GetOrderBook, {r['params']['book_readers']} callers:"
        f" {r['orderbook_calls_per_sec']:,} calls/s",
        f"raw two-hop ceiling (client -> proxy -> echo server, same run):"
        f" {r['raw_two_hop_orders_per_sec']:,} orders/s streamed,"
        f" {r['raw_two_hop_unary_orders_per_sec']:,} unary",
        f"ratio: {r['ratio']:.2f} streamed, {r['unary_ratio']:.2f} unary",
        f"reconciliation: {r['acked_orders']:,} acknowledged orders,"
        f" {r['missing_acks']} missing from Postgres",
        *([f"plot: {r['plot']}"] if r.get("plot") else []),
        *(
            ["note: a max run used up its prepared messages; raise --max-rate"]
            if r["exhausted"]
            else []
        ),
    ]


def _cpu_line(cpu: dict[str, float]) -> str:
    return ", ".join(f"{kind} {us:g}" for kind, us in sorted(cpu.items(), key=lambda kv: -kv[1]))
