"""`spotmatch bench ...`: benchmarks with a human summary, a results file and JSON output."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tools.bench.engine_bench import DEFAULT_DEPTHS, bench_engine
from tools.bench.output import Progress, write_result


def register(commands: Any) -> None:
    bench = commands.add_parser(
        "bench",
        help="run a benchmark (engine, shard, cluster) and report JSON",
        description="Benchmarks. Each prints a summary, writes the result to a JSON file "
        "and, with --json, prints that JSON object as the last line.",
    )
    targets = bench.add_subparsers(dest="target", metavar="TARGET", required=True)
    engine = targets.add_parser(
        "engine",
        help="the matching engine against a bare heap-of-levels book",
        description="Drive the matching engine and a bare baseline book (heap of price "
        "levels, FIFO deques, fills as tuples) through the same seeded flow: ~60%% passive "
        "limits near the touch, 30%% cancels, 10%% marketable orders, at several resting "
        "depths. Reports ops/s (median of --runs) for both and their ratio.",
    )
    engine.add_argument(
        "--depths", type=_depths, default=DEFAULT_DEPTHS, metavar="N[,N...]",
        help="resting orders to hold the book at (default: 100,10000,100000)",
    )  # fmt: skip
    engine.add_argument(
        "--ops", type=int, default=100_000, help="measured ops per run (default: 100000)"
    )
    engine.add_argument(
        "--runs", type=int, default=5, help="runs per depth; medians are reported (default: 5)"
    )
    engine.add_argument("--seed", type=int, default=1, help="flow seed (default: 1)")
    _add_output_flags(engine)
    engine.set_defaults(handler=_run_engine)
    _register_shard(targets)
    _register_cluster(targets)


def _register_shard(targets: Any) -> None:
    shard = targets.add_parser(
        "shard",
        help="a shard process with a real Postgres, driven over gRPC Trade streams",
        description="Start a private Postgres and a shard process on loopback, then drive "
        "the shard with batched Trade streams from several clients: a max-throughput run, "
        "an open-loop run at --rate (latency from each message's due time), the same flow "
        "through the engine alone, and a timed recovery of 100,000 resting orders. "
        "Reconciles every acknowledged order against Postgres.",
    )
    shard.add_argument(
        "--clients", type=int, default=4, help="concurrent Trade streams (default 4)"
    )
    shard.add_argument("--batch", type=int, default=100, help="orders per message (default 100)")
    shard.add_argument(
        "--window", type=int, default=4, help="messages in flight per stream (default 4)"
    )
    shard.add_argument("--duration", type=float, default=10.0, help="seconds per run (default 10)")
    shard.add_argument(
        "--rate", type=float, help="open-loop orders/s (default: half the measured max)"
    )
    shard.add_argument("--seed", type=int, default=1, help="flow seed (default 1)")
    _add_max_rate(shard)
    _add_output_flags(shard)
    shard.set_defaults(handler=_run_shard)


def _register_cluster(targets: Any) -> None:
    cluster = targets.add_parser(
        "cluster",
        help="a local cluster through one router, against the raw two-hop gRPC ceiling",
        description="Start a local cluster (etcd, Postgres, Redis Cluster, --shards shards, "
        "--routers routers) and a raw two-hop pair (a proxy forwarding to an echo server over "
        "one Execute stream, each its own process), create --symbols symbols and wait until "
        "each is ACTIVE, then drive one router: batched Trade streams at max throughput, an "
        "open-loop run at --rate (latency from each message's due time), the max-throughput "
        "load again with --md-subscribers market data subscribers (lag of every trade from "
        "commit to subscriber), --book-readers GetOrderBook callers, and --unary-clients "
        "concurrent SubmitOrder callers; the same stream and unary loads go through the pair. "
        "Reports orders/s, latency and the ratio to the pair measured in the same run, "
        "reconciles every acknowledged order against Postgres, and stops everything.",
    )
    cluster.add_argument(
        "--clients", type=_positive, default=4, help="concurrent Trade streams (default 4)"
    )
    cluster.add_argument(
        "--batch", type=_positive, default=100, help="orders per message (default 100)"
    )
    cluster.add_argument(
        "--window", type=_positive, default=4, help="messages in flight per stream (default 4)"
    )
    cluster.add_argument(
        "--duration", type=float, default=10.0, help="seconds per load phase (default 10)"
    )
    cluster.add_argument(
        "--rate", type=float, help="open-loop orders/s (default: half the run's measured max)"
    )
    cluster.add_argument(
        "--unary-clients", type=_positive, default=64,
        help="concurrent SubmitOrder calls in flight (default 64)",
    )  # fmt: skip
    cluster.add_argument(
        "--symbols", type=_positive, default=10, help="bench symbols to create (default 10)"
    )
    cluster.add_argument(
        "--md-subscribers", type=_positive, default=100,
        help="StreamMarketData subscribers over the symbols during the market data phase"
        " (default 100)",
    )  # fmt: skip
    cluster.add_argument(
        "--book-readers", type=_positive, default=16,
        help="concurrent GetOrderBook callers in the market data phase (default 16)",
    )  # fmt: skip
    cluster.add_argument(
        "--shards", type=_positive, default=3, help="shards in the cluster (default 3)"
    )
    cluster.add_argument(
        "--routers", type=_positive, default=2,
        help="routers in the cluster; the load goes through the first (default 2)",
    )  # fmt: skip
    cluster.add_argument(
        "--runs", type=_positive, default=1, help="runs of every phase; medians (default 1)"
    )
    cluster.add_argument("--seed", type=int, default=1, help="flow seed (default 1)")
    _add_max_rate(cluster)
    cluster.add_argument(
        "--plot", type=Path, metavar="PATH",
        help="write throughput and latency over time (0.5 s buckets) as a PNG",
    )  # fmt: skip
    _add_output_flags(cluster)
    cluster.set_defaults(handler=_run_cluster)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _add_max_rate(parser: argparse.ArgumentParser) -> None:
    from tools.bench.load import MAX_RATE

    parser.add_argument(
        "--max-rate", type=float, default=MAX_RATE,
        help="closed-loop runs prepare this many orders/s worth of messages before the clock"
        f" starts; a faster system runs out early and is told so (default {MAX_RATE:,.0f})",
    )  # fmt: skip


def _add_output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print the result as JSON on the last line"
    )
    parser.add_argument(
        "--out", type=Path, help="result file (default: bench-results/TARGET-TIME.json)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress display")


def _depths(text: str) -> tuple[int, ...]:
    try:
        depths = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if any(d < 1 for d in depths):
        raise argparse.ArgumentTypeError("depths must be positive")
    return depths


def _run_engine(args: argparse.Namespace) -> int:
    if args.ops < 1 or args.runs < 1:
        raise SystemExit("spotmatch bench engine: --ops and --runs must be positive")
    result, lines = bench_engine(args.depths, args.ops, args.runs, args.seed, Progress(args.quiet))
    write_result(result, args.out, args.json, lines)
    return 0


def _run_shard(args: argparse.Namespace) -> int:
    import asyncio

    from tools.bench.errors import BenchError
    from tools.bench.shard_bench import ShardBenchParams, bench_shard
    from tools.services import ServiceError

    if min(args.clients, args.batch, args.window) < 1 or args.duration <= 0:
        raise SystemExit("spotmatch bench shard: counts and --duration must be positive")
    params = ShardBenchParams(
        clients=args.clients,
        batch=args.batch,
        window=args.window,
        duration_s=args.duration,
        rate=args.rate,
        seed=args.seed,
        max_rate=args.max_rate,
    )
    try:
        result, lines = asyncio.run(bench_shard(params, Progress(args.quiet)))
    except (BenchError, ServiceError) as exc:
        raise SystemExit(f"spotmatch bench shard: {exc}") from None
    write_result(result, args.out, args.json, lines)
    return 0 if result["missing_acked_orders"] == 0 else 1


def _run_cluster(args: argparse.Namespace) -> int:
    from tools.bench.cluster_bench import ClusterBenchParams, bench_cluster
    from tools.bench.errors import BenchError
    from tools.cluster.errors import LauncherError
    from tools.services import ServiceError

    if args.duration <= 0 or (args.rate is not None and args.rate <= 0):
        raise SystemExit("spotmatch bench cluster: --duration and --rate must be positive")
    params = ClusterBenchParams(
        clients=args.clients,
        batch=args.batch,
        window=args.window,
        duration_s=args.duration,
        rate=args.rate,
        unary_clients=args.unary_clients,
        md_subscribers=args.md_subscribers,
        book_readers=args.book_readers,
        symbols=args.symbols,
        runs=args.runs,
        seed=args.seed,
        shards=args.shards,
        routers=args.routers,
        plot=args.plot,
        max_rate=args.max_rate,
    )
    try:
        result, lines = bench_cluster(params, Progress(args.quiet))
    except (BenchError, LauncherError, ServiceError) as exc:
        raise SystemExit(f"spotmatch bench cluster: {exc}") from None
    write_result(result, args.out, args.json, lines)
    return 0 if result["missing_acks"] == 0 else 1
